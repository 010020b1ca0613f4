//! HQ → turret commands, published on the HQ's PUB socket.

use serde_json::Value;

use crate::light::Light;
use crate::message::{json_error, DecodeError};

/// What our HQ announces in the `msg` of `status_request`: the protocol version, the
/// extensions it speaks and, with [`crate::EXT_HEARTBEAT`], its session and liveness timings.
/// OCT's HQ sends `null` there; OCT turrets ignore the field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announce {
    pub protocol: u32,
    pub extensions: Vec<String>,
    /// The HQ's session: random per HQ process, so a turret knows a new HQ from the old one.
    pub session: Option<String>,
    /// How often turrets send a heartbeat, in milliseconds.
    pub heartbeat_ms: Option<u64>,
    /// How long a running turret goes on without a word from its HQ, in milliseconds.
    pub hq_timeout_ms: Option<u64>,
    /// Extension [`crate::EXT_AGGREGATE`]: the interval turrets aggregate over, in seconds
    /// (announced only when config.json asks for aggregates).
    pub aggregate_secs: Option<u64>,
    /// With `aggregate_secs`: send every raw result too (`"results": "both"`).
    pub aggregate_raw: bool,
}

impl Announce {
    /// Everything this build speaks, without a session (see [`Announce::with_session`]).
    pub fn ours() -> Self {
        Announce {
            protocol: crate::PROTOCOL_VERSION,
            extensions: vec![
                crate::EXT_SEQ.to_owned(),
                crate::EXT_BATCH.to_owned(),
                crate::EXT_HEARTBEAT.to_owned(),
                crate::EXT_LOAD.to_owned(),
                crate::EXT_CHECKS.to_owned(),
                crate::EXT_PACKED.to_owned(),
            ],
            session: None,
            heartbeat_ms: None,
            hq_timeout_ms: None,
            aggregate_secs: None,
            aggregate_raw: false,
        }
    }

    /// [`Announce::ours`] for the HQ session `session` with its liveness timings.
    pub fn with_session(session: &str, heartbeat_ms: u64, hq_timeout_ms: u64) -> Self {
        Announce {
            session: Some(session.to_owned()),
            heartbeat_ms: Some(heartbeat_ms),
            hq_timeout_ms: Some(hq_timeout_ms),
            ..Announce::ours()
        }
    }

    /// This announcement asking turrets to aggregate over `secs` (and to send raw results too
    /// with `raw`).
    pub fn aggregating(self, secs: u64, raw: bool) -> Self {
        let mut extensions = self.extensions;
        extensions.push(crate::EXT_AGGREGATE.to_owned());
        Announce {
            extensions,
            aggregate_secs: Some(secs.max(1)),
            aggregate_raw: raw,
            ..self
        }
    }

    pub fn has(&self, extension: &str) -> bool {
        self.extensions.iter().any(|e| e == extension)
    }
}

/// One command from the HQ to its turrets.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Asks every turret to send its status. `None` is OCT's `null`.
    StatusRequest(Option<Announce>),
    /// The transaction context handed to every script (`msg`, an object in OCT).
    SetTransactionContext(Value),
    /// Start firing; OCT's `msg` is `"open fire"`.
    Start,
    /// Stop firing; OCT's `msg` is `"premature stop"`.
    Stop,
    /// End the turret process.
    Kill,
    /// Extension ([`crate::EXT_LOAD`]): every following turret's part of the test's global
    /// shape, as absolute targets.
    Load(LoadTargets),
}

/// What the HQ wants of each following turret now, by uuid: canons (a closed-model shape) or
/// iterations per second (an open-model one). One frame for every turret on the empty
/// channel: OCT's turrets, which subscribe to everything and parse a frame whole as JSON,
/// ignore an unknown command but would fail on an addressed one. A turret missing from the
/// map is wanted for nothing. The generation only grows: a turret applies a `load` newer than
/// the last it applied and ignores any other, so a lost, repeated or reordered command can
/// never double the load — the next one, 100 ms later, says the whole truth again.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadTargets {
    pub generation: u64,
    /// The open model: the targets are rates.
    pub rates: bool,
    pub targets: Vec<(String, f64)>,
}

impl LoadTargets {
    /// What `uuid` is asked for: canons, or a rate (0 when it is not in the map).
    pub fn of(&self, uuid: &str) -> f64 {
        self.targets
            .iter()
            .find(|(u, _)| u == uuid)
            .map_or(0.0, |(_, t)| *t)
    }
}

/// A decoded command frame: the channel it was published on (empty for "every turret", or a
/// turret's uuid) and the command.
#[derive(Debug, Clone, PartialEq)]
pub struct CommandFrame {
    pub channel: String,
    pub command: Command,
}

impl Command {
    pub fn name(&self) -> &'static str {
        match self {
            Command::StatusRequest(_) => "status_request",
            Command::SetTransactionContext(_) => "set_transaction_context",
            Command::Start => "start",
            Command::Stop => "stop",
            Command::Kill => "kill",
            Command::Load(_) => "load",
        }
    }

    fn msg_json(&self) -> String {
        match self {
            Command::StatusRequest(None) | Command::Kill => "null".to_owned(),
            // Written by hand: the wire must not depend on serde_json's map-order feature,
            // which any crate in a workspace can switch on.
            Command::StatusRequest(Some(a)) => {
                let mut out = format!(
                    "{{\"protocol\":{},\"extensions\":{}",
                    a.protocol,
                    serde_json::to_string(&a.extensions).unwrap_or_else(|_| "[]".into())
                );
                if let Some(session) = &a.session {
                    let quoted = serde_json::to_string(session).unwrap_or_default();
                    out.push_str(&format!(",\"session\":{quoted}"));
                }
                for (key, value) in [
                    ("heartbeat_ms", a.heartbeat_ms),
                    ("hq_timeout_ms", a.hq_timeout_ms),
                    ("aggregate_secs", a.aggregate_secs),
                ] {
                    if let Some(v) = value {
                        out.push_str(&format!(",\"{key}\":{v}"));
                    }
                }
                if a.aggregate_raw {
                    out.push_str(",\"aggregate_raw\":true");
                }
                out.push('}');
                out
            }
            Command::SetTransactionContext(v) => v.to_string(),
            Command::Start => "\"open fire\"".to_owned(),
            Command::Stop => "\"premature stop\"".to_owned(),
            Command::Load(l) => {
                let targets: serde_json::Map<String, Value> = l
                    .targets
                    .iter()
                    .filter(|(_, t)| t.is_finite())
                    .map(|(u, t)| {
                        let v = if l.rates {
                            Value::from(*t)
                        } else {
                            Value::from(t.max(0.0).round() as u64)
                        };
                        (u.clone(), v)
                    })
                    .collect();
                format!(
                    "{{\"generation\":{},\"{}\":{}}}",
                    l.generation,
                    if l.rates { "rates" } else { "cannons" },
                    Value::Object(targets)
                )
            }
        }
    }

    /// The frame for every turret (empty channel), byte-exact with OCT:
    /// ` {"command":"start","msg":"open fire"}`.
    pub fn encode(&self) -> Vec<u8> {
        self.encode_on("")
    }

    /// The frame on `channel` (a turret's uuid addresses that turret alone).
    pub fn encode_on(&self, channel: &str) -> Vec<u8> {
        format!(
            "{channel} {{\"command\":\"{}\",\"msg\":{}}}",
            self.name(),
            self.msg_json()
        )
        .into_bytes()
    }

    /// Decodes one frame as a turret receives it: channel, one space, JSON.
    pub fn decode(frame: &[u8]) -> Result<CommandFrame, DecodeError> {
        let text = std::str::from_utf8(frame).map_err(|_| DecodeError::NotUtf8)?;
        let (channel, json) = text.split_once(' ').ok_or(DecodeError::NoChannel)?;
        let value: Light = serde_json::from_str(json).map_err(json_error)?;
        let Light::Object(fields) = value else {
            return Err(DecodeError::NotAnObject(value.kind()));
        };
        let get = |name: &str| fields.iter().find(|(k, _)| k == name).map(|(_, v)| v);
        let name = match get("command") {
            Some(Light::Str(s)) => s,
            Some(other) => return Err(DecodeError::wrong_type("command", "a string", other)),
            None => return Err(DecodeError::MissingField("command")),
        };
        let command = match name.as_ref() {
            "status_request" => Command::StatusRequest(announce_from(json)),
            "set_transaction_context" => {
                // The context is handed to scripts as is, so keep it whole.
                let full: Value = serde_json::from_str(json).map_err(json_error)?;
                Command::SetTransactionContext(full.get("msg").cloned().unwrap_or(Value::Null))
            }
            "start" => Command::Start,
            "stop" => Command::Stop,
            "kill" => Command::Kill,
            "load" => Command::Load(load_from(json)?),
            other => return Err(DecodeError::UnknownCommand(other.to_owned())),
        };
        Ok(CommandFrame {
            channel: channel.to_owned(),
            command,
        })
    }
}

fn load_from(json: &str) -> Result<LoadTargets, DecodeError> {
    let v: Value = serde_json::from_str(json).map_err(json_error)?;
    let msg = v.get("msg").ok_or(DecodeError::MissingField("msg"))?;
    let generation = msg
        .get("generation")
        .and_then(Value::as_u64)
        .ok_or(DecodeError::MissingField("generation"))?;
    let (rates, map) = match (msg.get("cannons"), msg.get("rates")) {
        (Some(Value::Object(m)), None) => (false, m),
        (None, Some(Value::Object(m))) => (true, m),
        _ => return Err(DecodeError::MissingField("cannons")),
    };
    let targets = map
        .iter()
        .filter_map(|(u, t)| Some((u.clone(), t.as_f64().filter(|t| *t >= 0.0)?)))
        .collect();
    Ok(LoadTargets {
        generation,
        rates,
        targets,
    })
}

/// An OCT HQ sends `null`; anything that is not our announcement is read as "no extensions".
fn announce_from(json: &str) -> Option<Announce> {
    let v: Value = serde_json::from_str(json).ok()?;
    let msg = v.get("msg")?;
    let protocol = u32::try_from(msg.get("protocol")?.as_u64()?).ok()?;
    let extensions = msg
        .get("extensions")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|e| e.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let ms = |key| msg.get(key).and_then(Value::as_u64);
    Some(Announce {
        protocol,
        extensions,
        session: msg
            .get("session")
            .and_then(Value::as_str)
            .map(str::to_owned),
        heartbeat_ms: ms("heartbeat_ms"),
        hq_timeout_ms: ms("hq_timeout_ms"),
        aggregate_secs: ms("aggregate_secs").filter(|s| *s > 0),
        aggregate_raw: msg.get("aggregate_raw").and_then(Value::as_bool) == Some(true),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(c: &Command) -> String {
        String::from_utf8(c.encode()).unwrap()
    }

    #[test]
    fn encodes_every_command_exactly_like_oct() {
        assert_eq!(
            s(&Command::StatusRequest(None)),
            r#" {"command":"status_request","msg":null}"#
        );
        assert_eq!(
            s(&Command::SetTransactionContext(serde_json::json!({}))),
            r#" {"command":"set_transaction_context","msg":{}}"#
        );
        assert_eq!(
            s(&Command::Start),
            r#" {"command":"start","msg":"open fire"}"#
        );
        assert_eq!(
            s(&Command::Stop),
            r#" {"command":"stop","msg":"premature stop"}"#
        );
        assert_eq!(s(&Command::Kill), r#" {"command":"kill","msg":null}"#);
    }

    #[test]
    fn encodes_our_announcement_in_status_request() {
        assert_eq!(
            s(&Command::StatusRequest(Some(Announce::ours()))),
            r#" {"command":"status_request","msg":{"protocol":1,"extensions":["seq","batch","heartbeat","load","checks","packed"]}}"#
        );
        assert_eq!(
            s(&Command::StatusRequest(Some(Announce::with_session(
                "5a1e", 1000, 15000
            )))),
            r#" {"command":"status_request","msg":{"protocol":1,"extensions":["seq","batch","heartbeat","load","checks","packed"],"session":"5a1e","heartbeat_ms":1000,"hq_timeout_ms":15000}}"#
        );
    }

    #[test]
    fn load_targets_are_one_frame_for_every_turret() {
        for (target, frame) in [
            (
                LoadTargets {
                    generation: 7,
                    rates: false,
                    targets: vec![("u1".into(), 5.0), ("u2".into(), 3.0)],
                },
                r#" {"command":"load","msg":{"generation":7,"cannons":{"u1":5,"u2":3}}}"#,
            ),
            (
                LoadTargets {
                    generation: 8,
                    rates: true,
                    targets: vec![("u1".into(), 12.5)],
                },
                r#" {"command":"load","msg":{"generation":8,"rates":{"u1":12.5}}}"#,
            ),
        ] {
            let c = Command::Load(target.clone());
            assert_eq!(s(&c), frame);
            assert_eq!(Command::decode(frame.as_bytes()).unwrap().command, c);
            assert_eq!(target.of("u3"), 0.0);
        }
        assert_eq!(
            Command::decode(br#" {"command":"load","msg":{"cannons":{}}}"#),
            Err(DecodeError::MissingField("generation"))
        );
    }

    #[test]
    fn encodes_on_a_turret_channel() {
        assert_eq!(
            String::from_utf8(Command::Kill.encode_on("abc")).unwrap(),
            r#"abc {"command":"kill","msg":null}"#
        );
    }

    #[test]
    fn decodes_commands_with_and_without_channel() {
        let f = Command::decode(br#"uuid-1 {"command": "stop", "msg": "premature stop"}"#).unwrap();
        assert_eq!(f.channel, "uuid-1");
        assert_eq!(f.command, Command::Stop);
        let f = Command::decode(br#" {"command":"set_transaction_context","msg":{"a":[1,2]}}"#)
            .unwrap();
        assert_eq!(f.channel, "");
        assert_eq!(
            f.command,
            Command::SetTransactionContext(serde_json::json!({"a": [1, 2]}))
        );
    }

    #[test]
    fn announcement_round_trips_and_oct_null_means_none() {
        let a = Command::StatusRequest(Some(Announce::ours()));
        assert_eq!(Command::decode(&a.encode()).unwrap().command, a);
        let a = Command::StatusRequest(Some(Announce::with_session("s", 200, 3000)));
        assert_eq!(Command::decode(&a.encode()).unwrap().command, a);
        let n = Command::decode(br#" {"command":"status_request","msg":null}"#).unwrap();
        assert_eq!(n.command, Command::StatusRequest(None));
    }

    #[test]
    fn rejects_bad_command_frames_with_a_reason() {
        let cases: &[(&[u8], DecodeError)] = &[
            (b"{\"command\":\"stop\"}", DecodeError::NoChannel),
            (
                b" {\"command\":\"fly\",\"msg\":null}",
                DecodeError::UnknownCommand("fly".into()),
            ),
            (b" {\"msg\":null}", DecodeError::MissingField("command")),
            (b" [1]", DecodeError::NotAnObject("an array")),
            (b" \xff", DecodeError::NotUtf8),
        ];
        for (frame, want) in cases {
            assert_eq!(&Command::decode(frame).unwrap_err(), want, "{frame:?}");
        }
    }
}
