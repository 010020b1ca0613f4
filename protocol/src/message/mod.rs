//! Turret → HQ messages: status and results, on the HQ's PULL socket.

use std::borrow::Cow;
use std::fmt;

use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;

use crate::light::Light;
use crate::pyjson;

/// Custom timers of one iteration, name → seconds, in the order the script set them.
pub type Timers = Vec<(String, f64)>;

/// A turret's state, with OCT's literals on the wire (`ready`, `Running`, `Aborted`, `Killed`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TurretState {
    Ready,
    Running,
    Aborted,
    Killed,
}

impl TurretState {
    /// The literal OCT sends for this state.
    pub fn as_oct(self) -> &'static str {
        match self {
            TurretState::Ready => "ready",
            TurretState::Running => "Running",
            TurretState::Aborted => "Aborted",
            TurretState::Killed => "Killed",
        }
    }

    /// Reads a status literal, case-insensitively (OCT peers disagree on case).
    pub fn parse(s: &str) -> Option<Self> {
        [
            TurretState::Ready,
            TurretState::Running,
            TurretState::Aborted,
            TurretState::Killed,
        ]
        .into_iter()
        .find(|state| state.as_oct().eq_ignore_ascii_case(s))
    }
}

impl fmt::Display for TurretState {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.as_oct())
    }
}

impl Serialize for TurretState {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_oct())
    }
}

/// A turret's status message.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Status {
    pub turret: String,
    pub status: TurretState,
    pub uuid: String,
    pub rampup: u64,
    pub script: String,
    pub cannons: u64,
    /// Extension: why the turret is `Aborted`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Extension ([`crate::EXT_SEQ`]): how many results the turret sent in the last test.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub results_sent: Option<u64>,
    /// Extension ([`crate::EXT_SEQ`]): on a `ready`, the test ended by itself (every canon ran
    /// its `iterations`), not by a stop.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub done: Option<bool>,
    /// Extension ([`crate::EXT_LOAD`]): on a `ready` after an open-model test, the iterations
    /// its schedule started and dropped (no canon was free), exactly.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iterations_started: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iterations_dropped: Option<u64>,
    /// Extension ([`crate::EXT_AGGREGATE`]): aggregates sent in this HQ session.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub intervals_sent: Option<u64>,
}

/// One transaction's result.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TestResult {
    /// Seconds since the turret received `start`.
    pub elapsed: f64,
    /// Wall clock (Unix seconds) at the end of the iteration.
    pub epoch: f64,
    /// Duration of `run()` alone, in seconds.
    pub scriptrun_time: f64,
    /// `""` on success, else the error message.
    pub error: String,
    #[serde(serialize_with = "timers_as_map")]
    pub custom_timers: Timers,
    /// Missing in what oct-turrets 0.2.8 sends; the HQ stores [`crate::NONAME`] then.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub turret_name: Option<String>,
    /// Extension ([`crate::EXT_SEQ`]): 1, 2, 3… per turret and test.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    /// Extension ([`crate::EXT_SEQ`]): the uuid of the turret that sent it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub turret_uuid: Option<String>,
    /// Extension ([`crate::EXT_LOAD`]): in an open-model test, how late the iteration began
    /// against its schedule, in seconds. `lag + scriptrun_time` is the latency a user saw from
    /// when the iteration was due: free of coordinated omission.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lag: Option<f64>,
    /// Extension ([`crate::EXT_CHECKS`]): the script's checks in this iteration, name →
    /// `{"passed": n, "failed": n}` (a check may run more than once an iteration).
    #[serde(
        skip_serializing_if = "Vec::is_empty",
        serialize_with = "checks_as_map"
    )]
    pub checks: Vec<(String, u64, u64)>,
    /// Extension ([`crate::EXT_CHECKS`]): what the script added to its counters in this
    /// iteration, name → amount.
    #[serde(
        skip_serializing_if = "Vec::is_empty",
        serialize_with = "timers_as_map"
    )]
    pub counters: Timers,
}

fn checks_as_map<S: Serializer>(checks: &[(String, u64, u64)], s: S) -> Result<S::Ok, S::Error> {
    let mut map = s.serialize_map(Some(checks.len()))?;
    #[derive(Serialize)]
    struct Counts {
        passed: u64,
        failed: u64,
    }
    for (name, passed, failed) in checks {
        map.serialize_entry(
            name,
            &Counts {
                passed: *passed,
                failed: *failed,
            },
        )?;
    }
    map.end()
}

fn timers_as_map<S: Serializer>(timers: &Timers, s: S) -> Result<S::Ok, S::Error> {
    let mut map = s.serialize_map(Some(timers.len()))?;
    for (name, secs) in timers {
        map.serialize_entry(name, secs)?;
    }
    map.end()
}

impl TestResult {
    /// The result's own frame, as [`Message::encode`] writes it.
    pub fn encode(&self) -> Vec<u8> {
        pyjson::to_vec(self)
    }

    /// The timers as compact JSON text, as OCT stores them in `result.custom_timers`.
    pub fn timers_json(&self) -> String {
        let mut out = Vec::with_capacity(16 + 32 * self.custom_timers.len());
        let mut ser = serde_json::Serializer::new(&mut out);
        // A map of strings to numbers always serializes.
        let _ = timers_as_map(&self.custom_timers, &mut ser);
        String::from_utf8(out).unwrap_or_default()
    }
}

/// Extension ([`crate::EXT_HEARTBEAT`]): a turret's sign of life, every `heartbeat_ms`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Heartbeat {
    /// 1, 2, 3… per turret process.
    pub heartbeat: u64,
    pub turret: String,
    pub uuid: String,
    /// Results sent so far in this HQ session.
    pub results_sent: u64,
    /// Canons in their loop now.
    pub cannons_active: u64,
    /// Canons the turret's shape asks for now (absent from turrets that do not say).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cannons_target: Option<u64>,
    /// The turret process's CPU use over the last interval, in percent of the cores its canons
    /// can use.
    pub cpu: f64,
    /// Extension ([`crate::EXT_LOAD`]): the generation of the last `load` command applied (0:
    /// none yet). Its presence says the turret follows `load` commands.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub load_generation: Option<u64>,
    /// Extension ([`crate::EXT_LOAD`]), open model: iterations per second the schedule asks for
    /// now, and the iterations started and dropped since the test began.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub arrival_rate: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iterations_started: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iterations_dropped: Option<u64>,
    /// Extension ([`crate::EXT_AGGREGATE`]): aggregates sent in this HQ session.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub intervals_sent: Option<u64>,
}

/// Anything a turret pushes to the HQ.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    Status(Status),
    Result(TestResult),
    Heartbeat(Heartbeat),
    /// Extension ([`crate::EXT_AGGREGATE`]): one interval of a turret's transactions.
    Aggregate(Box<crate::Aggregate>),
}

impl Message {
    /// The frame, with Python's `json.dumps` separators as oct-turrets writes them.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Message::Status(s) => pyjson::to_vec(s),
            Message::Result(r) => pyjson::to_vec(r),
            Message::Heartbeat(h) => pyjson::to_vec(h),
            Message::Aggregate(a) => a.encode(),
        }
    }

    /// Appends the frame of a batch ([`crate::EXT_BATCH`]) of results to `out`: a JSON array of
    /// result frames, with Python's separators.
    pub fn encode_batch(results: &[TestResult], out: &mut Vec<u8>) {
        out.push(b'[');
        for (i, r) in results.iter().enumerate() {
            if i > 0 {
                out.extend_from_slice(b", ");
            }
            pyjson::write(out, r);
        }
        out.push(b']');
    }

    /// Decodes one frame, classifying it by its keys: `uuid` and `status` make a status,
    /// `scriptrun_time` makes a result, `heartbeat` and `uuid` make a heartbeat, `aggregate` and
    /// `turret_uuid` an aggregate (never inside a batch).
    pub fn decode(frame: &[u8]) -> Result<Message, DecodeError> {
        let text = std::str::from_utf8(frame).map_err(|_| DecodeError::NotUtf8)?;
        let value: Light = serde_json::from_str(text).map_err(json_error)?;
        // An aggregate is nested deeper than the flat messages: read it whole, typed.
        if let Light::Object(fields) = &value {
            if Fields(fields).get("aggregate").is_some()
                && Fields(fields).get("turret_uuid").is_some()
            {
                return crate::Aggregate::decode(text).map(|a| Message::Aggregate(Box::new(a)));
            }
        }
        Message::classify(value)
    }

    /// Decodes a batch frame ([`crate::EXT_BATCH`]) in one pass: each element as
    /// [`Message::decode`] would decode it alone. `None` when the frame is not a batch; the
    /// outer error when the frame as a whole is not a JSON array.
    #[allow(clippy::type_complexity)]
    pub fn decode_batch(
        frame: &[u8],
    ) -> Option<Result<Vec<Result<Message, DecodeError>>, DecodeError>> {
        let parts = batch_parts::<Light>(frame)?;
        Some(parts.map(|parts| parts.into_iter().map(Message::classify).collect()))
    }

    fn classify(value: Light) -> Result<Message, DecodeError> {
        let Light::Object(fields) = value else {
            return Err(DecodeError::NotAnObject(value.kind()));
        };
        let f = Fields(&fields);
        let is_status = f.get("uuid").is_some() && f.get("status").is_some();
        let is_result = f.get("scriptrun_time").is_some();
        let is_heartbeat = f.get("heartbeat").is_some() && f.get("uuid").is_some();
        match (is_status, is_result, is_heartbeat) {
            (true, false, false) => f.status().map(Message::Status),
            (false, true, false) => f.result().map(Message::Result),
            (false, false, true) => f.heartbeat().map(Message::Heartbeat),
            (false, false, false) => Err(DecodeError::UnknownKind),
            _ => Err(DecodeError::Ambiguous),
        }
    }
}

/// The frames inside a batch frame ([`crate::EXT_BATCH`]), each as the bytes it was sent as,
/// to be decoded one by one with [`Message::decode`]. `None` when the frame is not a batch
/// (its JSON does not start with `[`).
pub fn split_batch(frame: &[u8]) -> Option<Result<Vec<&[u8]>, DecodeError>> {
    let parts = batch_parts::<&serde_json::value::RawValue>(frame)?;
    Some(parts.map(|parts| parts.into_iter().map(|p| p.get().as_bytes()).collect()))
}

/// The elements of a batch frame read as `T`; `None` when the frame is not a batch (its JSON
/// does not start with `[`).
fn batch_parts<'a, T: serde::Deserialize<'a>>(
    frame: &'a [u8],
) -> Option<Result<Vec<T>, DecodeError>> {
    let start = frame.iter().position(|b| !b.is_ascii_whitespace())?;
    if frame[start] != b'[' {
        return None;
    }
    Some(
        std::str::from_utf8(frame)
            .map_err(|_| DecodeError::NotUtf8)
            .and_then(|text| serde_json::from_str(text).map_err(json_error)),
    )
}

const STATUS_KEYS: &[&str] = &[
    "turret",
    "status",
    "uuid",
    "rampup",
    "script",
    "cannons",
    "canons",
    "message",
    "results_sent",
    "done",
    "iterations_started",
    "iterations_dropped",
    "intervals_sent",
];
const RESULT_KEYS: &[&str] = &[
    "elapsed",
    "epoch",
    "scriptrun_time",
    "error",
    "custom_timers",
    "turret_name",
    "seq",
    "turret_uuid",
    "lag",
    "checks",
    "counters",
];

const HEARTBEAT_KEYS: &[&str] = &[
    "heartbeat",
    "turret",
    "uuid",
    "results_sent",
    "cannons_active",
    "cannons_target",
    "cpu",
    "load_generation",
    "arrival_rate",
    "iterations_started",
    "iterations_dropped",
    "intervals_sent",
];

struct Fields<'a, 'b>(&'b [(Cow<'a, str>, Light<'a>)]);

impl<'a> Fields<'a, '_> {
    fn get(&self, name: &str) -> Option<&Light<'a>> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v)
    }

    fn only(&self, allowed: &[&str]) -> Result<(), DecodeError> {
        match self.0.iter().find(|(k, _)| !allowed.contains(&k.as_ref())) {
            Some((k, _)) => Err(DecodeError::UnknownField(k.to_string())),
            None => Ok(()),
        }
    }

    fn num(&self, name: &'static str) -> Result<f64, DecodeError> {
        match self.get(name) {
            Some(v) => number(name, v),
            None => Err(DecodeError::MissingField(name)),
        }
    }

    fn int(&self, name: &'static str) -> Result<u64, DecodeError> {
        let x = self.num(name)?;
        integer(name, x)
    }

    fn opt_num(&self, name: &'static str) -> Result<Option<f64>, DecodeError> {
        match self.get(name) {
            None | Some(Light::Null) => Ok(None),
            Some(v) => number(name, v).map(Some),
        }
    }

    fn opt_int(&self, name: &'static str) -> Result<Option<u64>, DecodeError> {
        match self.get(name) {
            None | Some(Light::Null) => Ok(None),
            Some(v) => integer(name, number(name, v)?).map(Some),
        }
    }

    fn string(&self, name: &'static str) -> Result<String, DecodeError> {
        match self.get(name) {
            Some(Light::Str(s)) => Ok(s.to_string()),
            Some(other) => Err(DecodeError::wrong_type(name, "a string", other)),
            None => Err(DecodeError::MissingField(name)),
        }
    }

    fn opt_string(&self, name: &'static str) -> Result<Option<String>, DecodeError> {
        match self.get(name) {
            None | Some(Light::Null) => Ok(None),
            Some(Light::Str(s)) => Ok(Some(s.to_string())),
            Some(other) => Err(DecodeError::wrong_type(name, "a string", other)),
        }
    }

    fn status(&self) -> Result<Status, DecodeError> {
        self.only(STATUS_KEYS)?;
        let literal = self.string("status")?;
        let status =
            TurretState::parse(&literal).ok_or(DecodeError::UnknownStatus(literal.clone()))?;
        // oct-turrets 0.2.8 says `cannons`; earlier versions said `canons`.
        let cannons = match self.get("cannons") {
            Some(_) => self.int("cannons")?,
            None => self.int("canons").map_err(|e| match e {
                DecodeError::MissingField(_) => DecodeError::MissingField("cannons"),
                e => e,
            })?,
        };
        Ok(Status {
            turret: self.string("turret")?,
            status,
            uuid: self.string("uuid")?,
            rampup: self.int("rampup")?,
            script: self.string("script")?,
            cannons,
            message: self.opt_string("message")?,
            results_sent: self.opt_int("results_sent")?,
            done: match self.get("done") {
                None | Some(Light::Null) => None,
                Some(Light::Bool(b)) => Some(*b),
                Some(other) => return Err(DecodeError::wrong_type("done", "true or false", other)),
            },
            iterations_started: self.opt_int("iterations_started")?,
            iterations_dropped: self.opt_int("iterations_dropped")?,
            intervals_sent: self.opt_int("intervals_sent")?,
        })
    }

    fn heartbeat(&self) -> Result<Heartbeat, DecodeError> {
        self.only(HEARTBEAT_KEYS)?;
        Ok(Heartbeat {
            heartbeat: self.int("heartbeat")?,
            turret: self.string("turret")?,
            uuid: self.string("uuid")?,
            results_sent: self.int("results_sent")?,
            cannons_active: self.int("cannons_active")?,
            cannons_target: self.opt_int("cannons_target")?,
            cpu: self.num("cpu")?,
            load_generation: self.opt_int("load_generation")?,
            arrival_rate: self.opt_num("arrival_rate")?,
            iterations_started: self.opt_int("iterations_started")?,
            iterations_dropped: self.opt_int("iterations_dropped")?,
            intervals_sent: self.opt_int("intervals_sent")?,
        })
    }

    /// An object of numbers (`custom_timers`, `counters`); absent or null is empty.
    fn number_map(&self, field: &'static str) -> Result<Timers, DecodeError> {
        match self.get(field) {
            None | Some(Light::Null) => Ok(Vec::new()),
            Some(Light::Object(items)) => items
                .iter()
                .map(|(name, v)| match number(field, v) {
                    Ok(x) => Ok((name.to_string(), x)),
                    Err(_) => Err(DecodeError::WrongType {
                        field: format!("{field}.{name}"),
                        expected: "a number",
                        found: v.kind(),
                    }),
                })
                .collect(),
            Some(other) => Err(DecodeError::wrong_type(field, "an object", other)),
        }
    }

    fn checks(&self) -> Result<Vec<(String, u64, u64)>, DecodeError> {
        let Some(Light::Object(items)) = self.get("checks") else {
            return match self.get("checks") {
                None | Some(Light::Null) => Ok(Vec::new()),
                Some(other) => Err(DecodeError::wrong_type("checks", "an object", other)),
            };
        };
        items
            .iter()
            .map(|(name, v)| {
                let bad = || DecodeError::WrongType {
                    field: format!("checks.{name}"),
                    expected: "{\"passed\": n, \"failed\": n}",
                    found: v.kind(),
                };
                let Light::Object(counts) = v else {
                    return Err(bad());
                };
                let count = |key: &str| match counts.iter().find(|(k, _)| k == key) {
                    None => Ok(0),
                    Some((_, x)) => number("checks", x)
                        .and_then(|x| integer("checks", x))
                        .map_err(|_| bad()),
                };
                Ok((name.to_string(), count("passed")?, count("failed")?))
            })
            .collect()
    }

    fn result(&self) -> Result<TestResult, DecodeError> {
        self.only(RESULT_KEYS)?;
        let custom_timers = self.number_map("custom_timers")?;
        Ok(TestResult {
            elapsed: self.num("elapsed")?,
            epoch: self.num("epoch")?,
            scriptrun_time: self.num("scriptrun_time")?,
            error: self.opt_string("error")?.unwrap_or_default(),
            custom_timers,
            turret_name: self.opt_string("turret_name")?,
            seq: self.opt_int("seq")?,
            turret_uuid: self.opt_string("turret_uuid")?,
            lag: self.opt_num("lag")?,
            checks: self.checks()?,
            counters: self.number_map("counters")?,
        })
    }
}

/// Ints, floats and numeric strings are all numbers to OCT's Python HQ; so they are to us.
fn number(name: &'static str, v: &Light) -> Result<f64, DecodeError> {
    let x = match v {
        Light::Num(x) => *x,
        Light::Str(s) => s
            .trim()
            .parse::<f64>()
            .map_err(|_| DecodeError::wrong_type(name, "a number", v))?,
        other => return Err(DecodeError::wrong_type(name, "a number", other)),
    };
    if x.is_finite() {
        Ok(x)
    } else {
        Err(DecodeError::wrong_type(name, "a finite number", v))
    }
}

fn integer(name: &'static str, x: f64) -> Result<u64, DecodeError> {
    if x >= 0.0 && x.fract() == 0.0 && x < 9.007_199_254_740_992e15 {
        Ok(x as u64)
    } else {
        Err(DecodeError::WrongType {
            field: name.to_owned(),
            expected: "a whole number ≥ 0",
            found: "a number",
        })
    }
}

pub(crate) fn json_error(e: serde_json::Error) -> DecodeError {
    DecodeError::Json {
        line: e.line(),
        column: e.column(),
        message: strip_position(&e.to_string()),
    }
}

fn strip_position(s: &str) -> String {
    match s.rfind(" at line ") {
        Some(i) => s[..i].to_owned(),
        None => s.to_owned(),
    }
}

/// Why a frame was rejected. [`DecodeError::kind`] is a short stable label for counting.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DecodeError {
    #[error("not UTF-8")]
    NotUtf8,
    #[error("invalid JSON at line {line} column {column}: {message}")]
    Json {
        line: usize,
        column: usize,
        message: String,
    },
    #[error("expected a JSON object, got {0}")]
    NotAnObject(&'static str),
    #[error("command frame has no channel (no space before the JSON)")]
    NoChannel,
    #[error("neither a status (keys uuid and status) nor a result (key scriptrun_time)")]
    UnknownKind,
    #[error("has the keys of both a status and a result")]
    Ambiguous,
    #[error("missing field `{0}`")]
    MissingField(&'static str),
    #[error("unknown field `{0}`")]
    UnknownField(String),
    #[error("field `{field}` should be {expected}, got {found}")]
    WrongType {
        field: String,
        expected: &'static str,
        found: &'static str,
    },
    #[error("unknown turret status `{0}` (expected ready, Running, Aborted or Killed)")]
    UnknownStatus(String),
    #[error("unknown command `{0}`")]
    UnknownCommand(String),
    #[error("{0} frames in one message (expected 1)")]
    Multipart(usize),
    #[error("not sealed (this HQ or turret runs in secure mode)")]
    Unsealed,
    #[error("sealed, but does not verify with our secret (tampered, or another secret)")]
    Tampered,
    #[error("sealed frame replayed (its counter was already seen, or it is too old)")]
    Replayed,
    #[error("sealed for another HQ session (from an earlier run)")]
    StaleSession,
    #[error("a result received before this test started (left over from an earlier test)")]
    BeforeStart,
    #[error("bad packed batch: {0}")]
    Packed(&'static str),
}

impl DecodeError {
    pub(crate) fn wrong_type(field: &str, expected: &'static str, found: &Light) -> Self {
        DecodeError::WrongType {
            field: field.to_owned(),
            expected,
            found: found.kind(),
        }
    }

    /// A short, stable label of the kind of error, for counting rejected messages.
    pub fn kind(&self) -> &'static str {
        match self {
            DecodeError::NotUtf8 => "not_utf8",
            DecodeError::Json { .. } => "invalid_json",
            DecodeError::NotAnObject(_) => "not_an_object",
            DecodeError::NoChannel => "no_channel",
            DecodeError::UnknownKind => "unknown_kind",
            DecodeError::Ambiguous => "ambiguous",
            DecodeError::MissingField(_) => "missing_field",
            DecodeError::UnknownField(_) => "unknown_field",
            DecodeError::WrongType { .. } => "wrong_type",
            DecodeError::UnknownStatus(_) => "unknown_status",
            DecodeError::UnknownCommand(_) => "unknown_command",
            DecodeError::Multipart(_) => "multipart",
            DecodeError::Unsealed => "unsealed",
            DecodeError::Tampered => "tampered",
            DecodeError::Replayed => "replayed",
            DecodeError::StaleSession => "stale_session",
            DecodeError::BeforeStart => "before_start",
            DecodeError::Packed(_) => "bad_packed",
        }
    }
}

#[cfg(test)]
mod tests;
