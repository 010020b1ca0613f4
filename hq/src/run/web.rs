//! The HQ's side of `--web`: every result counted for `/metrics` and the live page (no lock:
//! the HQ thread owns the counts), the state published once a second, and the page's controls
//! (Start, Stop, a new shape) obeyed between two receives.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::{Hq, Phase};
use crate::web::metrics::{Metrics, TurretMetric, Window};
use crate::web::{Control, Web};

/// What `oct run --web` hands the HQ.
pub struct WebRun {
    pub web: std::sync::Arc<Web>,
    pub controls: std::sync::mpsc::Receiver<Control>,
    pub autostart: bool,
}

impl std::fmt::Debug for WebRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WebRun({}, autostart: {})", self.web.url, self.autostart)
    }
}

/// How often the state is published (the page's interval is `results_ts_interval`).
const PUBLISH_EVERY: Duration = Duration::from_secs(1);
/// Intervals kept for the page's graphs (an hour at 1 s).
const KEEP_INTERVALS: usize = 3600;
/// Distinct error messages kept for the error table.
const KEEP_ERRORS: usize = 50;

#[derive(Default)]
pub(super) struct WebSide {
    /// Every threshold, judged on the results so far for the page (with thresholds only).
    watch: Option<crate::gate::live::Live>,
    metrics: Metrics,
    window: Window,
    errors: std::collections::HashMap<String, u64>,
    next_publish: Option<Instant>,
    next_interval: Option<Instant>,
    interval_started: Option<Instant>,
    /// The page asked to start / stop.
    pub(super) start_asked: bool,
    pub(super) stop_asked: bool,
}

impl WebSide {
    pub(super) fn new(thresholds: &crate::gate::Thresholds) -> WebSide {
        WebSide {
            watch: crate::gate::live::Live::watching(thresholds),
            ..WebSide::default()
        }
    }

    pub(super) fn add(&mut self, r: &protocol::TestResult) {
        if let Some(w) = &mut self.watch {
            w.add(r);
        }
        let error = !r.error.is_empty();
        self.metrics.add(r.scriptrun_time, error, &r.custom_timers);
        self.window.add(r.scriptrun_time, error);
        if error {
            if let Some(n) = self.errors.get_mut(&r.error) {
                *n += 1;
            } else if self.errors.len() < KEEP_ERRORS {
                self.errors.insert(r.error.clone(), 1);
            }
        }
    }
}

impl WebSide {
    /// One turret's interval (extension `aggregate`); `hists` are its series' histograms.
    pub(super) fn add_aggregate(
        &mut self,
        a: &protocol::Aggregate,
        hists: &[hdrhistogram::Histogram<u64>],
    ) {
        if let Some(w) = &mut self.watch {
            w.add_aggregate(a, hists);
        }
        self.metrics.add_aggregate(a, hists);
        if let Some(h) = a
            .series
            .iter()
            .zip(hists)
            .find(|(d, _)| d.kind == protocol::aggregate::Kind::Transaction)
        {
            self.window.add_hist(h.1, a.failed());
        }
        for e in &a.errors {
            if let Some(n) = self.errors.get_mut(&e.message) {
                *n += e.count;
            } else if self.errors.len() < KEEP_ERRORS {
                self.errors.insert(e.message.clone(), e.count);
            }
        }
    }
}

impl Hq<'_> {
    /// The page's controls and, once a second, the state it shows. Cheap when there is
    /// nothing to do: called on every pass of the HQ's loops.
    pub(super) fn web_tick(&mut self) {
        let Some(run) = &self.opts.web else { return };
        while let Ok(c) = run.controls.try_recv() {
            match c {
                Control::Start => self.web.start_asked = true,
                Control::Stop => {
                    self.web.stop_asked = true;
                    self.console.info("stop asked from the dashboard");
                }
                Control::Shape { cannons, rate } => self.reshape(cannons, rate),
            }
        }
        let now = Instant::now();
        if self.web.next_publish.is_some_and(|at| now < at) {
            return;
        }
        self.web.next_publish = Some(now + PUBLISH_EVERY);
        self.publish_web(now, false);
    }

    /// Publishes the state now; `last`: the run is over.
    pub(super) fn publish_web(&mut self, now: Instant, last: bool) {
        let Some(run) = &self.opts.web else { return };
        let c = &self.opts.config;
        let elapsed = self.run_started.map_or(0.0, |s| s.elapsed().as_secs_f64());
        let state = match self.phase {
            _ if last => "finished",
            Phase::Waiting if self.ready_turrets() >= c.min_turrets => "ready",
            Phase::Waiting => "waiting",
            Phase::Running => "running",
            Phase::Draining => "draining",
        };
        // A new interval every `results_ts_interval` of the run (and at its end).
        let interval = Duration::from_secs(c.results_ts_interval_secs.max(1));
        let mut point = None;
        if self.phase != Phase::Waiting {
            // The first interval begins with the test, not with the first publish after it.
            let began = *self
                .web
                .interval_started
                .get_or_insert(self.run_started.unwrap_or(now));
            let due = *self.web.next_interval.get_or_insert(began + interval);
            // The end's partial interval, if anything came in it.
            if now >= due || (last && !self.web.window.is_empty()) {
                let watched: Vec<_> = self
                    .turrets
                    .iter()
                    .filter(|t| t.health.heartbeats > 0)
                    .collect();
                let active: u64 = watched.iter().map(|t| t.health.cannons_active).sum();
                let target = watched.iter().any(|t| t.cannons_target.is_some()).then(|| {
                    watched
                        .iter()
                        .map(|t| t.cannons_target.unwrap_or(t.health.cannons_active))
                        .sum()
                });
                point = Some(self.web.window.close(
                    elapsed,
                    now.duration_since(began).as_secs_f64(),
                    active,
                    target,
                ));
                self.web.interval_started = Some(now);
                self.web.next_interval = Some(now + interval);
            }
        }
        let turrets: Vec<Value> = self
            .turrets
            .iter()
            .map(|t| {
                json!({
                    "name": t.status.turret,
                    "uuid": t.status.uuid,
                    "status": t.status.status.as_oct(),
                    "liveness": t.health.liveness.as_str(),
                    "canons": t.health.cannons_active,
                    "results": t.received,
                })
            })
            .collect();
        let names: Vec<(String, String, u64)> = self
            .turrets
            .iter()
            .map(|t| {
                (
                    t.status.turret.clone(),
                    t.health.liveness.to_string(),
                    t.received,
                )
            })
            .collect();
        let metric_turrets: Vec<TurretMetric> = names
            .iter()
            .map(|(n, s, r)| TurretMetric {
                name: n,
                state: s,
                results: *r,
            })
            .collect();
        let metrics = self.web.metrics.render(state, elapsed, &metric_turrets);
        let mut errors: Vec<(&String, &u64)> = self.web.errors.iter().collect();
        errors.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        let errors: Vec<Value> = errors
            .into_iter()
            .map(|(e, n)| json!({"error": e, "count": n}))
            .collect();
        let thresholds = self.live_thresholds(elapsed);
        let run_json = json!({
            "state": state,
            "title": c.path.parent().and_then(|p| p.file_name()).map(|n| n.to_string_lossy().into_owned()),
            "elapsed": elapsed,
            "run_time": c.run_time.as_secs_f64(),
            "transactions": self.summary.transactions,
            "errors": self.summary.errors,
            "min_turrets": c.min_turrets,
            "autostart": run.autostart,
            "report": Value::Null,
        });
        run.web.publish(|s| {
            s.run = run_json;
            if let Some(p) = point {
                s.stats.push(p);
                if s.stats.len() > KEEP_INTERVALS {
                    s.stats.remove(0);
                }
            }
            s.turrets = Value::Array(turrets);
            s.errors = Value::Array(errors);
            s.thresholds = thresholds;
            s.metrics = metrics;
        });
    }

    /// The thresholds as the page shows them while the run goes on: each judged on the
    /// results so far (`passed: null` while its series has none). At the end the report's
    /// verdicts replace these.
    fn live_thresholds(&mut self, elapsed: f64) -> Value {
        let dropped = super::dropped_so_far(&self.turrets);
        let Some(watch) = &mut self.web.watch else {
            return Value::Array(Vec::new());
        };
        Value::Array(
            watch
                .outcomes(elapsed, dropped)
                .iter()
                .map(|o| {
                    json!({"series": o.series, "threshold": o.threshold,
                        "passed": o.observed.map(|_| o.passed),
                        "observed": o.observed.map(|_| o.observed_text())})
                })
                .collect(),
        )
    }

    /// A new total from the page: through the global `load`, the only shape turrets take
    /// while they run.
    fn reshape(&mut self, cannons: Option<u64>, rate: Option<f64>) {
        let Some(load) = &self.opts.config.load else {
            self.console.warn(
                "the dashboard asked for a new shape; that needs a global `load` in config.json",
            );
            return;
        };
        let open = load.open();
        match (cannons, rate) {
            (Some(n), _) if !open => {
                self.console
                    .info(&format!("dashboard: {n} canons from now on"));
                self.steering.manual = Some(crate::load::Share::Cannons(n));
            }
            (_, Some(r)) if open => {
                self.console
                    .info(&format!("dashboard: {r} iterations/s from now on"));
                self.steering.manual = Some(crate::load::Share::Rate(r));
            }
            _ => self.console.warn(&format!(
                "the dashboard asked for a new {}; this test's `load` is {}",
                if cannons.is_some() {
                    "canon count"
                } else {
                    "rate"
                },
                if open {
                    "an arrival rate"
                } else {
                    "a canon count"
                }
            )),
        }
    }
}
