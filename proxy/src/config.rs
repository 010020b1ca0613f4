//! `--config FILE`: Vaurien's INI — a `[vaurien]` section with the flags' names
//! (`proxy = localhost:8000`, `behavior = 20:delay`), `[behavior:NAME]` sections with a
//! behaviour's options — and ours, `[proxy:NAME]` sections for more proxies in the same process:
//!
//! ```ini
//! [proxy:db]
//! proxy = 127.0.0.1:7000
//! backend = 127.0.0.1:6379
//! protocol = redis
//! behavior = 10:delay
//! delay.sleep = 0.2
//! route = GET=error        ; MATCH=BEHAVIOR, as --route, as many as wanted
//! ```
//!
//! Or JSON: `{"http": "HOST:PORT", "proxies": [{"name", "listen", "backend", "protocol",
//! "behavior", "options", "routes", "timeout"}]}` — the proxy objects are those of a load
//! test's `"chaos"` (config.json).

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;

use crate::behavior::Mix;
use crate::frame::Protocol;
use crate::state::{self, Plan, Route};
use crate::Spec;

/// Behaviour options by behaviour name, then option.
pub type BehaviorOptions = BTreeMap<String, BTreeMap<String, String>>;

/// One INI section's keys, in order (a key may repeat: `route`).
pub type Section = Vec<(String, String)>;

/// A Vaurien INI file.
#[derive(Debug, Default)]
pub struct Ini {
    /// `[vaurien]`: the flags of the first proxy.
    pub vaurien: Section,
    /// `[behavior:NAME]` sections.
    pub options: BehaviorOptions,
    /// `[proxy:NAME]` sections.
    pub proxies: Vec<(String, Section)>,
}

impl Ini {
    /// The last value of `key` in `[vaurien]` (`-` and `_` alike).
    pub fn get(&self, key: &str) -> Option<&str> {
        last(&self.vaurien, key)
    }
}

fn last<'a>(s: &'a Section, key: &str) -> Option<&'a str> {
    let norm = |k: &str| k.replace('-', "_");
    s.iter()
        .rev()
        .find(|(k, _)| norm(k) == norm(key))
        .map(|(_, v)| v.as_str())
}

/// Reads an INI file (`path` for the messages).
pub fn ini(path: &str, text: &str) -> Result<Ini, String> {
    let mut out = Ini::default();
    enum At {
        None,
        Vaurien,
        Behavior(String),
        Proxy,
        Other,
    }
    let mut at = At::None;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        let here = |m: String| format!("{path}:{}: {m}", i + 1);
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            let name = name.trim();
            at = if name == "vaurien" {
                At::Vaurien
            } else if let Some(b) = name.strip_prefix("behavior:") {
                At::Behavior(b.trim().to_owned())
            } else if let Some(p) = name.strip_prefix("proxy:") {
                let p = p.trim();
                if p.is_empty() || out.proxies.iter().any(|(n, _)| n == p) {
                    return Err(here(format!("[{name}]: a proxy needs a name of its own")));
                }
                out.proxies.push((p.to_owned(), Vec::new()));
                At::Proxy
            } else {
                At::Other
            };
            continue;
        }
        let cut = line
            .find(['=', ':'])
            .ok_or_else(|| here(format!("{line:?} is not KEY = VALUE")))?;
        let (k, v) = (line[..cut].trim().to_owned(), line[cut + 1..].trim());
        // `; comment` after a value, as ConfigParser's inline comments.
        let v = v
            .split(" ;")
            .next()
            .unwrap_or("")
            .split(" #")
            .next()
            .unwrap_or("")
            .trim()
            .to_owned();
        match &at {
            At::None => return Err(here(format!("{k:?} before any [section]"))),
            At::Vaurien => out.vaurien.push((k, v)),
            At::Behavior(b) => {
                out.options
                    .entry(b.clone())
                    .or_default()
                    .insert(k.replace('-', "_"), v);
            }
            At::Proxy => out
                .proxies
                .last_mut()
                .expect("pushed at its header")
                .1
                .push((k, v)),
            At::Other => {}
        }
    }
    Ok(out)
}

fn protocol(text: &str) -> Result<Protocol, String> {
    Protocol::parse(text).ok_or_else(|| format!("unknown protocol {text:?} ({})", Protocol::NAMES))
}

fn seconds(text: &str) -> Result<Duration, String> {
    text.trim()
        .parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s > 0.0)
        .map(Duration::from_secs_f64)
        .ok_or_else(|| format!("{text:?} is not seconds above 0"))
}

/// A `[proxy:NAME]` section as a proxy; `options` are the `[behavior:NAME]` ones, which its own
/// `NAME.OPTION` keys override.
pub fn ini_proxy(
    path: &str,
    name: &str,
    s: &Section,
    options: &BehaviorOptions,
    timeout: Duration,
) -> Result<Spec, String> {
    let at = |k: &str, m: String| format!("{path}: [proxy:{name}] {k}: {m}");
    let mut options = options.clone();
    let mut routes = Vec::new();
    for (k, v) in s {
        match k.split_once('.') {
            Some((b, o)) => {
                options
                    .entry(b.to_owned())
                    .or_default()
                    .insert(o.replace('-', "_"), v.clone());
            }
            None if [
                "proxy", "listen", "backend", "protocol", "behavior", "timeout", "route",
            ]
            .contains(&k.as_str()) =>
            {
                if k == "route" {
                    routes.push(v.clone());
                }
            }
            None => return Err(at(
                k,
                "unknown key (proxy, backend, protocol, behavior, timeout, route, BEHAVIOR.OPTION)"
                    .into(),
            )),
        }
    }
    let listen = last(s, "proxy")
        .or(last(s, "listen"))
        .ok_or_else(|| at("proxy", "missing: where clients connect, HOST:PORT".into()))?;
    let backend = last(s, "backend").ok_or_else(|| at("backend", "missing: HOST:PORT".into()))?;
    let protocol = protocol(last(s, "protocol").unwrap_or("tcp")).map_err(|e| at("protocol", e))?;
    let timeout = match last(s, "timeout") {
        Some(t) => seconds(t).map_err(|e| at("timeout", e))?,
        None => timeout,
    };
    let default = Mix::parse_spec(last(s, "behavior").unwrap_or("dummy"), &options)
        .map_err(|e| at("behavior", e.0))?;
    let routes = routes
        .iter()
        .map(|r| state::route(r, &options).map_err(|e| at("route", e.0)))
        .collect::<Result<Vec<Route>, String>>()?;
    Ok(Spec {
        name: name.to_owned(),
        listen: listen.to_owned(),
        backend: backend.to_owned(),
        protocol,
        plan: Plan { routes, default },
        timeout,
    })
}

/// A proxy object (a JSON config's, or a load test's `"chaos"`); `what` names it in messages.
pub fn json_proxy(what: &str, v: &Value, timeout: Duration) -> Result<Spec, String> {
    let o = v
        .as_object()
        .ok_or_else(|| format!("{what}: must be an object"))?;
    const KEYS: [&str; 8] = [
        "name", "listen", "backend", "protocol", "behavior", "options", "routes", "timeout",
    ];
    if let Some(k) = o.keys().find(|k| !KEYS.contains(&k.as_str())) {
        return Err(format!("{what}: unknown key {k:?} ({})", KEYS.join(", ")));
    }
    let text = |k: &str| -> Result<Option<&str>, String> {
        match o.get(k) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(format!("{what}: \"{k}\" must be text, not {other}")),
        }
    };
    let name = text("name")?.ok_or_else(|| format!("{what}: no \"name\""))?;
    let what = format!("{what} ({name})");
    let listen = text("listen")?.ok_or_else(|| format!("{what}: no \"listen\" (HOST:PORT)"))?;
    let backend = text("backend")?.ok_or_else(|| format!("{what}: no \"backend\" (HOST:PORT)"))?;
    let protocol = protocol(text("protocol")?.unwrap_or("tcp"))
        .map_err(|e| format!("{what}: \"protocol\": {e}"))?;
    let timeout = match o.get("timeout") {
        None => timeout,
        Some(t) => seconds(&state::text_of(t)).map_err(|e| format!("{what}: \"timeout\": {e}"))?,
    };
    let options = state::options_json(o.get("options")).map_err(|e| format!("{what}: {}", e.0))?;
    let default = Mix::parse_spec(text("behavior")?.unwrap_or("dummy"), &options)
        .map_err(|e| format!("{what}: \"behavior\": {}", e.0))?;
    let routes = match o.get("routes") {
        None => Vec::new(),
        Some(Value::Array(a)) => a
            .iter()
            .map(|r| state::route_json(r).map_err(|e| format!("{what}: \"routes\": {}", e.0)))
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(format!("{what}: \"routes\" must be a list")),
    };
    Ok(Spec {
        name: name.to_owned(),
        listen: listen.to_owned(),
        backend: backend.to_owned(),
        protocol,
        plan: Plan { routes, default },
        timeout,
    })
}

/// A JSON config file: its proxies and the control API's address, if it gives one.
pub fn json(
    path: &str,
    text: &str,
    timeout: Duration,
) -> Result<(Vec<Spec>, Option<String>), String> {
    let v: Value = serde_json::from_str(text).map_err(|e| format!("{path}: {e}"))?;
    let list = v
        .get("proxies")
        .and_then(Value::as_array)
        .ok_or_else(|| format!("{path}: no \"proxies\" list"))?;
    let mut out: Vec<Spec> = Vec::new();
    for (i, p) in list.iter().enumerate() {
        let s = json_proxy(&format!("{path}: proxies[{i}]"), p, timeout)?;
        if out.iter().any(|o| o.name == s.name) {
            return Err(format!(
                "{path}: proxies[{i}]: a second proxy named {:?}",
                s.name
            ));
        }
        out.push(s);
    }
    let http = v.get("http").and_then(Value::as_str).map(str::to_owned);
    Ok((out, http))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::behavior::Behavior;

    const T: Duration = Duration::from_secs(30);

    #[test]
    fn vaurien_ini_with_behavior_sections_and_proxy_sections() {
        let text = "# a comment\n[vaurien]\nproxy = localhost:8001\nbehavior = 20:delay\n\n[behavior:delay]\nsleep = 2\n\n\
            [proxy:db]\nproxy = 127.0.0.1:7000\nbackend: 127.0.0.1:6379\nprotocol = redis\nbehavior = delay\ndelay.sleep = 0.5 ; half\n\
            route = GET=error\nroute = from 127.0.0.2=blackout\n[other]\nx = 1\n";
        let ini = ini("v.ini", text).unwrap();
        assert_eq!(ini.get("proxy"), Some("localhost:8001"));
        assert_eq!(ini.options["delay"]["sleep"], "2");
        let (name, s) = &ini.proxies[0];
        let db = ini_proxy("v.ini", name, s, &ini.options, T).unwrap();
        assert_eq!(
            (db.listen.as_str(), db.backend.as_str(), db.protocol),
            ("127.0.0.1:7000", "127.0.0.1:6379", Protocol::Redis)
        );
        assert_eq!(
            db.plan.default.pick(0),
            &Behavior::Delay {
                sleep: Duration::from_millis(500),
                before: true
            }
        );
        assert_eq!(db.plan.routes.len(), 2);
        assert_eq!(db.plan.routes[1].on.label(), "from 127.0.0.2");
    }

    #[test]
    fn bad_files_name_the_file_the_line_and_the_key() {
        assert_eq!(
            ini("v.ini", "proxy = x\n").unwrap_err(),
            "v.ini:1: \"proxy\" before any [section]"
        );
        assert!(ini("v.ini", "[vaurien]\njunk\n")
            .unwrap_err()
            .starts_with("v.ini:2: "));
        let i = ini("v.ini", "[proxy:a]\nbackend = b:1\nprotocol = ftp\n").unwrap();
        let e = ini_proxy("v.ini", "a", &i.proxies[0].1, &i.options, T).unwrap_err();
        assert!(e.starts_with("v.ini: [proxy:a] proxy: missing"), "{e}");
        let i = ini(
            "v.ini",
            "[proxy:a]\nproxy = :1\nbackend = b:1\nprotocol = ftp\n",
        )
        .unwrap();
        let e = ini_proxy("v.ini", "a", &i.proxies[0].1, &i.options, T).unwrap_err();
        assert!(e.contains("protocol: unknown protocol \"ftp\""), "{e}");
        let e = json("c.json", r#"{"proxies": [{"name": "a", "listen": ":1", "backend": "b:1", "behavior": "9:nope"}]}"#, T).unwrap_err();
        assert!(
            e.starts_with("c.json: proxies[0] (a): \"behavior\": unknown behavior \"nope\""),
            "{e}"
        );
        let e = json(
            "c.json",
            r#"{"proxies": [{"name": "a", "listen": ":1", "backend": "b:1", "sleep": 1}]}"#,
            T,
        )
        .unwrap_err();
        assert!(e.contains("unknown key \"sleep\""), "{e}");
    }

    #[test]
    fn json_proxies_with_options_and_routes() {
        let (ps, http) = json(
            "c.json",
            r#"{"http": "127.0.0.1:0", "proxies": [{"name": "web", "listen": "127.0.0.1:0", "backend": "127.0.0.1:80",
                "protocol": "http", "behavior": "50:error", "options": {"error": {"warmup": 3}}, "timeout": 2,
                "routes": [{"path": "/slow", "behavior": "delay", "options": {"delay": {"sleep": 0.1}}}]}]}"#,
            T,
        )
        .unwrap();
        assert_eq!(http.as_deref(), Some("127.0.0.1:0"));
        assert_eq!(ps[0].timeout, Duration::from_secs(2));
        assert_eq!(
            ps[0].plan.default.pick(0),
            &Behavior::Error {
                warmup: 3,
                inject: false
            }
        );
        assert_eq!(ps[0].plan.routes[0].on.path.as_deref(), Some("/slow"));
    }
}
