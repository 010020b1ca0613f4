//! The load shape of a turret, as its entry in config.json (and so its packed config) states it,
//! read the same way by the HQ (to check it and to know how long it runs) and by the turret (to
//! run it): OCT's constant `cannons` with `rampup`, k6-style `stages`, Mozilla Loads' cycles
//! (`"cannons": "10:20:30"` with `cycle_time`), and `iterations` per canon.

use serde_json::{Map, Value};

use crate::arrival::Arrival;

/// One stage: the number of active canons moves in a line to `target` over `duration_secs`.
#[derive(Debug, Clone, PartialEq)]
pub struct Stage {
    pub duration_secs: f64,
    pub target: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Shape {
    /// OCT's: `cannons` canons, started evenly over `rampup` seconds, until `stop`.
    Constant { cannons: u64 },
    /// From 0, a line to each stage's target in turn; the last target holds until `stop`.
    Stages(Vec<Stage>),
    /// Loads' `--users 10:20:30`: each step for `cycle_secs`; the last holds until `stop`.
    Cycles { steps: Vec<u64>, cycle_secs: f64 },
    /// The open model: iterations start on a schedule, handed to a pool of canons.
    Arrival(Arrival),
}

/// A turret's shape and, optionally, how many iterations each canon runs before it is done.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub shape: Shape,
    pub iterations: Option<u64>,
}

/// What is wrong with a shape, and under which key of the turret entry.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("`{key}` {why}")]
pub struct ShapeError {
    pub key: String,
    pub why: String,
}

pub(crate) fn bad(key: impl Into<String>, why: impl Into<String>) -> ShapeError {
    ShapeError {
        key: key.into(),
        why: why.into(),
    }
}

pub(crate) fn whole(v: &Value, key: &str, min: u64) -> Result<u64, ShapeError> {
    match v.as_u64() {
        Some(n) if n >= min => Ok(n),
        _ => Err(bad(key, format!("must be a whole number ≥ {min}, got {v}"))),
    }
}

pub(crate) fn positive_secs(v: Option<&Value>, key: &str) -> Result<f64, ShapeError> {
    match v.and_then(Value::as_f64) {
        Some(s) if s > 0.0 && s.is_finite() => Ok(s),
        Some(_) => Err(bad(
            key,
            format!(
                "must be a positive number of seconds, got {}",
                v.unwrap_or(&Value::Null)
            ),
        )),
        None if v.is_none() => Err(bad(key, "is missing")),
        None => Err(bad(
            key,
            format!(
                "must be a number of seconds, got {}",
                v.unwrap_or(&Value::Null)
            ),
        )),
    }
}

impl Plan {
    /// Reads the shape keys of a turret entry; `key` prefixes the keys named in errors (e.g.
    /// `turrets[0]`). Cycles without `cycle_time` take `default_cycle_secs` (the HQ passes
    /// `run_time` split evenly) or are an error.
    pub fn from_entry(
        entry: &Map<String, Value>,
        key: &str,
        default_cycle_secs: Option<f64>,
    ) -> Result<Plan, ShapeError> {
        let k = |name: &str| {
            if key.is_empty() {
                name.to_owned()
            } else {
                format!("{key}.{name}")
            }
        };
        let cannons = match (entry.get("cannons"), entry.get("canons")) {
            (Some(_), Some(_)) => {
                return Err(bad(k("canons"), "and `cannons` are both given: they are one key (OCT spells it both ways); keep one"))
            }
            (Some(v), None) => Some((v, k("cannons"))),
            (None, Some(v)) => Some((v, k("canons"))),
            (None, None) => None,
        };
        if let Some(arrival) = crate::arrival::from_entry(entry, k)? {
            if let Some((_, ck)) = cannons {
                return Err(bad(
                    ck,
                    "cannot go with `arrival_rate`: its pool is `max_cannons` (keep one)",
                ));
            }
            return Ok(Plan {
                shape: Shape::Arrival(arrival),
                iterations: None,
            });
        }
        let iterations = entry
            .get("iterations")
            .map(|v| whole(v, &k("iterations"), 1))
            .transpose()?;
        if let Some(stages) = entry.get("stages") {
            let Value::Array(list) = stages else {
                return Err(bad(
                    k("stages"),
                    "must be a list of {\"duration\": seconds, \"target\": canons}",
                ));
            };
            if list.is_empty() {
                return Err(bad(k("stages"), "must hold at least one stage"));
            }
            let stages = list
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    let sk = k(&format!("stages[{i}]"));
                    let Value::Object(o) = s else {
                        return Err(bad(
                            &sk,
                            "must be {\"duration\": seconds, \"target\": canons}",
                        ));
                    };
                    let target = match o.get("target") {
                        Some(v) => whole(v, &format!("{sk}.target"), 0)?,
                        None => return Err(bad(format!("{sk}.target"), "is missing")),
                    };
                    Ok(Stage {
                        duration_secs: positive_secs(o.get("duration"), &format!("{sk}.duration"))?,
                        target,
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            if stages.iter().all(|s| s.target == 0) {
                return Err(bad(
                    k("stages"),
                    "never asks for a canon (every target is 0)",
                ));
            }
            return Ok(Plan {
                shape: Shape::Stages(stages),
                iterations,
            });
        }
        let Some((value, ck)) = cannons else {
            return Err(bad(k("cannons"), "is missing"));
        };
        let shape = match value {
            Value::String(text) if text.contains(':') => {
                let steps = text
                    .split(':')
                    .map(|p| p.trim().parse::<u64>().ok().filter(|n| *n >= 1))
                    .collect::<Option<Vec<u64>>>()
                    .ok_or_else(|| {
                        bad(&ck, format!("{text:?} must be canon counts ≥ 1 separated by `:`, as \"10:20:30\""))
                    })?;
                let cycle_secs = match (entry.get("cycle_time"), default_cycle_secs) {
                    (Some(v), _) => positive_secs(Some(v), &k("cycle_time"))?,
                    (None, Some(d)) => d / steps.len() as f64,
                    (None, None) => return Err(bad(k("cycle_time"), format!("is missing: `{ck}` {text:?} is a cycle"))),
                };
                Shape::Cycles { steps, cycle_secs }
            }
            Value::String(text) => Shape::Constant {
                cannons: text
                    .trim()
                    .parse::<u64>()
                    .ok()
                    .filter(|n| *n >= 1)
                    .ok_or_else(|| bad(&ck, format!("must be a whole number ≥ 1 or cycles as \"10:20:30\", got {text:?}")))?,
            },
            v => Shape::Constant {
                cannons: whole(v, &ck, 1)?,
            },
        };
        Ok(Plan { shape, iterations })
    }
}

impl Plan {
    /// The plan of a turret that follows the HQ's `load` commands (a global shape), from the
    /// `follow_load` the HQ wrote into its entry: `{"model": "closed" | "open", "pool": n}`.
    /// Closed: `pool` canons, none wanted until told; open: a pool of `pool` canons and a rate
    /// of 0 until told.
    pub fn following(v: &Value) -> Result<Plan, ShapeError> {
        let pool = v
            .get("pool")
            .map(|p| whole(p, "follow_load.pool", 1))
            .transpose()?
            .ok_or_else(|| bad("follow_load.pool", "is missing"))?;
        let shape = match v.get("model").and_then(Value::as_str) {
            Some("closed") => Shape::Constant { cannons: pool },
            Some("open") => Shape::Arrival(Arrival {
                rate: 0.0,
                stages: Vec::new(),
                max_cannons: pool,
            }),
            _ => return Err(bad("follow_load.model", "must be \"closed\" or \"open\"")),
        };
        Ok(Plan {
            shape,
            iterations: None,
        })
    }
}

impl Shape {
    /// The most canons it ever asks for: the pool a turret starts.
    pub fn pool(&self) -> u64 {
        match self {
            Shape::Constant { cannons } => *cannons,
            Shape::Stages(stages) => stages.iter().map(|s| s.target).max().unwrap_or(0),
            Shape::Cycles { steps, .. } => steps.iter().copied().max().unwrap_or(0),
            Shape::Arrival(a) => a.max_cannons,
        }
    }

    /// How long the shape runs before its last target holds; `None` for a constant one.
    pub fn duration_secs(&self) -> Option<f64> {
        match self {
            Shape::Constant { .. } => None,
            Shape::Stages(stages) => Some(stages.iter().map(|s| s.duration_secs).sum()),
            Shape::Cycles { steps, cycle_secs } => Some(steps.len() as f64 * cycle_secs),
            Shape::Arrival(a) => a.duration_secs(),
        }
    }

    /// Which stage (or cycle step) runs `secs` after the start, from 1, and how many there
    /// are; `None` for a shape without stages. Past the last, the last.
    pub fn stage_at(&self, secs: f64) -> Option<(usize, usize)> {
        let durations: Vec<f64> = match self {
            Shape::Constant { .. } => return None,
            Shape::Stages(stages) => stages.iter().map(|s| s.duration_secs).collect(),
            Shape::Cycles { steps, cycle_secs } => vec![*cycle_secs; steps.len()],
            Shape::Arrival(a) if a.stages.is_empty() => return None,
            Shape::Arrival(a) => a.stages.iter().map(|s| s.duration_secs).collect(),
        };
        let mut end = 0.0;
        for (i, d) in durations.iter().enumerate() {
            end += d;
            if secs < end {
                return Some((i + 1, durations.len()));
            }
        }
        Some((durations.len(), durations.len()))
    }

    /// Active canons wanted `secs` after the start (a constant shape, or an arrival rate whose
    /// pool takes what the schedule asks for: all of them).
    pub fn target_at(&self, secs: f64) -> u64 {
        match self {
            Shape::Constant { cannons } => *cannons,
            Shape::Arrival(a) => a.max_cannons,
            Shape::Stages(stages) => {
                let (mut from, mut start) = (0.0_f64, 0.0_f64);
                for s in stages {
                    if secs < start + s.duration_secs {
                        let f = ((secs - start) / s.duration_secs).clamp(0.0, 1.0);
                        return (from + (s.target as f64 - from) * f).round() as u64;
                    }
                    from = s.target as f64;
                    start += s.duration_secs;
                }
                from as u64
            }
            Shape::Cycles { steps, cycle_secs } => {
                let i = (secs.max(0.0) / cycle_secs) as usize;
                steps[i.min(steps.len() - 1)]
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn plan(v: Value) -> Result<Plan, String> {
        let Value::Object(m) = v else { unreachable!() };
        Plan::from_entry(&m, "turrets[0]", None).map_err(|e| e.to_string())
    }

    #[test]
    fn stages_follow_lines_between_targets_and_hold_the_last() {
        let p =
            plan(json!({"stages": [{"duration": 3, "target": 20}, {"duration": 3, "target": 0}]}))
                .unwrap();
        let s = &p.shape;
        let at: Vec<u64> = [0.0, 1.5, 3.0, 4.5, 6.0, 9.0]
            .iter()
            .map(|t| s.target_at(*t))
            .collect();
        assert_eq!(at, [0, 10, 20, 10, 0, 0]);
        assert_eq!((s.pool(), s.duration_secs()), (20, Some(6.0)));
        assert_eq!(
            [0.0, 2.9, 3.0, 60.0].map(|t| s.stage_at(t)),
            [Some((1, 2)), Some((1, 2)), Some((2, 2)), Some((2, 2))]
        );
    }

    #[test]
    fn cycles_step_and_constant_holds() {
        let p = plan(json!({"canons": "10:20:30", "cycle_time": 2})).unwrap();
        let at: Vec<u64> = [0.0, 1.9, 2.0, 5.9, 60.0]
            .iter()
            .map(|t| p.shape.target_at(*t))
            .collect();
        assert_eq!(at, [10, 10, 20, 30, 30]);
        assert_eq!(p.shape.pool(), 30);
        let Value::Object(m) = json!({"cannons": "1:2"}) else {
            unreachable!()
        };
        let d = Plan::from_entry(&m, "", Some(10.0)).unwrap();
        assert_eq!(
            d.shape,
            Shape::Cycles {
                steps: vec![1, 2],
                cycle_secs: 5.0
            }
        );
        let c = plan(json!({"cannons": 4, "iterations": 50})).unwrap();
        assert_eq!((c.shape.target_at(100.0), c.iterations), (4, Some(50)));
    }

    #[test]
    fn bad_shapes_name_their_key() {
        let cases = [
            (json!({"cannons": "10::20", "cycle_time": 1}), "`turrets[0].cannons` \"10::20\" must be canon counts ≥ 1 separated by `:`, as \"10:20:30\""),
            (json!({"cannons": "1:2"}), "`turrets[0].cycle_time` is missing: `turrets[0].cannons` \"1:2\" is a cycle"),
            (json!({"cannons": 2, "canons": 2}), "`turrets[0].canons` and `cannons` are both given: they are one key (OCT spells it both ways); keep one"),
            (json!({"stages": [{"duration": -3, "target": 2}]}), "`turrets[0].stages[0].duration` must be a positive number of seconds, got -3"),
            (json!({"stages": [{"target": 2}]}), "`turrets[0].stages[0].duration` is missing"),
            (json!({"stages": [{"duration": 1}]}), "`turrets[0].stages[0].target` is missing"),
            (json!({"stages": []}), "`turrets[0].stages` must hold at least one stage"),
            (json!({"stages": [{"duration": 1, "target": 0}]}), "`turrets[0].stages` never asks for a canon (every target is 0)"),
            (json!({"cannons": 2, "iterations": 0}), "`turrets[0].iterations` must be a whole number ≥ 1, got 0"),
            (json!({"rampup": 0}), "`turrets[0].cannons` is missing"),
        ];
        for (v, want) in cases {
            assert_eq!(plan(v.clone()).unwrap_err(), want, "{v}");
        }
    }
}
