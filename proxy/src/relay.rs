//! The proxy itself: each client connection relayed to the backend, a behaviour drawn per HTTP
//! request (`http`) or per chunk the client sends (`tcp`), as Vaurien does.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::behavior::{Behavior, Mix};

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Protocol {
    Tcp,
    Http,
}

/// What the proxy draws from, where it forwards, what it did: shared with the control API.
pub struct State {
    pub mix: RwLock<Mix>,
    pub backend: RwLock<String>,
    /// Calls so far (for `error`'s `warmup`).
    pub calls: AtomicU64,
    /// Per behaviour applied: how many times.
    pub applied: std::sync::Mutex<std::collections::BTreeMap<&'static str, u64>>,
    pub protocol: Protocol,
    /// How long a backend may take to connect and answer, and how long `hang` hangs.
    pub timeout: Duration,
}

impl State {
    fn draw(&self, rng: &mut u64) -> Behavior {
        // xorshift64*: a draw per call needs no lock and no crate.
        *rng ^= *rng >> 12;
        *rng ^= *rng << 25;
        *rng ^= *rng >> 27;
        let r = (rng.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33) % 100;
        let b = self
            .mix
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .pick(r as u32)
            .clone();
        *self
            .applied
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(b.name())
            .or_default() += 1;
        b
    }

    fn backend(&self) -> String {
        self.backend
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Whether an `error` with this warmup errs on this call.
    fn past_warmup(&self, warmup: u64, call: u64) -> bool {
        call >= warmup
    }
}

/// Accepts clients for ever; each connection on a task of its own.
pub async fn serve(listener: TcpListener, state: Arc<State>) {
    let mut seed = uuid::Uuid::new_v4().as_u64_pair().0 | 1;
    loop {
        let Ok((client, peer)) = listener.accept().await else {
            continue;
        };
        let _ = client.set_nodelay(true);
        seed = seed.wrapping_add(0x9E37_79B9_7F4A_7C15) | 1;
        let (state, rng) = (Arc::clone(&state), seed);
        tokio::spawn(async move {
            let r = match state.protocol {
                Protocol::Tcp => tcp(client, &state, rng).await,
                Protocol::Http => http(client, &state, rng).await,
            };
            if let Err(e) = r {
                eprintln!("oct proxy: {peer}: {e}");
            }
        });
    }
}

async fn connect(state: &State) -> Result<TcpStream, String> {
    let backend = state.backend();
    match tokio::time::timeout(state.timeout, TcpStream::connect(&backend)).await {
        Ok(Ok(s)) => {
            let _ = s.set_nodelay(true);
            Ok(s)
        }
        Ok(Err(e)) => Err(format!("backend {backend}: {e}")),
        Err(_) => Err(format!(
            "backend {backend}: no connection within {:?}",
            state.timeout
        )),
    }
}

fn noise(rng: &mut u64, n: usize) -> Vec<u8> {
    (0..n)
        .map(|_| {
            *rng ^= *rng << 13;
            *rng ^= *rng >> 7;
            *rng ^= *rng << 17;
            *rng as u8
        })
        .collect()
}

/// Raw TCP: every chunk the client sends is a call; what the backend sends is relayed as it
/// comes (and its close closes the client's side), except after `hang`.
async fn tcp(client: TcpStream, state: &State, mut rng: u64) -> Result<(), String> {
    // A backend that refuses: the client's connection is closed and the event logged.
    let backend = connect(state).await?;
    let (mut from_client, to_client) = client.into_split();
    let (mut from_backend, mut to_backend) = backend.into_split();
    let to_client = Arc::new(tokio::sync::Mutex::new(to_client));
    let pump = {
        let to_client = Arc::clone(&to_client);
        tokio::spawn(async move {
            let mut buf = vec![0u8; 16 * 1024];
            loop {
                match from_backend.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if to_client.lock().await.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                }
            }
            let _ = to_client.lock().await.shutdown().await;
        })
    };
    let io = |e: std::io::Error| e.to_string();
    let mut buf = vec![0u8; 16 * 1024];
    let outcome = loop {
        let n = match from_client.read(&mut buf).await {
            Ok(0) => break Ok(()),
            Ok(n) => n,
            Err(e) => break Err(io(e)),
        };
        let call = state.calls.fetch_add(1, Ordering::Relaxed);
        match state.draw(&mut rng) {
            Behavior::Blackout | Behavior::Abort => break Ok(()),
            Behavior::Hang => {
                pump.abort();
                let _ = to_backend.write_all(&buf[..n]).await;
                tokio::time::sleep(state.timeout).await;
                break Ok(());
            }
            Behavior::Error { warmup, inject } if state.past_warmup(warmup, call) => {
                if inject {
                    to_backend.write_all(&buf[..n]).await.map_err(io)?;
                }
                let junk = noise(&mut rng, n.max(16));
                to_client.lock().await.write_all(&junk).await.map_err(io)?;
            }
            Behavior::Delay { sleep, before } => {
                if before {
                    tokio::time::sleep(sleep).await;
                }
                to_backend.write_all(&buf[..n]).await.map_err(io)?;
                if !before {
                    tokio::time::sleep(sleep).await;
                }
            }
            _ => to_backend.write_all(&buf[..n]).await.map_err(io)?,
        }
    };
    pump.abort();
    outcome
}

/// One HTTP/1.1 message read from `conn` into `buf` (head and body, by Content-Length or
/// chunked; a response without either runs until close): its length in `buf`, or `None` at a
/// clean end of stream.
async fn message(
    conn: &mut (impl AsyncReadExt + Unpin),
    buf: &mut Vec<u8>,
    response_to_head: bool,
) -> Result<Option<usize>, String> {
    let mut chunk = [0u8; 16 * 1024];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = conn.read(&mut chunk).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return if buf.is_empty() {
                Ok(None)
            } else {
                Err("connection closed mid-head".into())
            };
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.len() > 1 << 20 {
            return Err("a head over 1 MiB".into());
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let header = |name: &str| {
        head.split("\r\n").find_map(|l| {
            l.strip_prefix(name)
                .and_then(|r| r.strip_prefix(':'))
                .map(|v| v.trim().to_owned())
        })
    };
    let status = head.split(' ').nth(1).and_then(|s| s.parse::<u16>().ok());
    let is_response = head.starts_with("http/");
    if is_response && (response_to_head || matches!(status, Some(100..=199 | 204 | 304))) {
        return Ok(Some(head_end));
    }
    if header("transfer-encoding").is_some_and(|t| t.contains("chunked")) {
        // Chunks until the zero-size one and the blank line after the (ignored) trailers.
        let mut at = head_end;
        loop {
            let line_end = loop {
                if let Some(i) = buf[at..].windows(2).position(|w| w == b"\r\n") {
                    break at + i;
                }
                let n = conn.read(&mut chunk).await.map_err(|e| e.to_string())?;
                if n == 0 {
                    return Err("connection closed mid-body".into());
                }
                buf.extend_from_slice(&chunk[..n]);
            };
            let size_text = String::from_utf8_lossy(&buf[at..line_end]);
            let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
                .map_err(|_| format!("bad chunk size {size_text:?}"))?;
            if size == 0 {
                let trailer_end = loop {
                    if let Some(i) = buf[line_end..].windows(4).position(|w| w == b"\r\n\r\n") {
                        break line_end + i + 4;
                    }
                    let n = conn.read(&mut chunk).await.map_err(|e| e.to_string())?;
                    if n == 0 {
                        return Err("connection closed mid-body".into());
                    }
                    buf.extend_from_slice(&chunk[..n]);
                };
                return Ok(Some(trailer_end));
            }
            let next = line_end + 2 + size + 2;
            while buf.len() < next {
                let n = conn.read(&mut chunk).await.map_err(|e| e.to_string())?;
                if n == 0 {
                    return Err("connection closed mid-body".into());
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            at = next;
        }
    }
    let len = match header("content-length") {
        Some(v) => v
            .parse::<usize>()
            .map_err(|_| format!("bad Content-Length {v:?}"))?,
        None if is_response => {
            // Until the server closes.
            loop {
                let n = conn.read(&mut chunk).await.map_err(|e| e.to_string())?;
                if n == 0 {
                    return Ok(Some(buf.len()));
                }
                buf.extend_from_slice(&chunk[..n]);
            }
        }
        None => 0,
    };
    while buf.len() < head_end + len {
        let n = conn.read(&mut chunk).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("connection closed mid-body".into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Ok(Some(head_end + len))
}

/// Whether a message's head ends its connection: `Connection: close`, or HTTP/1.0 without
/// `keep-alive`.
fn wants_close(message: &[u8]) -> bool {
    let end = message
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(message.len());
    let head = String::from_utf8_lossy(&message[..end]).to_ascii_lowercase();
    let first = head.lines().next().unwrap_or("");
    let connection = head
        .split("\r\n")
        .find_map(|l| l.strip_prefix("connection:").map(str::trim));
    match connection {
        Some(c) if c.contains("close") => true,
        Some(c) if c.contains("keep-alive") => false,
        _ => first.contains("http/1.0"),
    }
}

/// An error page as Vaurien's `error` answers over HTTP (the request not forwarded).
fn error_page(rng: &mut u64) -> Vec<u8> {
    let (code, reason) = [
        (500, "Internal Server Error"),
        (502, "Bad Gateway"),
        (503, "Service Unavailable"),
    ][(noise(rng, 1)[0] % 3) as usize];
    let body =
        format!("<html><body><h1>{code} {reason}</h1><p>injected by oct proxy</p></body></html>");
    format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: text/html\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// HTTP/1.1: every request is a call; the backend connection is kept alive beside the client's.
async fn http(mut client: TcpStream, state: &State, mut rng: u64) -> Result<(), String> {
    let mut backend: Option<TcpStream> = None;
    let mut req = Vec::new();
    let mut resp = Vec::new();
    loop {
        let Some(n) = message(&mut client, &mut req, false).await? else {
            return Ok(());
        };
        let is_head = req.starts_with(b"HEAD ");
        let closing = wants_close(&req[..n]);
        let call = state.calls.fetch_add(1, Ordering::Relaxed);
        let behavior = state.draw(&mut rng);
        match behavior {
            Behavior::Blackout | Behavior::Abort => return Ok(()),
            Behavior::Error { warmup, .. } if state.past_warmup(warmup, call) => {
                client
                    .write_all(&error_page(&mut rng))
                    .await
                    .map_err(|e| e.to_string())?;
                req.drain(..n);
                if closing {
                    return Ok(());
                }
                continue;
            }
            Behavior::Delay {
                sleep,
                before: true,
            } => tokio::time::sleep(sleep).await,
            _ => {}
        }
        if backend.is_none() {
            backend = Some(connect(state).await?);
        }
        let b = backend.as_mut().expect("connected above");
        b.write_all(&req[..n]).await.map_err(|e| e.to_string())?;
        req.drain(..n);
        if behavior == Behavior::Hang {
            tokio::time::sleep(state.timeout).await;
            return Ok(());
        }
        resp.clear();
        let answer = tokio::time::timeout(state.timeout, message(b, &mut resp, is_head)).await;
        let m = match answer {
            Ok(Ok(Some(m))) => m,
            Ok(Ok(None)) => return Err("the backend closed without answering".into()),
            Ok(Err(e)) => return Err(format!("backend: {e}")),
            Err(_) => return Err(format!("backend: no answer within {:?}", state.timeout)),
        };
        if let Behavior::Delay {
            sleep,
            before: false,
        } = behavior
        {
            tokio::time::sleep(sleep).await;
        }
        client
            .write_all(&resp[..m])
            .await
            .map_err(|e| e.to_string())?;
        // Either side said `Connection: close` (or spoke HTTP/1.0): the exchange is over.
        if closing || wants_close(&resp[..m]) {
            return Ok(());
        }
        // A response that ran until the backend closed ends that connection.
        let head = String::from_utf8_lossy(&resp[..m.min(4096)]).to_ascii_lowercase();
        if !head.contains("content-length") && !head.contains("chunked") {
            backend = None;
        }
    }
}
