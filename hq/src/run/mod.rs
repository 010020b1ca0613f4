//! The run lifecycle (DESIGN §3): wait for turrets, start them, receive for `run_time`, stop,
//! drain until every started turret is `ready` again (or lost), store and summarise. Each
//! turret's liveness (`liveness`) is checked on every pass; in secure mode every frame is opened
//! before it is decoded, and what does not open is counted, never stored.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use protocol::{
    Announce, Command, DecodeError, Message, Opener, Packed, Sealer, Session, TestResult,
    TurretState,
};

use crate::config::{Config, ResultsMode};
use crate::console::Console;
use crate::liveness::Timings;
use crate::local::LocalTurrets;
use crate::store::{self, Op, ResultRow, StoreError, Writer};
use crate::summary::{Rejected, Summary};
use crate::transport::is_loopback;
use turrets::Turret;

mod aggregate;
mod finish;
mod load;
mod turrets;
mod web;
use crate::transport::{Sockets, TransportError};
pub use web::WebRun;

/// Ctrl-C presses, counted: one asks for a graceful stop, two for an immediate exit.
#[derive(Debug, Clone, Default)]
pub struct Shutdown(Arc<AtomicUsize>);

impl Shutdown {
    pub fn new() -> Self {
        Self::default()
    }
    /// Called from the signal handler.
    pub fn request(&self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
    pub fn presses(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

/// A checked `oct run`.
#[derive(Debug)]
pub struct RunOptions {
    pub config: Config,
    /// Where results.sqlite and the config copy go.
    pub results_dir: PathBuf,
    /// The topic of the external publisher.
    pub publisher_channel: String,
    /// Connect the external publisher to this forwarder (`ip:port`) instead of binding it.
    pub forwarder: Option<String>,
    /// Start each turret of the config as a child process of this program (`oct turret`).
    pub local_turrets: Option<PathBuf>,
    pub shutdown: Shutdown,
    /// `--web`: the dashboard's server and its controls.
    pub web: Option<WebRun>,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Local(String),
    #[error("{0}")]
    Chaos(String),
    #[error("{} already exists: a run never writes over earlier results; choose another --output-dir or move it away", .0.display())]
    Exists(PathBuf),
}

impl From<zmq::Error> for RunError {
    fn from(e: zmq::Error) -> Self {
        RunError::Transport(TransportError::Zmq(e))
    }
}

/// How often the HQ asks for status while it waits; OCT asks in a tight loop.
const STATUS_REQUEST_EVERY: Duration = Duration::from_millis(500);
/// Longest the receive loop blocks, so lifecycle deadlines are met promptly.
const POLL_MS: i64 = 50;
/// Results handed to the writer at once at most.
const BATCH_ROWS: usize = 4096;
/// Samples of rejected messages kept per kind.
const SAMPLES_PER_KIND: usize = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Waiting,
    Running,
    Draining,
}

struct Hq<'a> {
    opts: &'a RunOptions,
    sockets: Sockets,
    writer: Writer,
    console: Console,
    phase: Phase,
    turrets: Vec<Turret>,
    index: turrets::Index,
    batch: Vec<ResultRow>,
    summary: Summary,
    timer_counts: HashMap<String, u64>,
    rejected: HashMap<&'static str, Rejected>,
    run_started: Option<Instant>,
    next_status_request: Instant,
    /// When liveness was last checked.
    last_tick: Instant,
    topic: Vec<u8>,
    local: Option<LocalTurrets>,
    announce: Announce,
    timings: Timings,
    /// Secure mode: opens what turrets send to this HQ's session.
    opener: Option<Opener>,
    /// When the frame being handled arrived (one clock read per frame, not per result).
    now: Instant,
    /// The global shape's `load` commands: the last generation sent, and when.
    steering: load::Steering,
    /// The console said once that commands to one turret alone are not sent (an OCT turret
    /// is among them).
    warned_addressed: bool,
    /// The `abort_on_fail` thresholds, fed every result.
    live: Option<crate::gate::live::Live>,
    /// The scripts' checks (name → passed, failed) and counters ((name, second) → sum).
    checks: std::collections::BTreeMap<String, (u64, u64)>,
    counters: std::collections::BTreeMap<(String, i64), f64>,
    /// `--web`: what the dashboard and `/metrics` are fed.
    web: web::WebSide,
    /// The chaos proxies and their schedule (`chaos`).
    chaos: Option<crate::chaos::Runner>,
}

/// The open model's dropped iterations so far, from the turrets' last heartbeats (`None`: no
/// turret has an arrival rate).
fn dropped_so_far(turrets: &[Turret]) -> Option<u64> {
    turrets
        .iter()
        .filter_map(|t| t.arrivals.map(|a| a.dropped))
        .reduce(|a, b| a + b)
}

/// Runs one test to the end and returns its summary.
pub fn run(opts: &RunOptions) -> Result<Summary, RunError> {
    let dir = &opts.results_dir;
    let db_path = dir.join("results.sqlite");
    if db_path.exists() {
        return Err(RunError::Exists(db_path));
    }
    std::fs::create_dir_all(dir).map_err(|source| RunError::Io {
        path: dir.clone(),
        source,
    })?;
    let config_copy = dir.join("config.json");
    std::fs::copy(&opts.config.path, &config_copy).map_err(|source| RunError::Io {
        path: config_copy.clone(),
        source,
    })?;
    let c = &opts.config;
    let session = Session::random();
    // `--local` turrets are on this machine: nothing else needs to reach the HQ.
    let address = c.bind_address.clone().unwrap_or_else(|| {
        if opts.local_turrets.is_some() {
            "127.0.0.1"
        } else {
            "*"
        }
        .to_owned()
    });
    let sockets = Sockets::bind(
        &address,
        [c.publish_port, c.rc_port, c.external_publisher],
        opts.forwarder.as_deref(),
        c.secret.as_ref().map(|s| Sealer::to_turrets(s, session)),
    )?;
    let writer = Writer::spawn(store::create(&db_path)?);
    let console = Console::new(c.progress_bar);
    let ports = sockets.ports;
    console.info(&format!(
        "listening: publish port {}, rc port {}, external port {} (topic {}){}",
        ports.publish,
        ports.rc,
        ports.external,
        opts.publisher_channel,
        if c.secret.is_some() {
            ", secure mode"
        } else {
            ""
        }
    ));
    if c.secret.is_none() && !is_loopback(&address) {
        console.warn(&format!(
            "listening on {address} without a secret: anyone who reaches these ports can drive \
             the turrets and inject results; set OCT_SECRET or `secret_file` (docs/security.md)"
        ));
    }
    // The proxies listen before any turret starts, so a script's first call goes through them.
    let chaos = match &c.chaos {
        Some(ch) => {
            let r = crate::chaos::Runner::start(ch).map_err(RunError::Chaos)?;
            for line in r.describe() {
                console.info(&format!("chaos proxy {line}"));
            }
            Some(r)
        }
        None => None,
    };
    let local = match &opts.local_turrets {
        Some(program) => {
            Some(LocalTurrets::spawn(program, c, ports, dir).map_err(RunError::Local)?)
        }
        None => None,
    };
    let mut hq = Hq {
        opts,
        sockets,
        writer,
        console,
        phase: Phase::Waiting,
        turrets: Vec::new(),
        index: Default::default(),
        batch: Vec::with_capacity(BATCH_ROWS),
        summary: Summary::new(db_path, c.run_time),
        timer_counts: HashMap::new(),
        rejected: HashMap::new(),
        run_started: None,
        next_status_request: Instant::now(),
        last_tick: Instant::now(),
        topic: opts.publisher_channel.as_bytes().to_vec(),
        local,
        announce: {
            let a = Announce::with_session(
                &session.to_hex(),
                c.heartbeat_interval.as_millis() as u64,
                c.hq_timeout.as_millis() as u64,
            );
            match c.results {
                ResultsMode::Raw => a,
                mode => a.aggregating(c.results_ts_interval_secs, mode == ResultsMode::Both),
            }
        },
        timings: Timings {
            heartbeat: c.heartbeat_interval,
            turret_timeout: c.turret_timeout,
            cpu_warning_pct: c.cpu_warning_pct,
        },
        opener: c.secret.as_ref().map(|s| Opener::for_hq(s, session)),
        now: Instant::now(),
        steering: load::Steering::default(),
        warned_addressed: false,
        checks: Default::default(),
        counters: Default::default(),
        web: match opts.web {
            Some(_) => web::WebSide::new(&c.thresholds),
            None => web::WebSide::default(),
        },
        live: crate::gate::live::Live::new(
            &c.thresholds,
            Duration::from_secs(c.results_ts_interval_secs.max(1)),
        ),
        chaos,
    };
    hq.writer.send(Op::Meta(
        "publisher_channel".into(),
        opts.publisher_channel.clone(),
    ))?;
    hq.writer
        .send(Op::Meta("results".into(), c.results.as_str().into()))?;
    let result = hq.lifecycle();
    hq.finish(result)
}

impl Hq<'_> {
    fn lifecycle(&mut self) -> Result<(), RunError> {
        let c = &self.opts.config;
        self.console
            .info(&format!("waiting for {} turret(s)", c.min_turrets));
        let mut last_known = usize::MAX;
        while self.ready_turrets() < c.min_turrets {
            if self.opts.shutdown.presses() > 0 {
                self.console.info("interrupted before the test started");
                return Ok(());
            }
            let known = self.ready_turrets();
            if known != last_known {
                self.console.waiting(known, c.min_turrets);
                last_known = known;
            }
            if let Some(why) = self.local.as_mut().and_then(LocalTurrets::exited) {
                return Err(RunError::Local(why));
            }
            self.tick_status_requests()?;
            self.receive(self.next_status_request)?;
            self.web_tick();
        }
        // With the dashboard, the test starts when its user says so (as Locust's UI does).
        if self.opts.web.as_ref().is_some_and(|w| !w.autostart) {
            self.console
                .info("turrets ready: waiting for Start on the dashboard");
            while !self.web.start_asked {
                if self.opts.shutdown.presses() > 0 {
                    self.console.info("interrupted before the test started");
                    return Ok(());
                }
                self.tick_status_requests()?;
                self.receive(
                    self.next_status_request
                        .min(Instant::now() + Duration::from_millis(100)),
                )?;
                self.web_tick();
            }
        }
        self.start()?;
        let deadline = self.run_started.unwrap_or_else(Instant::now) + c.run_time;
        while Instant::now() < deadline && self.opts.shutdown.presses() == 0 {
            // Keep asking, so a turret that connects now is found and started (late join).
            self.tick_status_requests()?;
            self.receive(deadline.min(Instant::now() + load::EVERY))?;
            self.steer()?;
            self.progress();
            self.web_tick();
            if self.web.stop_asked {
                break;
            }
            if self.all_aborted() {
                self.console
                    .warn("every turret has aborted or was killed: stopping the test early");
                break;
            }
            if self.all_done() {
                self.console
                    .info("every turret has run its iterations: ending the test early");
                break;
            }
            if self.threshold_failed() {
                break;
            }
        }
        if self.opts.shutdown.presses() >= 2 {
            return Ok(());
        }
        self.stop()?;
        let drain_deadline = Instant::now() + c.drain_timeout;
        while !self.all_stopped() && Instant::now() < drain_deadline {
            if self.opts.shutdown.presses() >= 2 {
                return Ok(());
            }
            self.tick_status_requests()?;
            self.receive(self.next_status_request.min(drain_deadline))?;
            self.web_tick();
        }
        if !self.all_stopped() {
            let late: Vec<&str> = self
                .turrets
                .iter()
                .filter(|t| t.started && !t.stopped)
                .map(|t| t.status.turret.as_str())
                .collect();
            self.console.warn(&format!(
                "drain timeout ({:?}): no `ready` after stop from {}",
                c.drain_timeout,
                late.join(", ")
            ));
        }
        Ok(())
    }

    /// Whether an `abort_on_fail` threshold has failed: the test is lost, end it now.
    fn threshold_failed(&mut self) -> bool {
        let Some(live) = &mut self.live else {
            return false;
        };
        let elapsed = self.run_started.map_or(0.0, |s| s.elapsed().as_secs_f64());
        let dropped = dropped_so_far(&self.turrets);
        let Some(failed) = live.check(elapsed, dropped) else {
            return false;
        };
        let why = format!(
            "threshold `{}` on {} failed (observed {}, limit {})",
            failed.threshold,
            failed.series,
            failed.observed_text(),
            failed.shown(failed.limit)
        );
        self.console.warn(&format!(
            "{why}: it aborts the test, stopping at {elapsed:.1} s"
        ));
        self.summary.aborted_by = Some(why);
        true
    }

    fn ready_turrets(&self) -> usize {
        self.turrets
            .iter()
            .filter(|t| matches!(t.status.status, TurretState::Ready | TurretState::Running))
            .filter(|t| !t.health.is_lost())
            .count()
    }

    fn all_aborted(&self) -> bool {
        let mut started = self.turrets.iter().filter(|t| t.started).peekable();
        started.peek().is_some()
            && started
                .all(|t| matches!(t.status.status, TurretState::Aborted | TurretState::Killed))
    }

    /// Whether every started turret is done with its iterations (or out of the test), one at
    /// least done: `run_time` is then only a cap.
    fn all_done(&self) -> bool {
        let mut started = self.turrets.iter().filter(|t| t.started).peekable();
        started.peek().is_some()
            && self.turrets.iter().any(|t| t.done)
            && started.all(|t| {
                t.done
                    || t.health.is_lost()
                    || matches!(t.status.status, TurretState::Aborted | TurretState::Killed)
            })
    }

    /// Whether the drain is over: a lost turret is not waited for.
    fn all_stopped(&self) -> bool {
        self.turrets
            .iter()
            .all(|t| !t.started || t.stopped || t.health.is_lost())
    }

    fn tick_status_requests(&mut self) -> Result<(), RunError> {
        let now = Instant::now();
        // Time this HQ did not run (stopped, starved) was not the turrets' silence.
        let gap = now.saturating_duration_since(self.last_tick);
        self.last_tick = now;
        if gap > Duration::from_secs(1) {
            for t in &mut self.turrets {
                t.health.forgive(gap);
            }
        }
        if now >= self.next_status_request {
            self.sockets
                .broadcast(&Command::StatusRequest(Some(self.announce.clone())))?;
            self.next_status_request = now + STATUS_REQUEST_EVERY;
        }
        for i in 0..self.turrets.len() {
            if let Some(change) = self.turrets[i].health.check(now, self.timings) {
                self.liveness_changed(i, change.to, change.silent_secs);
            }
        }
        Ok(())
    }

    fn start(&mut self) -> Result<(), RunError> {
        self.send_start()?;
        let now = Instant::now();
        self.run_started = Some(now);
        self.summary.started(chrono::Local::now());
        if let Some(ch) = &mut self.chaos {
            ch.begin(now);
        }
        for t in &mut self.turrets {
            t.started = true;
        }
        self.phase = Phase::Running;
        self.console.info(&format!(
            "started {} turret(s) for {:?}",
            self.turrets.len(),
            self.opts.config.run_time
        ));
        Ok(())
    }

    fn context(&self) -> serde_json::Value {
        self.opts
            .config
            .raw
            .get("transaction_context")
            .cloned()
            .unwrap_or_else(|| serde_json::json!({}))
    }

    fn send_start(&self) -> Result<(), RunError> {
        // The announcement right before `start`, on the same connections: a turret whose SUB
        // socket gets the start has heard which extensions this test speaks (whether it
        // aggregates, above all), even if it joined after the last status_request.
        self.sockets
            .broadcast(&Command::StatusRequest(Some(self.announce.clone())))?;
        self.sockets
            .broadcast(&Command::SetTransactionContext(self.context()))?;
        self.sockets.broadcast(&Command::Start)?;
        Ok(())
    }

    fn stop(&mut self) -> Result<(), RunError> {
        self.sockets.broadcast(&Command::Stop)?;
        self.summary.finished(chrono::Local::now());
        self.phase = Phase::Draining;
        self.console.end_progress();
        self.console
            .info("stop sent; waiting for turrets to finish their last transactions");
        Ok(())
    }

    fn progress(&mut self) {
        let elapsed = self.run_started.map(|s| s.elapsed()).unwrap_or_default();
        let load = self.load_line(elapsed.as_secs_f64());
        self.console.progress(
            elapsed,
            self.opts.config.run_time,
            self.turrets.iter().filter(|t| t.started).count(),
            &load,
            (self.summary.transactions, self.summary.errors),
        );
    }

    /// Receives everything available until `until` (or one poll interval), handing results to
    /// the writer in batches.
    fn receive(&mut self, until: Instant) -> Result<(), RunError> {
        let mut frame = zmq::Message::new();
        let mut frames = 0u32;
        loop {
            match self.sockets.results.recv(&mut frame, zmq::DONTWAIT) {
                Ok(()) => {
                    if self.sockets.results.get_rcvmore()? {
                        let mut parts = 1;
                        let mut rest = zmq::Message::new();
                        while self.sockets.results.get_rcvmore()? {
                            self.sockets.results.recv(&mut rest, 0)?;
                            parts += 1;
                        }
                        self.reject(&frame, DecodeError::Multipart(parts));
                    } else {
                        self.on_frame(&mut frame)?;
                    }
                    if self.batch.len() >= BATCH_ROWS {
                        self.flush()?;
                    }
                    // Under a flood, still come back on time: status requests (which keep
                    // turrets from their hq_timeout) and liveness checks must not wait. Only
                    // once the frame in hand is handled: returning before lost it.
                    frames = frames.wrapping_add(1);
                    if frames % 256 == 0 && Instant::now() >= until {
                        self.flush()?;
                        return Ok(());
                    }
                    continue;
                }
                Err(zmq::Error::EAGAIN) => {}
                Err(zmq::Error::EINTR) => {}
                Err(e) => return Err(TransportError::from(e).into()),
            }
            // Nothing queued: hand the batch over, then sleep in poll until more arrives.
            self.flush()?;
            self.sockets.watch_listeners();
            let now = Instant::now();
            if now >= until || self.opts.shutdown.presses() >= 2 {
                return Ok(());
            }
            let wait = (until - now).as_millis().min(POLL_MS as u128) as i64;
            match self.sockets.results.poll(zmq::POLLIN, wait.max(1)) {
                Ok(0) => {
                    if Instant::now() >= until {
                        return Ok(());
                    }
                    if self.phase == Phase::Running {
                        return Ok(());
                    }
                }
                Ok(_) | Err(zmq::Error::EINTR) => {}
                Err(e) => return Err(TransportError::from(e).into()),
            }
        }
    }

    fn flush(&mut self) -> Result<(), RunError> {
        if !self.batch.is_empty() {
            let batch = std::mem::replace(&mut self.batch, Vec::with_capacity(BATCH_ROWS));
            self.writer.send(Op::Results(batch))?;
        }
        Ok(())
    }

    fn on_frame(&mut self, frame: &mut [u8]) -> Result<(), RunError> {
        self.now = Instant::now();
        let Some(opener) = &mut self.opener else {
            return self.on_plain_frame(frame);
        };
        match opener.open_in_place(b"", frame) {
            Ok((_, plain)) => self.on_plain_frame(&frame[plain]),
            Err(e) => {
                // Opening overwrote what follows a sealed frame's header: the sample is the
                // header then (an unsealed frame is untouched).
                let shown = match e {
                    DecodeError::Unsealed => frame.len(),
                    _ => frame.len().min(protocol::SEAL_OVERHEAD - 16),
                };
                self.reject(&frame[..shown], e);
                Ok(())
            }
        }
    }

    fn on_plain_frame(&mut self, frame: &[u8]) -> Result<(), RunError> {
        // A batch's elements count (and are rejected) one by one. The external publisher wants
        // each result's own bytes: with a listener, split the batch first and decode each
        // part; without one, decode it in one pass.
        let republish = self.sockets.listened();
        if let Some(packed) = protocol::decode_packed(frame) {
            match packed {
                Ok(packed) => self.on_packed(packed, frame, republish),
                Err(e) => self.reject(frame, e),
            }
            return Ok(());
        }
        let parts = if republish {
            protocol::split_batch(frame).map(|parts| {
                parts.map(|parts| {
                    parts
                        .into_iter()
                        .map(|p| (Message::decode(p), p))
                        .collect::<Vec<_>>()
                })
            })
        } else {
            Message::decode_batch(frame)
                .map(|items| items.map(|items| items.into_iter().map(|m| (m, frame)).collect()))
        };
        match parts {
            None => self.on_message(Message::decode(frame), frame, republish),
            Some(Ok(parts)) => {
                for (message, raw) in parts {
                    self.on_message(message, raw, republish)?;
                }
                Ok(())
            }
            Some(Err(e)) => {
                self.reject(frame, e);
                Ok(())
            }
        }
    }

    /// One decoded message; `raw` is what it was sent as (for the external publisher and the
    /// samples of rejected messages).
    fn on_message(
        &mut self,
        message: Result<Message, DecodeError>,
        raw: &[u8],
        republish: bool,
    ) -> Result<(), RunError> {
        match message {
            // Nothing of this test can come before its start: such a result is left over from
            // an earlier test (a turret whose HQ died), not one of ours.
            Ok(Message::Result(_)) if self.phase == Phase::Waiting => {
                self.reject(raw, DecodeError::BeforeStart)
            }
            Ok(Message::Result(r)) => {
                self.on_result(r);
                if republish {
                    self.sockets.republish(&self.topic, raw);
                }
            }
            Ok(Message::Aggregate(_)) if self.phase == Phase::Waiting => {
                self.reject(raw, DecodeError::BeforeStart)
            }
            Ok(Message::Aggregate(a)) => self.on_aggregate(*a)?,
            Ok(Message::Status(s)) => self.on_status(s)?,
            Ok(Message::Heartbeat(h)) => self.on_heartbeat(h),
            Err(e) => self.reject(raw, e),
        }
        Ok(())
    }

    fn on_result(&mut self, mut r: TestResult) {
        let sender = self
            .index
            .sender(r.turret_uuid.as_deref(), r.turret_name.as_deref());
        if let Some(i) = sender {
            self.turrets[i].received += 1;
            self.heard(i);
        }
        let name = r
            .turret_name
            .take()
            .unwrap_or_else(|| protocol::NONAME.to_owned());
        self.record(r, name);
    }

    /// Extension `packed`: one turret's batch, its sender looked up once.
    fn on_packed(&mut self, packed: Packed, raw: &[u8], republish: bool) {
        if self.phase == Phase::Waiting {
            for _ in &packed.results {
                self.reject(raw, DecodeError::BeforeStart);
            }
            return;
        }
        let sender = self
            .index
            .sender(Some(&packed.turret_uuid), packed.turret_name.as_deref());
        if let Some(i) = sender {
            self.turrets[i].received += packed.results.len() as u64;
            self.heard(i);
        }
        let name = packed.turret_name.as_deref().unwrap_or(protocol::NONAME);
        for mut r in packed.results {
            if republish {
                // Listeners get each result as an OCT turret would have sent it.
                r.turret_name = packed.turret_name.clone();
                r.turret_uuid = Some(packed.turret_uuid.clone());
                self.sockets.republish(&self.topic, &r.encode());
            }
            self.record(r, name.to_owned());
        }
    }

    /// Counts a result (the live gate, the dashboard, timers, checks, counters) and queues its
    /// row, stored under turret `name`.
    fn record(&mut self, r: TestResult, turret_name: String) {
        if let Some(live) = &mut self.live {
            live.add(&r);
        }
        if self.opts.web.is_some() {
            self.web.add(&r);
        }
        self.summary.transactions += 1;
        if !r.error.is_empty() {
            self.summary.errors += 1;
        }
        for (name, _) in &r.custom_timers {
            match self.timer_counts.get_mut(name) {
                Some(n) => *n += 1,
                None => {
                    self.timer_counts.insert(name.clone(), 1);
                }
            }
        }
        for (name, passed, failed) in &r.checks {
            let c = self.checks.entry(name.clone()).or_default();
            c.0 += passed;
            c.1 += failed;
        }
        for (name, n) in &r.counters {
            *self
                .counters
                .entry((name.clone(), r.epoch.floor() as i64))
                .or_default() += n;
        }
        let custom_timers = r.timers_json();
        self.batch.push(ResultRow {
            error: r.error,
            scriptrun_time: r.scriptrun_time,
            elapsed: r.elapsed,
            epoch: r.epoch,
            custom_timers,
            turret_name,
            lag: r.lag,
        });
    }

    fn reject(&mut self, frame: &[u8], error: DecodeError) {
        let kind = error.kind();
        let entry = self.rejected.entry(kind).or_insert_with(|| Rejected {
            kind: kind.to_owned(),
            count: 0,
            first_error: error.to_string(),
            samples: Vec::new(),
        });
        entry.count += 1;
        if entry.samples.len() < SAMPLES_PER_KIND {
            let text = String::from_utf8_lossy(&frame[..frame.len().min(200)]).into_owned();
            entry.samples.push(text);
        }
        if entry.count == 1 {
            self.console.warn(&format!(
                "rejected a message ({error}); further `{kind}` messages are only counted"
            ));
        }
    }
}
