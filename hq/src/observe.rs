//! Observers (config.json `observers`, Mozilla Loads' observers): who is told when a test ends
//! or something happens in it — a webhook (a JSON POST) or a command (the JSON on its stdin).
//!
//! Events: `finish` (the test ended: summary.json, or the run's numbers without a report),
//! `threshold_failed` (the gate failed: the failed thresholds), `turret_lost` (a turret fell
//! silent mid-run). Each delivery runs on a thread of its own with a timeout and a few retries,
//! so an observer that is slow, down or failing never holds up or fails the run: it is logged.
//! [`Observers::wait`] gives deliveries still under way a bounded time before the HQ exits.

use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// What observers can be told of.
pub const EVENTS: [&str; 3] = ["finish", "threshold_failed", "turret_lost"];

#[derive(Debug, Clone, PartialEq)]
enum Kind {
    Webhook { url: String },
    Command { run: String },
}

#[derive(Debug, Clone, PartialEq)]
struct Observer {
    kind: Kind,
    on: Vec<String>,
    timeout: Duration,
    retries: u32,
}

/// The configured observers and the deliveries under way.
#[derive(Debug, Default, Clone)]
pub struct Observers {
    list: Vec<Observer>,
    pending: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl PartialEq for Observers {
    fn eq(&self, other: &Self) -> bool {
        self.list == other.list
    }
}

/// A bad `observers` entry: which key, and why.
#[derive(Debug)]
pub struct ObserverError {
    pub key: String,
    pub why: String,
}

impl Observers {
    /// Reads config.json's `observers`: a list of `{"type": "webhook", "url": "http(s)://…"}` or
    /// `{"type": "command", "run": "…"}`, each with optional `on` (default `["finish"]`),
    /// `timeout` (seconds, default 10) and `retries` (default 2).
    pub fn parse(v: Option<&Value>) -> Result<Observers, ObserverError> {
        let Some(v) = v else {
            return Ok(Observers::default());
        };
        let bad = |key: String, why: &str| ObserverError {
            key,
            why: why.to_owned(),
        };
        let Value::Array(items) = v else {
            return Err(bad("observers".into(), "must be a list of observers"));
        };
        let mut list = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let key = |k: &str| format!("observers[{i}].{k}");
            let Value::Object(o) = item else {
                return Err(bad(
                    format!("observers[{i}]"),
                    "must be an object with a `type`",
                ));
            };
            for k in o.keys() {
                if !["type", "url", "run", "on", "timeout", "retries"].contains(&k.as_str()) {
                    return Err(bad(
                        key(k),
                        "is not an observer key (type, url, run, on, timeout, retries)",
                    ));
                }
            }
            let text = |k: &str| match o.get(k) {
                Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.clone()),
                _ => Err(bad(key(k), "must be a non-empty string")),
            };
            let kind = match o.get("type").and_then(Value::as_str) {
                Some("webhook") => {
                    let url = text("url")?;
                    if !(url.starts_with("http://") || url.starts_with("https://")) {
                        return Err(bad(key("url"), "must be an http:// or https:// URL"));
                    }
                    Kind::Webhook { url }
                }
                Some("command") => Kind::Command { run: text("run")? },
                _ => return Err(bad(key("type"), "must be \"webhook\" or \"command\"")),
            };
            let on = match o.get("on") {
                None => vec!["finish".to_owned()],
                Some(Value::Array(a)) if !a.is_empty() => {
                    let mut on = Vec::new();
                    for e in a {
                        match e.as_str() {
                            Some(s) if EVENTS.contains(&s) => on.push(s.to_owned()),
                            _ => {
                                return Err(bad(
                                    key("on"),
                                    "lists events among finish, threshold_failed, turret_lost",
                                ))
                            }
                        }
                    }
                    on
                }
                Some(_) => return Err(bad(
                    key("on"),
                    "must be a non-empty list of events (finish, threshold_failed, turret_lost)",
                )),
            };
            let timeout = match o.get("timeout") {
                None => Duration::from_secs(10),
                Some(t) => match t.as_f64() {
                    Some(s) if s > 0.0 && s <= 600.0 => Duration::from_secs_f64(s),
                    _ => {
                        return Err(bad(
                            key("timeout"),
                            "must be seconds, above 0 and at most 600",
                        ))
                    }
                },
            };
            let retries = match o.get("retries") {
                None => 2,
                Some(r) => match r.as_u64() {
                    Some(n) if n <= 10 => n as u32,
                    _ => return Err(bad(key("retries"), "must be a whole number from 0 to 10")),
                },
            };
            list.push(Observer {
                kind,
                on,
                timeout,
                retries,
            });
        }
        Ok(Observers {
            list,
            pending: Arc::default(),
        })
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Tells every observer of `event` about it, each on a thread of its own; returns at once.
    /// `body` is what is sent: for `finish` summary.json itself, else `{"event": …, …}`.
    pub fn notify(&self, event: &str, body: &Value) {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        pending.retain(|h| !h.is_finished());
        for o in self.list.iter().filter(|o| o.on.iter().any(|e| e == event)) {
            let (o, name, text) = (o.clone(), event.to_owned(), body.to_string());
            let spawned = std::thread::Builder::new()
                .name(format!("observer-{event}"))
                .spawn(move || deliver(&o, &name, &text));
            match spawned {
                Ok(h) => pending.push(h),
                Err(e) => eprintln!("oct: observer: could not start a delivery of {event}: {e}"),
            }
        }
    }

    /// Waits for deliveries under way, at most `limit`; says what it gave up on.
    pub fn wait(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        let pending: Vec<JoinHandle<()>> =
            std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()));
        let mut left = 0;
        for h in pending {
            while !h.is_finished() && Instant::now() < deadline {
                std::thread::park_timeout(Duration::from_millis(20));
            }
            if h.is_finished() {
                let _ = h.join();
            } else {
                left += 1;
            }
        }
        if left > 0 {
            eprintln!("oct: observer: {left} delivery(ies) still under way after {limit:?}; not waiting longer");
        }
    }

    /// The longest one delivery may take, retries included: what [`Observers::wait`] allows.
    pub fn longest(&self) -> Duration {
        self.list
            .iter()
            .map(|o| o.timeout * (o.retries + 1) + Duration::from_millis(500) * o.retries)
            .max()
            .unwrap_or_default()
    }
}

/// The body of an event other than `finish`.
pub fn event(name: &str, fields: Value) -> Value {
    let mut v = json!({"event": name, "time": chrono::Local::now().to_rfc3339()});
    if let (Value::Object(m), Value::Object(f)) = (&mut v, fields) {
        m.extend(f);
    }
    v
}

/// The end of a test for config.json's `observers`: `threshold_failed` with what failed, then
/// `finish` with summary.json (or, without a report, the run's numbers). Waits a bounded time
/// for their deliveries, which never change the exit code.
pub fn at_end(
    c: &crate::Config,
    results_dir: &std::path::Path,
    summary: &crate::summary::Summary,
    outcomes: &[crate::gate::Outcome],
    code: u8,
) {
    let observers = &c.observers;
    if observers.is_empty() {
        return;
    }
    if code == crate::gate::FAILED_EXIT {
        let failed: Vec<Value> = outcomes
            .iter()
            .filter(|o| !o.passed)
            .map(|o| {
                json!({"key": o.key, "threshold": o.threshold,
                    "observed": o.observed.map(|x| o.shown(x))})
            })
            .collect();
        observers.notify(
            "threshold_failed",
            &event(
                "threshold_failed",
                json!({"failed": failed, "aborted_by": summary.aborted_by}),
            ),
        );
    }
    let written = std::fs::read_to_string(results_dir.join("summary.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<Value>(&t).ok());
    let body = written.unwrap_or_else(|| {
        event(
            "finish",
            json!({
                "transactions": summary.transactions,
                "errors": summary.errors,
                "database": summary.database,
                "exit_code": code,
            }),
        )
    });
    observers.notify("finish", &body);
    observers.wait(observers.longest());
}

fn deliver(o: &Observer, event: &str, body: &str) {
    let what = match &o.kind {
        Kind::Webhook { url } => format!("webhook {url}"),
        Kind::Command { run } => format!("command `{run}`"),
    };
    let mut last = String::new();
    for attempt in 0..=o.retries {
        if attempt > 0 {
            std::thread::sleep(Duration::from_millis(500) * attempt);
        }
        let result = match &o.kind {
            Kind::Webhook { url } => post(url, event, body, o.timeout),
            Kind::Command { run } => command(run, event, body, o.timeout),
        };
        match result {
            Ok(()) => return,
            Err(e) => last = e,
        }
    }
    eprintln!(
        "oct: observer {what} failed on {event} after {} attempt(s): {last}",
        o.retries + 1
    );
}

fn post(url: &str, event: &str, body: &str, timeout: Duration) -> Result<(), String> {
    let agent = ureq::AgentBuilder::new().timeout(timeout).build();
    match agent
        .post(url)
        .set("Content-Type", "application/json")
        .set("X-Oct-Event", event)
        .set("User-Agent", concat!("oct/", env!("CARGO_PKG_VERSION")))
        .send_string(body)
    {
        Ok(_) => Ok(()),
        Err(ureq::Error::Status(code, _)) => Err(format!("answered {code}")),
        Err(e) => Err(e.to_string()),
    }
}

/// Runs `sh -c run` with the event's JSON on its stdin and `OCT_EVENT` set; killed at `timeout`.
fn command(run: &str, event: &str, body: &str, timeout: Duration) -> Result<(), String> {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new("sh")
        .args(["-c", run])
        .env("OCT_EVENT", event)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| format!("starting it: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A command that does not read its input is no failure.
        let _ = stdin.write_all(body.as_bytes());
    }
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(s)) if s.success() => return Ok(()),
            Ok(Some(s)) => return Err(format!("exited with {s}")),
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("still running after {timeout:?}; killed"));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: Value) -> Result<Observers, String> {
        Observers::parse(Some(&v)).map_err(|e| format!("{}: {}", e.key, e.why))
    }

    #[test]
    fn reads_webhooks_and_commands_with_defaults() {
        let o = parse(json!([
            {"type": "webhook", "url": "http://127.0.0.1:9/hook"},
            {"type": "command", "run": "cat", "on": ["turret_lost", "finish"], "timeout": 2, "retries": 0},
        ]))
        .unwrap();
        assert_eq!(o.list[0].on, ["finish"]);
        assert_eq!(
            (o.list[0].timeout, o.list[0].retries),
            (Duration::from_secs(10), 2)
        );
        assert_eq!(o.list[1].kind, Kind::Command { run: "cat".into() });
        assert_eq!(o.longest(), Duration::from_secs(31));
    }

    #[test]
    fn bad_entries_name_their_key() {
        for (v, want) in [
            (json!({}), "observers: must be a list"),
            (
                json!([{"type": "pager"}]),
                "observers[0].type: must be \"webhook\" or \"command\"",
            ),
            (
                json!([{"type": "webhook"}]),
                "observers[0].url: must be a non-empty string",
            ),
            (
                json!([{"type": "webhook", "url": "ftp://x"}]),
                "observers[0].url: must be an http",
            ),
            (
                json!([{"type": "command", "run": "x", "on": ["start"]}]),
                "observers[0].on: lists events",
            ),
            (
                json!([{"type": "command", "run": "x", "timeout": 0}]),
                "observers[0].timeout",
            ),
            (
                json!([{"type": "command", "run": "x", "retries": 11}]),
                "observers[0].retries",
            ),
            (
                json!([{"type": "command", "run": "x", "when": 1}]),
                "observers[0].when: is not an observer key",
            ),
        ] {
            let e = parse(v).unwrap_err();
            assert!(e.starts_with(want), "{e}");
        }
    }

    #[test]
    fn a_failing_command_is_retried_then_given_up_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        let o = parse(
            json!([{"type": "command", "on": ["turret_lost"], "retries": 1, "timeout": 5,
            "run": format!("cat >> {}; echo >> {}; exit 3", log.display(), log.display())}]),
        )
        .unwrap();
        let t0 = Instant::now();
        o.notify(
            "turret_lost",
            &event("turret_lost", json!({"turret": "t1"})),
        );
        o.notify("finish", &json!({}));
        assert!(t0.elapsed() < Duration::from_secs(1));
        o.wait(Duration::from_secs(20));
        let text = std::fs::read_to_string(&log).unwrap();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert_eq!(lines[0]["event"], "turret_lost");
        assert_eq!(lines[0]["turret"], "t1");
    }
}
