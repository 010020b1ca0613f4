//! A load test's chaos (config.json `"chaos"`): `oct proxy`'s proxies started inside the HQ
//! before the turrets are, a schedule of faults applied on the test's clock (`at` seconds after
//! the start, for `for` seconds, then the proxy's own behaviour again), and the fault windows
//! recorded: results.sqlite's `oct_chaos`, summary.json's `chaos`, a band on every graph.
//!
//! ```json
//! "chaos": {"proxies": [{"name": "db", "listen": "127.0.0.1:7000", "backend": "127.0.0.1:6379",
//!                        "protocol": "redis"}],
//!           "schedule": [{"at": 10, "for": 5, "proxy": "db", "behavior": "delay", "sleep": 0.2}]}
//! ```

use std::collections::BTreeMap;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use serde_json::{json, Map, Value};

/// A bad `chaos` key, and why.
#[derive(Debug)]
pub struct ChaosError {
    pub key: String,
    pub why: String,
}

/// The proxies and the schedule, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Chaos {
    pub proxies: Vec<proxy::Spec>,
    pub schedule: Vec<Fault>,
}

/// One scheduled fault.
#[derive(Debug, Clone, PartialEq)]
pub struct Fault {
    pub at: f64,
    pub secs: f64,
    pub proxy: String,
    /// The behaviour (or mix) as written, and its options as given.
    pub behavior: String,
    pub options: Map<String, Value>,
    pub mix: proxy::Mix,
}

impl Chaos {
    pub fn parse(v: &Value) -> Result<Chaos, ChaosError> {
        let bad = |key: String, why: String| ChaosError { key, why };
        let o = v.as_object().ok_or_else(|| {
            bad(
                "chaos".into(),
                "must be {\"proxies\": […], \"schedule\": […]}".into(),
            )
        })?;
        if let Some(k) = o
            .keys()
            .find(|k| !["proxies", "schedule"].contains(&k.as_str()))
        {
            return Err(bad(
                format!("chaos.{k}"),
                "is not a chaos key (proxies, schedule)".into(),
            ));
        }
        let list = |k: &str| match o.get(k) {
            None => Ok(Vec::new()),
            Some(Value::Array(a)) => Ok(a.clone()),
            Some(_) => Err(bad(format!("chaos.{k}"), "must be a list".into())),
        };
        let mut proxies: Vec<proxy::Spec> = Vec::new();
        for (i, p) in list("proxies")?.iter().enumerate() {
            let key = format!("chaos.proxies[{i}]");
            let spec =
                proxy::config::json_proxy(&key, p, Duration::from_secs(30)).map_err(|e| {
                    bad(
                        key.clone(),
                        e.trim_start_matches(&key)
                            .trim_start_matches(": ")
                            .to_owned(),
                    )
                })?;
            if proxies.iter().any(|q| q.name == spec.name) {
                return Err(bad(key, format!("a second proxy named {:?}", spec.name)));
            }
            proxies.push(spec);
        }
        if proxies.is_empty() {
            return Err(bad(
                "chaos.proxies".into(),
                "must list at least one proxy".into(),
            ));
        }
        let mut schedule = Vec::new();
        for (i, f) in list("schedule")?.iter().enumerate() {
            let key = format!("chaos.schedule[{i}]");
            let mut f = f.as_object().cloned().ok_or_else(|| {
                bad(
                    key.clone(),
                    "must be {\"at\", \"for\", \"proxy\", \"behavior\", options…}".into(),
                )
            })?;
            let secs = |f: &mut Map<String, Value>, k: &str| -> Result<f64, ChaosError> {
                match f.remove(k) {
                    Some(v) => v
                        .as_f64()
                        .filter(|s| s.is_finite() && *s >= 0.0)
                        .ok_or_else(|| {
                            bad(format!("{key}.{k}"), format!("must be seconds, not {v}"))
                        }),
                    None => Err(bad(format!("{key}.{k}"), "is missing (seconds)".into())),
                }
            };
            let at = secs(&mut f, "at")?;
            let for_secs = secs(&mut f, "for")?;
            let name = match f.remove("proxy") {
                Some(Value::String(s)) => s,
                None if proxies.len() == 1 => proxies[0].name.clone(),
                _ => {
                    return Err(bad(
                        format!("{key}.proxy"),
                        "must name one of chaos.proxies".into(),
                    ))
                }
            };
            if !proxies.iter().any(|p| p.name == name) {
                let names: Vec<&str> = proxies.iter().map(|p| p.name.as_str()).collect();
                return Err(bad(
                    format!("{key}.proxy"),
                    format!(
                        "{name:?} is not a proxy (the proxies: {})",
                        names.join(", ")
                    ),
                ));
            }
            let behavior = match f.remove("behavior") {
                Some(Value::String(s)) => s,
                _ => {
                    return Err(bad(
                        format!("{key}.behavior"),
                        "is missing (a behavior or a mix, e.g. \"delay\", \"30:error\")".into(),
                    ))
                }
            };
            // The rest are the behaviour's options (as PUT /behavior takes them).
            let mix =
                proxy::state::mix_json(&behavior, &f).map_err(|(_, e)| bad(key.clone(), e.0))?;
            schedule.push(Fault {
                at,
                secs: for_secs,
                proxy: name,
                behavior,
                options: f,
                mix,
            });
        }
        Ok(Chaos { proxies, schedule })
    }
}

/// `"delay"` with `{"sleep": 0.2}`, or a mix `"30:error,10:delay"` with `{"options": {…}}`.
/// One fault as it happened: when (Unix seconds) and what the proxy counted meanwhile.
#[derive(Debug, Clone, PartialEq)]
pub struct Window {
    pub proxy: String,
    pub behavior: String,
    pub options: Map<String, Value>,
    pub start: f64,
    pub finish: f64,
    /// Calls per behaviour drawn inside the window.
    pub calls: BTreeMap<String, u64>,
}

impl Window {
    pub fn json(&self) -> Value {
        json!({"proxy": self.proxy, "behavior": self.behavior, "options": self.options,
            "start": self.start, "finish": self.finish, "calls": self.calls})
    }
}

/// The proxies serving, and the schedule's thread once the test has started.
pub struct Runner {
    running: Arc<proxy::Running>,
    schedule: Vec<Fault>,
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<JoinHandle<Vec<Window>>>,
}

fn epoch() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

impl Runner {
    /// Binds and serves every proxy; an address in use is an error naming the proxy.
    pub fn start(c: &Chaos) -> Result<Runner, String> {
        let running = proxy::spawn(proxy::Options {
            proxies: c.proxies.clone(),
            http: None,
        })
        .map_err(|e| format!("chaos: {e}"))?;
        Ok(Runner {
            running: Arc::new(running),
            schedule: c.schedule.clone(),
            stop: Arc::new((Mutex::new(false), Condvar::new())),
            thread: None,
        })
    }

    /// `name listen → backend (protocol)` for each proxy, for the console.
    pub fn describe(&self) -> Vec<String> {
        self.running
            .proxies
            .iter()
            .map(|p| {
                format!(
                    "{} {} → {} ({})",
                    p.name,
                    p.listen,
                    p.backend(),
                    p.protocol.name()
                )
            })
            .collect()
    }

    /// The test started at `t0`: the schedule runs on that clock.
    pub fn begin(&mut self, t0: Instant) {
        let (running, schedule, stop) = (
            Arc::clone(&self.running),
            self.schedule.clone(),
            Arc::clone(&self.stop),
        );
        self.thread = Some(std::thread::spawn(move || {
            play(&running, &schedule, t0, &stop)
        }));
    }

    /// Ends the schedule (open windows close now, each proxy back to its own behaviour) and
    /// stops the proxies: the windows, and each proxy's counts over the whole run.
    pub fn finish(mut self) -> (Vec<Window>, Value) {
        {
            let (lock, cv) = &*self.stop;
            *lock.lock().unwrap_or_else(|e| e.into_inner()) = true;
            cv.notify_all();
        }
        let windows = self
            .thread
            .take()
            .and_then(|t| t.join().ok())
            .unwrap_or_default();
        let proxies: Vec<Value> = self
            .running
            .proxies
            .iter()
            .map(|p| {
                json!({"name": p.name, "listen": p.listen.to_string(), "backend": p.backend(),
                    "protocol": p.protocol.name(), "stats": p.stats()})
            })
            .collect();
        (windows, Value::Array(proxies))
    }
}

/// Applies each fault at its time and reverts it at its end; with faults overlapping on one
/// proxy, the one started last applies until it ends.
fn play(
    running: &proxy::Running,
    schedule: &[Fault],
    t0: Instant,
    stop: &(Mutex<bool>, Condvar),
) -> Vec<Window> {
    let base: BTreeMap<String, proxy::Mix> = running
        .proxies
        .iter()
        .map(|p| (p.name.clone(), p.plan().default))
        .collect();
    // (when, starts?, fault index), in time order; ends before starts at the same instant.
    let mut events: Vec<(f64, bool, usize)> = Vec::new();
    for (i, f) in schedule.iter().enumerate() {
        events.push((f.at, true, i));
        events.push((f.at + f.secs, false, i));
    }
    events.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let mut open: Vec<(usize, f64, BTreeMap<&'static str, u64>)> = Vec::new();
    let mut windows = Vec::new();
    let close = |open: &mut Vec<(usize, f64, BTreeMap<&'static str, u64>)>,
                 i: usize,
                 windows: &mut Vec<Window>| {
        let Some(at) = open.iter().position(|o| o.0 == i) else {
            return;
        };
        let (_, start, before) = open.remove(at);
        let f = &schedule[i];
        let Some(p) = running.get(&f.proxy) else {
            return;
        };
        let calls = p
            .behaviors()
            .into_iter()
            .map(|(k, n)| (k.to_owned(), n - before.get(k).copied().unwrap_or(0)))
            .filter(|(_, n)| *n > 0)
            .collect();
        let mix = open
            .iter()
            .rev()
            .find(|o| schedule[o.0].proxy == f.proxy)
            .map(|o| schedule[o.0].mix.clone())
            .unwrap_or_else(|| base[&f.proxy].clone());
        p.set_default(mix);
        windows.push(Window {
            proxy: f.proxy.clone(),
            behavior: f.behavior.clone(),
            options: f.options.clone(),
            start,
            finish: epoch(),
            calls,
        });
    };
    let (lock, cv) = stop;
    for (when, starts, i) in events {
        let due = t0 + Duration::from_secs_f64(when);
        let mut stopped = lock.lock().unwrap_or_else(|e| e.into_inner());
        while !*stopped && Instant::now() < due {
            stopped = cv
                .wait_timeout(stopped, due.saturating_duration_since(Instant::now()))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        if *stopped {
            break;
        }
        drop(stopped);
        let f = &schedule[i];
        let Some(p) = running.get(&f.proxy) else {
            continue;
        };
        if starts {
            open.push((i, epoch(), p.behaviors()));
            p.set_default(f.mix.clone());
        } else {
            close(&mut open, i, &mut windows);
        }
    }
    // The test ended (or was stopped) inside these windows.
    while let Some(&(i, _, _)) = open.last() {
        close(&mut open, i, &mut windows);
    }
    windows.sort_by(|a, b| a.start.total_cmp(&b.start));
    windows
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_schedule_is_checked_key_by_key() {
        let ok = json!({"proxies": [{"name": "db", "listen": "127.0.0.1:0", "backend": "127.0.0.1:1", "protocol": "redis"}],
            "schedule": [{"at": 1, "for": 2, "proxy": "db", "behavior": "delay", "sleep": 0.2},
                         {"at": 3, "for": 1, "behavior": "30:error", "options": {"error": {"warmup": 1}}}]});
        let c = Chaos::parse(&ok).unwrap();
        assert_eq!(c.schedule[1].proxy, "db");
        assert_eq!(
            c.schedule[0].mix.pick(0),
            &proxy::Behavior::Delay {
                sleep: Duration::from_millis(200),
                before: true
            }
        );
        for (patch, key, why) in [
            (json!({"at": -1}), "chaos.schedule[0].at", "must be seconds"),
            (
                json!({"proxy": "web"}),
                "chaos.schedule[0].proxy",
                "\"web\" is not a proxy (the proxies: db)",
            ),
            (
                json!({"behavior": "boom"}),
                "chaos.schedule[0]",
                "unknown behavior \"boom\"; the behaviors are abort",
            ),
            (
                json!({"slep": 1}),
                "chaos.schedule[0]",
                "delay: no option \"slep\"",
            ),
        ] {
            let mut v = ok.clone();
            for (k, x) in patch.as_object().unwrap() {
                v["schedule"][0][k] = x.clone();
            }
            let e = Chaos::parse(&v).unwrap_err();
            assert_eq!(e.key, key, "{patch}: {}", e.why);
            assert!(e.why.contains(why), "{patch}: {}", e.why);
        }
        let e = Chaos::parse(&json!({"proxies": [{"name": "db", "listen": "x:1", "backend": "y:1", "protocol": "ftp"}]})).unwrap_err();
        assert_eq!(e.key, "chaos.proxies[0]");
        assert!(e.why.contains("unknown protocol \"ftp\""), "{}", e.why);
        assert_eq!(
            Chaos::parse(&json!({"proxies": []})).unwrap_err().key,
            "chaos.proxies"
        );
    }

    #[test]
    fn faults_apply_on_the_clock_and_revert_and_an_early_end_closes_them() {
        let c = Chaos::parse(&json!({"proxies": [{"name": "p", "listen": "127.0.0.1:0", "backend": "127.0.0.1:1", "behavior": "hang"}],
            "schedule": [{"at": 0.05, "for": 0.1, "behavior": "blackout"}, {"at": 0.3, "for": 100, "behavior": "abort"}]}))
        .unwrap();
        let mut r = Runner::start(&c).unwrap();
        let p = Arc::clone(&r.running.proxies[0]);
        let t0 = Instant::now();
        r.begin(t0);
        let wait = |name: &str| {
            while p.plan().default.name() != name {
                assert!(t0.elapsed() < Duration::from_secs(10), "never {name}");
                std::thread::sleep(Duration::from_millis(2));
            }
            t0.elapsed()
        };
        assert!(wait("blackout") >= Duration::from_millis(50));
        assert!(wait("hang") >= Duration::from_millis(150));
        assert!(wait("abort") >= Duration::from_millis(300));
        let (windows, proxies) = r.finish();
        assert_eq!(windows.len(), 2);
        assert_eq!(windows[1].behavior, "abort");
        assert!(windows[0].finish - windows[0].start >= 0.09, "{windows:?}");
        assert_eq!(p.plan().default.name(), "hang");
        assert_eq!(proxies[0]["name"], "p");
    }
}
