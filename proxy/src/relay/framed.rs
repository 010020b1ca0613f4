//! The request–reply protocols (http, redis, memcache): read one whole request, draw, apply the
//! behaviour around forwarding it and reading its one reply. The backend connection is opened
//! at the first call that needs it and kept while both sides keep theirs.

use std::time::{Duration, Instant};

use tokio::net::TcpStream;

use super::{finish, io_err, pipe, read_more, stale, write_all, write_paced, Act, Conn};
use crate::behavior::Behavior as B;
use crate::frame::{self, http, Bad, Protocol, Reply, Step};
use crate::timer;

/// Requests larger than this end the connection (a client that never ends one).
const MAX_REQUEST: usize = 64 << 20;

pub(super) async fn relay(mut c: Conn, client: TcpStream) -> Result<(), String> {
    let protocol = c.proxy.protocol;
    let mut cbuf: Vec<u8> = Vec::with_capacity(16 * 1024);
    let mut bbuf: Vec<u8> = Vec::with_capacity(16 * 1024);
    let mut backend: Option<TcpStream> = None;
    // Bytes passed each way on this connection, for `limit_data`.
    let (mut up, mut down) = (0u64, 0u64);
    let mut slow_close: Option<Duration> = None;
    loop {
        let req = loop {
            match frame::request(protocol, &cbuf) {
                Ok(Some(r)) => break r,
                Ok(None) if cbuf.len() > MAX_REQUEST => {
                    c.proxy.event(2);
                    return Err(format!("client: a request over {} MiB", MAX_REQUEST >> 20));
                }
                Ok(None) => {}
                Err(Bad(e)) => {
                    c.proxy.event(2);
                    return Err(format!("client: {e}"));
                }
            }
            if read_more(&client, &mut cbuf)
                .await
                .map_err(io_err("client"))?
                == 0
            {
                // The client is done (mid-request or not): so is the exchange.
                return Ok(());
            }
        };
        let n = req.len;
        let act = c.draw(&req.method, &req.path);
        if c.ends_here(&act, &client).await {
            return Ok(());
        }
        if act == (Act::Fail { inject: false }) {
            // Vaurien's error: the request is not forwarded; the client gets an error page
            // (HTTP), else random bytes — after which the stream cannot be read on, so the
            // connection is closed.
            let answer = error_answer(&mut c, protocol, req.reply);
            write_all(&client, &answer)
                .await
                .map_err(io_err("client"))?;
            cbuf.drain(..n);
            if req.last || protocol != Protocol::Http {
                finish(&client);
                return Ok(());
            }
            continue;
        }
        c.before_forwarding(&act).await;
        if backend.as_ref().is_some_and(stale) {
            backend = None;
        }
        let b = match &backend {
            Some(b) => b,
            None => backend.insert(c.connect().await?),
        };
        match &act {
            Act::Pass(B::Bandwidth { rate, stream }) if stream.up() => {
                write_paced(b, &cbuf[..n], *rate).await
            }
            Act::Pass(B::LimitData { bytes, stream }) if stream.up() && up + n as u64 > *bytes => {
                let allow = bytes.saturating_sub(up) as usize;
                let _ = write_all(b, &cbuf[..allow]).await;
                return Ok(());
            }
            _ => write_all(b, &cbuf[..n]).await,
        }
        .map_err(|e| {
            c.proxy.event(1);
            format!("backend: {e}")
        })?;
        up += n as u64;
        cbuf.drain(..n);
        if act == Act::Pass(B::Hang) {
            // Forwarded, never answered: the client waits until `--timeout`, then is closed.
            timer::sleep(c.proxy.timeout).await;
            return Ok(());
        }
        bbuf.clear();
        let (m, until_close) = match reply(b, req.reply, &mut bbuf, c.proxy.timeout).await {
            Ok(r) => r,
            Err(e) => {
                c.proxy.event(1);
                return Err(e);
            }
        };
        let ends = req.last
            || until_close
            || (protocol == Protocol::Http && http::response_closes(&bbuf[..m]));
        match &act {
            Act::Pass(B::Delay {
                sleep,
                before: false,
            }) => timer::sleep(*sleep).await,
            Act::Pass(B::Latency {
                latency,
                jitter,
                stream,
            }) if stream.down() => {
                let d = c.rng.jittered(*latency, *jitter);
                timer::sleep(d).await;
            }
            Act::Fail { inject: true } if protocol == Protocol::Http => {
                // Forwarded, and the backend's answer replaced by an error page.
                let page = http::error_page(c.rng.next() as u8);
                bbuf.splice(..m, page.iter().copied());
                write_all(&client, &page).await.map_err(io_err("client"))?;
                if ends {
                    return Ok(());
                }
                continue;
            }
            Act::Fail { inject: true } => c.rng.corrupt(&mut bbuf[..m]),
            Act::Pass(B::SlowClose { delay }) => slow_close = Some(*delay),
            _ => {}
        }
        match &act {
            Act::Pass(B::Bandwidth { rate, stream }) if stream.down() => {
                write_paced(&client, &bbuf[..m], *rate).await
            }
            Act::Pass(B::LimitData { bytes, stream })
                if stream.down() && down + m as u64 > *bytes =>
            {
                let allow = bytes.saturating_sub(down) as usize;
                let _ = write_all(&client, &bbuf[..allow]).await;
                return Ok(());
            }
            _ => write_all(&client, &bbuf[..m]).await,
        }
        .map_err(io_err("client"))?;
        down += m as u64;
        if until_close {
            let b = backend.take().expect("connected above");
            return rest_until_close(&client, b, &bbuf[..m], &cbuf).await;
        }
        if ends {
            if let Some(d) = slow_close {
                // toxiproxy's slow_close: the close is held back, the reply already sent.
                timer::sleep(d).await;
            }
            finish(&client);
            return Ok(());
        }
    }
}

/// One reply read into `buf` (empty): its length, and whether it runs until the backend closes.
async fn reply(
    b: &TcpStream,
    r: Reply,
    buf: &mut Vec<u8>,
    timeout: Duration,
) -> Result<(usize, bool), String> {
    let deadline = tokio::time::Instant::from_std(Instant::now() + timeout);
    loop {
        match frame::reply(r, buf) {
            Ok(Step::Done(n)) => return Ok((n, false)),
            Ok(Step::UntilClose) => return Ok((buf.len(), true)),
            Ok(Step::More(_)) => {}
            Err(Bad(e)) => return Err(format!("backend: {e}")),
        }
        match tokio::time::timeout_at(deadline, read_more(b, buf)).await {
            Ok(Ok(0)) if buf.is_empty() => return Err("backend: closed without answering".into()),
            Ok(Ok(0)) => return Err("backend: closed mid-reply".into()),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(format!("backend: {e}")),
            Err(_) => return Err(format!("backend: no answer within {timeout:?}")),
        }
    }
}

/// A reply without a length (HTTP/1.0 style) runs until the backend closes, and a `101
/// Switching Protocols` turns the connection into a tunnel: relayed both ways to the end.
async fn rest_until_close(
    client: &TcpStream,
    backend: TcpStream,
    head: &[u8],
    pending: &[u8],
) -> Result<(), String> {
    let upgraded = head.starts_with(b"HTTP/1.1 101") || head.starts_with(b"HTTP/1.0 101");
    if upgraded {
        write_all(&backend, pending)
            .await
            .map_err(io_err("backend"))?;
        tokio::join!(pipe(client, &backend), pipe(&backend, client));
        return Ok(());
    }
    let mut buf = Vec::new();
    loop {
        buf.clear();
        if read_more(&backend, &mut buf)
            .await
            .map_err(io_err("backend"))?
            == 0
        {
            finish(client);
            return Ok(());
        }
        write_all(client, &buf).await.map_err(io_err("client"))?;
    }
}

/// What Vaurien's `error` answers instead of the backend: an HTTP 5xx page, else random bytes.
fn error_answer(c: &mut Conn, protocol: Protocol, reply: Reply) -> Vec<u8> {
    match (protocol, reply) {
        (Protocol::Http, _) => http::error_page(c.rng.next() as u8),
        (_, Reply::Nothing) => Vec::new(),
        _ => {
            let n = 16 + (c.rng.next() % 48) as usize;
            c.rng.noise(n)
        }
    }
}
