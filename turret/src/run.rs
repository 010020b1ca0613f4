//! The turret lifecycle (DESIGN §6): register, answer `status_request`, start canons on `start`
//! (evenly over `rampup`), on `stop` let each finish its iteration, send every result, report
//! `ready`, and wait for the next test; `kill` ends the process. With the HQ's `heartbeat`
//! extension it also sends a heartbeat every `heartbeat_ms`, and stops firing when the HQ has
//! been silent for `hq_timeout_ms` (its results wait in the socket for the HQ to come back).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use protocol::{
    Aggregator, Command, Heartbeat, LoadTargets, Message, Status, TestResult, TurretState,
    BATCH_MAX, EXT_BATCH, EXT_CHECKS, EXT_LOAD, EXT_PACKED, EXT_SEQ,
};
use serde_json::Value;

use crate::canon::{self, Canon, Event, Shared};
use crate::config::Config;
use crate::engine::{self, CanonInfo, Engine};
use crate::health::CpuMeter;
use crate::link::Link;
use crate::pace::Pacer;

#[derive(Debug, thiserror::Error)]
pub enum TurretError {
    #[error("{0}")]
    Script(String),
    #[error("ZeroMQ: {0}")]
    Zmq(#[from] zmq::Error),
}

/// Events forwarded per pass of the main loop at most, so that a flood of results never keeps
/// the turret from its commands and heartbeats.
const EVENTS_PER_PASS: usize = 16_384;
/// A batch frame is sent once it holds about this many bytes, far below the HQ's frame limit.
const BATCH_BYTES: usize = 512 << 10;
/// Longer error messages are cut to this (the HQ refuses frames over `MAX_FRAME_BYTES`).
const MAX_ERROR_BYTES: usize = 64 << 10;
/// An interval's aggregate is sent this long after the interval ended, so that a result
/// handed over by its canon a little late still finds it open.
const AGGREGATE_GRACE_SECS: f64 = 0.25;

struct Test {
    /// A `stop` feeder ran out.
    data_stop: Arc<AtomicBool>,
    started: Instant,
    stop: Arc<AtomicBool>,
    canons: Vec<JoinHandle<()>>,
    active: Arc<AtomicU64>,
    /// What the shape asks for now (`u64::MAX` for OCT's constant shape).
    target: Arc<AtomicU64>,
    /// `stop` was asked for: the canons are finishing their iterations.
    stopping: bool,
    /// The open model's schedule and counts.
    pacer: Option<Arc<Pacer>>,
}

struct Turret {
    config: Config,
    engine: Arc<dyn Engine>,
    link: Link,
    state: TurretState,
    context: Value,
    test: Option<Test>,
    /// `kill` came while a test was stopping (or `--once` and a test started): exit once it
    /// has.
    exit_after_stop: bool,
    /// `kill` came: the last status says `Killed` (after `--once`, the `ready` is the last).
    killed: bool,
    events_tx: Sender<Event>,
    events: Receiver<Event>,
    sent: u64,
    abort_message: Option<String>,
    /// The last test ended by itself (every canon ran its iterations).
    done: bool,
    heartbeats: u64,
    next_heartbeat: Instant,
    /// When the main loop last looked at the HQ's silence.
    last_pass: Instant,
    cpu: CpuMeter,
    /// The last batch frame's buffer, reused.
    frame: Vec<u8>,
    /// The generation of the last `load` command applied, in this HQ session.
    load_generation: u64,
    /// Iterations the last open-model test started and dropped (its `ready` says them).
    arrivals: Option<(u64, u64)>,
    /// Extension `aggregate`: this HQ session's intervals (their numbering goes on across
    /// tests, as `sent` does).
    aggregator: Option<Aggregator>,
    /// Extension `aggregate`, as announced when the last test started: the interval, and
    /// whether raw results go too.
    aggregate: Option<(u64, bool)>,
}

/// Runs a turret until `kill`.
pub fn run(config: Config) -> Result<(), TurretError> {
    let engine: Arc<dyn Engine> =
        Arc::from(engine::for_script(&config.script_path).map_err(|e| TurretError::Script(e.0))?);
    let link = Link::connect(
        &config.name,
        &config.hq_address,
        config.hq_publisher,
        config.hq_rc,
        config.secret.clone(),
    )?;
    let (events_tx, events) = mpsc::channel();
    let mut turret = Turret {
        cpu: CpuMeter::new(config.workers),
        config,
        engine,
        link,
        state: TurretState::Ready,
        context: serde_json::json!({}),
        test: None,
        exit_after_stop: false,
        killed: false,
        events_tx,
        events,
        sent: 0,
        abort_message: None,
        done: false,
        heartbeats: 0,
        next_heartbeat: Instant::now(),
        last_pass: Instant::now(),
        frame: Vec::new(),
        load_generation: 0,
        arrivals: None,
        aggregator: None,
        aggregate: None,
    };
    // Load the script once now, so a broken script is reported before any test.
    if let Err(e) = turret.engine.check() {
        turret.state = TurretState::Aborted;
        turret.abort_message = Some(e.0.clone());
        turret.send_status()?;
        return Err(TurretError::Script(e.0));
    }
    eprintln!(
        "oct turret {}: {} canon(s) of {}, HQ at {}:{}/{}{}",
        turret.config.name,
        turret.config.cannons,
        turret.config.script,
        turret.config.hq_address,
        turret.config.hq_publisher,
        turret.config.hq_rc,
        if turret.link.secure() {
            ", secure mode"
        } else {
            ""
        }
    );
    turret.send_status()?;
    turret.serve()
}

impl Turret {
    fn canon_info(&self, index: u64, data: &Arc<crate::data::Feeders>) -> CanonInfo {
        CanonInfo {
            data: Arc::clone(data),
            index,
            canons: self.config.cannons,
            turret: self.config.name.clone(),
            context: self.context.clone(),
            config: Value::Object(self.config.raw.clone()),
        }
    }

    fn send_status(&mut self) -> Result<(), TurretError> {
        let ext = self.link.ext(EXT_SEQ);
        let status = Status {
            turret: self.config.name.clone(),
            status: self.state,
            uuid: self.link.uuid().to_owned(),
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
            done: (ext && self.state == TurretState::Ready && self.done).then_some(true),
            iterations_started: None,
            iterations_dropped: None,
            intervals_sent: self
                .aggregator
                .as_ref()
                .filter(|_| self.state == TurretState::Ready)
                .map(Aggregator::intervals_sent),
        };
        let status = match self.arrivals {
            Some((started, dropped))
                if self.state == TurretState::Ready && self.link.ext(EXT_LOAD) =>
            {
                Status {
                    iterations_started: Some(started),
                    iterations_dropped: Some(dropped),
                    ..status
                }
            }
            _ => status,
        };
        self.link.send(&Message::Status(status).encode())?;
        Ok(())
    }

    fn serve(&mut self) -> Result<(), TurretError> {
        loop {
            // Wake for the next heartbeat too, when it is due before the usual 20 ms.
            let wait_ms = match self.link.heartbeat_every() {
                Some(_) => self
                    .next_heartbeat
                    .saturating_duration_since(Instant::now())
                    .as_millis()
                    .clamp(1, 20) as i64,
                None => 20,
            };
            if let Some(heard) = self.link.next(wait_ms)? {
                if heard.new_session {
                    self.on_new_session();
                }
                self.on_command(heard.command)?;
            }
            self.forward_events(EVENTS_PER_PASS)?;
            self.follow_shape();
            self.watch_hq();
            if self.finish_stop()? {
                return Ok(());
            }
            self.heartbeat()?;
        }
    }

    /// A new HQ speaks: whatever was running was the old one's test, and counts start again.
    fn on_new_session(&mut self) {
        if self.test.as_ref().is_some_and(|t| !t.stopping) {
            eprintln!(
                "oct turret {}: a new HQ session: stopping the test of the old one",
                self.config.name
            );
            self.begin_stop();
        }
        self.sent = 0;
        self.load_generation = 0;
        self.aggregator = None;
    }

    fn on_command(&mut self, command: Command) -> Result<(), TurretError> {
        match command {
            Command::StatusRequest(_) => self.send_status()?,
            Command::SetTransactionContext(v) => self.context = v,
            Command::Start if self.state == TurretState::Ready && self.test.is_none() => {
                self.start()?
            }
            Command::Start => {}
            Command::Stop => self.begin_stop(),
            Command::Kill => {
                self.exit_after_stop = true;
                self.killed = true;
                self.begin_stop();
            }
            Command::Load(target) => self.on_load(target),
        }
        Ok(())
    }

    /// The HQ's part of a global shape for this turret: applied only if newer than the last.
    fn on_load(&mut self, load: LoadTargets) {
        if !self.config.follow || load.generation <= self.load_generation {
            return;
        }
        self.load_generation = load.generation;
        let Some(test) = self.test.as_ref().filter(|t| !t.stopping) else {
            return;
        };
        let mine = load.of(self.link.uuid());
        match (&test.pacer, load.rates) {
            (Some(pacer), true) => pacer.set_rate(test.started.elapsed().as_secs_f64(), mine),
            (None, false) => test.target.store(mine.round() as u64, Ordering::Relaxed),
            // A model other than this turret's: not meant for it.
            _ => {}
        }
    }

    fn start(&mut self) -> Result<(), TurretError> {
        // `--once`: this test's end is the turret's.
        self.exit_after_stop |= self.config.once;
        let started = Instant::now();
        let stop = Arc::new(AtomicBool::new(false));
        let active = Arc::new(AtomicU64::new(0));
        // A turret that follows the HQ's `load` runs nothing until told.
        let target = Arc::new(AtomicU64::new(if self.config.follow {
            0
        } else {
            u64::MAX
        }));
        let n = self.config.cannons;
        let workers = self.config.workers.clamp(1, n.max(1) as usize);
        let pacer = match &self.config.plan.shape {
            protocol::Shape::Arrival(a) => Some(Arc::new(Pacer::new(a.schedule(), workers))),
            _ => None,
        };
        let step = Duration::from_secs(self.config.rampup_secs).div_f64(n as f64);
        let feeders = Arc::new(crate::data::Feeders::new(
            &self.config.data,
            self.config.turret_index,
            self.config.turret_count,
        ));
        let canons: Vec<Canon> = (0..n)
            .map(|i| {
                // A pool of canons waits for its dispatcher, not for a rampup.
                let delay = if pacer.is_some() {
                    Duration::ZERO
                } else {
                    step * i as u32
                };
                Canon::new(self.canon_info(i, &feeders), delay)
            })
            .collect();
        let shared = Shared {
            engine: Arc::clone(&self.engine),
            started,
            stop: Arc::clone(&stop),
            events: self.events_tx.clone(),
            active: Arc::clone(&active),
            target: Arc::clone(&target),
            iterations: self.config.plan.iterations,
            data_stop: Arc::clone(&feeders.stop),
            pacer: pacer.clone(),
        };
        let canons = canon::spawn_workers(canons, workers, &shared)
            .map_err(|e| TurretError::Script(format!("starting canon threads: {e}")))?;
        // Counts belong to the HQ session (a test restarted after the HQ was away goes on
        // counting); an OCT HQ has none, so each of its tests counts alone.
        if !self.link.has_session() {
            self.sent = 0;
            self.aggregator = None;
        }
        self.aggregate = self.link.aggregate();
        if let Some((secs, _)) = self.aggregate {
            if self.aggregator.as_ref().is_none_or(|a| a.secs() != secs) {
                let (name, uuid) = (&self.config.name, self.link.uuid());
                self.aggregator = Some(Aggregator::new(secs, name, uuid));
            }
        }
        self.abort_message = None;
        self.done = false;
        self.arrivals = None;
        self.test = Some(Test {
            data_stop: Arc::clone(&feeders.stop),
            started,
            stop,
            canons,
            active,
            target,
            stopping: false,
            pacer,
        });
        self.follow_shape();
        self.state = TurretState::Running;
        // A heartbeat at once: the HQ learns the test's canons (and rate) now, not a second on.
        self.next_heartbeat = Instant::now();
        self.send_status()
    }

    /// Tells the canons to stop after their current iteration; [`Turret::finish_stop`] reports
    /// `ready` once they all have. The loop goes on meanwhile: results flow, heartbeats go out.
    fn begin_stop(&mut self) {
        if let Some(test) = &mut self.test {
            test.stop.store(true, Ordering::Relaxed);
            test.stopping = true;
        }
    }

    /// Sets the canons the shape asks for now (stages, cycles; a constant shape asks for all).
    fn follow_shape(&mut self) {
        let Some(test) = &self.test else { return };
        let shape = &self.config.plan.shape;
        let own = !matches!(
            shape,
            protocol::Shape::Constant { .. } | protocol::Shape::Arrival(_)
        );
        if own && !self.config.follow && !test.stopping {
            let now = shape.target_at(test.started.elapsed().as_secs_f64());
            test.target.store(now, Ordering::Relaxed);
        }
    }

    /// Completes a test whose canons have all finished: after a stop, or by themselves when
    /// each has run its `iterations` (then the `ready` says `done`). Returns true when the
    /// turret must exit.
    fn finish_stop(&mut self) -> Result<bool, TurretError> {
        match &self.test {
            Some(t) if t.canons.iter().all(JoinHandle::is_finished) => {
                let out_of_data = t.data_stop.load(Ordering::Relaxed);
                if !t.stopping && (self.config.plan.iterations.is_some() || out_of_data) {
                    self.done = true;
                    eprintln!(
                        "oct turret {}: {}: done",
                        self.config.name,
                        if out_of_data {
                            "its test data ran out"
                        } else {
                            "every canon has run its iterations"
                        }
                    );
                }
            }
            Some(_) => return Ok(false),
            None if self.exit_after_stop => {}
            None => return Ok(false),
        }
        if let Some(test) = self.test.take() {
            for c in test.canons {
                let _ = c.join();
            }
            self.arrivals = test.pacer.as_ref().map(|p| {
                (
                    p.started.load(Ordering::Relaxed),
                    p.dropped.load(Ordering::Relaxed),
                )
            });
            // Every canon has sent its last event: forward them all before `ready`.
            self.forward_events(usize::MAX)?;
            self.send_aggregates(true)?;
            if self.state == TurretState::Running {
                self.state = TurretState::Ready;
            }
            self.send_status()?;
        }
        if self.exit_after_stop {
            if self.killed || !self.config.once {
                self.state = TurretState::Killed;
                self.send_status()?;
            }
            return Ok(true);
        }
        Ok(false)
    }

    /// Stops firing when the HQ has been silent too long: a turret whose HQ is gone must not
    /// load the target forever. Its results wait in the socket for the HQ to come back.
    fn watch_hq(&mut self) {
        // Time this loop did not run (the process was stopped, or starved of CPU) was not
        // silence of the HQ: its frames may be waiting unread.
        let now = Instant::now();
        let gap = now.duration_since(self.last_pass);
        self.last_pass = now;
        if gap > Duration::from_millis(500) {
            self.link.last_heard += gap;
        }
        let Some(timeout) = self.link.hq_timeout() else {
            return;
        };
        if self.test.as_ref().is_some_and(|t| !t.stopping)
            && self.link.last_heard.elapsed() > timeout
        {
            eprintln!(
                "oct turret {}: no word from the HQ for {:.1} s (hq_timeout): stopping the test; its results wait for the HQ",
                self.config.name,
                timeout.as_secs_f64()
            );
            self.begin_stop();
        }
    }

    fn heartbeat(&mut self) -> Result<(), TurretError> {
        let Some(every) = self.link.heartbeat_every() else {
            return Ok(());
        };
        let now = Instant::now();
        if now < self.next_heartbeat {
            return Ok(());
        }
        self.next_heartbeat = now + every;
        self.heartbeats += 1;
        let beat = Heartbeat {
            heartbeat: self.heartbeats,
            turret: self.config.name.clone(),
            uuid: self.link.uuid().to_owned(),
            results_sent: self.sent,
            cannons_active: self
                .test
                .as_ref()
                .map_or(0, |t| t.active.load(Ordering::Relaxed)),
            cannons_target: self
                .test
                .as_ref()
                .filter(|t| t.pacer.is_none())
                .map(|t| t.target.load(Ordering::Relaxed).min(self.config.cannons)),
            cpu: self.cpu.sample(),
            intervals_sent: self.aggregator.as_ref().map(Aggregator::intervals_sent),
            ..Default::default()
        };
        let beat = if self.link.ext(EXT_LOAD) {
            let pacer = self
                .test
                .as_ref()
                .and_then(|t| Some((t.started, t.pacer.as_ref()?)));
            Heartbeat {
                load_generation: self.config.follow.then_some(self.load_generation),
                arrival_rate: pacer.map(|(at, p)| p.rate_at(at.elapsed().as_secs_f64())),
                iterations_started: pacer.map(|(_, p)| p.started.load(Ordering::Relaxed)),
                iterations_dropped: pacer.map(|(_, p)| p.dropped.load(Ordering::Relaxed)),
                ..beat
            }
        } else {
            beat
        };
        self.link.send(&Message::Heartbeat(beat).encode())?;
        Ok(())
    }

    /// Sends what the canons reported, `limit` events at most.
    fn forward_events(&mut self, limit: usize) -> Result<(), TurretError> {
        let seq = self.link.ext(EXT_SEQ);
        let batch = self.link.ext(EXT_BATCH);
        let packed = batch && self.link.ext(EXT_PACKED);
        let lag = self.link.ext(EXT_LOAD);
        let checks = self.link.ext(EXT_CHECKS);
        let aggregate = self.aggregate;
        let mut pending: Vec<TestResult> = Vec::new();
        let mut pending_bytes = 0;
        let mut n = 0;
        while n < limit {
            let Ok(event) = self.events.try_recv() else {
                break;
            };
            n += 1;
            match event {
                Event::Result(mut r) => {
                    if r.error.len() > MAX_ERROR_BYTES {
                        let mut cut = MAX_ERROR_BYTES;
                        while !r.error.is_char_boundary(cut) {
                            cut -= 1;
                        }
                        r.error.truncate(cut);
                        r.error.push_str("… (cut at 64 KiB)");
                    }
                    if !lag {
                        r.lag = None;
                    }
                    if !checks {
                        r.checks.clear();
                        r.counters.clear();
                    }
                    if let (Some((_, raw)), Some(agg)) = (aggregate, &mut self.aggregator) {
                        agg.add(&r);
                        if !raw {
                            continue;
                        }
                    }
                    self.sent += 1;
                    if seq {
                        r.seq = Some(self.sent);
                    }
                    // A packed batch names the turret once; JSON names it in every result.
                    if !packed {
                        r.turret_name = Some(self.config.name.clone());
                        if seq {
                            r.turret_uuid = Some(self.link.uuid().to_owned());
                        }
                    }
                    if batch {
                        pending_bytes += 160
                            + r.error.len()
                            + r.custom_timers
                                .iter()
                                .map(|(k, _)| k.len() + 28)
                                .sum::<usize>();
                        pending.push(r);
                        if pending.len() == BATCH_MAX || pending_bytes >= BATCH_BYTES {
                            self.send_batch(&mut pending)?;
                            pending_bytes = 0;
                        }
                    } else {
                        self.link.send(&Message::Result(r).encode())?;
                    }
                }
                Event::Failed(message) => {
                    self.send_batch(&mut pending)?;
                    pending_bytes = 0;
                    eprintln!("oct turret {}: {message}", self.config.name);
                    self.abort_message = Some(message);
                    self.state = TurretState::Aborted;
                    self.send_status()?;
                }
            }
        }
        self.send_batch(&mut pending)?;
        self.send_aggregates(false)
    }

    /// Extension `aggregate`: sends the intervals that have ended (every one with `all`, at the
    /// end of a test). In aggregate-only mode `sent` counts the transactions they hold.
    fn send_aggregates(&mut self, all: bool) -> Result<(), TurretError> {
        let Some(agg) = &mut self.aggregator else {
            return Ok(());
        };
        if agg.is_empty() {
            return Ok(());
        }
        let ready = if all {
            agg.drain()
        } else {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64());
            agg.due(now, AGGREGATE_GRACE_SECS)
        };
        if self.aggregate.is_some_and(|(_, raw)| !raw) {
            self.sent = agg.results_sent();
        }
        for a in ready {
            self.link.send(&a.encode())?;
        }
        Ok(())
    }

    /// Sends `results` as one frame (extension `batch`), and empties it.
    fn send_batch(&mut self, results: &mut Vec<TestResult>) -> Result<(), TurretError> {
        if results.is_empty() {
            return Ok(());
        }
        // One buffer for every batch: ZeroMQ copies the frame, and a fresh 50 KB buffer each
        // time would cost page faults.
        let mut frame = std::mem::take(&mut self.frame);
        frame.clear();
        if self.link.ext(EXT_PACKED) {
            protocol::encode_packed(
                self.link.uuid(),
                Some(&self.config.name),
                results,
                &mut frame,
            );
        } else {
            Message::encode_batch(results, &mut frame);
        }
        results.clear();
        let sent = self.link.send(&frame);
        self.frame = frame;
        sent?;
        Ok(())
    }
}
