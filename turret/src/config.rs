//! A turret's config.json (what `oct pack-turrets` writes): the turret entry plus `hq_address`,
//! `hq_publisher` and `hq_rc`. `script` resolves against the config file's folder.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

#[derive(Debug, Clone)]
pub struct Config {
    pub name: String,
    /// The canons started: the most the shape asks for.
    pub cannons: u64,
    /// Its load shape and iterations (`cannons`/`canons`, `rampup`, `stages`, cycles,
    /// `arrival_rate`).
    pub plan: protocol::Plan,
    /// Ours, written by the HQ for a global `load`: the turret follows the HQ's `load`
    /// commands (its plan is then a pool of canons, none wanted until the first command).
    pub follow: bool,
    /// Its test data (`data`), read once.
    pub data: Vec<(
        protocol::data::DataSpec,
        std::sync::Arc<protocol::data::Table>,
    )>,
    /// Ours: its place among the HQ's turrets, for `unique` feeders (default 0 of 1).
    pub turret_index: usize,
    pub turret_count: usize,
    pub rampup_secs: u64,
    /// As written in the config (what the status message reports).
    pub script: String,
    /// Where the script really is.
    pub script_path: PathBuf,
    pub hq_address: String,
    pub hq_publisher: u16,
    pub hq_rc: u16,
    /// Ours: threads hosting the canons (default: the machine's cores).
    pub workers: usize,
    /// Secure mode's shared secret: `secret_file` (relative to the config's folder), else
    /// `OCT_SECRET` from the environment, else none (plain OCT protocol).
    pub secret: Option<protocol::Secret>,
    /// `oct turret --once`: exit after the first test it runs (a Kubernetes Job's pod).
    pub once: bool,
    /// The whole document, handed to scripts.
    pub raw: Map<String, Value>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: invalid JSON at line {line} column {column}")]
    Json {
        path: PathBuf,
        line: usize,
        column: usize,
    },
    #[error("{path}: missing required key `{key}`")]
    Missing { path: PathBuf, key: &'static str },
    #[error("{path}: `{key}` must be {expected}")]
    WrongType {
        path: PathBuf,
        key: &'static str,
        expected: &'static str,
    },
    #[error("{path}: script {script} not found")]
    NoScript { path: PathBuf, script: PathBuf },
    #[error("{path}: {source}")]
    Shape {
        path: PathBuf,
        source: protocol::ShapeError,
    },
    #[error("{0}")]
    Data(String),
    #[error("{path}: `secret_file`: {source}")]
    Secret {
        path: PathBuf,
        source: protocol::SecretError,
    },
}

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let doc: Value = serde_json::from_str(&text).map_err(|e| ConfigError::Json {
            path: path.to_owned(),
            line: e.line(),
            column: e.column(),
        })?;
        let missing = |key| ConfigError::Missing {
            path: path.to_owned(),
            key,
        };
        let wrong = |key, expected| ConfigError::WrongType {
            path: path.to_owned(),
            key,
            expected,
        };
        let Value::Object(raw) = doc else {
            return Err(wrong("(top level)", "an object"));
        };
        let string = |key: &'static str| match raw.get(key) {
            None => Err(missing(key)),
            Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
            Some(_) => Err(wrong(key, "a non-empty string")),
        };
        let int = |key: &'static str, min: u64| match raw.get(key) {
            None => Err(missing(key)),
            Some(v) => v.as_u64().filter(|n| *n >= min).ok_or_else(|| {
                wrong(
                    key,
                    if min > 0 {
                        "a whole number ≥ 1"
                    } else {
                        "a whole number"
                    },
                )
            }),
        };
        let port = |key: &'static str| {
            int(key, 1).and_then(|n| u16::try_from(n).map_err(|_| wrong(key, "a port number")))
        };
        let script = string("script")?;
        let base = path.parent().unwrap_or(Path::new("."));
        let script_path = base.join(&script);
        if !script_path.is_file() {
            return Err(ConfigError::NoScript {
                path: path.to_owned(),
                script: script_path,
            });
        }
        let shape_error = |source| ConfigError::Shape {
            path: path.to_owned(),
            source,
        };
        let (plan, follow) = match raw.get("follow_load") {
            Some(v) => (protocol::Plan::following(v).map_err(shape_error)?, true),
            None => (
                protocol::Plan::from_entry(&raw, "", None).map_err(shape_error)?,
                false,
            ),
        };
        let data = match raw.get("data") {
            None => Vec::new(),
            Some(v) => protocol::data::specs(v, "data")
                .map_err(|source| ConfigError::Shape {
                    path: path.to_owned(),
                    source,
                })?
                .into_iter()
                .map(|spec| {
                    protocol::data::load(&base.join(&spec.file))
                        .map(|t| (spec, std::sync::Arc::new(t)))
                        .map_err(ConfigError::Data)
                })
                .collect::<Result<_, _>>()?,
        };
        let place = |key: &'static str, default: u64| match raw.get(key) {
            None => Ok(default),
            Some(v) => v.as_u64().ok_or_else(|| wrong(key, "a whole number")),
        };
        let (turret_index, turret_count) = (place("turret_index", 0)?, place("turret_count", 1)?);
        let secret_error = |source| ConfigError::Secret {
            path: path.to_owned(),
            source,
        };
        let secret = match raw.get("secret_file") {
            None => protocol::Secret::from_env().map_err(secret_error)?,
            Some(Value::String(file)) if !file.is_empty() => {
                Some(protocol::Secret::from_file(&base.join(file)).map_err(secret_error)?)
            }
            Some(_) => return Err(wrong("secret_file", "a non-empty string")),
        };
        Ok(Config {
            name: string("name")?,
            cannons: plan.shape.pool(),
            plan,
            follow,
            data,
            turret_index: turret_index as usize,
            turret_count: turret_count.max(1) as usize,
            rampup_secs: match raw.get("rampup") {
                None => 0,
                Some(_) => int("rampup", 0)?,
            },
            script,
            script_path,
            hq_address: string("hq_address")?,
            hq_publisher: port("hq_publisher")?,
            hq_rc: port("hq_rc")?,
            workers: match raw.get("workers") {
                None => std::thread::available_parallelism().map_or(1, |n| n.get()),
                Some(_) => int("workers", 1)? as usize,
            },
            secret,
            once: false,
            raw,
        })
    }
}
