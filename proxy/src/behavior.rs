//! Vaurien's behaviours, their options, and the mix a proxy draws from (`--behavior
//! 5:error,10:delay`: integer percentages, the rest `dummy`).

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{json, Value};

/// The behaviours, by Vaurien's names.
pub const NAMES: [&str; 6] = ["abort", "blackout", "delay", "dummy", "error", "hang"];

/// One behaviour with its options.
#[derive(Debug, Clone, PartialEq)]
pub enum Behavior {
    /// Forwards, unchanged.
    Dummy,
    /// Waits `sleep` before (or, `before: false`, after) the backend is called.
    Delay { sleep: Duration, before: bool },
    /// After `warmup` calls, answers with an error instead of the backend's answer: over HTTP a
    /// 5xx response (the request is not forwarded); over TCP random bytes (`inject`: mixed into
    /// the backend's real answer).
    Error { warmup: u64, inject: bool },
    /// Reads what the client sends, forwards it, and never answers (until `--timeout`).
    Hang,
    /// Closes the client's connection at once, reading nothing.
    Blackout,
    /// Reads what the client sends, then closes the connection without an answer.
    Abort,
}

/// A bad behaviour spec: what, and why (one line).
#[derive(Debug, Clone, PartialEq)]
pub struct BehaviorError(pub String);

impl std::fmt::Display for BehaviorError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn secs(name: &str, key: &str, v: &str) -> Result<Duration, BehaviorError> {
    v.trim()
        .parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(Duration::from_secs_f64)
        .ok_or_else(|| BehaviorError(format!("{name}: `{key}` must be seconds, not {v:?}")))
}

fn boolean(name: &str, key: &str, v: &str) -> Result<bool, BehaviorError> {
    match v.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(BehaviorError(format!(
            "{name}: `{key}` must be true or false, not {v:?}"
        ))),
    }
}

impl Behavior {
    /// `name` with `options` (text values, as on the command line or in JSON turned to text);
    /// an unknown name or option is an error naming it and what there is.
    pub fn build(
        name: &str,
        options: &BTreeMap<String, String>,
    ) -> Result<Behavior, BehaviorError> {
        let known: &[&str] = match name {
            "dummy" | "hang" | "blackout" | "abort" => &[],
            "delay" => &["sleep", "before"],
            "error" => &["warmup", "inject"],
            other => {
                return Err(BehaviorError(format!(
                    "unknown behavior {other:?}; the behaviors are {}",
                    NAMES.join(", ")
                )))
            }
        };
        for k in options.keys() {
            if !known.contains(&k.as_str()) {
                return Err(BehaviorError(format!(
                    "{name}: no option {k:?}{}",
                    if known.is_empty() {
                        " (it has none)".to_owned()
                    } else {
                        format!(" (it has {})", known.join(", "))
                    }
                )));
            }
        }
        let opt = |k: &str| options.get(k).map(String::as_str);
        Ok(match name {
            "dummy" => Behavior::Dummy,
            "hang" => Behavior::Hang,
            "blackout" => Behavior::Blackout,
            "abort" => Behavior::Abort,
            "delay" => Behavior::Delay {
                sleep: opt("sleep")
                    .map_or(Ok(Duration::from_secs(1)), |v| secs(name, "sleep", v))?,
                before: opt("before").map_or(Ok(true), |v| boolean(name, "before", v))?,
            },
            _ => Behavior::Error {
                warmup: match opt("warmup") {
                    None => 0,
                    Some(v) => v.trim().parse().map_err(|_| {
                        BehaviorError(format!("error: `warmup` must be a whole number, not {v:?}"))
                    })?,
                },
                inject: opt("inject").map_or(Ok(false), |v| boolean(name, "inject", v))?,
            },
        })
    }

    pub fn name(&self) -> &'static str {
        match self {
            Behavior::Dummy => "dummy",
            Behavior::Delay { .. } => "delay",
            Behavior::Error { .. } => "error",
            Behavior::Hang => "hang",
            Behavior::Blackout => "blackout",
            Behavior::Abort => "abort",
        }
    }

    /// Its name and options, as `GET /behavior` details them.
    pub fn json(&self) -> Value {
        match self {
            Behavior::Delay { sleep, before } => {
                json!({"name": "delay", "sleep": sleep.as_secs_f64(), "before": before})
            }
            Behavior::Error { warmup, inject } => {
                json!({"name": "error", "warmup": warmup, "inject": inject})
            }
            b => json!({"name": b.name()}),
        }
    }
}

/// What a proxy draws from for each request (or chunk): behaviours with their percentages,
/// `dummy` for the rest.
#[derive(Debug, Clone, PartialEq)]
pub struct Mix(pub Vec<(u32, Behavior)>);

impl Mix {
    pub fn one(b: Behavior) -> Mix {
        Mix(vec![(100, b)])
    }

    /// `--behavior 5:error,10:delay` with each behaviour's options from `options[name]`.
    pub fn parse(
        spec: &str,
        options: &BTreeMap<String, BTreeMap<String, String>>,
    ) -> Result<Mix, BehaviorError> {
        let mut out = Vec::new();
        let mut total = 0u32;
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (pct, name) = match part.split_once(':') {
                Some((p, n)) => (p.trim(), n.trim()),
                None => ("100", part),
            };
            let pct: u32 = pct.parse().map_err(|_| {
                BehaviorError(format!(
                    "--behavior {spec:?}: {pct:?} is not a whole percentage"
                ))
            })?;
            total += pct;
            let empty = BTreeMap::new();
            out.push((
                pct,
                Behavior::build(name, options.get(name).unwrap_or(&empty))?,
            ));
        }
        if total > 100 {
            return Err(BehaviorError(format!(
                "--behavior {spec:?}: the percentages add up to {total}, over 100"
            )));
        }
        for name in options.keys() {
            if !out.iter().any(|(_, b)| b.name() == name) {
                return Err(BehaviorError(format!(
                    "--behavior-{name}-…: {name:?} is not in --behavior {spec:?}"
                )));
            }
        }
        Ok(Mix(out))
    }

    /// The behaviour for a draw `r` in 0..100.
    pub fn pick(&self, r: u32) -> &Behavior {
        let mut acc = 0;
        for (pct, b) in &self.0 {
            acc += pct;
            if r < acc {
                return b;
            }
        }
        &Behavior::Dummy
    }

    /// The name `GET /behavior` answers: the one behaviour, or the spec of a mix.
    pub fn name(&self) -> String {
        match self.0.as_slice() {
            [] => "dummy".into(),
            [(100, b)] => b.name().into(),
            many => many
                .iter()
                .map(|(p, b)| format!("{p}:{}", b.name()))
                .collect::<Vec<_>>()
                .join(","),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(pairs: &[(&str, &str, &str)]) -> BTreeMap<String, BTreeMap<String, String>> {
        let mut m: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        for (b, k, v) in pairs {
            m.entry(b.to_string())
                .or_default()
                .insert(k.to_string(), v.to_string());
        }
        m
    }

    #[test]
    fn a_mix_draws_by_percentage_and_the_rest_is_dummy() {
        let m = Mix::parse("5:error,10:delay", &opts(&[("delay", "sleep", "0.25")])).unwrap();
        assert_eq!(m.pick(0).name(), "error");
        assert_eq!(m.pick(4).name(), "error");
        assert_eq!(
            m.pick(5),
            &Behavior::Delay {
                sleep: Duration::from_millis(250),
                before: true
            }
        );
        assert_eq!(m.pick(15).name(), "dummy");
        assert_eq!(m.name(), "5:error,10:delay");
        assert_eq!(
            Mix::parse("delay", &BTreeMap::new()).unwrap().name(),
            "delay"
        );
    }

    #[test]
    fn bad_specs_name_what_is_wrong() {
        for (spec, o, want) in [
            ("60:error,50:delay", opts(&[]), "add up to 110, over 100"),
            (
                "5:boom",
                opts(&[]),
                "unknown behavior \"boom\"; the behaviors are abort, blackout",
            ),
            ("x:error", opts(&[]), "\"x\" is not a whole percentage"),
            (
                "10:delay",
                opts(&[("delay", "slep", "1")]),
                "delay: no option \"slep\" (it has sleep, before)",
            ),
            (
                "10:delay",
                opts(&[("delay", "sleep", "soon")]),
                "delay: `sleep` must be seconds",
            ),
            (
                "10:delay",
                opts(&[("error", "warmup", "2")]),
                "\"error\" is not in --behavior",
            ),
        ] {
            let e = Mix::parse(spec, &o).unwrap_err().0;
            assert!(e.contains(want), "{spec}: {e}");
        }
    }
}
