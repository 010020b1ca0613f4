//! The connections: accept, draw a behaviour per call, apply its effect. A call is one request
//! and its reply for the framed protocols (`framed`: http, redis, memcache) and one chunk,
//! packet or command line of the client's for the streamed ones (`streamed`: tcp, mysql, smtp),
//! as Vaurien does.
//!
//! Sockets are used through `&TcpStream` (`readable` + `try_read`), so two tasks can share one
//! and a reset (`SO_LINGER` 0) is never preceded by the FIN a dropped write half would send.

mod framed;
mod streamed;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};

use crate::behavior::{Behavior, Drawn};
use crate::state::{Live, Proxy};
use crate::timer;

/// Accepts clients until the process ends; each connection on a task of its own.
pub async fn serve(listener: TcpListener, proxy: Arc<Proxy>) {
    let mut seed = uuid::Uuid::new_v4().as_u64_pair().0 | 1;
    loop {
        let (client, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // Out of descriptors, most likely: say so, and give the others time to end.
                eprintln!("oct proxy {}: accept: {e}", proxy.name);
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = client.set_nodelay(true);
        seed = seed.wrapping_add(0x9E37_79B9_7F4A_7C15) | 1;
        let (gen, live) = proxy.live();
        let conn = Conn {
            proxy: Arc::clone(&proxy),
            peer,
            rng: Rng(seed),
            gen,
            live,
        };
        tokio::spawn(async move {
            let name = conn.proxy.name.clone();
            let r = if conn.proxy.protocol.framed() {
                framed::relay(conn, client).await
            } else {
                streamed::relay(conn, client).await
            };
            if let Err(e) = r {
                eprintln!("oct proxy {name}: {peer}: {e}");
            }
        });
    }
}

/// One client's connection: its proxy, the plan in hand, its random draws.
struct Conn {
    proxy: Arc<Proxy>,
    peer: SocketAddr,
    rng: Rng,
    gen: u64,
    live: Arc<Live>,
}

/// What one call does: a behaviour, or an error answer (`inject`: after the backend answered).
#[derive(Debug, Clone, PartialEq)]
enum Act {
    Pass(Behavior),
    Fail { inject: bool },
}

/// xorshift64*: a draw per call needs no lock and no crate.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11
    }

    /// `latency` ± up to `jitter`, uniformly.
    fn jittered(&mut self, latency: Duration, jitter: Duration) -> Duration {
        if jitter.is_zero() {
            return latency;
        }
        let span = jitter.as_nanos() as u64;
        let off = self.next() % (2 * span + 1);
        (latency + Duration::from_nanos(off)).saturating_sub(jitter)
    }

    fn noise(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }

    /// Random bytes over the second half of `data`: a valid start, a corrupt end.
    fn corrupt(&mut self, data: &mut [u8]) {
        let from = data.len() / 2;
        for b in &mut data[from..] {
            *b = self.next() as u8;
        }
    }
}

impl Conn {
    /// The behaviour of one call (`method` and `path` for the routes), counted.
    fn draw(&mut self, method: &str, path: &str) -> Act {
        if self.proxy.generation() != self.gen {
            (self.gen, self.live) = self.proxy.live();
        }
        let r = (self.rng.next() % 100) as u32;
        let rule = self.live.rule(method, path, self.peer.ip());
        let drawn = rule.mix.draw(r);
        rule.counts[drawn.behavior().index()].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        match drawn {
            Drawn::Pass(b) => Act::Pass(b.clone()),
            Drawn::Fail { inject, .. } => Act::Fail { inject },
        }
    }

    /// The behaviours that end the connection before anything is forwarded — blackout and
    /// abort at once, timeout after its wait, reset_peer with an RST after its wait — applied;
    /// whether `act` was one.
    async fn ends_here(&self, act: &Act, client: &TcpStream) -> bool {
        match act {
            Act::Pass(Behavior::Blackout | Behavior::Abort) => {}
            Act::Pass(Behavior::Timeout { timeout }) => {
                timer::sleep(self.or_timeout(*timeout)).await
            }
            Act::Pass(Behavior::ResetPeer { timeout }) => {
                timer::sleep(*timeout).await;
                reset(client);
            }
            _ => return false,
        }
        true
    }

    /// What `act` waits before the call is forwarded: `delay`'s sleep (`before`), upstream
    /// `latency`.
    async fn before_forwarding(&mut self, act: &Act) {
        match act {
            Act::Pass(Behavior::Delay {
                sleep,
                before: true,
            }) => timer::sleep(*sleep).await,
            Act::Pass(Behavior::Latency {
                latency,
                jitter,
                stream,
            }) if stream.up() => {
                let d = self.rng.jittered(*latency, *jitter);
                timer::sleep(d).await;
            }
            _ => {}
        }
    }

    /// The backend, connected within `--timeout`; a refusal is counted and logged by the caller.
    async fn connect(&self) -> Result<TcpStream, String> {
        let backend = self.proxy.backend();
        let r = tokio::time::timeout(self.proxy.timeout, TcpStream::connect(&backend)).await;
        match r {
            Ok(Ok(s)) => {
                let _ = s.set_nodelay(true);
                Ok(s)
            }
            Ok(Err(e)) => {
                self.proxy.event(0);
                Err(format!(
                    "backend {backend}: {e}; the client's connection is closed"
                ))
            }
            Err(_) => {
                self.proxy.event(0);
                Err(format!(
                    "backend {backend}: no connection within {:?}; the client's connection is closed",
                    self.proxy.timeout
                ))
            }
        }
    }

    /// The timeout of `timeout` (0: `--timeout`).
    fn or_timeout(&self, d: Duration) -> Duration {
        if d.is_zero() {
            self.proxy.timeout
        } else {
            d
        }
    }
}

/// Reads what is there (at least one byte, or 0 at the end) onto the end of `buf`.
async fn read_more(s: &TcpStream, buf: &mut Vec<u8>) -> io::Result<usize> {
    if buf.capacity() - buf.len() < 8 * 1024 {
        buf.reserve(16 * 1024);
    }
    loop {
        match s.try_read_buf(buf) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => s.readable().await?,
            r => return r,
        }
    }
}

async fn write_all(s: &TcpStream, mut data: &[u8]) -> io::Result<()> {
    while !data.is_empty() {
        match s.try_write(data) {
            Ok(n) => data = &data[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => s.writable().await?,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Writes at most `rate` bytes a second (toxiproxy's `bandwidth`), in slices of 1/100 s.
async fn write_paced(s: &TcpStream, data: &[u8], rate: u64) -> io::Result<()> {
    if rate == 0 {
        return write_all(s, data).await;
    }
    let slice = (rate / 100).max(1) as usize;
    let t0 = Instant::now();
    let mut sent = 0usize;
    for part in data.chunks(slice) {
        write_all(s, part).await?;
        sent += part.len();
        timer::until(t0 + Duration::from_secs_f64(sent as f64 / rate as f64)).await;
    }
    Ok(())
}

/// Closes with a reset (RST, not FIN): `SO_LINGER` 0, then the socket is dropped.
fn reset(s: &TcpStream) {
    let _ = socket2::SockRef::from(s).set_linger(Some(Duration::ZERO));
}

/// Our side is done sending (FIN).
fn finish(s: &TcpStream) {
    let _ = socket2::SockRef::from(s).shutdown(std::net::Shutdown::Write);
}

/// Whether a kept backend connection is no use any more: closed by the backend meanwhile (its
/// FIN is there), failed, or holding bytes nobody asked for.
fn stale(s: &TcpStream) -> bool {
    let mut b = [0u8; 1];
    !matches!(s.try_read(&mut b), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
}

fn io_err(side: &'static str) -> impl Fn(io::Error) -> String {
    move |e| format!("{side}: {e}")
}

/// Relays `from` to `to` until `from` ends, then ends `to`'s sending side.
async fn pipe(from: &TcpStream, to: &TcpStream) {
    let mut buf = Vec::new();
    loop {
        buf.clear();
        if read_more(from, &mut buf).await.unwrap_or(0) == 0 {
            finish(to);
            return;
        }
        if write_all(to, &buf).await.is_err() {
            return;
        }
    }
}
