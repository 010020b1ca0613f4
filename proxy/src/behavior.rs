//! The behaviours — Vaurien's, with their options and semantics, and toxiproxy's faults that
//! Vaurien lacked — and the mix a proxy draws from (`--behavior 5:error,10:delay`: integer
//! percentages, the rest `dummy`).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Map, Value};

/// The behaviours, by name (Vaurien's and toxiproxy's), in the order the stats index them.
pub const NAMES: [&str; 13] = [
    "abort",
    "bandwidth",
    "blackout",
    "delay",
    "dummy",
    "error",
    "hang",
    "latency",
    "limit_data",
    "reset_peer",
    "slow_close",
    "timeout",
    "transient",
];

/// Which way a fault acts: on what the client sends (`upstream`), on what comes back
/// (`downstream`, toxiproxy's default), or both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Up,
    Down,
    Both,
}

impl Stream {
    pub fn up(self) -> bool {
        self != Stream::Down
    }
    pub fn down(self) -> bool {
        self != Stream::Up
    }
    fn name(self) -> &'static str {
        match self {
            Stream::Up => "upstream",
            Stream::Down => "downstream",
            Stream::Both => "both",
        }
    }
}

/// One behaviour with its options.
#[derive(Debug, Clone, PartialEq)]
pub enum Behavior {
    /// Forwards, unchanged.
    Dummy,
    /// Waits `sleep` before (or, `before: false`, after) the backend is called.
    Delay { sleep: Duration, before: bool },
    /// After `warmup` of its calls, answers with an error instead of the backend's answer: over
    /// HTTP a 5xx response (the request not forwarded), elsewhere random bytes (`inject`: the
    /// request is forwarded and the backend's real answer corrupted).
    Error { warmup: u64, inject: bool },
    /// `error` on its first `agitate` calls, then success: a failure that goes away.
    Transient { agitate: u64, inject: bool },
    /// Forwards what the client sends and never answers, until `--timeout`.
    Hang,
    /// Closes the client's connection at once.
    Blackout,
    /// Reads what the client sends, then closes the connection without an answer.
    Abort,
    /// toxiproxy's `latency`: `latency` ± up to `jitter` (uniform), on `stream`.
    Latency {
        latency: Duration,
        jitter: Duration,
        stream: Stream,
    },
    /// toxiproxy's `bandwidth`: at most `rate` bytes a second on `stream`.
    Bandwidth { rate: u64, stream: Stream },
    /// toxiproxy's `reset_peer`: after `timeout`, the connection is reset (RST, not FIN).
    ResetPeer { timeout: Duration },
    /// toxiproxy's `slow_close`: the call is served, then the connection is closed `delay` later.
    SlowClose { delay: Duration },
    /// toxiproxy's `limit_data`: the connection is closed once `bytes` have passed on `stream`.
    LimitData { bytes: u64, stream: Stream },
    /// toxiproxy's `timeout`: nothing passes, and the connection is closed after `timeout`
    /// (0: at `--timeout`).
    Timeout { timeout: Duration },
}

/// A bad behaviour spec: what, and why (one line).
#[derive(Debug, Clone, PartialEq)]
pub struct BehaviorError(pub String);

impl std::fmt::Display for BehaviorError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Each behaviour's options (name, what it is); the units are Vaurien's (seconds) for Vaurien's
/// behaviours and toxiproxy's (milliseconds, KB/s, bytes) for toxiproxy's.
pub fn options_of(name: &str) -> Option<&'static [&'static str]> {
    Some(match name {
        "dummy" | "hang" | "blackout" | "abort" => &[],
        "delay" => &["sleep", "before"],
        "error" => &["warmup", "inject"],
        "transient" => &["agitate", "warmup", "inject"],
        "latency" => &["latency", "jitter", "stream"],
        "bandwidth" => &["rate", "stream"],
        "reset_peer" => &["timeout"],
        "slow_close" => &["delay"],
        "limit_data" => &["bytes", "stream"],
        "timeout" => &["timeout"],
        _ => return None,
    })
}

struct Opts<'a> {
    name: &'a str,
    map: &'a BTreeMap<String, String>,
}

impl Opts<'_> {
    fn bad(&self, key: &str, want: &str, v: &str) -> BehaviorError {
        BehaviorError(format!("{}: `{key}` must be {want}, not {v:?}", self.name))
    }
    fn number(&self, key: &str, default: f64, want: &str) -> Result<f64, BehaviorError> {
        match self.map.get(key) {
            None => Ok(default),
            Some(v) => v
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|s| s.is_finite() && *s >= 0.0)
                .ok_or_else(|| self.bad(key, want, v)),
        }
    }
    fn secs(&self, key: &str, default: f64) -> Result<Duration, BehaviorError> {
        self.number(key, default, "seconds")
            .map(Duration::from_secs_f64)
    }
    fn millis(&self, key: &str, default: f64) -> Result<Duration, BehaviorError> {
        self.number(key, default, "milliseconds")
            .map(|ms| Duration::from_secs_f64(ms / 1000.0))
    }
    fn whole(&self, key: &str, default: u64) -> Result<u64, BehaviorError> {
        match self.map.get(key) {
            None => Ok(default),
            Some(v) => v
                .trim()
                .parse()
                .map_err(|_| self.bad(key, "a whole number", v)),
        }
    }
    fn boolean(&self, key: &str, default: bool) -> Result<bool, BehaviorError> {
        match self
            .map
            .get(key)
            .map(|v| (v, v.trim().to_ascii_lowercase()))
        {
            None => Ok(default),
            Some((_, t)) if ["true", "1", "yes", "on"].contains(&t.as_str()) => Ok(true),
            Some((_, t)) if ["false", "0", "no", "off"].contains(&t.as_str()) => Ok(false),
            Some((v, _)) => Err(self.bad(key, "true or false", v)),
        }
    }
    fn stream(&self) -> Result<Stream, BehaviorError> {
        match self.map.get("stream").map(|s| s.trim()) {
            None | Some("downstream") => Ok(Stream::Down),
            Some("upstream") => Ok(Stream::Up),
            Some("both") => Ok(Stream::Both),
            Some(v) => Err(self.bad("stream", "upstream, downstream or both", v)),
        }
    }
}

impl Behavior {
    /// `name` with `options` (text values, as on the command line or in JSON turned to text);
    /// an unknown name or option is an error naming it and what there is.
    pub fn build(
        name: &str,
        options: &BTreeMap<String, String>,
    ) -> Result<Behavior, BehaviorError> {
        let Some(known) = options_of(name) else {
            return Err(BehaviorError(format!(
                "unknown behavior {name:?}; the behaviors are {}",
                NAMES.join(", ")
            )));
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
        let o = Opts { name, map: options };
        Ok(match name {
            "dummy" => Behavior::Dummy,
            "hang" => Behavior::Hang,
            "blackout" => Behavior::Blackout,
            "abort" => Behavior::Abort,
            "delay" => Behavior::Delay {
                sleep: o.secs("sleep", 1.0)?,
                before: o.boolean("before", true)?,
            },
            "error" => Behavior::Error {
                warmup: o.whole("warmup", 0)?,
                inject: o.boolean("inject", false)?,
            },
            "transient" => Behavior::Transient {
                agitate: o.whole("agitate", 1)?,
                inject: o.boolean("inject", false)?,
            },
            "latency" => Behavior::Latency {
                latency: o.millis("latency", 0.0)?,
                jitter: o.millis("jitter", 0.0)?,
                stream: o.stream()?,
            },
            "bandwidth" => Behavior::Bandwidth {
                rate: (o.number("rate", 0.0, "KB per second")? * 1000.0) as u64,
                stream: o.stream()?,
            },
            "reset_peer" => Behavior::ResetPeer {
                timeout: o.millis("timeout", 0.0)?,
            },
            "slow_close" => Behavior::SlowClose {
                delay: o.millis("delay", 0.0)?,
            },
            "limit_data" => Behavior::LimitData {
                bytes: o.whole("bytes", 0)?,
                stream: o.stream()?,
            },
            _ => Behavior::Timeout {
                timeout: o.millis("timeout", 0.0)?,
            },
        })
    }

    pub fn name(&self) -> &'static str {
        NAMES[self.index()]
    }

    /// Its place in `NAMES`.
    pub fn index(&self) -> usize {
        match self {
            Behavior::Abort => 0,
            Behavior::Bandwidth { .. } => 1,
            Behavior::Blackout => 2,
            Behavior::Delay { .. } => 3,
            Behavior::Dummy => 4,
            Behavior::Error { .. } => 5,
            Behavior::Hang => 6,
            Behavior::Latency { .. } => 7,
            Behavior::LimitData { .. } => 8,
            Behavior::ResetPeer { .. } => 9,
            Behavior::SlowClose { .. } => 10,
            Behavior::Timeout { .. } => 11,
            Behavior::Transient { .. } => 12,
        }
    }

    /// Its name and options, as `GET /behavior` details them (in the units they are given in).
    pub fn json(&self) -> Value {
        let ms = |d: &Duration| d.as_secs_f64() * 1000.0;
        let mut v = match self {
            Behavior::Delay { sleep, before } => {
                json!({"sleep": sleep.as_secs_f64(), "before": before})
            }
            Behavior::Error { warmup, inject } => json!({"warmup": warmup, "inject": inject}),
            Behavior::Transient { agitate, inject } => {
                json!({"agitate": agitate, "inject": inject})
            }
            Behavior::Latency {
                latency,
                jitter,
                stream,
            } => {
                json!({"latency": ms(latency), "jitter": ms(jitter), "stream": stream.name()})
            }
            Behavior::Bandwidth { rate, stream } => {
                json!({"rate": *rate as f64 / 1000.0, "stream": stream.name()})
            }
            Behavior::ResetPeer { timeout } | Behavior::Timeout { timeout } => {
                json!({"timeout": ms(timeout)})
            }
            Behavior::SlowClose { delay } => json!({"delay": ms(delay)}),
            Behavior::LimitData { bytes, stream } => {
                json!({"bytes": bytes, "stream": stream.name()})
            }
            _ => Value::Object(Map::new()),
        };
        v["name"] = json!(self.name());
        v
    }
}

/// A behaviour as the relay applies it on one call: `error` and `transient` already decided by
/// their call counts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Drawn<'a> {
    Pass(&'a Behavior),
    /// An error answer; `of` is the behaviour that drew it (`error` or `transient`).
    Fail {
        inject: bool,
        of: &'a Behavior,
    },
}

impl Drawn<'_> {
    /// The behaviour the call is counted under.
    pub fn behavior(&self) -> &Behavior {
        match self {
            Drawn::Pass(b) | Drawn::Fail { of: b, .. } => b,
        }
    }
}

/// What a proxy draws from for each call: behaviours with their percentages, `dummy` for the
/// rest; each part counts its own calls (for `warmup` and `agitate`).
#[derive(Debug, Clone)]
pub struct Mix {
    pub parts: Vec<(u32, Behavior)>,
    calls: Arc<Vec<AtomicU64>>,
}

impl PartialEq for Mix {
    fn eq(&self, other: &Mix) -> bool {
        self.parts == other.parts
    }
}

static DUMMY: Behavior = Behavior::Dummy;

impl Mix {
    pub fn new(parts: Vec<(u32, Behavior)>) -> Mix {
        let calls = Arc::new(parts.iter().map(|_| AtomicU64::new(0)).collect());
        Mix { parts, calls }
    }

    pub fn one(b: Behavior) -> Mix {
        Mix::new(vec![(100, b)])
    }

    pub fn dummy() -> Mix {
        Mix::new(Vec::new())
    }

    /// `--behavior 5:error,10:delay` with each behaviour's options from `options[name]`; an
    /// option for a behaviour the spec does not name is an error.
    pub fn parse(
        spec: &str,
        options: &BTreeMap<String, BTreeMap<String, String>>,
    ) -> Result<Mix, BehaviorError> {
        let mix = Mix::parse_spec(spec, options)?;
        for name in options.keys() {
            if !mix.parts.iter().any(|(_, b)| b.name() == name) {
                return Err(BehaviorError(format!(
                    "--behavior-{name}-…: {name:?} is not in --behavior {spec:?}"
                )));
            }
        }
        Ok(mix)
    }

    /// As `parse`, options for other behaviours ignored (one set of options, several mixes).
    pub fn parse_spec(
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
        Ok(Mix::new(out))
    }

    /// The behaviour for a draw `r` in 0..100.
    pub fn pick(&self, r: u32) -> &Behavior {
        self.slot(r).map_or(&DUMMY, |i| &self.parts[i].1)
    }

    fn slot(&self, r: u32) -> Option<usize> {
        let mut acc = 0;
        for (i, (pct, _)) in self.parts.iter().enumerate() {
            acc += pct;
            if r < acc {
                return Some(i);
            }
        }
        None
    }

    /// The behaviour for a draw `r` in 0..100, its call counted.
    pub fn draw(&self, r: u32) -> Drawn<'_> {
        let Some(i) = self.slot(r) else {
            return Drawn::Pass(&DUMMY);
        };
        let nth = self.calls[i].fetch_add(1, Ordering::Relaxed);
        match &self.parts[i].1 {
            b @ Behavior::Error { warmup, inject } if nth >= *warmup => Drawn::Fail {
                inject: *inject,
                of: b,
            },
            b @ Behavior::Transient { agitate, inject } if nth < *agitate => Drawn::Fail {
                inject: *inject,
                of: b,
            },
            b => Drawn::Pass(b),
        }
    }

    /// The name `GET /behavior` answers: the one behaviour, or the spec of a mix.
    pub fn name(&self) -> String {
        match self.parts.as_slice() {
            [] => "dummy".into(),
            [(100, b)] => b.name().into(),
            many => many
                .iter()
                .map(|(p, b)| format!("{p}:{}", b.name()))
                .collect::<Vec<_>>()
                .join(","),
        }
    }

    /// Each part's behaviour and options with its percentage.
    pub fn details(&self) -> Vec<Value> {
        self.parts
            .iter()
            .map(|(p, b)| {
                let mut v = b.json();
                v["percent"] = json!(p);
                v
            })
            .collect()
    }
}

#[cfg(test)]
mod tests;
