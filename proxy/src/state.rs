//! One proxy's state, shared by its connections and the control API: where it forwards, the
//! plan it draws from (routes first, then the default mix), and what it did (calls per behaviour
//! and per route, events).
//!
//! A plan is swapped whole (`PUT /behavior`, `PUT /routes`, a chaos schedule); connections keep
//! theirs in hand and look again only when the generation number moved, so a call costs no lock.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use serde_json::{json, Map, Value};

use crate::behavior::{Behavior, BehaviorError, Mix, NAMES};
use crate::frame::Protocol;

/// Calls per behaviour (indexed as `NAMES`).
pub type Counts = [AtomicU64; NAMES.len()];

/// `(route label, behaviour, calls)`.
pub type CallCounts = Vec<(String, &'static str, u64)>;

/// The events that are not calls.
pub const EVENTS: [&str; 3] = ["backend_refused", "backend_failed", "bad_message"];

/// What a route matches; an absent part matches everything.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Match {
    /// HTTP method or Redis/memcached command, upper case.
    pub method: Option<String>,
    /// HTTP path prefix.
    pub path: Option<String>,
    /// Client address or network (`127.0.0.2`, `10.0.0.0/8`).
    pub client: Option<(IpAddr, u8)>,
}

impl Match {
    pub fn matches(&self, method: &str, path: &str, client: IpAddr) -> bool {
        self.method
            .as_ref()
            .is_none_or(|m| m.eq_ignore_ascii_case(method))
            && self
                .path
                .as_ref()
                .is_none_or(|p| path.starts_with(p.as_str()))
            && self
                .client
                .is_none_or(|(net, bits)| in_network(client, net, bits))
    }

    /// `POST /api from 10.0.0.0/8`, any part left out; the label the stats use is the text.
    pub fn parse(text: &str) -> Result<Match, String> {
        let mut m = Match::default();
        let mut words = text.split_whitespace();
        while let Some(w) = words.next() {
            if w == "from" {
                let addr = words
                    .next()
                    .ok_or_else(|| format!("route {text:?}: `from` needs an address"))?;
                m.client = Some(network(addr).map_err(|e| format!("route {text:?}: {e}"))?);
            } else if w.starts_with('/') && m.path.is_none() {
                m.path = Some(w.to_owned());
            } else if m.method.is_none()
                && m.path.is_none()
                && w.bytes().all(|b| b.is_ascii_alphabetic())
            {
                m.method = Some(w.to_ascii_uppercase());
            } else {
                return Err(format!(
                    "route {text:?}: {w:?} is not a method, a /path or `from ADDRESS`"
                ));
            }
        }
        Ok(m)
    }

    /// The text `parse` reads.
    pub fn label(&self) -> String {
        let mut parts = Vec::new();
        if let Some(m) = &self.method {
            parts.push(m.clone());
        }
        if let Some(p) = &self.path {
            parts.push(p.clone());
        }
        if let Some((net, bits)) = self.client {
            let full = if net.is_ipv4() { 32 } else { 128 };
            parts.push(if bits == full {
                format!("from {net}")
            } else {
                format!("from {net}/{bits}")
            });
        }
        if parts.is_empty() {
            "*".into()
        } else {
            parts.join(" ")
        }
    }
}

/// `127.0.0.2` or `10.0.0.0/8` (IPv6 too).
pub fn network(text: &str) -> Result<(IpAddr, u8), String> {
    let (addr, bits) = match text.split_once('/') {
        Some((a, b)) => (a, Some(b)),
        None => (text, None),
    };
    let ip: IpAddr = addr
        .parse()
        .map_err(|_| format!("{addr:?} is not an IP address"))?;
    let full = if ip.is_ipv4() { 32 } else { 128 };
    let bits = match bits {
        None => full,
        Some(b) => b
            .parse::<u8>()
            .ok()
            .filter(|b| *b <= full)
            .ok_or_else(|| format!("{text:?}: /{b} is not a prefix length (0..={full})"))?,
    };
    Ok((ip, bits))
}

fn in_network(ip: IpAddr, net: IpAddr, bits: u8) -> bool {
    let as_v6 = |ip: IpAddr| match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    };
    let shift = if net.is_ipv4() { 96 } else { 0 };
    let (a, b) = (u128::from(as_v6(ip)), u128::from(as_v6(net)));
    let keep = u32::from(bits) + shift;
    keep == 0 || (a ^ b) >> (128 - keep.min(128)) == 0
}

/// A route: the calls it matches draw from its mix.
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    pub on: Match,
    pub mix: Mix,
}

/// What a proxy draws from: the first route that matches, else the default.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub routes: Vec<Route>,
    pub default: Mix,
}

/// A route's mix with the counters of its label, resolved when the plan is set.
pub struct Rule {
    pub on: Match,
    pub mix: Mix,
    pub label: String,
    pub counts: Arc<Counts>,
}

/// A plan as connections use it.
pub struct Live {
    pub rules: Vec<Rule>,
    pub default: Rule,
}

impl Live {
    pub fn rule(&self, method: &str, path: &str, client: IpAddr) -> &Rule {
        self.rules
            .iter()
            .find(|r| r.on.matches(method, path, client))
            .unwrap_or(&self.default)
    }

    /// `plan` with each rule's counters, from `counts` (created for a label not seen yet).
    fn of(plan: &Plan, counts: &Mutex<BTreeMap<String, Arc<Counts>>>) -> Live {
        let mut counts = counts.lock().unwrap_or_else(|e| e.into_inner());
        let mut rule = |on: &Match, mix: &Mix| {
            let label = on.label();
            let counts = Arc::clone(counts.entry(label.clone()).or_default());
            Rule {
                on: on.clone(),
                mix: mix.clone(),
                label,
                counts,
            }
        };
        Live {
            rules: plan.routes.iter().map(|r| rule(&r.on, &r.mix)).collect(),
            default: rule(&Match::default(), &plan.default),
        }
    }

    /// The plan it was made of.
    fn plan(&self) -> Plan {
        Plan {
            routes: self
                .rules
                .iter()
                .map(|r| Route {
                    on: r.on.clone(),
                    mix: r.mix.clone(),
                })
                .collect(),
            default: self.default.mix.clone(),
        }
    }
}

/// One proxy.
pub struct Proxy {
    pub name: String,
    pub listen: SocketAddr,
    pub protocol: Protocol,
    /// How long a backend may take to connect and to answer; how long `hang` hangs.
    pub timeout: Duration,
    backend: RwLock<String>,
    live: RwLock<Arc<Live>>,
    generation: AtomicU64,
    counts: Mutex<BTreeMap<String, Arc<Counts>>>,
    events: [AtomicU64; EVENTS.len()],
}

impl Proxy {
    pub fn new(
        name: String,
        listen: SocketAddr,
        protocol: Protocol,
        timeout: Duration,
        backend: String,
        plan: Plan,
    ) -> Proxy {
        let counts = Mutex::new(BTreeMap::new());
        let live = Live::of(&plan, &counts);
        Proxy {
            name,
            listen,
            protocol,
            timeout,
            backend: RwLock::new(backend),
            live: RwLock::new(Arc::new(live)),
            generation: AtomicU64::new(1),
            counts,
            events: Default::default(),
        }
    }

    pub fn backend(&self) -> String {
        self.backend
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn set_backend(&self, b: String) {
        *self.backend.write().unwrap_or_else(|e| e.into_inner()) = b;
    }

    pub fn plan(&self) -> Plan {
        self.live.read().unwrap_or_else(|e| e.into_inner()).plan()
    }

    /// The plan connections draw from, and its generation (to see a change cheaply).
    pub fn live(&self) -> (u64, Arc<Live>) {
        let g = self.live.read().unwrap_or_else(|e| e.into_inner());
        (self.generation.load(Ordering::Acquire), Arc::clone(&g))
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    pub fn set_plan(&self, plan: Plan) {
        let live = Arc::new(Live::of(&plan, &self.counts));
        *self.live.write().unwrap_or_else(|e| e.into_inner()) = live;
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Sets the default mix, the routes kept.
    pub fn set_default(&self, mix: Mix) {
        let mut plan = self.plan();
        plan.default = mix;
        self.set_plan(plan);
    }

    pub fn event(&self, i: usize) {
        self.events[i].fetch_add(1, Ordering::Relaxed);
    }

    /// Every route label (`*` the default) with its calls per behaviour, those not zero.
    fn per_route(&self) -> Vec<(String, Vec<(&'static str, u64)>)> {
        let counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        counts
            .iter()
            .map(|(label, c)| {
                let calls = c
                    .iter()
                    .enumerate()
                    .map(|(i, n)| (NAMES[i], n.load(Ordering::Relaxed)))
                    .filter(|(_, n)| *n > 0)
                    .collect();
                (label.clone(), calls)
            })
            .collect()
    }

    fn events(&self) -> Vec<(&'static str, u64)> {
        EVENTS
            .iter()
            .zip(&self.events)
            .map(|(e, n)| (*e, n.load(Ordering::Relaxed)))
            .collect()
    }

    /// Calls per behaviour, over every route.
    pub fn behaviors(&self) -> BTreeMap<&'static str, u64> {
        let mut out = BTreeMap::new();
        for (name, n) in self.per_route().into_iter().flat_map(|(_, calls)| calls) {
            *out.entry(name).or_default() += n;
        }
        out
    }

    /// Calls per route label and behaviour (those not zero), and the events.
    pub fn stats(&self) -> Value {
        let mut routes = Map::new();
        for (label, calls) in self.per_route() {
            routes.insert(
                label,
                calls
                    .into_iter()
                    .map(|(b, n)| (b.to_owned(), json!(n)))
                    .collect(),
            );
        }
        let behaviors = self.behaviors();
        let calls: u64 = behaviors.values().sum();
        let events: Map<String, Value> = self
            .events()
            .into_iter()
            .map(|(e, n)| (e.to_owned(), json!(n)))
            .collect();
        json!({"calls": calls, "behaviors": behaviors, "routes": routes, "events": events})
    }

    /// `(route label, behaviour, calls)` for every counter, and `(event, n)`: for `/metrics`.
    pub fn counters(&self) -> (CallCounts, Vec<(&'static str, u64)>) {
        let calls = self
            .per_route()
            .into_iter()
            .flat_map(|(label, calls)| calls.into_iter().map(move |(b, n)| (label.clone(), b, n)))
            .collect();
        (calls, self.events())
    }
}

/// `--route "POST /api=50:error"`: a match and a mix spec, behaviour options from `options`.
pub fn route(
    text: &str,
    options: &BTreeMap<String, BTreeMap<String, String>>,
) -> Result<Route, BehaviorError> {
    let (on, spec) = text.rsplit_once('=').ok_or_else(|| {
        BehaviorError(format!(
            "--route {text:?}: give MATCH=BEHAVIOR, e.g. \"POST /api=50:error\" or \"from 127.0.0.2=blackout\""
        ))
    })?;
    let on = Match::parse(on).map_err(BehaviorError)?;
    let mix = Mix::parse_spec(spec, options)
        .map_err(|e| BehaviorError(format!("--route {text:?}: {e}")))?;
    Ok(Route { on, mix })
}

/// A route in JSON (`PUT /routes`, config files): `{"method", "path", "client", "behavior",
/// "options": {NAME: {OPTION: value}}}`.
pub fn route_json(v: &Value) -> Result<Route, BehaviorError> {
    let bad = |m: String| BehaviorError(format!("route {v}: {m}"));
    let obj = v
        .as_object()
        .ok_or_else(|| bad("must be an object".into()))?;
    let text = |k: &str| obj.get(k).and_then(Value::as_str).map(str::to_owned);
    for k in obj.keys() {
        if !["method", "path", "client", "behavior", "options"].contains(&k.as_str()) {
            return Err(bad(format!(
                "unknown key {k:?} (method, path, client, behavior, options)"
            )));
        }
    }
    let client = match text("client") {
        None => None,
        Some(c) => Some(network(&c).map_err(bad)?),
    };
    let on = Match {
        method: text("method").map(|m| m.to_ascii_uppercase()),
        path: text("path"),
        client,
    };
    let spec = text("behavior").ok_or_else(|| bad("no \"behavior\"".into()))?;
    let options = options_json(obj.get("options")).map_err(|e| bad(e.0))?;
    let mix = Mix::parse(&spec, &options)?;
    Ok(Route { on, mix })
}

/// `{NAME: {OPTION: value}}` as text values.
pub fn options_json(
    v: Option<&Value>,
) -> Result<BTreeMap<String, BTreeMap<String, String>>, BehaviorError> {
    let mut out = BTreeMap::new();
    let Some(v) = v else { return Ok(out) };
    let obj = v
        .as_object()
        .ok_or_else(|| BehaviorError("\"options\" must be {behavior: {option: value}}".into()))?;
    for (name, opts) in obj {
        let opts = opts
            .as_object()
            .ok_or_else(|| BehaviorError(format!("options of {name:?} must be an object")))?;
        out.insert(
            name.clone(),
            opts.iter().map(|(k, v)| (k.clone(), text_of(v))).collect(),
        );
    }
    Ok(out)
}

/// A behaviour named in JSON with its options beside it (`{"name": "delay", "sleep": 0.3}`, as
/// `PUT /behavior` and a chaos schedule take them), or a mix (`"5:error,10:delay"`) with its
/// options as `"options": {behavior: {option: value}}`. `Err`: the key at fault (`name` or
/// `options`) and why.
pub fn mix_json(
    name: &str,
    rest: &Map<String, Value>,
) -> Result<Mix, (&'static str, BehaviorError)> {
    if name.contains(':') || name.contains(',') {
        if let Some(k) = rest.keys().find(|k| *k != "options") {
            return Err((
                "options",
                BehaviorError(format!(
                    "{k:?}: a mix takes its options as \"options\": {{behavior: {{option: value}}}}"
                )),
            ));
        }
        let options = options_json(rest.get("options")).map_err(|e| ("options", e))?;
        return Mix::parse(name, &options).map_err(|e| ("name", e));
    }
    let options: BTreeMap<String, String> =
        rest.iter().map(|(k, v)| (k.clone(), text_of(v))).collect();
    Behavior::build(name, &options).map(Mix::one).map_err(|e| {
        let field = if NAMES.contains(&name) {
            "options"
        } else {
            "name"
        };
        (field, e)
    })
}

/// A JSON value as the text a command-line option would be.
pub fn text_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The route in JSON, as `GET /routes` shows it.
pub fn route_to_json(r: &Route) -> Value {
    let mut v =
        json!({"match": r.on.label(), "behavior": r.mix.name(), "details": r.mix.details()});
    if let Some(m) = &r.on.method {
        v["method"] = json!(m);
    }
    if let Some(p) = &r.on.path {
        v["path"] = json!(p);
    }
    if let Some((ip, bits)) = r.on.client {
        v["client"] = json!(format!("{ip}/{bits}"));
    }
    v
}

/// The behaviour names a plan uses (for errors about options given to none).
pub fn uses(plan: &Plan, name: &str) -> bool {
    let has = |m: &Mix| {
        m.parts
            .iter()
            .any(|(_, b): &(u32, Behavior)| b.name() == name)
    };
    has(&plan.default) || plan.routes.iter().any(|r| has(&r.mix))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_match_method_path_prefix_and_client_network() {
        let m = Match::parse("post /api from 10.1.0.0/16").unwrap();
        assert_eq!(m.label(), "POST /api from 10.1.0.0/16");
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(m.matches("POST", "/api/x", ip("10.1.2.3")));
        assert!(!m.matches("GET", "/api/x", ip("10.1.2.3")));
        assert!(!m.matches("POST", "/ap", ip("10.1.2.3")));
        assert!(!m.matches("POST", "/api", ip("10.2.0.1")));
        let one = Match::parse("from 127.0.0.2").unwrap();
        assert_eq!(one.label(), "from 127.0.0.2");
        assert!(one.matches("GET", "/", ip("127.0.0.2")));
        assert!(!one.matches("GET", "/", ip("127.0.0.1")));
        assert!(one.matches("GET", "/", ip("::ffff:127.0.0.2")));
        assert!(Match::parse("from ::/0")
            .unwrap()
            .matches("GET", "/", ip("::1")));
        assert_eq!(Match::parse("").unwrap().label(), "*");
        assert!(Match::parse("from")
            .unwrap_err()
            .contains("needs an address"));
        assert!(Match::parse("from 300.1.1.1")
            .unwrap_err()
            .contains("not an IP"));
        assert!(Match::parse("from 10.0.0.0/33")
            .unwrap_err()
            .contains("prefix length"));
        assert!(Match::parse("GET /a /b").unwrap_err().contains("\"/b\""));
    }

    #[test]
    fn the_first_matching_route_wins_and_counts_outlive_a_new_plan() {
        let o = BTreeMap::new();
        let plan = Plan {
            routes: vec![
                route("GET /slow=delay", &o).unwrap(),
                route("/=error", &o).unwrap(),
            ],
            default: Mix::dummy(),
        };
        let p = Proxy::new(
            "p".into(),
            "127.0.0.1:1".parse().unwrap(),
            Protocol::Http,
            Duration::from_secs(1),
            "b:1".into(),
            plan.clone(),
        );
        let (g, live) = p.live();
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        assert_eq!(live.rule("GET", "/slow/x", ip).label, "GET /slow");
        assert_eq!(live.rule("POST", "/slow", ip).label, "/");
        live.rule("GET", "/slow", ip).counts[3].fetch_add(2, Ordering::Relaxed);
        p.set_default(Mix::one(Behavior::Hang));
        assert!(p.generation() > g);
        assert_eq!(p.stats()["routes"]["GET /slow"]["delay"], 2);
        assert_eq!(p.stats()["calls"], 2);
        assert!(route("GET /x", &o)
            .unwrap_err()
            .0
            .contains("MATCH=BEHAVIOR"));
        assert!(route_json(&json!({"path": "/", "behavior": "nope"}))
            .unwrap_err()
            .0
            .contains("the behaviors are"));
        let r = route_json(&json!({"method": "get", "client": "127.0.0.0/8", "behavior": "delay", "options": {"delay": {"sleep": 0.1}}})).unwrap();
        assert_eq!(r.on.label(), "GET from 127.0.0.0/8");
        assert_eq!(
            r.mix.pick(0),
            &Behavior::Delay {
                sleep: Duration::from_millis(100),
                before: true
            }
        );
    }
}
