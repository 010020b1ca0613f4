//! The open model (k6's `ramping-arrival-rate`, wrk2): iterations start on a schedule, whatever
//! the response times. [`Arrival`] is what a turret entry (or the top-level `load` block) states
//! as `arrival_rate`; [`Schedule`] is the arithmetic of it: when iteration `k` is due, how many
//! are due by a time, the rate at a time. The rate moves in straight lines between stage
//! targets, so the count due by `t` is a sum of trapezoids and iteration `k`'s time the root of
//! a quadratic: exact at any rate, with no drift over a long test.

use serde_json::{Map, Value};

use crate::shape::{bad, positive_secs, whole, ShapeError};

/// One stage of an arrival rate: the rate moves in a line to `target` (iterations per second)
/// over `duration_secs`.
#[derive(Debug, Clone, PartialEq)]
pub struct RateStage {
    pub duration_secs: f64,
    pub target: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Arrival {
    /// The rate at the start, iterations per second (`rate` / `per`).
    pub rate: f64,
    pub stages: Vec<RateStage>,
    /// The pool of canons iterations are handed to; it grows up to this.
    pub max_cannons: u64,
}

impl Arrival {
    /// Reads an `arrival_rate` object; `key` names it in errors (e.g. `turrets[0].arrival_rate`).
    pub fn from_value(v: &Value, key: &str) -> Result<Arrival, ShapeError> {
        let Value::Object(o) = v else {
            return Err(bad(
                key,
                "must be {\"rate\": n, \"per\": seconds, \"max_cannons\": n, \"stages\": [...]}",
            ));
        };
        let k = |name: &str| format!("{key}.{name}");
        for name in o.keys() {
            if !["rate", "per", "max_cannons", "stages"].contains(&name.as_str()) {
                return Err(bad(
                    k(name),
                    "is not a key of arrival_rate (rate, per, max_cannons, stages)",
                ));
            }
        }
        let per = match o.get("per") {
            None => 1.0,
            v => positive_secs(v, &k("per"))?,
        };
        let stages = match o.get("stages") {
            None => Vec::new(),
            Some(Value::Array(list)) if !list.is_empty() => list
                .iter()
                .enumerate()
                .map(|(i, s)| rate_stage(s, &k(&format!("stages[{i}]")), per))
                .collect::<Result<Vec<_>, _>>()?,
            Some(_) => {
                return Err(bad(
                    k("stages"),
                    "must be a non-empty list of {\"duration\": seconds, \"target\": rate}",
                ))
            }
        };
        let rate = match o.get("rate") {
            None if !stages.is_empty() => 0.0,
            None => return Err(bad(k("rate"), "is missing")),
            Some(v) => match v.as_f64() {
                Some(r) if r > 0.0 && r.is_finite() => r / per,
                _ => {
                    return Err(bad(
                        k("rate"),
                        format!("must be a number of iterations per `per` above 0, got {v}"),
                    ))
                }
            },
        };
        if rate == 0.0 && stages.iter().all(|s| s.target == 0.0) {
            return Err(bad(key, "never starts an iteration (every rate is 0)"));
        }
        let max_cannons = match o.get("max_cannons") {
            Some(v) => whole(v, &k("max_cannons"), 1)?,
            None => return Err(bad(k("max_cannons"), "is missing")),
        };
        Ok(Arrival {
            rate,
            stages,
            max_cannons,
        })
    }

    /// How long the stages run before the last rate holds; `None` for a constant rate.
    pub fn duration_secs(&self) -> Option<f64> {
        (!self.stages.is_empty()).then(|| self.stages.iter().map(|s| s.duration_secs).sum())
    }

    pub fn schedule(&self) -> Schedule {
        let mut segs = Vec::with_capacity(self.stages.len() + 1);
        let (mut from, mut n0, mut rate) = (0.0, 0.0, self.rate);
        for s in &self.stages {
            let slope = (s.target - rate) / s.duration_secs;
            segs.push(Segment {
                from,
                n0,
                rate,
                slope,
            });
            n0 += (rate + s.target) / 2.0 * s.duration_secs;
            from += s.duration_secs;
            rate = s.target;
        }
        segs.push(Segment {
            from,
            n0,
            rate,
            slope: 0.0,
        });
        Schedule { segs }
    }

    /// This arrival rate scaled by `share` (a turret's part of a global one), its pool too.
    pub fn scaled(&self, share: f64) -> Arrival {
        Arrival {
            rate: self.rate * share,
            stages: self
                .stages
                .iter()
                .map(|s| RateStage {
                    duration_secs: s.duration_secs,
                    target: s.target * share,
                })
                .collect(),
            max_cannons: ((self.max_cannons as f64 * share).ceil() as u64).max(1),
        }
    }
}

fn rate_stage(v: &Value, key: &str, per: f64) -> Result<RateStage, ShapeError> {
    let Value::Object(o) = v else {
        return Err(bad(
            key,
            "must be {\"duration\": seconds, \"target\": rate}",
        ));
    };
    let target = match o.get("target") {
        None => return Err(bad(format!("{key}.target"), "is missing")),
        Some(t) => match t.as_f64() {
            Some(r) if r >= 0.0 && r.is_finite() => r / per,
            _ => {
                return Err(bad(
                    format!("{key}.target"),
                    format!("must be a number of iterations per `per`, 0 or more, got {t}"),
                ))
            }
        },
    };
    Ok(RateStage {
        duration_secs: positive_secs(o.get("duration"), &format!("{key}.duration"))?,
        target,
    })
}

/// Reads `arrival_rate` from a turret entry, if it has one, refusing the keys it cannot go with.
pub(crate) fn from_entry(
    entry: &Map<String, Value>,
    k: impl Fn(&str) -> String,
) -> Result<Option<Arrival>, ShapeError> {
    let Some(v) = entry.get("arrival_rate") else {
        return Ok(None);
    };
    for other in ["stages", "iterations", "cycle_time"] {
        if entry.contains_key(other) {
            return Err(bad(
                k(other),
                "cannot go with `arrival_rate`: an open-model test starts iterations on a schedule (keep one)",
            ));
        }
    }
    Arrival::from_value(v, &k("arrival_rate")).map(Some)
}

/// A stretch of the schedule from `from` (seconds after the start) to the next one's: the rate
/// is `rate + slope × τ` at `τ` seconds in, and `n0` iterations were due before it.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Segment {
    from: f64,
    n0: f64,
    rate: f64,
    slope: f64,
}

impl Segment {
    fn count(&self, tau: f64) -> f64 {
        self.n0 + self.rate * tau + self.slope * tau * tau / 2.0
    }
}

/// When each iteration of an open-model test is due. The last segment lasts forever.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    segs: Vec<Segment>,
}

impl Schedule {
    /// `rate` iterations per second from the start, until told otherwise.
    pub fn constant(rate: f64) -> Schedule {
        Schedule {
            segs: vec![Segment {
                from: 0.0,
                n0: 0.0,
                rate: rate.max(0.0),
                slope: 0.0,
            }],
        }
    }

    fn at(&self, secs: f64) -> &Segment {
        let i = self.segs.partition_point(|s| s.from <= secs);
        &self.segs[i.saturating_sub(1)]
    }

    /// From `secs` on, `rate` per second (the HQ's part of a global shape): what was due
    /// before stays due.
    pub fn set_rate(&mut self, secs: f64, rate: f64) {
        let rate = rate.max(0.0);
        let last = *self.segs.last().expect("a schedule has a segment");
        if last.slope == 0.0 && last.rate == rate {
            return;
        }
        let secs = secs.max(last.from);
        let n0 = self.count_by(secs);
        self.segs.retain(|s| s.from < secs);
        self.segs.push(Segment {
            from: secs,
            n0,
            rate,
            slope: 0.0,
        });
    }

    /// Iterations per second wanted `secs` after the start.
    pub fn rate_at(&self, secs: f64) -> f64 {
        let s = self.at(secs);
        s.rate + s.slope * (secs - s.from).max(0.0)
    }

    /// Iterations due in the first `secs` seconds (a real number: a fraction is on its way).
    pub fn count_by(&self, secs: f64) -> f64 {
        if secs <= 0.0 {
            return 0.0;
        }
        let s = self.at(secs);
        s.count(secs - s.from)
    }

    /// When iteration `k` (from 0) is due, in seconds after the start; `None`: never.
    pub fn due(&self, k: u64) -> Option<f64> {
        let k = k as f64;
        let i = self.segs.partition_point(|s| s.n0 <= k).saturating_sub(1);
        let s = &self.segs[i];
        let d = k - s.n0;
        if d <= 0.0 {
            return Some(s.from);
        }
        // n0 + a τ + b τ²/2 = k, solved in the form that stays exact when b is near 0.
        let disc = s.rate * s.rate + 2.0 * s.slope * d;
        let den = s.rate + disc.max(0.0).sqrt();
        if disc < 0.0 || den <= 0.0 {
            return None;
        }
        let tau = 2.0 * d / den;
        match self.segs.get(i + 1) {
            Some(next) => Some((s.from + tau).min(next.from)),
            None => Some(s.from + tau),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn arrival(v: Value) -> Result<Arrival, String> {
        Arrival::from_value(&v, "arrival_rate").map_err(|e| e.to_string())
    }

    #[test]
    fn a_constant_rate_is_evenly_spaced() {
        let s = arrival(json!({"rate": 200, "max_cannons": 10}))
            .unwrap()
            .schedule();
        assert_eq!(s.due(0), Some(0.0));
        assert!((s.due(1).unwrap() - 0.005).abs() < 1e-12);
        assert!((s.due(999).unwrap() - 4.995).abs() < 1e-9);
        assert!((s.count_by(5.0) - 1000.0).abs() < 1e-9);
        let per_minute = arrival(json!({"rate": 30, "per": 60, "max_cannons": 1})).unwrap();
        assert_eq!(per_minute.rate, 0.5);
    }

    #[test]
    fn ramps_are_trapezoids_and_due_inverts_count() {
        let a = arrival(json!({"rate": 100, "max_cannons": 5, "stages": [
            {"duration": 10, "target": 300}, {"duration": 5, "target": 300}, {"duration": 10, "target": 0}
        ]}))
        .unwrap();
        let s = a.schedule();
        assert_eq!(a.duration_secs(), Some(25.0));
        assert!((s.count_by(10.0) - 2000.0).abs() < 1e-9);
        assert!((s.count_by(15.0) - 3500.0).abs() < 1e-9);
        assert!((s.count_by(25.0) - 5000.0).abs() < 1e-9);
        assert!((s.rate_at(5.0) - 200.0).abs() < 1e-9);
        for k in [1, 17, 1999, 2000, 2001, 3499, 3500, 4999] {
            let t = s.due(k).unwrap();
            assert!((s.count_by(t) - k as f64).abs() < 1e-6, "k={k} t={t}");
        }
        // After the last stage the rate is 0: nothing more is ever due.
        assert_eq!(s.due(5000), Some(25.0));
        assert_eq!(s.due(5001), None);
    }

    #[test]
    fn set_rate_keeps_what_was_due() {
        let mut s = Schedule::constant(10.0);
        s.set_rate(2.0, 100.0);
        assert!((s.count_by(2.0) - 20.0).abs() < 1e-9);
        assert!((s.due(120).unwrap() - 3.0).abs() < 1e-9);
        s.set_rate(3.0, 0.0);
        assert_eq!(s.due(121), None);
        assert_eq!(s.rate_at(10.0), 0.0);
    }

    #[test]
    fn bad_arrival_rates_name_their_key() {
        let cases = [
            (
                json!({"rate": 0, "max_cannons": 2}),
                "`arrival_rate.rate` must be a number of iterations per `per` above 0, got 0",
            ),
            (json!({"max_cannons": 2}), "`arrival_rate.rate` is missing"),
            (
                json!({"rate": 5, "max_cannons": 0}),
                "`arrival_rate.max_cannons` must be a whole number ≥ 1, got 0",
            ),
            (json!({"rate": 5}), "`arrival_rate.max_cannons` is missing"),
            (
                json!({"rate": 5, "max_cannons": 1, "per": 0}),
                "`arrival_rate.per` must be a positive number of seconds, got 0",
            ),
            (
                json!({"rate": 5, "max_cannons": 1, "stages": [{"duration": -1, "target": 3}]}),
                "`arrival_rate.stages[0].duration` must be a positive number of seconds, got -1",
            ),
            (
                json!({"max_cannons": 1, "stages": [{"duration": 1, "target": 0}]}),
                "`arrival_rate` never starts an iteration (every rate is 0)",
            ),
            (
                json!({"rate": 5, "max_cannons": 1, "vus": 3}),
                "`arrival_rate.vus` is not a key of arrival_rate (rate, per, max_cannons, stages)",
            ),
        ];
        for (v, want) in cases {
            assert_eq!(arrival(v.clone()).unwrap_err(), want, "{v}");
        }
    }
}
