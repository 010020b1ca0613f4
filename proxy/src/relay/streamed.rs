//! The streamed protocols (tcp, mysql, smtp): the backend is connected at once (MySQL and SMTP
//! servers speak first), each chunk, packet or command line of the client's is a call, and what
//! the backend sends is relayed as it comes, under the downstream effect of the last call.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpStream;

use super::{finish, io_err, read_more, write_all, write_paced, Act, Conn, Rng};
use crate::behavior::Behavior as B;
use crate::frame::{self, Bad, Step};
use crate::timer;

/// What the last call does to what the backend sends.
#[derive(Debug, Clone, Default)]
struct Down {
    latency: Option<(Duration, Duration)>,
    rate: u64,
    /// Bytes that may still pass before the connection is closed.
    left: Option<u64>,
    corrupt: bool,
    discard: bool,
    slow_close: Option<Duration>,
}

impl Down {
    fn of(act: &Act) -> Down {
        let mut d = Down::default();
        match act {
            Act::Pass(B::Latency {
                latency,
                jitter,
                stream,
            }) if stream.down() => d.latency = Some((*latency, *jitter)),
            Act::Pass(B::Bandwidth { rate, stream }) if stream.down() => d.rate = *rate,
            Act::Pass(B::LimitData { bytes, stream }) if stream.down() => d.left = Some(*bytes),
            Act::Pass(B::SlowClose { delay }) => d.slow_close = Some(*delay),
            Act::Pass(B::Hang) => d.discard = true,
            Act::Fail { inject: true } => d.corrupt = true,
            _ => {}
        }
        d
    }
}

/// The client's side and the backend's, shared by the call loop and the backend pump.
struct Pair {
    client: TcpStream,
    backend: TcpStream,
    down: Mutex<Down>,
    /// Held while writing to the client (the pump and an error answer both do).
    writing: tokio::sync::Mutex<()>,
}

pub(super) async fn relay(mut c: Conn, client: TcpStream) -> Result<(), String> {
    let backend = c.connect().await?;
    let pair = Arc::new(Pair {
        client,
        backend,
        down: Mutex::new(Down::default()),
        writing: tokio::sync::Mutex::new(()),
    });
    let pump = tokio::spawn(pump(Arc::clone(&pair), Rng(c.rng.next() | 1)));
    let outcome = calls(&mut c, &pair).await;
    if let Ok(true) = outcome {
        // The client is done sending: the backend is told, and has until --timeout to finish.
        finish(&pair.backend);
        let abort = pump.abort_handle();
        if tokio::time::timeout(c.proxy.timeout, pump).await.is_err() {
            abort.abort();
        }
    } else {
        pump.abort();
    }
    outcome.map(|_| ())
}

/// The client's calls until it is done (`true`) or a behaviour ends the connection (`false`).
async fn calls(c: &mut Conn, pair: &Pair) -> Result<bool, String> {
    let protocol = c.proxy.protocol;
    let (client, backend) = (&pair.client, &pair.backend);
    let mut buf: Vec<u8> = Vec::with_capacity(16 * 1024);
    let mut smtp_data = false;
    let mut up_left: Option<u64> = None;
    loop {
        let n = match frame::chunk(protocol, &buf, &mut smtp_data) {
            Ok(Step::Done(n)) => n,
            Ok(_) => {
                if read_more(client, &mut buf)
                    .await
                    .map_err(io_err("client"))?
                    == 0
                {
                    return Ok(true);
                }
                continue;
            }
            Err(Bad(e)) => {
                c.proxy.event(2);
                return Err(format!("client: {e}"));
            }
        };
        let act = c.draw("", "");
        *pair.down.lock().unwrap_or_else(|e| e.into_inner()) = Down::of(&act);
        if c.ends_here(&act, client).await {
            return Ok(false);
        }
        c.before_forwarding(&act).await;
        match &act {
            Act::Fail { inject: false } => {
                let junk = c.rng.noise(n.max(16));
                let _w = pair.writing.lock().await;
                write_all(client, &junk).await.map_err(io_err("client"))?;
                buf.drain(..n);
                continue;
            }
            Act::Pass(B::LimitData { bytes, stream }) if stream.up() => {
                up_left.get_or_insert(*bytes);
            }
            _ => {}
        }
        if let Some(left) = &mut up_left {
            if n as u64 > *left {
                let _ = write_all(backend, &buf[..*left as usize]).await;
                return Ok(false);
            }
            *left -= n as u64;
        }
        match &act {
            Act::Pass(B::Bandwidth { rate, stream }) if stream.up() => {
                write_paced(backend, &buf[..n], *rate).await
            }
            _ => write_all(backend, &buf[..n]).await,
        }
        .map_err(|e| {
            c.proxy.event(1);
            format!("backend: {e}")
        })?;
        buf.drain(..n);
        match act {
            Act::Pass(B::Hang) => {
                timer::sleep(c.proxy.timeout).await;
                return Ok(false);
            }
            Act::Pass(B::Delay {
                sleep,
                before: false,
            }) => timer::sleep(sleep).await,
            _ => {}
        }
    }
}

/// What the backend sends, to the client, under the last call's downstream effect; the
/// backend's end ends the client's side (after `slow_close`'s delay).
async fn pump(pair: Arc<Pair>, mut rng: Rng) {
    let mut buf: Vec<u8> = Vec::with_capacity(16 * 1024);
    loop {
        buf.clear();
        if read_more(&pair.backend, &mut buf).await.unwrap_or(0) == 0 {
            break;
        }
        let d = pair.down.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if d.discard {
            continue;
        }
        if let Some((latency, jitter)) = d.latency {
            timer::sleep(rng.jittered(latency, jitter)).await;
        }
        if d.corrupt {
            rng.corrupt(&mut buf);
            pair.down.lock().unwrap_or_else(|e| e.into_inner()).corrupt = false;
        }
        let mut cut = false;
        if d.left.is_some() {
            let mut g = pair.down.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(left) = &mut g.left {
                if buf.len() as u64 > *left {
                    buf.truncate(*left as usize);
                    cut = true;
                }
                *left -= buf.len() as u64;
            }
        }
        let _w = pair.writing.lock().await;
        let r = if d.rate > 0 {
            write_paced(&pair.client, &buf, d.rate).await
        } else {
            write_all(&pair.client, &buf).await
        };
        if r.is_err() || cut {
            break;
        }
    }
    let slow = pair
        .down
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .slow_close;
    if let Some(d) = slow {
        timer::sleep(d).await;
    }
    finish(&pair.client);
}
