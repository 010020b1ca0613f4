//! The pass/fail gate: config.json's `thresholds`, evaluated on what a run stored (at its end,
//! by `oct run` and `oct rebuild-results`) and, for those marked `abort_on_fail`, live by the HQ
//! every interval (`gate::live`). `expr` parses one expression; this module owns the config
//! form, the evaluation, the ✓/✗ table and the JUnit XML a CI server reads.
//!
//! Keys: `_run` (the whole test: every result, its error rate, rps and dropped iterations), a
//! custom timer's name (that series), `*` (every series, `All transactions` included).

pub mod expr;
pub mod live;

use std::fmt::Write as _;

use serde_json::{json, Value};

use crate::report::svg::escape as xml;
use crate::stats::Series;
use expr::{Expr, Metric};

/// The exit code of `oct run`, `oct rebuild-results` and `oct compare` when the gate fails (as
/// k6's).
pub const FAILED_EXIT: u8 = 99;

pub const RUN: &str = "_run";
pub const EVERY: &str = "*";
/// The name of the series of every result.
pub const ALL: &str = "All transactions";

#[derive(Debug, Clone, PartialEq)]
pub struct Threshold {
    /// `_run`, `*` or a custom timer's name.
    pub key: String,
    pub expr: Expr,
    /// Stop the test as soon as it fails (after `delay_secs`), evaluated live.
    pub abort_on_fail: bool,
    pub delay_secs: f64,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Thresholds(pub Vec<Threshold>);

/// What is wrong with `thresholds`, under which key.
#[derive(Debug, Clone, PartialEq)]
pub struct ThresholdError {
    pub key: String,
    pub why: String,
}

impl Thresholds {
    /// Reads `{"_run": ["p(95) < 200ms", {"threshold": "error_rate < 1%", "abort_on_fail":
    /// true, "delay": 10}], "login": [...]}`.
    pub fn parse(v: &Value) -> Result<Thresholds, ThresholdError> {
        let bad = |key: String, why: String| ThresholdError { key, why };
        let Value::Object(map) = v else {
            return Err(bad(
                "thresholds".into(),
                "must map series (`_run`, `*` or a custom timer) to lists of expressions".into(),
            ));
        };
        let mut out = Vec::new();
        for (key, list) in map {
            let Value::Array(list) = list else {
                return Err(bad(
                    format!("thresholds.{key}"),
                    "must be a list of expressions".into(),
                ));
            };
            for (i, item) in list.iter().enumerate() {
                let at = format!("thresholds.{key}[{i}]");
                let (text, abort_on_fail, delay_secs) = match item {
                    Value::String(s) => (s.as_str(), false, 0.0),
                    Value::Object(o) => {
                        let Some(Value::String(s)) = o.get("threshold") else {
                            return Err(bad(
                                format!("{at}.threshold"),
                                "is missing (the expression)".into(),
                            ));
                        };
                        let abort = match o.get("abort_on_fail") {
                            None => false,
                            Some(Value::Bool(b)) => *b,
                            Some(other) => {
                                return Err(bad(
                                    format!("{at}.abort_on_fail"),
                                    format!("must be true or false, got {other}"),
                                ))
                            }
                        };
                        let delay = match o.get("delay") {
                            None => 0.0,
                            Some(d) => match d.as_f64() {
                                Some(d) if d >= 0.0 && d.is_finite() => d,
                                _ => {
                                    return Err(bad(
                                        format!("{at}.delay"),
                                        format!("must be seconds, 0 or more, got {d}"),
                                    ))
                                }
                            },
                        };
                        (s.as_str(), abort, delay)
                    }
                    other => {
                        return Err(bad(
                            at,
                            format!("must be an expression such as \"p(95) < 200ms\", got {other}"),
                        ))
                    }
                };
                let expr =
                    expr::parse(text).map_err(|e| bad(at.clone(), format!("{text:?}: {e}")))?;
                if expr.metric.run_only() && key != RUN {
                    return Err(bad(
                        at,
                        format!("{text:?}: this metric is a figure of the whole test: put it under `_run`"),
                    ));
                }
                out.push(Threshold {
                    key: key.clone(),
                    expr,
                    abort_on_fail,
                    delay_secs,
                });
            }
        }
        Ok(Thresholds(out))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// What a run produced, as the gate reads it.
pub struct Observed<'a> {
    pub all: &'a mut Series,
    pub timers: &'a mut [Series],
    pub errors: u64,
    pub duration_secs: Option<f64>,
    pub dropped_iterations: Option<u64>,
    /// The scripts' checks over the run: passed, failed (`None`: no check ran).
    pub checks: Option<(u64, u64)>,
}

/// One threshold on one series, evaluated.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// The config key (`_run`, `*`, a timer).
    pub key: String,
    /// The series it was evaluated on.
    pub series: String,
    pub threshold: String,
    /// `None`: the series has no data (a failure: a gate must not pass on nothing).
    pub observed: Option<f64>,
    pub metric: Metric,
    pub limit: f64,
    pub passed: bool,
}

impl Outcome {
    pub fn shown(&self, x: f64) -> String {
        match self.metric {
            m if m.is_latency() => crate::stats::latency(x),
            Metric::ErrorRate | Metric::Checks => format!("{:.2} %", x * 100.0),
            Metric::Rps => format!("{x:.1}/s"),
            _ => format!("{x}"),
        }
    }

    pub fn observed_text(&self) -> String {
        self.observed
            .map_or_else(|| "no data".to_owned(), |x| self.shown(x))
    }

    pub fn json(&self) -> Value {
        json!({
            "key": self.key, "series": self.series, "threshold": self.threshold,
            "observed": self.observed, "limit": self.limit, "passed": self.passed,
        })
    }
}

/// The run's figures a series' metric may need.
struct Run {
    errors: u64,
    results: u64,
    duration_secs: Option<f64>,
    dropped_iterations: Option<u64>,
    checks: Option<(u64, u64)>,
}

fn value_of(metric: Metric, s: &mut Series, run: &Run) -> Option<f64> {
    if s.count() == 0 && !matches!(metric, Metric::Count) {
        return None;
    }
    Some(match metric {
        Metric::P(q) => s.quantile(q / 100.0),
        Metric::Med => s.quantile(0.5),
        Metric::Avg => s.mean(),
        Metric::Min => s.min(),
        Metric::Max => s.max(),
        Metric::Count => s.count() as f64,
        Metric::Rps => s.count() as f64 / run.duration_secs.filter(|d| *d > 0.0)?,
        Metric::ErrorRate => run.errors as f64 / run.results.max(1) as f64,
        Metric::DroppedIterations => run.dropped_iterations.unwrap_or(0) as f64,
        Metric::Checks => {
            let (passed, failed) = run.checks?;
            passed as f64 / (passed + failed).max(1) as f64
        }
    })
}

/// Every threshold on every series it names, in config order.
pub fn evaluate(thresholds: &Thresholds, o: &mut Observed) -> Vec<Outcome> {
    let run = Run {
        errors: o.errors,
        results: o.all.count(),
        duration_secs: o.duration_secs,
        dropped_iterations: o.dropped_iterations,
        checks: o.checks,
    };
    let mut out = Vec::new();
    for t in &thresholds.0 {
        let names: Vec<String> = match t.key.as_str() {
            RUN => vec![ALL.to_owned()],
            EVERY => std::iter::once(ALL.to_owned())
                .chain(o.timers.iter().map(|s| s.name.clone()))
                .collect(),
            name => vec![name.to_owned()],
        };
        for name in names {
            let series = if name == ALL {
                Some(&mut *o.all)
            } else {
                o.timers.iter_mut().find(|s| s.name == name)
            };
            let observed = series.and_then(|s| value_of(t.expr.metric, s, &run));
            out.push(Outcome {
                key: t.key.clone(),
                series: name,
                threshold: t.expr.text.clone(),
                observed,
                metric: t.expr.metric,
                limit: t.expr.limit,
                passed: observed.is_some_and(|x| t.expr.op.holds(x, t.expr.limit)),
            });
        }
    }
    out
}

/// The ✓/✗ table `oct run` ends with.
pub fn table(outcomes: &[Outcome]) -> String {
    let width = |f: &dyn Fn(&Outcome) -> usize| outcomes.iter().map(f).max().unwrap_or(0);
    let (ws, wt) = (
        width(&|o| o.series.chars().count()),
        width(&|o| o.threshold.chars().count()),
    );
    let mut out = String::from("thresholds:\n");
    for o in outcomes {
        let _ = writeln!(
            out,
            "  {} {:ws$}  {:wt$}  {}{}",
            if o.passed { "✓" } else { "✗" },
            o.series,
            o.threshold,
            o.observed_text(),
            if o.passed {
                String::new()
            } else {
                format!(" (limit {})", o.shown(o.limit))
            },
        );
    }
    let failed = outcomes.iter().filter(|o| !o.passed).count();
    let _ = write!(
        out,
        "thresholds: {} passed, {failed} failed",
        outcomes.len() - failed
    );
    out
}

/// JUnit XML: one testsuite, one testcase per threshold and series, a `<failure>` for each
/// that failed.
pub fn junit(outcomes: &[Outcome], suite: &str) -> String {
    let failures = outcomes.iter().filter(|o| !o.passed).count();
    let mut out = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"oct\" tests=\"{}\" failures=\"{failures}\">\n<testsuite name=\"{}\" tests=\"{}\" failures=\"{failures}\" errors=\"0\">\n",
        outcomes.len(),
        xml(suite),
        outcomes.len()
    );
    for o in outcomes {
        let _ = write!(
            out,
            "<testcase classname=\"{}\" name=\"{}\">",
            xml(&o.series),
            xml(&o.threshold)
        );
        if o.passed {
            let _ = write!(
                out,
                "<system-out>observed {}</system-out>",
                xml(&o.observed_text())
            );
        } else {
            let message = format!("observed {}, limit {}", o.observed_text(), o.shown(o.limit));
            let _ = write!(
                out,
                "<failure message=\"{}\" type=\"threshold\">{} on {}: {}</failure>",
                xml(&message),
                xml(&o.threshold),
                xml(&o.series),
                xml(&message)
            );
        }
        out.push_str("</testcase>\n");
    }
    out.push_str("</testsuite>\n</testsuites>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn thresholds(v: Value) -> Result<Thresholds, String> {
        Thresholds::parse(&v).map_err(|e| format!("`{}` {}", e.key, e.why))
    }

    #[test]
    fn evaluates_on_series_and_the_run() {
        let t = thresholds(json!({
            "_run": ["p(50) < 30ms", "error_rate < 10%", {"threshold": "rps > 5", "abort_on_fail": true, "delay": 2}],
            "login": ["max < 15ms"],
            "*": ["count >= 1"],
            "nowhere": ["avg < 1s"],
        }))
        .unwrap();
        assert!(t.0[2].abort_on_fail && t.0[2].delay_secs == 2.0);
        let mut all = Series::new(ALL, 1);
        let mut login = Series::new("login", 1);
        for i in 0..10 {
            all.add(0.01 * (i + 1) as f64, 100.0 + i as f64);
            login.add(0.002 * (i + 1) as f64, 100.0 + i as f64);
        }
        let mut timers = [login];
        let mut o = Observed {
            all: &mut all,
            timers: &mut timers,
            errors: 2,
            duration_secs: Some(1.0),
            dropped_iterations: None,
            checks: None,
        };
        let got: Vec<(String, String, bool)> = evaluate(&t, &mut o)
            .into_iter()
            .map(|o| (o.series, o.threshold, o.passed))
            .collect();
        let want = [
            ("All transactions", "p(50) < 30ms", false),
            ("All transactions", "error_rate < 10%", false),
            ("All transactions", "rps > 5", true),
            ("login", "max < 15ms", false),
            ("All transactions", "count >= 1", true),
            ("login", "count >= 1", true),
            ("nowhere", "avg < 1s", false),
        ];
        let want: Vec<(String, String, bool)> = want
            .iter()
            .map(|(a, b, c)| (a.to_string(), b.to_string(), *c))
            .collect();
        // Config order is map order: `*`, `_run`, `login`, `nowhere` sort as keys.
        for w in &want {
            assert!(got.contains(w), "{w:?} not in {got:?}");
        }
        assert_eq!(got.len(), want.len());
        let table = table(&evaluate(&t, &mut o));
        assert!(
            table.contains("✗ All transactions  p(50) < 30ms"),
            "{table}"
        );
        assert!(table.contains("55.0 ms (limit 30.0 ms)"), "{table}");
        assert!(table.contains("✗ nowhere"), "{table}");
        assert!(table.ends_with("thresholds: 3 passed, 4 failed"), "{table}");
    }

    #[test]
    fn bad_thresholds_name_their_key_and_column() {
        let cases = [
            (json!({"_run": ["p(95) < 200xs"]}), "`thresholds._run[0]` \"p(95) < 200xs\": unknown unit `xs` (us, ms or s) at column 12"),
            (json!({"login": ["error_rate < 1%"]}), "`thresholds.login[0]` \"error_rate < 1%\": this metric is a figure of the whole test: put it under `_run`"),
            (json!({"_run": "p(95) < 1s"}), "`thresholds._run` must be a list of expressions"),
            (json!({"_run": [{"abort_on_fail": true}]}), "`thresholds._run[0].threshold` is missing (the expression)"),
            (json!({"_run": [{"threshold": "avg < 1s", "delay": -1}]}), "`thresholds._run[0].delay` must be seconds, 0 or more, got -1"),
        ];
        for (v, want) in cases {
            assert_eq!(thresholds(v.clone()).unwrap_err(), want, "{v}");
        }
    }
}
