//! What a run produced, for the console and for our `oct_run` table.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Local};

use crate::liveness::{Change, Liveness};

/// Messages rejected by the HQ, grouped by kind of error.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejected {
    pub kind: String,
    pub count: u64,
    pub first_error: String,
    pub samples: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TurretSummary {
    pub name: String,
    pub uuid: String,
    pub status: String,
    /// Results received that named this turret's uuid (extension `seq`).
    pub received: u64,
    /// What the turret says it sent (extension `seq`); `None` for OCT turrets.
    pub sent: Option<u64>,
    /// Its liveness at the end (extension `heartbeat`), and every change of it.
    pub liveness: Liveness,
    pub changes: Vec<Change>,
    pub heartbeats: u64,
    /// The highest CPU use a heartbeat reported, and whether it stayed above 90 %.
    pub cpu_max: f64,
    pub cpu_suspect: bool,
    /// Open model: iterations its schedule started and dropped (its final `ready`, else its
    /// last heartbeat).
    pub iterations: Option<(u64, u64)>,
    /// Extension `aggregate`: aggregates received from it, and what it said it sent.
    pub intervals: Option<(u64, Option<u64>)>,
}

impl TurretSummary {
    /// `late 10:01:02, lost 10:01:09, recovered 10:01:15`: the changes after the first.
    pub fn changes_text(&self) -> String {
        self.changes
            .iter()
            .filter(|c| !(c.to == Liveness::Running && self.changes.first() == Some(c)))
            .map(|c| format!("{} {}", c.to, c.at.format("%H:%M:%S")))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub database: PathBuf,
    pub run_time: Duration,
    pub start: Option<DateTime<Local>>,
    pub finish: Option<DateTime<Local>>,
    pub transactions: u64,
    pub errors: u64,
    /// Custom timer name → how many results carried it, sorted by name.
    pub timers: Vec<(String, u64)>,
    pub rejected: Vec<Rejected>,
    pub turrets: Vec<TurretSummary>,
    /// Why an `abort_on_fail` threshold ended the test early.
    pub aborted_by: Option<String>,
}

impl Summary {
    pub fn new(database: PathBuf, run_time: Duration) -> Self {
        Summary {
            database,
            run_time,
            start: None,
            finish: None,
            transactions: 0,
            errors: 0,
            timers: Vec::new(),
            rejected: Vec::new(),
            turrets: Vec::new(),
            aborted_by: None,
        }
    }

    pub(crate) fn started(&mut self, at: DateTime<Local>) {
        self.start = Some(at);
    }

    pub(crate) fn finished(&mut self, at: DateTime<Local>) {
        self.finish = Some(at);
    }

    pub fn rejected_total(&self) -> u64 {
        self.rejected.iter().map(|r| r.count).sum()
    }

    /// Results sent but never received; `None` when a turret does not report what it sent
    /// (OCT turrets), since then nobody can know.
    pub fn lost(&self) -> Option<u64> {
        if self.turrets.is_empty() {
            return Some(0);
        }
        self.turrets
            .iter()
            .map(|t| t.sent.map(|s| s.saturating_sub(t.received)))
            .sum()
    }

    /// Aggregates sent but never received (extension `aggregate`); `None` in a raw test.
    pub fn lost_intervals(&self) -> Option<u64> {
        self.turrets
            .iter()
            .filter_map(|t| t.intervals)
            .map(|(received, sent)| sent.unwrap_or(received).saturating_sub(received))
            .reduce(|a, b| a + b)
    }

    /// Open model: iterations started and dropped by every turret; `None` in a closed-model
    /// test.
    pub fn iterations(&self) -> Option<(u64, u64)> {
        self.turrets
            .iter()
            .filter_map(|t| t.iterations)
            .reduce(|a, b| (a.0 + b.0, a.1 + b.1))
    }

    /// Key/value pairs for the `oct_run` table.
    pub fn meta(&self) -> Vec<(&'static str, String)> {
        let ts = |t: &Option<DateTime<Local>>| t.map(|t| t.to_rfc3339()).unwrap_or_default();
        let mut meta = vec![
            ("start", ts(&self.start)),
            ("finish", ts(&self.finish)),
            ("run_time_secs", self.run_time.as_secs_f64().to_string()),
            ("transactions", self.transactions.to_string()),
            ("errors", self.errors.to_string()),
            ("rejected", self.rejected_total().to_string()),
            (
                "lost",
                self.lost()
                    .map(|n| n.to_string())
                    .unwrap_or_else(|| "unknown".into()),
            ),
        ];
        if let Some(why) = &self.aborted_by {
            meta.push(("aborted_by", why.clone()));
        }
        if let Some(n) = self.lost_intervals() {
            meta.push(("lost_intervals", n.to_string()));
        }
        if let Some((started, dropped)) = self.iterations() {
            meta.push(("iterations_started", started.to_string()));
            meta.push(("dropped_iterations", dropped.to_string()));
        }
        meta
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let ts = |t: &Option<DateTime<Local>>| {
            t.map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
                .unwrap_or_else(|| "-".into())
        };
        writeln!(f, "transactions: {}", self.transactions)?;
        writeln!(f, "errors: {}", self.errors)?;
        writeln!(f, "start: {}", ts(&self.start))?;
        writeln!(f, "finish: {}", ts(&self.finish))?;
        if let Some(why) = &self.aborted_by {
            writeln!(f, "aborted: {why}")?;
        }
        for (name, n) in &self.timers {
            writeln!(f, "timer {name:?}: {n}")?;
        }
        for t in &self.turrets {
            let sent = t.sent.map(|s| s.to_string()).unwrap_or_else(|| "?".into());
            write!(
                f,
                "turret {}: {} (sent {sent}, received {}) · {}",
                t.name, t.status, t.received, t.liveness
            )?;
            let changes = t.changes_text();
            if !changes.is_empty() {
                write!(f, " ({changes})")?;
            }
            if t.cpu_suspect {
                write!(f, " · CPU up to {:.0} %: latencies suspect", t.cpu_max)?;
            }
            if let Some((received, sent)) = t.intervals {
                let sent = sent.map(|s| s.to_string()).unwrap_or_else(|| "?".into());
                write!(f, " · intervals sent {sent}, received {received}")?;
            }
            writeln!(f)?;
        }
        write!(f, "rejected: {}", self.rejected_total())?;
        for r in &self.rejected {
            write!(f, " [{}: {}]", r.kind, r.count)?;
        }
        writeln!(f)?;
        if let Some((started, dropped)) = self.iterations() {
            writeln!(f, "iterations started: {started}, dropped: {dropped}")?;
        }
        match self.lost() {
            Some(n) => writeln!(f, "lost: {n}")?,
            None => writeln!(f, "lost: unknown (a turret did not report its count)")?,
        }
        if let Some(n) = self.lost_intervals() {
            writeln!(f, "lost intervals: {n}")?;
        }
        write!(f, "results: {}", self.database.display())
    }
}
