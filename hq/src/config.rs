//! `config.json`, OCT compatible (DESIGN §5): required keys, OCT's defaults, turret entries given
//! inline or as paths to JSON files. Every error names the file and the key at fault.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Map, Value};

/// A checked project configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The file it was read from.
    pub path: PathBuf,
    pub run_time: Duration,
    pub results_ts_interval_secs: u64,
    pub testing: bool,
    pub progress_bar: bool,
    pub turrets: Vec<TurretEntry>,
    pub min_turrets: usize,
    pub publish_port: u16,
    pub rc_port: u16,
    pub external_publisher: u16,
    pub hq_address: String,
    pub turrets_requirements: Vec<String>,
    pub extra_turret_config: Map<String, Value>,
    /// Ours: how long to wait after `stop` for turrets to report `ready` (default 10 s).
    pub drain_timeout: Duration,
    /// Ours: how often turrets send a heartbeat (default 1 s).
    pub heartbeat_interval: Duration,
    /// Ours: silence after which a turret is `lost` (default 10 s).
    pub turret_timeout: Duration,
    /// Ours: silence of the HQ after which a running turret stops firing (default 15 s).
    pub hq_timeout: Duration,
    /// Ours: secure mode's secret, from `secret_file` (relative to this file) or `OCT_SECRET`.
    pub secret: Option<protocol::Secret>,
    /// Ours: CPU use (percent) above which a turret's latencies are suspect (default 90).
    pub cpu_warning_pct: f64,
    /// Ours: the address the HQ's sockets bind to (`*`, every interface, as OCT, by default).
    pub bind_address: Option<String>,
    /// Ours: one shape for the whole test (`load`), split across turrets by `weight`.
    pub load: Option<crate::load::GlobalLoad>,
    /// Ours: the pass/fail gate (`thresholds`).
    pub thresholds: crate::gate::Thresholds,
    /// Ours: who is told when the test ends or a turret is lost (`observers`).
    pub observers: crate::observe::Observers,
    /// Ours: the chaos proxies and their fault schedule (`chaos`).
    pub chaos: Option<crate::chaos::Chaos>,
    /// Ours: what turrets send (`results`): a row per transaction (OCT's), or aggregates.
    pub results: ResultsMode,
    /// The whole document, unknown keys included, as it was read.
    pub raw: Map<String, Value>,
}

/// config.json's `results`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ResultsMode {
    /// One row per transaction in OCT's `result` table (OCT's way, the default).
    #[default]
    Raw,
    /// One aggregate per turret and `results_ts_interval` (extension `aggregate`).
    Aggregate,
    /// Both: the raw rows and the aggregates, to check one against the other.
    Both,
}

impl ResultsMode {
    pub fn as_str(self) -> &'static str {
        match self {
            ResultsMode::Raw => "raw",
            ResultsMode::Aggregate => "aggregate",
            ResultsMode::Both => "both",
        }
    }
}

/// One turret of the config.
#[derive(Debug, Clone, PartialEq)]
pub struct TurretEntry {
    pub name: String,
    /// The canons it starts: the most its shape asks for.
    pub cannons: u64,
    /// Its load shape (`cannons`/`canons`, `stages`, cycles) and `iterations`.
    pub plan: protocol::Plan,
    /// Its test data: the top level's `data`, then its own (checked, files read).
    pub data: Map<String, Value>,
    /// Its place in `turrets`, for `unique` feeders.
    pub index: usize,
    pub rampup: u64,
    pub script: String,
    pub extra_files: Vec<String>,
    /// Ours, with a global `load`: its part of the split (default 1), and what its packed
    /// config gets for it (`cannons`, `follow_load`).
    pub weight: f64,
    pub load_keys: Map<String, Value>,
    /// The entry as written (or as read from its own file), unknown keys included.
    pub raw: Map<String, Value>,
}

impl TurretEntry {
    /// The config a packed or local turret gets: the entry, then the HQ's address and ports,
    /// then `extra_turret_config` (DESIGN §5).
    pub fn turret_config(&self, config: &Config, publish_port: u16, rc_port: u16) -> Value {
        let mut out = self.raw.clone();
        out.remove("extra_files");
        if !self.data.is_empty() {
            out.insert("data".into(), Value::Object(self.data.clone()));
            out.insert("turret_index".into(), self.index.into());
            out.insert("turret_count".into(), config.turrets.len().into());
        }
        // Cycles timed by the HQ's run_time: the turret, which does not know it, gets the step.
        if let protocol::Shape::Cycles { cycle_secs, .. } = self.plan.shape {
            out.entry("cycle_time").or_insert_with(|| cycle_secs.into());
        }
        for (k, v) in &self.load_keys {
            out.insert(k.clone(), v.clone());
        }
        if !self.load_keys.is_empty() {
            // OCT's turrets read `rampup` too.
            out.entry("rampup").or_insert_with(|| 0.into());
        }
        out.insert("hq_address".into(), config.hq_address.clone().into());
        out.insert("hq_publisher".into(), publish_port.into());
        out.insert("hq_rc".into(), rc_port.into());
        for (k, v) in &config.extra_turret_config {
            out.insert(k.clone(), v.clone());
        }
        Value::Object(out)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: invalid JSON at line {line} column {column}: {message}")]
    Json {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{path}: missing required key `{key}`")]
    Missing { path: PathBuf, key: String },
    #[error("{path}: `{key}` must be {expected}, got {found}")]
    WrongType {
        path: PathBuf,
        key: String,
        expected: &'static str,
        found: String,
    },
    #[error("{path}: `{key}` {why}")]
    Invalid {
        path: PathBuf,
        key: String,
        why: String,
    },
    #[error("{path}: `secret_file`: {source}")]
    SecretFile {
        path: PathBuf,
        source: protocol::SecretError,
    },
    #[error("{0}")]
    SecretEnv(protocol::SecretError),
    #[error("{path}: `{key}`: {message}")]
    Data {
        path: PathBuf,
        key: String,
        message: String,
    },
}

impl Config {
    /// Reads and checks `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let doc = read_json(path)?;
        Config::from_value(path, doc)
    }

    /// Checks an already parsed document; `path` names it in errors and anchors relative turret
    /// entry paths.
    pub fn from_value(path: &Path, doc: Value) -> Result<Config, ConfigError> {
        let c = Checker { path };
        let Value::Object(raw) = doc else {
            return Err(c.wrong("(top level)", "an object", &doc));
        };
        let given_run_time = match raw.get("run_time") {
            None => None,
            Some(_) => Some(c.positive_secs(&raw, "run_time")?),
        };
        let interval = c.required(&raw, "results_ts_interval")?;
        let results_ts_interval_secs = c.int_min(interval, "results_ts_interval", 1)?;
        let testing = c.bool(c.required(&raw, "testing")?, "testing")?;
        let progress_bar = c.bool(c.required(&raw, "progress_bar")?, "progress_bar")?;
        let turrets_value = c.required(&raw, "turrets")?;
        let Value::Array(entries) = turrets_value else {
            return Err(c.wrong("turrets", "an array", turrets_value));
        };
        let load = match raw.get("load") {
            None => None,
            Some(v) => Some(
                crate::load::GlobalLoad::parse(v, given_run_time.map(|d| d.as_secs_f64()))
                    .map_err(|e| c.invalid(&e.key, e.why))?,
            ),
        };
        let global = load.is_some();
        let thresholds = match raw.get("thresholds") {
            None => crate::gate::Thresholds::default(),
            Some(v) => crate::gate::Thresholds::parse(v).map_err(|e| c.invalid(&e.key, e.why))?,
        };
        let observers = crate::observe::Observers::parse(raw.get("observers"))
            .map_err(|e| c.invalid(&e.key, e.why))?;
        let chaos = match raw.get("chaos") {
            None => None,
            Some(v) => Some(crate::chaos::Chaos::parse(v).map_err(|e| c.invalid(&e.key, e.why))?),
        };
        let base = path.parent().unwrap_or(Path::new("."));
        let mut turrets: Vec<TurretEntry> = Vec::with_capacity(entries.len());
        for (i, entry) in entries.iter().enumerate() {
            let key = format!("turrets[{i}]");
            let turret = match entry {
                Value::String(file) => {
                    let file_path = base.join(file);
                    let doc = read_json(&file_path)?;
                    Checker { path: &file_path }.turret(
                        &doc,
                        "(top level)",
                        given_run_time,
                        global,
                    )?
                }
                other => c.turret(other, &key, given_run_time, global)?,
            };
            if turrets.iter().any(|t| t.name == turret.name) {
                return Err(c.invalid(
                    &format!("{key}.name"),
                    format!(
                        "`{}` names two turrets; turret names must be unique",
                        turret.name
                    ),
                ));
            }
            turrets.push(turret);
        }
        if let Some(load) = &load {
            let total: f64 = turrets.iter().map(|t| t.weight).sum();
            for t in &mut turrets {
                t.load_keys = load.entry_keys(t.weight / total);
                t.plan = protocol::Plan::following(&t.load_keys["follow_load"])
                    .map_err(|e| c.invalid(&e.key, e.why))?;
                t.cannons = t.load_keys["cannons"].as_u64().unwrap_or(1);
            }
        }
        let top_data = match raw.get("data") {
            None => Map::new(),
            Some(Value::Object(m)) => m.clone(),
            Some(other) => return Err(c.wrong("data", "an object of feeders", other)),
        };
        for (i, t) in turrets.iter_mut().enumerate() {
            t.index = i;
            let mut data = top_data.clone();
            match t.raw.get("data") {
                None => {}
                Some(Value::Object(m)) => data.extend(m.clone()),
                Some(other) => {
                    return Err(c.wrong(
                        &format!("turrets[{i}].data"),
                        "an object of feeders",
                        other,
                    ))
                }
            }
            let key = if t.raw.contains_key("data") {
                format!("turrets[{i}].data")
            } else {
                "data".to_owned()
            };
            let specs = protocol::data::specs(&Value::Object(data.clone()), &key)
                .map_err(|e| c.invalid(&e.key, e.why))?;
            for spec in specs {
                protocol::data::load(&base.join(&spec.file)).map_err(|message| {
                    ConfigError::Data {
                        path: path.to_owned(),
                        key: format!("{key}.{}.file", spec.name),
                        message,
                    }
                })?;
                // Shipped with the turret like its script.
                if !t.extra_files.contains(&spec.file) {
                    t.extra_files.push(spec.file);
                }
            }
            t.data = data;
        }
        // Without `run_time`, a test lasts as long as its longest shape.
        let run_time = match given_run_time {
            Some(d) => d,
            None => turrets
                .iter()
                .filter_map(|t| t.plan.shape.duration_secs())
                .chain(load.as_ref().and_then(|l| l.duration_secs()))
                .reduce(f64::max)
                .map(Duration::from_secs_f64)
                .ok_or_else(|| ConfigError::Missing {
                    path: path.to_owned(),
                    key: "run_time".into(),
                })?,
        };
        let min_turrets = match raw.get("min_turrets") {
            Some(v) => c.int_min(v, "min_turrets", 1)? as usize,
            None => 1,
        };
        let extra_turret_config = match raw.get("extra_turret_config") {
            None => Map::new(),
            Some(Value::Object(m)) => m.clone(),
            Some(other) => return Err(c.wrong("extra_turret_config", "an object", other)),
        };
        let turrets_requirements = match raw.get("turrets_requirements") {
            None => Vec::new(),
            Some(Value::Array(a)) => a
                .iter()
                .enumerate()
                .map(|(i, v)| match v {
                    Value::String(s) => Ok(s.clone()),
                    other => Err(c.wrong(&format!("turrets_requirements[{i}]"), "a string", other)),
                })
                .collect::<Result<_, _>>()?,
            Some(other) => return Err(c.wrong("turrets_requirements", "an array", other)),
        };
        let hq_address = match raw.get("hq_address") {
            None => "127.0.0.1".to_owned(),
            Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
            Some(other) => return Err(c.wrong("hq_address", "a host name or address", other)),
        };
        let optional_secs = |key: &str, default: u64| match raw.get(key) {
            None => Ok(Duration::from_secs(default)),
            Some(_) => c.positive_secs(&raw, key),
        };
        let drain_timeout = optional_secs("drain_timeout", 10)?;
        let heartbeat_interval = optional_secs("heartbeat_interval", 1)?;
        let turret_timeout = optional_secs("turret_timeout", 10)?;
        let hq_timeout = optional_secs("hq_timeout", 15)?;
        if turret_timeout <= heartbeat_interval {
            return Err(c.invalid(
                "turret_timeout",
                format!(
                    "({:?}) must be longer than `heartbeat_interval` ({heartbeat_interval:?})",
                    turret_timeout
                ),
            ));
        }
        let cpu_warning_pct = match raw.get("cpu_warning") {
            None => 90.0,
            Some(v) => match v.as_f64() {
                Some(pct) if pct > 0.0 && pct.is_finite() => pct,
                Some(_) => {
                    return Err(c.invalid("cpu_warning", "must be a positive percentage".into()))
                }
                None => return Err(c.wrong("cpu_warning", "a percentage", v)),
            },
        };
        let secret = match raw.get("secret_file") {
            None => protocol::Secret::from_env().map_err(ConfigError::SecretEnv)?,
            Some(Value::String(file)) if !file.trim().is_empty() => Some(
                protocol::Secret::from_file(&base.join(file)).map_err(|source| {
                    ConfigError::SecretFile {
                        path: path.to_owned(),
                        source,
                    }
                })?,
            ),
            Some(other) => return Err(c.wrong("secret_file", "the path of a file", other)),
        };
        let bind_address = match raw.get("bind_address") {
            None => None,
            Some(Value::String(s)) if !s.trim().is_empty() => Some(s.trim().to_owned()),
            Some(other) => return Err(c.wrong("bind_address", "an address or `*`", other)),
        };
        let results = match raw.get("results") {
            None => ResultsMode::Raw,
            Some(Value::String(s)) if s == "raw" => ResultsMode::Raw,
            Some(Value::String(s)) if s == "aggregate" => ResultsMode::Aggregate,
            Some(Value::String(s)) if s == "both" => ResultsMode::Both,
            Some(other) => {
                return Err(c.wrong("results", "\"raw\", \"aggregate\" or \"both\"", other))
            }
        };
        let config = Config {
            path: path.to_owned(),
            run_time,
            results_ts_interval_secs,
            testing,
            progress_bar,
            turrets,
            min_turrets,
            publish_port: c.port(&raw, "publish_port", 5000)?,
            rc_port: c.port(&raw, "rc_port", 5001)?,
            external_publisher: c.port(&raw, "external_publisher", 5002)?,
            hq_address,
            turrets_requirements,
            extra_turret_config,
            drain_timeout,
            heartbeat_interval,
            turret_timeout,
            hq_timeout,
            secret,
            cpu_warning_pct,
            bind_address,
            load,
            thresholds,
            observers,
            chaos,
            results,
            raw,
        };
        let ports = [
            ("publish_port", config.publish_port),
            ("rc_port", config.rc_port),
            ("external_publisher", config.external_publisher),
        ];
        for (i, (a, pa)) in ports.iter().enumerate() {
            for (b, pb) in &ports[i + 1..] {
                if pa == pb && *pa != 0 {
                    return Err(c.invalid(b, format!("is {pb}, the same port as `{a}`")));
                }
            }
        }
        Ok(config)
    }
}

fn read_json(path: &Path) -> Result<Value, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|e| ConfigError::Json {
        path: path.to_owned(),
        line: e.line(),
        column: e.column(),
        message: {
            let s = e.to_string();
            s.rfind(" at line ")
                .map_or(s.clone(), |i| s[..i].to_owned())
        },
    })
}

struct Checker<'p> {
    path: &'p Path,
}

fn describe(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => format!("{s:?}"),
        Value::Array(_) => "an array".into(),
        Value::Object(_) => "an object".into(),
    }
}

impl Checker<'_> {
    fn wrong(&self, key: &str, expected: &'static str, found: &Value) -> ConfigError {
        ConfigError::WrongType {
            path: self.path.to_owned(),
            key: key.to_owned(),
            expected,
            found: describe(found),
        }
    }

    fn invalid(&self, key: &str, why: String) -> ConfigError {
        ConfigError::Invalid {
            path: self.path.to_owned(),
            key: key.to_owned(),
            why,
        }
    }

    fn required<'v>(
        &self,
        obj: &'v Map<String, Value>,
        key: &str,
    ) -> Result<&'v Value, ConfigError> {
        obj.get(key).ok_or_else(|| ConfigError::Missing {
            path: self.path.to_owned(),
            key: key.to_owned(),
        })
    }

    fn bool(&self, v: &Value, key: &str) -> Result<bool, ConfigError> {
        v.as_bool()
            .ok_or_else(|| self.wrong(key, "true or false", v))
    }

    fn int_min(&self, v: &Value, key: &str, min: u64) -> Result<u64, ConfigError> {
        let n = v
            .as_u64()
            .ok_or_else(|| self.wrong(key, "a whole number", v))?;
        if n < min {
            return Err(self.invalid(key, format!("must be at least {min}, got {n}")));
        }
        Ok(n)
    }

    fn positive_secs(&self, obj: &Map<String, Value>, key: &str) -> Result<Duration, ConfigError> {
        let v = self.required(obj, key)?;
        let secs = v
            .as_f64()
            .ok_or_else(|| self.wrong(key, "a number of seconds", v))?;
        if !(secs > 0.0 && secs.is_finite() && secs < 1e9) {
            return Err(self.invalid(
                key,
                format!("must be a positive number of seconds, got {secs}"),
            ));
        }
        Ok(Duration::from_secs_f64(secs))
    }

    fn port(&self, obj: &Map<String, Value>, key: &str, default: u16) -> Result<u16, ConfigError> {
        match obj.get(key) {
            None => Ok(default),
            Some(v) => {
                let n = v
                    .as_u64()
                    .ok_or_else(|| self.wrong(key, "a port number", v))?;
                u16::try_from(n).map_err(|_| {
                    self.invalid(key, format!("must be a port from 0 to 65535, got {n}"))
                })
            }
        }
    }

    /// A turret entry; `run_time` (when the config gives one) times cycles that have no
    /// `cycle_time` of their own.
    fn turret(
        &self,
        v: &Value,
        key: &str,
        run_time: Option<Duration>,
        global: bool,
    ) -> Result<TurretEntry, ConfigError> {
        let Value::Object(obj) = v else {
            return Err(self.wrong(key, "an object or the path of a JSON file", v));
        };
        let sub = |k: &str| {
            if key == "(top level)" {
                k.to_owned()
            } else {
                format!("{key}.{k}")
            }
        };
        let string = |k: &str| -> Result<String, ConfigError> {
            match self.required(obj, k).map_err(|_| ConfigError::Missing {
                path: self.path.to_owned(),
                key: sub(k),
            })? {
                Value::String(s) if !s.is_empty() => Ok(s.clone()),
                other => Err(self.wrong(&sub(k), "a non-empty string", other)),
            }
        };
        let name = string("name")?;
        let script = string("script")?;
        let weight = match obj.get("weight") {
            None => 1.0,
            Some(_) if !global => {
                return Err(self.invalid(
                    &sub("weight"),
                    "only has a meaning with a top-level `load` (a shape the HQ splits)".into(),
                ))
            }
            Some(v) => match v.as_f64() {
                Some(w) if w > 0.0 && w.is_finite() => w,
                _ => return Err(self.wrong(&sub("weight"), "a number above 0", v)),
            },
        };
        let prefix = if key == "(top level)" { "" } else { key };
        let plan = if global {
            if let Some(k) = crate::load::SHAPE_KEYS
                .iter()
                .find(|k| obj.contains_key(**k))
            {
                return Err(self.invalid(
                    &sub(k),
                    "cannot go with the top-level `load`: the HQ splits that shape across turrets (give a `weight` instead)".into(),
                ));
            }
            // Set once every turret's weight is known.
            protocol::Plan {
                shape: protocol::Shape::Constant { cannons: 1 },
                iterations: None,
            }
        } else {
            if !["cannons", "canons", "stages", "arrival_rate"]
                .iter()
                .any(|k| obj.contains_key(*k))
            {
                return Err(ConfigError::Missing {
                    path: self.path.to_owned(),
                    key: sub("cannons"),
                });
            }
            protocol::Plan::from_entry(obj, prefix, run_time.map(|d| d.as_secs_f64())).map_err(
                |e| ConfigError::Invalid {
                    path: self.path.to_owned(),
                    key: e.key,
                    why: e.why,
                },
            )?
        };
        let cannons = plan.shape.pool();
        let rampup = match obj.get("rampup") {
            Some(v) => self.int_min(v, &sub("rampup"), 0)?,
            None => 0,
        };
        let extra_files = match obj.get("extra_files") {
            None => Vec::new(),
            Some(Value::Array(a)) => a
                .iter()
                .enumerate()
                .map(|(i, f)| match f {
                    Value::String(s) => Ok(s.clone()),
                    other => Err(self.wrong(&sub(&format!("extra_files[{i}]")), "a path", other)),
                })
                .collect::<Result<_, _>>()?,
            Some(other) => return Err(self.wrong(&sub("extra_files"), "an array of paths", other)),
        };
        Ok(TurretEntry {
            name,
            cannons,
            plan,
            data: Map::new(),
            index: 0,
            rampup,
            script,
            extra_files,
            weight,
            load_keys: Map::new(),
            raw: obj.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn base() -> Value {
        json!({
            "run_time": 10, "results_ts_interval": 2, "testing": false, "progress_bar": true,
            "turrets": [{"name": "navigation", "cannons": 2, "rampup": 0, "script": "test_scripts/v_user.py"}]
        })
    }

    fn load(v: Value) -> Result<Config, String> {
        Config::from_value(Path::new("p/config.json"), v).map_err(|e| e.to_string())
    }

    #[test]
    fn applies_oct_defaults() {
        let c = load(base()).unwrap();
        assert_eq!(c.run_time, Duration::from_secs(10));
        assert_eq!(
            (c.publish_port, c.rc_port, c.external_publisher),
            (5000, 5001, 5002)
        );
        assert_eq!((c.min_turrets, c.hq_address.as_str()), (1, "127.0.0.1"));
        assert_eq!(c.turrets[0].cannons, 2);
    }

    #[test]
    fn reads_the_real_oct_config() {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/oct/real-oct-config.json");
        let c = Config::load(&path).unwrap();
        assert_eq!(c.min_turrets, 2);
        assert_eq!(c.turrets.len(), 3);
        assert_eq!(c.turrets[2].extra_files, ["templates"]);
        let packed = c.turrets[0].turret_config(&c, c.publish_port, c.rc_port);
        assert_eq!(
            packed.to_string(),
            r#"{"name":"navigation","cannons":2,"rampup":0,"script":"test_scripts/v_user.py","hq_address":"127.0.0.1","hq_publisher":5000,"hq_rc":5011}"#
        );
    }

    #[test]
    fn names_the_file_and_key_at_fault() {
        type Mutation = Box<dyn Fn(&mut Value)>;
        let cases: Vec<(Mutation, &str)> = vec![
            (
                Box::new(|v| {
                    v.as_object_mut().unwrap().remove("run_time");
                }),
                "p/config.json: missing required key `run_time`",
            ),
            (
                Box::new(|v| v["run_time"] = json!("ten")),
                "p/config.json: `run_time` must be a number of seconds, got \"ten\"",
            ),
            (
                Box::new(|v| v["run_time"] = json!(-1)),
                "p/config.json: `run_time` must be a positive number of seconds, got -1",
            ),
            (
                Box::new(|v| v["publish_port"] = json!(70000)),
                "p/config.json: `publish_port` must be a port from 0 to 65535, got 70000",
            ),
            (
                Box::new(|v| v["rc_port"] = json!(5000)),
                "p/config.json: `rc_port` is 5000, the same port as `publish_port`",
            ),
            (
                Box::new(|v| v["turrets"][0].as_object_mut().unwrap().remove("script").map(drop).unwrap()),
                "p/config.json: missing required key `turrets[0].script`",
            ),
            (
                Box::new(|v| v["turrets"][0]["cannons"] = json!(0)),
                "p/config.json: `turrets[0].cannons` must be a whole number ≥ 1, got 0",
            ),
            (
                Box::new(|v| {
                    let t = v["turrets"][0].clone();
                    v["turrets"].as_array_mut().unwrap().push(t);
                }),
                "p/config.json: `turrets[1].name` `navigation` names two turrets; turret names must be unique",
            ),
            (
                Box::new(|v| v["testing"] = json!("no")),
                "p/config.json: `testing` must be true or false, got \"no\"",
            ),
        ];
        for (mutate, want) in cases {
            let mut v = base();
            mutate(&mut v);
            assert_eq!(load(v).unwrap_err(), want);
        }
    }

    #[test]
    fn invalid_json_gives_line_and_column() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(&path, "{\n  \"run_time\": 10,\n  oops\n}").unwrap();
        let err = Config::load(&path).unwrap_err().to_string();
        assert!(
            err.ends_with("invalid JSON at line 3 column 3: key must be a string"),
            "{err}"
        );
    }

    #[test]
    fn a_string_turret_entry_is_a_json_file_beside_the_config() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("t.json"),
            r#"{"name": "far", "cannons": 3, "rampup": 1, "script": "s.lua"}"#,
        )
        .unwrap();
        let mut v = base();
        v["turrets"] = json!(["t.json"]);
        let c = Config::from_value(&dir.path().join("config.json"), v).unwrap();
        assert_eq!(
            (c.turrets[0].name.as_str(), c.turrets[0].cannons),
            ("far", 3)
        );
    }
}
