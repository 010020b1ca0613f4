//! The turret's link to its HQ: the SUB and PUSH sockets, what the HQ announced (extensions,
//! session, liveness timings), when it was last heard, and secure mode — sealing what goes out,
//! opening what comes in, and ignoring (counting) any command its HQ did not seal.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use protocol::{Announce, Command, DecodeError, Opener, Sealer, Secret, Session, MAX_FRAME_BYTES};

/// A command from the HQ, and whether it came from an HQ session other than the one before.
pub(crate) struct Heard {
    pub command: Command,
    pub new_session: bool,
}

struct Secure {
    secret: Secret,
    opener: Opener,
    /// For the current HQ session; none before the HQ has spoken.
    sealer: Option<Sealer>,
}

pub(crate) struct Link {
    // Sockets must be dropped before their context; field order does that.
    sub: zmq::Socket,
    push: zmq::Socket,
    name: String,
    uuid: String,
    sender: [u8; 16],
    secure: Option<Secure>,
    announced: Option<Announce>,
    session: Option<String>,
    /// When the HQ last spoke (a command it sealed, in secure mode).
    pub last_heard: Instant,
    /// Commands ignored, by kind, so that each kind is logged once.
    ignored: HashMap<&'static str, u64>,
    sealed: Vec<u8>,
    opened: Vec<u8>,
    _ctx: zmq::Context,
}

impl Link {
    pub fn connect(
        name: &str,
        hq_address: &str,
        publisher: u16,
        rc: u16,
        secret: Option<Secret>,
    ) -> Result<Link, zmq::Error> {
        let ctx = zmq::Context::new();
        let sub = ctx.socket(zmq::SUB)?;
        let push = ctx.socket(zmq::PUSH)?;
        // Nothing is dropped while the HQ is away: results wait for it to come back.
        push.set_sndhwm(0)?;
        push.set_linger(2000)?;
        sub.set_maxmsgsize(MAX_FRAME_BYTES)?;
        sub.connect(&format!("tcp://{hq_address}:{publisher}"))?;
        sub.set_subscribe(b"")?;
        push.connect(&format!("tcp://{hq_address}:{rc}"))?;
        let id = uuid::Uuid::new_v4();
        Ok(Link {
            sub,
            push,
            name: name.to_owned(),
            uuid: id.to_string(),
            sender: *id.as_bytes(),
            secure: secret.map(|secret| Secure {
                opener: Opener::for_turret(&secret),
                secret,
                sealer: None,
            }),
            announced: None,
            session: None,
            last_heard: Instant::now(),
            ignored: HashMap::new(),
            sealed: Vec::new(),
            opened: Vec::new(),
            _ctx: ctx,
        })
    }

    pub fn uuid(&self) -> &str {
        &self.uuid
    }

    pub fn secure(&self) -> bool {
        self.secure.is_some()
    }

    /// Whether the HQ announced `extension`.
    pub fn ext(&self, extension: &str) -> bool {
        self.announced.as_ref().is_some_and(|a| a.has(extension))
    }

    /// Extension `aggregate`: the interval to aggregate over, and whether raw results go too.
    pub fn aggregate(&self) -> Option<(u64, bool)> {
        let a = self.announced.as_ref()?;
        let secs = a.aggregate_secs?;
        a.has(protocol::EXT_AGGREGATE)
            .then_some((secs, a.aggregate_raw))
    }

    /// Whether there is an HQ session (announced, or sealed): counts belong to it.
    pub fn has_session(&self) -> bool {
        self.session.is_some()
    }

    pub fn heartbeat_every(&self) -> Option<Duration> {
        let a = self.announced.as_ref()?;
        let ms = a.heartbeat_ms.filter(|ms| *ms > 0)?;
        a.has(protocol::EXT_HEARTBEAT)
            .then(|| Duration::from_millis(ms))
    }

    pub fn hq_timeout(&self) -> Option<Duration> {
        let a = self.announced.as_ref()?;
        let ms = a.hq_timeout_ms.filter(|ms| *ms > 0)?;
        a.has(protocol::EXT_HEARTBEAT)
            .then(|| Duration::from_millis(ms))
    }

    /// Sends one frame to the HQ, sealed in secure mode. Before the HQ has spoken, secure mode
    /// has no key to seal with, and the frame is not sent: the HQ asks again.
    pub fn send(&mut self, plain: &[u8]) -> Result<(), zmq::Error> {
        let frame = match &mut self.secure {
            None => plain,
            Some(Secure {
                sealer: Some(sealer),
                ..
            }) => {
                self.sealed.clear();
                sealer.seal(b"", plain, &mut self.sealed);
                &self.sealed[..]
            }
            Some(_) => return Ok(()),
        };
        // NOTE: the process engine's child workers make SIGCHLD arrive at any time (tokio
        // reaps them with a handler), and a signal interrupts ZeroMQ calls: retry, never fail.
        loop {
            match self.push.send(frame, 0) {
                Err(zmq::Error::EINTR) => continue,
                other => return other,
            }
        }
    }

    /// Waits up to `wait_ms` for a command, then returns the next one for this turret. Looks
    /// at a bounded number of frames per call, so that a flood of frames to ignore cannot keep
    /// the turret from its other work.
    pub fn next(&mut self, wait_ms: i64) -> Result<Option<Heard>, zmq::Error> {
        let mut waited = false;
        for _ in 0..64 {
            let frame = match self.sub.recv_bytes(zmq::DONTWAIT) {
                Ok(f) => f,
                Err(zmq::Error::EAGAIN) if !waited && wait_ms > 0 => {
                    waited = true;
                    match self.sub.poll(zmq::POLLIN, wait_ms) {
                        Ok(n) if n > 0 => continue,
                        // A signal (see `send`) ended the wait early: look again next pass.
                        Ok(_) | Err(zmq::Error::EINTR) => return Ok(None),
                        Err(e) => return Err(e),
                    }
                }
                Err(zmq::Error::EAGAIN | zmq::Error::EINTR) => return Ok(None),
                Err(e) => return Err(e),
            };
            if let Some(heard) = self.on_frame(&frame) {
                return Ok(Some(heard));
            }
        }
        Ok(None)
    }

    fn on_frame(&mut self, frame: &[u8]) -> Option<Heard> {
        // The channel comes first and stays readable: frames for other turrets are not ours to
        // open, count or complain about.
        let space = frame.iter().position(|&b| b == b' ');
        if let Some(at) = space {
            let channel = &frame[..at];
            if !channel.is_empty() && channel != self.uuid.as_bytes() {
                return None;
            }
        }
        let mut sealed_session = None;
        let decoded = match (&mut self.secure, space) {
            (None, _) => Command::decode(frame),
            (Some(_), None) => Err(DecodeError::Unsealed),
            (Some(s), Some(at)) => {
                match s
                    .opener
                    .open(&frame[..=at], &frame[at + 1..], &mut self.opened)
                {
                    Ok(session) => {
                        sealed_session = Some(session);
                        let mut plain = frame[..=at].to_vec();
                        plain.extend_from_slice(&self.opened);
                        Command::decode(&plain)
                    }
                    Err(e) => Err(e),
                }
            }
        };
        let command = match decoded {
            Ok(f) => f.command,
            Err(e) => {
                self.ignore(e);
                return None;
            }
        };
        self.last_heard = Instant::now();
        let mut new_session = false;
        let session = match (&command, sealed_session) {
            // In secure mode the session is the one the frame was sealed for, whatever it says.
            (_, Some(s)) => Some(s.to_hex()),
            (Command::StatusRequest(Some(a)), None) => a.session.clone(),
            _ => None,
        };
        if let Some(session) = session {
            if self.session.as_deref() != Some(session.as_str()) {
                new_session = self.session.is_some();
                if let (Some(s), Some(id)) = (&mut self.secure, Session::from_hex(&session)) {
                    s.sealer = Some(Sealer::to_hq(&s.secret, id, self.sender));
                }
                self.session = Some(session);
            }
        }
        if let Command::StatusRequest(Some(a)) = &command {
            self.announced = Some(a.clone());
        }
        Some(Heard {
            command,
            new_session,
        })
    }

    fn ignore(&mut self, e: DecodeError) {
        let n = self.ignored.entry(e.kind()).or_insert(0);
        *n += 1;
        if *n == 1 {
            let what = if self.secure.is_some() {
                " (secure mode: only commands sealed by the HQ count)"
            } else {
                ""
            };
            eprintln!(
                "oct turret {}: ignored a command: {e}{what}; further `{}` ones are only counted",
                self.name,
                e.kind()
            );
        }
    }
}
