//! `oct forwarder`: OCT's `run-device` idea, ZeroMQ's streamer and forwarder devices. Turrets in
//! another zone talk to one local forwarder, which holds the only connections to the HQ:
//!
//! - results: a PULL bound at `--pull` (where the turrets' `hq_rc` points) streamed to a PUSH
//!   connected to `--push` (the HQ's `rc_port`);
//! - commands: an XSUB connected to `--sub` (the HQ's `publish_port`) forwarded to an XPUB bound
//!   at `--pub` (the turrets' `hq_publisher`), subscriptions flowing back up.
//!
//! Frames pass byte for byte, multipart kept: sealed frames (secure mode) are never opened, and
//! the HQ's accounting (sent = received + lost) holds end to end. Nothing is dropped for a slow
//! HQ: the PUSH waits (its queue unbounded, as the turrets' own).

use std::time::{Duration, Instant};

/// Where the forwarder binds and connects.
#[derive(Debug, Clone)]
pub struct Forwarder {
    pub pull: String,
    pub push: String,
    pub sub: Option<String>,
    pub publish: Option<String>,
}

/// `HOST:PORT` (or a ZeroMQ endpoint, `tcp://…`) as an endpoint.
pub fn endpoint(addr: &str) -> String {
    if addr.contains("://") {
        addr.to_owned()
    } else {
        format!("tcp://{addr}")
    }
}

/// Largest result frame accepted, as the HQ's.
const MAX_FRAME_BYTES: i64 = 16 << 20;

fn bound(s: &zmq::Socket) -> String {
    s.get_last_endpoint()
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default()
}

/// Binds and connects everything (an error names the flag), then forwards until the process
/// ends; `log` gets one line per endpoint, then the results forwarded every `every`.
pub fn run(
    f: &Forwarder,
    every: Duration,
    log: impl Fn(&str) + Send + 'static,
) -> Result<(), String> {
    let ctx = zmq::Context::new();
    let flag = |name: &str, addr: &str, e: zmq::Error| format!("--{name} {addr}: {e}");
    let pull = ctx.socket(zmq::PULL).map_err(|e| e.to_string())?;
    pull.set_rcvhwm(100_000).map_err(|e| e.to_string())?;
    pull.set_maxmsgsize(MAX_FRAME_BYTES)
        .map_err(|e| e.to_string())?;
    pull.bind(&endpoint(&f.pull))
        .map_err(|e| flag("pull", &f.pull, e))?;
    let push = ctx.socket(zmq::PUSH).map_err(|e| e.to_string())?;
    push.set_sndhwm(0).map_err(|e| e.to_string())?;
    push.set_linger(-1).map_err(|e| e.to_string())?;
    push.connect(&endpoint(&f.push))
        .map_err(|e| flag("push", &f.push, e))?;
    log(&format!("results {} → {}", bound(&pull), endpoint(&f.push)));
    let commands = match (&f.sub, &f.publish) {
        (Some(sub), Some(publish)) => {
            let xsub = ctx.socket(zmq::XSUB).map_err(|e| e.to_string())?;
            xsub.connect(&endpoint(sub))
                .map_err(|e| flag("sub", sub, e))?;
            let xpub = ctx.socket(zmq::XPUB).map_err(|e| e.to_string())?;
            xpub.bind(&endpoint(publish))
                .map_err(|e| flag("pub", publish, e))?;
            log(&format!("commands {} → {}", endpoint(sub), bound(&xpub)));
            Some(std::thread::spawn(move || {
                let _ = zmq::proxy(&xpub, &xsub);
            }))
        }
        (None, None) => None,
        (Some(_), None) => return Err("--sub: needs --pub (where turrets subscribe)".into()),
        (None, Some(_)) => return Err("--pub: needs --sub (the HQ's publish port)".into()),
    };
    let mut forwarded: u64 = 0;
    let mut said = (Instant::now(), 0u64);
    let io = |e: zmq::Error| format!("results: {e}");
    loop {
        if pull.poll(zmq::POLLIN, 500).map_err(io)? > 0 {
            // A burst at a time, then a look at the clock.
            for _ in 0..1024 {
                match pull.recv_multipart(zmq::DONTWAIT) {
                    Ok(frames) => push.send_multipart(frames, 0).map_err(io)?,
                    Err(zmq::Error::EAGAIN) => break,
                    Err(e) => return Err(io(e)),
                }
                forwarded += 1;
            }
        }
        if said.0.elapsed() >= every && forwarded != said.1 {
            log(&format!("{forwarded} result frames forwarded"));
            said = (Instant::now(), forwarded);
        }
        if commands.as_ref().is_some_and(|t| t.is_finished()) {
            return Err("commands: the forwarder device stopped".into());
        }
    }
}
