//! The end of a run: the last batch, the rejected messages, checks, counters, each turret's
//! counts and health, the chaos windows and the run's figures handed to the store, whose writer
//! is then joined.

use std::time::Instant;

use super::{Hq, RunError};
use crate::store::Op;
use crate::summary::{Rejected, Summary, TurretSummary};

impl Hq<'_> {
    pub(super) fn finish(mut self, outcome: Result<(), RunError>) -> Result<Summary, RunError> {
        self.flush()?;
        self.publish_web(Instant::now(), true);
        self.console.end_progress();
        if self.summary.finish.is_none() && self.summary.start.is_some() {
            self.summary.finished(chrono::Local::now());
        }
        let mut rejected: Vec<Rejected> = self.rejected.drain().map(|(_, r)| r).collect();
        rejected.sort_by(|a, b| a.kind.cmp(&b.kind));
        for r in &rejected {
            self.writer.send(Op::Rejected {
                kind: r.kind.clone(),
                count: r.count,
                first_error: r.first_error.clone(),
                samples: r.samples.clone(),
            })?;
        }
        self.summary.rejected = rejected;
        if !self.checks.is_empty() {
            let checks = std::mem::take(&mut self.checks);
            self.writer.send(Op::Checks(
                checks.into_iter().map(|(n, (p, f))| (n, p, f)).collect(),
            ))?;
        }
        if !self.counters.is_empty() {
            let counters = std::mem::take(&mut self.counters);
            self.writer.send(Op::Counters(
                counters.into_iter().map(|((n, s), v)| (n, s, v)).collect(),
            ))?;
        }
        let mut timers: Vec<(String, u64)> = self.timer_counts.drain().collect();
        timers.sort();
        self.summary.timers = timers;
        for t in &self.turrets {
            let turret = TurretSummary {
                name: t.status.turret.clone(),
                uuid: t.status.uuid.clone(),
                status: t.status.status.as_oct().to_owned(),
                received: t.received,
                // The final `ready` says what was sent; a turret that never sent one (lost,
                // killed) said it in its last heartbeat. Counts only grow within a session.
                sent: t.status.results_sent.max(t.health.results_sent),
                liveness: t.health.liveness,
                changes: t.health.changes.clone(),
                heartbeats: t.health.heartbeats,
                cpu_max: t.health.cpu_max,
                cpu_suspect: t.health.cpu_suspect,
                intervals: (t.intervals_received > 0 || t.intervals_sent.is_some())
                    .then_some((t.intervals_received, t.intervals_sent)),
                iterations: match (t.status.iterations_started, t.status.iterations_dropped) {
                    (Some(s), Some(d)) => Some((s, d)),
                    _ => t.arrivals.map(|a| (a.started, a.dropped)),
                },
            };
            self.writer.send(Op::TurretCount {
                uuid: turret.uuid.clone(),
                name: turret.name.clone(),
                received: turret.received,
                sent: turret.sent,
            })?;
            if let Some((received, sent)) = turret.intervals {
                self.writer.send(Op::IntervalCount {
                    uuid: turret.uuid.clone(),
                    name: turret.name.clone(),
                    received,
                    sent,
                })?;
            }
            self.writer.send(Op::TurretHealth(turret.clone()))?;
            self.summary.turrets.push(turret);
        }
        if let Some(ch) = self.chaos.take() {
            let (windows, proxies) = ch.finish();
            self.writer.send(Op::Chaos(windows))?;
            self.writer
                .send(Op::Meta("chaos_proxies".into(), proxies.to_string()))?;
        }
        for (k, v) in self.summary.meta() {
            self.writer.send(Op::Meta(k.to_owned(), v))?;
        }
        let written = self.writer.finish()?;
        // Rows of OCT's table, plus the transactions of the aggregates.
        if self.opts.config.results != crate::config::ResultsMode::Both {
            debug_assert_eq!(written, self.summary.transactions);
        }
        outcome?;
        Ok(self.summary)
    }
}
