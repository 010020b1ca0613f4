//! The turret lifecycle (DESIGN §6): register, answer `status_request`, start canons on `start`
//! (evenly over `rampup`), on `stop` let each finish its iteration, send every result, report
//! `ready`, and wait for the next test; `kill` ends the process.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use protocol::{
    Announce, Command, Message, Status, TestResult, TurretState, BATCH_MAX, EXT_BATCH, EXT_SEQ,
};
use serde_json::Value;

use crate::canon::{self, Canon, Event, Shared};
use crate::config::Config;
use crate::engine::{self, CanonInfo, Engine};

#[derive(Debug, thiserror::Error)]
pub enum TurretError {
    #[error("{0}")]
    Script(String),
    #[error("ZeroMQ: {0}")]
    Zmq(#[from] zmq::Error),
}

struct Test {
    stop: Arc<AtomicBool>,
    canons: Vec<JoinHandle<()>>,
}

struct Turret {
    config: Config,
    uuid: String,
    engine: Arc<dyn Engine>,
    sub: zmq::Socket,
    push: zmq::Socket,
    state: TurretState,
    announced: Option<Announce>,
    context: Value,
    test: Option<Test>,
    events_tx: Sender<Event>,
    events: Receiver<Event>,
    sent: u64,
    abort_message: Option<String>,
    /// The last batch frame's buffer, reused.
    frame: Vec<u8>,
    _ctx: zmq::Context,
}

/// Runs a turret until `kill`.
pub fn run(config: Config) -> Result<(), TurretError> {
    let engine: Arc<dyn Engine> =
        Arc::from(engine::for_script(&config.script_path).map_err(|e| TurretError::Script(e.0))?);
    let ctx = zmq::Context::new();
    let sub = ctx.socket(zmq::SUB)?;
    let push = ctx.socket(zmq::PUSH)?;
    // Nothing is dropped while the HQ is away: results wait for it to come back.
    push.set_sndhwm(0)?;
    push.set_linger(2000)?;
    let uuid = uuid::Uuid::new_v4().to_string();
    sub.connect(&format!(
        "tcp://{}:{}",
        config.hq_address, config.hq_publisher
    ))?;
    sub.set_subscribe(b"")?;
    push.connect(&format!("tcp://{}:{}", config.hq_address, config.hq_rc))?;
    let (events_tx, events) = mpsc::channel();
    let mut turret = Turret {
        config,
        uuid,
        engine,
        sub,
        push,
        state: TurretState::Ready,
        announced: None,
        context: serde_json::json!({}),
        test: None,
        events_tx,
        events,
        sent: 0,
        abort_message: None,
        frame: Vec::new(),
        _ctx: ctx,
    };
    // Load the script once now, so a broken script is reported before any test.
    if let Err(e) = turret.engine.check() {
        turret.state = TurretState::Aborted;
        turret.abort_message = Some(e.0.clone());
        turret.send_status()?;
        return Err(TurretError::Script(e.0));
    }
    eprintln!(
        "oct turret {}: {} canon(s) of {}, HQ at {}:{}/{}",
        turret.config.name,
        turret.config.cannons,
        turret.config.script,
        turret.config.hq_address,
        turret.config.hq_publisher,
        turret.config.hq_rc
    );
    turret.send_status()?;
    turret.serve()
}

impl Turret {
    fn canon_info(&self, index: u64) -> CanonInfo {
        CanonInfo {
            index,
            canons: self.config.cannons,
            turret: self.config.name.clone(),
            context: self.context.clone(),
            config: Value::Object(self.config.raw.clone()),
        }
    }

    fn ext(&self, name: &str) -> bool {
        self.announced.as_ref().is_some_and(|a| a.has(name))
    }

    fn send_status(&self) -> Result<(), TurretError> {
        let ext = self.ext(EXT_SEQ);
        let status = Status {
            turret: self.config.name.clone(),
            status: self.state,
            uuid: self.uuid.clone(),
            rampup: self.config.rampup_secs,
            script: self.config.script.clone(),
            cannons: self.config.cannons,
            message: if ext {
                self.abort_message.clone()
            } else {
                None
            },
            results_sent: (ext && self.state == TurretState::Ready && self.sent > 0)
                .then_some(self.sent),
        };
        self.push.send(Message::Status(status).encode(), 0)?;
        Ok(())
    }

    fn serve(&mut self) -> Result<(), TurretError> {
        loop {
            if self.sub.poll(zmq::POLLIN, 20)? > 0 {
                let frame = self.sub.recv_bytes(0)?;
                match Command::decode(&frame) {
                    Ok(f) if f.channel.is_empty() || f.channel == self.uuid => {
                        if !self.on_command(f.command)? {
                            return Ok(());
                        }
                    }
                    Ok(_) => {}
                    Err(e) => eprintln!("oct turret {}: ignored a command: {e}", self.config.name),
                }
            }
            self.forward_events()?;
        }
    }

    /// Returns false when the turret must exit.
    fn on_command(&mut self, command: Command) -> Result<bool, TurretError> {
        match command {
            Command::StatusRequest(announce) => {
                if announce.is_some() {
                    self.announced = announce;
                }
                self.send_status()?;
            }
            Command::SetTransactionContext(v) => self.context = v,
            Command::Start if self.state == TurretState::Ready => self.start()?,
            Command::Start => {}
            Command::Stop => self.stop()?,
            Command::Kill => {
                self.stop()?;
                self.state = TurretState::Killed;
                self.send_status()?;
                return Ok(false);
            }
        }
        Ok(true)
    }

    fn start(&mut self) -> Result<(), TurretError> {
        let started = Instant::now();
        let stop = Arc::new(AtomicBool::new(false));
        let n = self.config.cannons;
        let step = Duration::from_secs(self.config.rampup_secs).div_f64(n as f64);
        let canons: Vec<Canon> = (0..n)
            .map(|i| Canon {
                info: self.canon_info(i),
                delay: step * i as u32,
            })
            .collect();
        let shared = Shared {
            engine: Arc::clone(&self.engine),
            started,
            stop: Arc::clone(&stop),
            events: self.events_tx.clone(),
        };
        let canons = canon::spawn_workers(canons, self.config.workers, &shared)
            .map_err(|e| TurretError::Script(format!("starting canon threads: {e}")))?;
        self.sent = 0;
        self.abort_message = None;
        self.test = Some(Test { stop, canons });
        self.state = TurretState::Running;
        self.send_status()
    }

    fn stop(&mut self) -> Result<(), TurretError> {
        let Some(test) = self.test.take() else {
            return Ok(());
        };
        test.stop.store(true, Ordering::Relaxed);
        for c in test.canons {
            let _ = c.join();
        }
        self.forward_events()?;
        if self.state == TurretState::Running {
            self.state = TurretState::Ready;
        }
        self.send_status()
    }

    fn forward_events(&mut self) -> Result<(), TurretError> {
        let seq = self.ext(EXT_SEQ);
        let batch = self.ext(EXT_BATCH);
        let mut pending: Vec<TestResult> = Vec::new();
        while let Ok(event) = self.events.try_recv() {
            match event {
                Event::Result(mut r) => {
                    self.sent += 1;
                    if seq {
                        r.seq = Some(self.sent);
                        r.turret_uuid = Some(self.uuid.clone());
                    }
                    if batch {
                        pending.push(r);
                        if pending.len() == BATCH_MAX {
                            self.send_batch(&mut pending)?;
                        }
                    } else {
                        self.push.send(Message::Result(r).encode(), 0)?;
                    }
                }
                Event::Failed(message) => {
                    self.send_batch(&mut pending)?;
                    eprintln!("oct turret {}: {message}", self.config.name);
                    self.abort_message = Some(message);
                    self.state = TurretState::Aborted;
                    self.send_status()?;
                }
            }
        }
        self.send_batch(&mut pending)
    }

    /// Sends `results` as one frame (extension `batch`), and empties it.
    fn send_batch(&mut self, results: &mut Vec<TestResult>) -> Result<(), TurretError> {
        if results.is_empty() {
            return Ok(());
        }
        // One buffer for every batch: ZeroMQ copies the frame, and a fresh 50 KB buffer each
        // time would cost page faults.
        self.frame.clear();
        Message::encode_batch(results, &mut self.frame);
        results.clear();
        self.push.send(&self.frame[..], 0)?;
        Ok(())
    }
}
