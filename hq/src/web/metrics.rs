//! What `/metrics` says, in Prometheus' text format, and the per-interval figures of the live
//! page. Both are kept by the HQ thread alone (no lock per result): [`Metrics`] counts every
//! result into fixed latency buckets per series, [`Window`] the current interval; the HQ renders
//! them into the shared state once a second.

use std::collections::HashMap;
use std::fmt::Write as _;

use hdrhistogram::Histogram;
use protocol::aggregate::{Kind, SeriesDelta};
use protocol::Aggregate;

/// Latency bucket bounds, in seconds (Prometheus' defaults, widened to a minute).
pub const BUCKETS: [f64; 15] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

#[derive(Debug, Clone, Default)]
struct Series {
    count: u64,
    errors: u64,
    sum: f64,
    /// Per bucket, not cumulative (summed when rendered); the last counts what is above all.
    buckets: [u64; BUCKETS.len() + 1],
}

impl Series {
    fn add(&mut self, secs: f64, error: bool) {
        self.count += 1;
        self.errors += u64::from(error);
        self.sum += secs;
        let i = BUCKETS.partition_point(|&b| b < secs);
        self.buckets[i] += 1;
    }

    /// An aggregate's series: its count, its sum (count × mean) and its histogram
    /// (nanoseconds) into the buckets.
    fn add_delta(&mut self, d: &SeriesDelta, hist: &Histogram<u64>, errors: u64) {
        self.count += d.count;
        self.errors += errors;
        self.sum += d.mean * d.count as f64;
        for v in hist.iter_recorded() {
            let secs = v.value_iterated_to() as f64 / 1e9;
            let i = BUCKETS.partition_point(|&b| b < secs);
            self.buckets[i] += v.count_at_value();
        }
    }
}

/// Every result of the run, per series (`All transactions` and each custom timer).
#[derive(Debug, Default)]
pub struct Metrics {
    all: Series,
    timers: HashMap<String, Series>,
}

/// A turret as `/metrics` shows it.
pub struct TurretMetric<'a> {
    pub name: &'a str,
    pub state: &'a str,
    pub results: u64,
}

impl Metrics {
    pub fn add(&mut self, secs: f64, error: bool, timers: &[(String, f64)]) {
        self.all.add(secs, error);
        for (name, t) in timers {
            match self.timers.get_mut(name) {
                Some(s) => s.add(*t, false),
                None => {
                    let mut s = Series::default();
                    s.add(*t, false);
                    self.timers.insert(name.clone(), s);
                }
            }
        }
    }

    /// One turret's interval (extension `aggregate`); `hists` are its series' histograms.
    pub fn add_aggregate(&mut self, a: &Aggregate, hists: &[Histogram<u64>]) {
        for (d, h) in a.series.iter().zip(hists) {
            match d.kind {
                Kind::Transaction => self.all.add_delta(d, h, a.failed()),
                Kind::Timer => self
                    .timers
                    .entry(d.name.clone())
                    .or_default()
                    .add_delta(d, h, 0),
                Kind::Corrected => {}
            }
        }
    }

    /// The text format (version 0.0.4): results, errors and latency histograms per series, each
    /// turret's state and results, the run's state.
    pub fn render(&self, run_state: &str, elapsed: f64, turrets: &[TurretMetric]) -> String {
        let mut out = String::with_capacity(4096);
        let mut series: Vec<(&str, &Series)> = vec![("All transactions", &self.all)];
        let mut timers: Vec<(&String, &Series)> = self.timers.iter().collect();
        timers.sort_by(|a, b| a.0.cmp(b.0));
        series.extend(timers.iter().map(|(k, s)| (k.as_str(), *s)));
        out.push_str("# HELP oct_results_total Results received, per transaction series.\n");
        out.push_str("# TYPE oct_results_total counter\n");
        for (name, s) in &series {
            let _ = writeln!(
                out,
                "oct_results_total{{series=\"{}\"}} {}",
                label(name),
                s.count
            );
        }
        out.push_str("# HELP oct_errors_total Results with an error, per transaction series.\n");
        out.push_str("# TYPE oct_errors_total counter\n");
        for (name, s) in &series {
            let _ = writeln!(
                out,
                "oct_errors_total{{series=\"{}\"}} {}",
                label(name),
                s.errors
            );
        }
        out.push_str("# HELP oct_latency_seconds Transaction and custom timer durations.\n");
        out.push_str("# TYPE oct_latency_seconds histogram\n");
        for (name, s) in &series {
            let name = label(name);
            let mut cumulative = 0;
            for (i, bound) in BUCKETS.iter().enumerate() {
                cumulative += s.buckets[i];
                let _ = writeln!(
                    out,
                    "oct_latency_seconds_bucket{{series=\"{name}\",le=\"{bound}\"}} {cumulative}"
                );
            }
            let _ = writeln!(
                out,
                "oct_latency_seconds_bucket{{series=\"{name}\",le=\"+Inf\"}} {}",
                s.count
            );
            let _ = writeln!(
                out,
                "oct_latency_seconds_sum{{series=\"{name}\"}} {}",
                s.sum
            );
            let _ = writeln!(
                out,
                "oct_latency_seconds_count{{series=\"{name}\"}} {}",
                s.count
            );
        }
        out.push_str("# HELP oct_turret_up Each turret's state (1 for the state it is in).\n");
        out.push_str("# TYPE oct_turret_up gauge\n");
        for t in turrets {
            let _ = writeln!(
                out,
                "oct_turret_up{{turret=\"{}\",state=\"{}\"}} 1",
                label(t.name),
                label(t.state)
            );
        }
        out.push_str("# HELP oct_turret_results_total Results received from each turret.\n");
        out.push_str("# TYPE oct_turret_results_total counter\n");
        for t in turrets {
            let _ = writeln!(
                out,
                "oct_turret_results_total{{turret=\"{}\"}} {}",
                label(t.name),
                t.results
            );
        }
        out.push_str("# HELP oct_run_state The run's state (1 for the state it is in).\n");
        out.push_str("# TYPE oct_run_state gauge\n");
        for s in ["waiting", "ready", "running", "draining", "finished"] {
            let _ = writeln!(
                out,
                "oct_run_state{{state=\"{s}\"}} {}",
                u8::from(s == run_state)
            );
        }
        out.push_str("# HELP oct_run_elapsed_seconds Seconds since the test started.\n");
        out.push_str("# TYPE oct_run_elapsed_seconds gauge\n");
        let _ = writeln!(out, "oct_run_elapsed_seconds {elapsed}");
        out
    }
}

/// A label value as the text format wants it: `\`, `"` and newlines escaped.
fn label(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The results of the current interval, for the live page.
#[derive(Debug)]
pub struct Window {
    latencies: hdrhistogram::Histogram<u64>,
    count: u64,
    errors: u64,
}

impl Default for Window {
    fn default() -> Self {
        Window {
            latencies: hdrhistogram::Histogram::new_with_bounds(1, 3_600_000_000, 2)
                .expect("valid histogram bounds"),
            count: 0,
            errors: 0,
        }
    }
}

/// One interval of the live page.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Point {
    /// Seconds since the start.
    pub t: f64,
    pub rps: f64,
    pub errors_per_sec: f64,
    /// Seconds; `null` in an interval without results.
    pub p50: Option<f64>,
    pub p95: Option<f64>,
    pub p99: Option<f64>,
    pub canons: u64,
    pub canons_target: Option<u64>,
}

impl Window {
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub fn add(&mut self, secs: f64, error: bool) {
        self.count += 1;
        self.errors += u64::from(error);
        let us = (secs * 1e6).round().clamp(1.0, 3_600_000_000.0) as u64;
        let _ = self.latencies.record(us);
    }

    /// The transactions of an aggregate's series: `hist` counts nanoseconds.
    pub fn add_hist(&mut self, hist: &Histogram<u64>, errors: u64) {
        for v in hist.iter_recorded() {
            let us = (v.value_iterated_to() / 1000).clamp(1, 3_600_000_000);
            let _ = self.latencies.record_n(us, v.count_at_value());
            self.count += v.count_at_value();
        }
        self.errors += errors;
    }

    /// The interval's figures over `secs` seconds; starts the next interval.
    pub fn close(&mut self, t: f64, secs: f64, canons: u64, canons_target: Option<u64>) -> Point {
        let q = |p: f64| (self.count > 0).then(|| self.latencies.value_at_quantile(p) as f64 / 1e6);
        let secs = secs.max(1e-3);
        let point = Point {
            t,
            rps: self.count as f64 / secs,
            errors_per_sec: self.errors as f64 / secs,
            p50: q(0.50),
            p95: q(0.95),
            p99: q(0.99),
            canons,
            canons_target,
        };
        self.latencies.reset();
        self.count = 0;
        self.errors = 0;
        point
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_cumulative_and_labels_escaped() {
        let mut m = Metrics::default();
        m.add(0.003, false, &[("log \"in\"".into(), 0.2)]);
        m.add(0.3, true, &[]);
        m.add(100.0, false, &[]);
        let text = m.render(
            "running",
            1.5,
            &[TurretMetric {
                name: "t1",
                state: "running",
                results: 3,
            }],
        );
        assert!(text.contains("oct_results_total{series=\"All transactions\"} 3\n"));
        assert!(text.contains("oct_errors_total{series=\"All transactions\"} 1\n"));
        assert!(text
            .contains("oct_latency_seconds_bucket{series=\"All transactions\",le=\"0.0025\"} 0\n"));
        assert!(text
            .contains("oct_latency_seconds_bucket{series=\"All transactions\",le=\"0.005\"} 1\n"));
        assert!(
            text.contains("oct_latency_seconds_bucket{series=\"All transactions\",le=\"0.5\"} 2\n")
        );
        assert!(
            text.contains("oct_latency_seconds_bucket{series=\"All transactions\",le=\"60\"} 2\n")
        );
        assert!(text
            .contains("oct_latency_seconds_bucket{series=\"All transactions\",le=\"+Inf\"} 3\n"));
        assert!(text.contains("oct_latency_seconds_count{series=\"log \\\"in\\\"\"} 1\n"));
        assert!(text.contains("oct_run_state{state=\"running\"} 1\n"));
        assert!(text.contains("oct_turret_results_total{turret=\"t1\"} 3\n"));
    }

    #[test]
    fn a_window_gives_rates_and_percentiles_then_starts_again() {
        let mut w = Window::default();
        for i in 1..=100 {
            w.add(i as f64 / 1000.0, i % 10 == 0);
        }
        let p = w.close(2.0, 2.0, 4, Some(5));
        assert_eq!((p.rps, p.errors_per_sec), (50.0, 5.0));
        assert!((p.p50.unwrap() - 0.050).abs() < 0.001, "{p:?}");
        assert!((p.p99.unwrap() - 0.099).abs() < 0.001, "{p:?}");
        let empty = w.close(3.0, 1.0, 4, None);
        assert_eq!((empty.rps, empty.p50), (0.0, None));
    }
}
