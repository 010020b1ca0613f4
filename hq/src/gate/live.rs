//! The thresholds marked `abort_on_fail`, evaluated by the HQ while the test runs: every
//! result of a series they name is kept in a [`Series`] of its own, and every interval (after
//! each threshold's `delay`) the HQ asks whether one has failed; the first that has ends the
//! test. Built only when such a threshold exists: otherwise the ingest path pays nothing.

use std::time::{Duration, Instant};

use protocol::TestResult;

use super::{evaluate, Observed, Outcome, Thresholds, ALL, EVERY};
use crate::stats::Series;

pub struct Live {
    aborting: Thresholds,
    all: Series,
    /// The custom timers the thresholds name (every one with `*`).
    timers: Vec<Series>,
    every_timer: bool,
    errors: u64,
    /// The scripts' checks so far: passed, failed.
    checks: Option<(u64, u64)>,
    every: Duration,
    next: Instant,
}

impl Live {
    /// `None` when no threshold aborts.
    pub fn new(thresholds: &Thresholds, every: Duration) -> Option<Live> {
        let aborting = Thresholds(
            thresholds
                .0
                .iter()
                .filter(|t| t.abort_on_fail)
                .cloned()
                .collect(),
        );
        Live::keeping(aborting, every)
    }

    /// Every threshold, aborting or not: what the dashboard shows while the test runs
    /// ([`Live::outcomes`]). `None` without thresholds.
    pub fn watching(thresholds: &Thresholds) -> Option<Live> {
        Live::keeping(thresholds.clone(), Duration::ZERO)
    }

    fn keeping(aborting: Thresholds, every: Duration) -> Option<Live> {
        if aborting.is_empty() {
            return None;
        }
        let every_timer = aborting.0.iter().any(|t| t.key == EVERY);
        let mut timers: Vec<Series> = Vec::new();
        for t in &aborting.0 {
            if t.key != EVERY && t.key != super::RUN && !timers.iter().any(|s| s.name == t.key) {
                timers.push(Series::new(&t.key, 1));
            }
        }
        Some(Live {
            aborting,
            all: Series::new(ALL, 1),
            timers,
            every_timer,
            errors: 0,
            checks: None,
            every,
            next: Instant::now() + every,
        })
    }

    pub fn add(&mut self, r: &TestResult) {
        self.all.add(r.scriptrun_time, r.epoch);
        if !r.error.is_empty() {
            self.errors += 1;
        }
        for (_, passed, failed) in &r.checks {
            let c = self.checks.get_or_insert((0, 0));
            c.0 += passed;
            c.1 += failed;
        }
        for (name, secs) in &r.custom_timers {
            match self.timers.iter_mut().find(|s| &s.name == name) {
                Some(s) => s.add(*secs, r.epoch),
                None if self.every_timer => {
                    let mut s = Series::new(name, 1);
                    s.add(*secs, r.epoch);
                    self.timers.push(s);
                }
                None => {}
            }
        }
    }

    /// One turret's interval (extension `aggregate`); `hists` are its series' histograms.
    pub fn add_aggregate(
        &mut self,
        a: &protocol::Aggregate,
        hists: &[hdrhistogram::Histogram<u64>],
    ) {
        use protocol::aggregate::Kind;
        for (d, h) in a.series.iter().zip(hists) {
            let delta = crate::stats::Delta::of(a.start, d, h);
            match d.kind {
                Kind::Transaction => self.all.add_delta(&delta),
                Kind::Timer => match self.timers.iter_mut().find(|s| s.name == d.name) {
                    Some(s) => s.add_delta(&delta),
                    None if self.every_timer => {
                        let mut s = Series::new(&d.name, 1);
                        s.add_delta(&delta);
                        self.timers.push(s);
                    }
                    None => {}
                },
                Kind::Corrected => {}
            }
        }
        self.errors += a.failed();
        for (_, passed, failed) in &a.checks {
            let c = self.checks.get_or_insert((0, 0));
            c.0 += passed;
            c.1 += failed;
        }
    }

    /// Once per interval: the first aborting threshold that has failed, its delay past.
    pub fn check(&mut self, elapsed_secs: f64, dropped: Option<u64>) -> Option<Outcome> {
        let now = Instant::now();
        if now < self.next {
            return None;
        }
        self.next = now + self.every;
        let due = Thresholds(
            self.aborting
                .0
                .iter()
                .filter(|t| elapsed_secs >= t.delay_secs)
                .cloned()
                .collect(),
        );
        // A series not seen yet has no data: not a failure while the test runs.
        self.judge(&due, elapsed_secs, dropped)
            .into_iter()
            .find(|o| o.observed.is_some() && !o.passed)
    }

    /// Every threshold kept, judged on the results so far (its delay ignored); a series with
    /// no result yet has `observed: None`.
    pub fn outcomes(&mut self, elapsed_secs: f64, dropped: Option<u64>) -> Vec<Outcome> {
        let all = self.aborting.clone();
        self.judge(&all, elapsed_secs, dropped)
    }

    fn judge(
        &mut self,
        which: &Thresholds,
        elapsed_secs: f64,
        dropped: Option<u64>,
    ) -> Vec<Outcome> {
        let mut o = Observed {
            all: &mut self.all,
            timers: &mut self.timers,
            errors: self.errors,
            duration_secs: Some(elapsed_secs),
            dropped_iterations: dropped,
            checks: self.checks,
        };
        evaluate(which, &mut o)
    }
}
