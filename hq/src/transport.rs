//! The HQ's three ZeroMQ sockets (DESIGN §3): command PUB, result PULL (no high-water mark, so
//! nothing a turret sent is dropped here), and the external publisher that re-publishes
//! results — an XPUB, PUB to its subscribers, which also tells the HQ whether anyone listens.
//! In secure mode every command leaves sealed.

use std::cell::RefCell;

use protocol::{Command, Sealer, MAX_FRAME_BYTES};

/// Frames queued per turret connection on the result socket at most: past it ZeroMQ holds the
/// rest back in the turret (PUSH waits, nothing is dropped), so a peer cannot fill the HQ's
/// memory faster than it is read.
const RESULT_QUEUE_FRAMES: i32 = 1000;

/// Whether the HQ binding to `address` is reachable from this machine alone.
pub fn is_loopback(address: &str) -> bool {
    let a = address.trim_start_matches('[').trim_end_matches(']');
    a == "localhost"
        || a.parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The ports actually bound (a configured 0 means "the OS picks").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ports {
    pub publish: u16,
    pub rc: u16,
    pub external: u16,
}

pub struct Sockets {
    // Sockets must be dropped before their context; field order does that.
    pub commands: zmq::Socket,
    pub results: zmq::Socket,
    pub external: zmq::Socket,
    pub ports: Ports,
    /// Subscriptions the external publisher has seen (subscribes minus unsubscribes).
    listeners: std::cell::Cell<i64>,
    /// Secure mode: seals every command.
    sealer: Option<RefCell<Sealer>>,
    _ctx: zmq::Context,
}

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("`{key}` {port}: cannot bind: {source}")]
    Bind {
        key: &'static str,
        port: u16,
        source: zmq::Error,
    },
    #[error("--forwarder-address {address}: {source}")]
    Forwarder { address: String, source: zmq::Error },
    #[error("ZeroMQ: {0}")]
    Zmq(#[from] zmq::Error),
}

fn bind(
    ctx: &zmq::Context,
    kind: zmq::SocketType,
    address: &str,
    key: &'static str,
    port: u16,
) -> Result<(zmq::Socket, u16), TransportError> {
    let socket = ctx.socket(kind)?;
    // A stop or kill still in the queue at exit gets a second to leave, never forever.
    socket.set_linger(1000)?;
    if kind == zmq::PULL {
        socket.set_rcvhwm(RESULT_QUEUE_FRAMES)?;
        socket.set_maxmsgsize(MAX_FRAME_BYTES)?;
    }
    if kind == zmq::XPUB {
        // Subscriptions are all the external publisher reads.
        socket.set_maxmsgsize(4096)?;
    }
    let endpoint = if port == 0 {
        format!("tcp://{address}:*")
    } else {
        format!("tcp://{address}:{port}")
    };
    let err = |source| TransportError::Bind { key, port, source };
    socket.bind(&endpoint).map_err(err)?;
    let bound = socket
        .get_last_endpoint()
        .map_err(err)?
        .ok()
        .and_then(|e| e.rsplit(':').next().and_then(|p| p.parse().ok()))
        .unwrap_or(port);
    Ok((socket, bound))
}

impl Sockets {
    /// Binds the sockets on `address` (`*` for every interface); with `forwarder`, the
    /// external publisher connects to that `ip:port` instead of binding (OCT's
    /// `--with-forwarder`). With `sealer`, every command is sealed.
    pub fn bind(
        address: &str,
        [publish, rc, external]: [u16; 3],
        forwarder: Option<&str>,
        sealer: Option<Sealer>,
    ) -> Result<Sockets, TransportError> {
        let ctx = zmq::Context::new();
        let (commands, publish) = bind(&ctx, zmq::PUB, address, "publish_port", publish)?;
        let (results, rc) = bind(&ctx, zmq::PULL, address, "rc_port", rc)?;
        let (external, external_port) = match forwarder {
            None => bind(&ctx, zmq::XPUB, address, "external_publisher", external)?,
            Some(address) => {
                let socket = ctx.socket(zmq::XPUB)?;
                socket.set_linger(1000)?;
                socket
                    .connect(&format!("tcp://{address}"))
                    .map_err(|source| TransportError::Forwarder {
                        address: address.to_owned(),
                        source,
                    })?;
                let port = address
                    .rsplit(':')
                    .next()
                    .and_then(|p| p.parse().ok())
                    .unwrap_or(0);
                (socket, port)
            }
        };
        Ok(Sockets {
            commands,
            results,
            external,
            ports: Ports {
                publish,
                rc,
                external: external_port,
            },
            listeners: std::cell::Cell::new(0),
            sealer: sealer.map(RefCell::new),
            _ctx: ctx,
        })
    }

    /// Publishes `command` to every turret.
    pub fn broadcast(&self, command: &Command) -> Result<(), TransportError> {
        self.send_on("", command)
    }

    /// Publishes `command` on `channel`: a turret's uuid addresses that turret alone.
    pub fn send_on(&self, channel: &str, command: &Command) -> Result<(), TransportError> {
        let plain = command.encode_on(channel);
        match &self.sealer {
            None => self.commands.send(plain, 0)?,
            Some(sealer) => {
                let prefix = channel.len() + 1;
                let mut frame = Vec::with_capacity(plain.len() + protocol::SEAL_OVERHEAD);
                sealer
                    .borrow_mut()
                    .seal(&plain[..prefix], &plain[prefix..], &mut frame);
                self.commands.send(frame, 0)?;
            }
        }
        Ok(())
    }

    /// Reads the subscriptions that reached the external publisher (a SUB of OCT's feed, or a
    /// forwarder's): `1` + topic to subscribe, `0` + topic to unsubscribe.
    pub fn watch_listeners(&self) {
        while let Ok(m) = self.external.recv_bytes(zmq::DONTWAIT) {
            match m.first() {
                Some(1) => self.listeners.set(self.listeners.get() + 1),
                Some(0) => self.listeners.set(self.listeners.get() - 1),
                _ => {}
            }
        }
    }

    /// Whether anyone subscribes to the external publisher: if not, re-publishing would only
    /// build messages for ZeroMQ to drop.
    pub fn listened(&self) -> bool {
        self.listeners.get() > 0
    }

    /// Re-publishes an accepted result as `[topic, raw json]`. The publisher drops rather than
    /// blocks when nobody keeps up, which is what a live feed should do.
    pub fn republish(&self, topic: &[u8], raw: &[u8]) {
        let _ = self.external.send(topic, zmq::SNDMORE | zmq::DONTWAIT);
        let _ = self.external.send(raw, zmq::DONTWAIT);
    }
}
