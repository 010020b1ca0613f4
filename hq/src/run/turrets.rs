//! The HQ's side of each turret: what its statuses and heartbeats change (its liveness, its
//! counts, whether it is done), and the commands sent to it alone (re-admission, a missed stop).

use std::time::{Duration, Instant};

use protocol::{Command, Heartbeat, Status, TurretState};

use super::{Hq, Phase, RunError};
use crate::liveness::{Health, Liveness};
use crate::store::{self, Op, TurretRow};

pub(super) struct Turret {
    pub(super) status: Status,
    pub(super) started: bool,
    /// Set when the turret reports ready/aborted/killed after `stop`.
    pub(super) stopped: bool,
    pub(super) received: u64,
    pub(super) health: Health,
    /// When a start or stop was last sent to this turret alone.
    pub(super) nudged: Option<Instant>,
    /// Its `ready` said the test ended by itself (every canon ran its iterations).
    pub(super) done: bool,
    /// What its shape asked for at its last heartbeat.
    pub(super) cannons_target: Option<u64>,
    /// Its heartbeats say it follows `load` commands (a global shape).
    pub(super) follows_load: bool,
    /// Open model: its schedule at its last heartbeat.
    pub(super) arrivals: Option<store::Arrivals>,
    /// Extension `aggregate`: the aggregates received from it, and the most it said it sent
    /// (its heartbeats and its final `ready`).
    pub(super) intervals_received: u64,
    pub(super) intervals_sent: Option<u64>,
}

/// Which turret a message is from, without a scan of them all per result: by uuid, and by name
/// where one turret has it (`None`: several have).
#[derive(Default)]
pub(super) struct Index {
    by_uuid: std::collections::HashMap<String, usize>,
    by_name: std::collections::HashMap<String, Option<usize>>,
}

impl Index {
    pub(super) fn add(&mut self, i: usize, uuid: &str, name: &str) {
        self.by_uuid.insert(uuid.to_owned(), i);
        self.by_name
            .entry(name.to_owned())
            .and_modify(|one| *one = None)
            .or_insert(Some(i));
    }

    pub(super) fn uuid(&self, uuid: &str) -> Option<usize> {
        self.by_uuid.get(uuid).copied()
    }

    /// By uuid (extension `seq`), else by name when one turret has it — a turret sends its
    /// first results of a test without the extension when the test started before the HQ's
    /// announcement reached it, and counts them all the same.
    pub(super) fn sender(&self, uuid: Option<&str>, name: Option<&str>) -> Option<usize> {
        match (uuid, name) {
            (Some(u), _) => self.uuid(u),
            (None, Some(n)) => self.by_name.get(n).copied().flatten(),
            (None, None) => None,
        }
    }
}

/// A turret is sent a start or stop of its own at most this often.
const NUDGE_EVERY: Duration = Duration::from_secs(1);

impl Hq<'_> {
    pub(super) fn liveness_changed(&self, i: usize, to: Liveness, silent_secs: f64) {
        let name = &self.turrets[i].status.turret;
        match to {
            Liveness::Late => self.console.warn(&format!(
                "turret {name} is late: no word for {silent_secs:.1} s"
            )),
            Liveness::Lost => {
                self.console.warn(&format!(
                    "turret {name} is lost: silent for {silent_secs:.1} s; the run goes on without it"
                ));
                self.opts.config.observers.notify(
                    "turret_lost",
                    &crate::observe::event(
                        "turret_lost",
                        serde_json::json!({"turret": name, "silent_secs": silent_secs}),
                    ),
                );
            }
            Liveness::Recovered => self.console.info(&format!(
                "turret {name} recovered after {silent_secs:.1} s of silence"
            )),
            Liveness::Running if self.turrets[i].health.changes.len() > 1 => self
                .console
                .info(&format!("turret {name} is on time again")),
            Liveness::Running | Liveness::Unmonitored => {}
        }
    }

    /// Sends `command` to turret `i` alone, once per [`NUDGE_EVERY`] at most.
    pub(super) fn nudge(&mut self, i: usize, command: &Command) -> Result<(), RunError> {
        let now = Instant::now();
        if self.turrets[i]
            .nudged
            .is_some_and(|at| now.duration_since(at) < NUDGE_EVERY)
        {
            return Ok(());
        }
        self.turrets[i].nudged = Some(now);
        // OCT's turrets subscribe to every channel and parse a frame whole as JSON: one
        // addressed to another turret would abort theirs. With one among them, none is sent.
        if let Some(oct) = self
            .turrets
            .iter()
            .find(|t| t.health.liveness == Liveness::Unmonitored)
        {
            if !self.warned_addressed {
                self.warned_addressed = true;
                let (name, oct) = (&self.turrets[i].status.turret, &oct.status.turret);
                self.console.warn(&format!(
                    "not sending `{}` to turret {name} alone: turret {oct} (OCT's, no heartbeats) would fail on a command addressed to another turret",
                    command.name()
                ));
            }
            return Ok(());
        }
        let uuid = self.turrets[i].status.uuid.clone();
        if matches!(command, Command::Start) {
            let announce = Command::StatusRequest(Some(self.announce.clone()));
            self.sockets.send_on(&uuid, &announce)?;
            self.sockets
                .send_on(&uuid, &Command::SetTransactionContext(self.context()))?;
        }
        self.sockets.send_on(&uuid, command)?;
        Ok(())
    }

    pub(super) fn heard(&mut self, i: usize) {
        if let Some(change) = self.turrets[i].health.heard(self.now) {
            self.liveness_changed(i, change.to, change.silent_secs);
        }
    }

    pub(super) fn on_heartbeat(&mut self, h: Heartbeat) {
        // A turret is known by its status first; it answers the next status_request.
        let Some(i) = self.index.uuid(&h.uuid) else {
            return;
        };
        let (change, suspect) = self.turrets[i].health.heartbeat(
            self.now,
            h.results_sent,
            h.cannons_active,
            h.cpu,
            self.timings,
        );
        if let Some(change) = change {
            self.liveness_changed(i, change.to, change.silent_secs);
        }
        self.turrets[i].cannons_target = h.cannons_target;
        if h.intervals_sent.is_some() {
            self.turrets[i].intervals_sent = self.turrets[i].intervals_sent.max(h.intervals_sent);
        }
        self.turrets[i].follows_load = h.load_generation.is_some();
        let arrivals = match (h.arrival_rate, h.iterations_started, h.iterations_dropped) {
            (Some(rate), Some(started), Some(dropped)) => Some(store::Arrivals {
                rate,
                started,
                dropped,
            }),
            _ => None,
        };
        if arrivals.is_some() {
            self.turrets[i].arrivals = arrivals;
        }
        if self.phase != Phase::Waiting {
            let _ = self.writer.send(Op::Canons {
                uuid: h.uuid.clone(),
                name: h.turret.clone(),
                epoch: chrono::Utc::now().timestamp_micros() as f64 / 1e6,
                active: h.cannons_active,
                target: h.cannons_target,
                arrivals,
            });
        }
        if suspect {
            self.console.warn(&format!(
                "turret {}: CPU above {} % for {} heartbeats in a row ({:.0} %): its latencies are suspect",
                h.turret,
                self.timings.cpu_warning_pct,
                crate::liveness::CPU_SUSPECT_BEATS,
                h.cpu
            ));
        }
    }

    pub(super) fn on_status(&mut self, s: Status) -> Result<(), RunError> {
        let row = TurretRow {
            name: s.turret.clone(),
            uuid: s.uuid.clone(),
            cannons: s.cannons,
            script: s.script.clone(),
            rampup: s.rampup,
            status: s.status.as_oct().to_owned(),
            updated_at: store::now_timestamp(),
        };
        let phase = self.phase;
        let idx = match self.index.uuid(&s.uuid) {
            Some(i) => i,
            None => {
                self.console.info(&format!(
                    "turret {} ({}, {} canon(s), {}) is {}",
                    s.turret, s.uuid, s.cannons, s.script, s.status
                ));
                self.turrets.push(Turret {
                    status: s.clone(),
                    started: false,
                    stopped: false,
                    received: 0,
                    health: Health::new(self.now),
                    nudged: None,
                    done: false,
                    cannons_target: None,
                    follows_load: false,
                    arrivals: None,
                    intervals_received: 0,
                    intervals_sent: None,
                });
                let i = self.turrets.len() - 1;
                self.index.add(i, &s.uuid, &s.turret);
                if phase == Phase::Running && s.status == TurretState::Ready {
                    // A late joiner: OCT never starts it. Turrets already running ignore a
                    // repeated start, so a broadcast is safe for OCT turrets too.
                    self.console
                        .info(&format!("turret {} joined late: starting it", s.turret));
                    self.send_start()?;
                    self.turrets[i].started = true;
                }
                i
            }
        };
        self.heard(idx);
        let was = self.turrets[idx].status.status;
        let monitored = self.turrets[idx].health.liveness != Liveness::Unmonitored;
        if phase == Phase::Running
            && self.turrets[idx].started
            && monitored
            && was == TurretState::Running
            && s.status == TurretState::Ready
            && s.done != Some(true)
        {
            // It stopped by itself (its HQ was silent too long) and is back: re-admit it.
            self.console.info(&format!(
                "turret {} is back and ready: starting it again",
                s.turret
            ));
            self.nudge(idx, &Command::Start)?;
        }
        if phase == Phase::Draining && self.turrets[idx].started && s.status == TurretState::Running
        {
            // It may have missed the stop (it was away when it went out).
            self.nudge(idx, &Command::Stop)?;
        }
        let t = &mut self.turrets[idx];
        if s.status == TurretState::Ready && s.done == Some(true) && !t.done {
            t.done = true;
            self.console
                .info(&format!("turret {} has run its iterations", s.turret));
        }
        let changed = t.status.status != s.status;
        if changed && matches!(s.status, TurretState::Aborted | TurretState::Killed) {
            let why = s.message.as_deref().unwrap_or("no reason given");
            self.console
                .warn(&format!("turret {} is {}: {why}", s.turret, s.status));
        }
        if phase == Phase::Draining && t.started && s.status != TurretState::Running {
            t.stopped = true;
        }
        // A later status without the count (a status_request answer) keeps the one reported.
        let sent = s.results_sent.or(t.status.results_sent);
        if s.intervals_sent.is_some() {
            t.intervals_sent = t.intervals_sent.max(s.intervals_sent);
        }
        let started = s.iterations_started.or(t.status.iterations_started);
        let dropped = s.iterations_dropped.or(t.status.iterations_dropped);
        t.status = s;
        t.status.results_sent = sent;
        t.status.iterations_started = started;
        t.status.iterations_dropped = dropped;
        self.writer.send(Op::Turret(row))?;
        Ok(())
    }
}
