//! Every frame captured from the real OCT 0.4.12 / oct-turrets 0.2.8 decodes, and every command
//! re-encodes byte-identically.

use std::path::PathBuf;

use protocol::{Command, Message, TurretState};
use serde_json::Value;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures/oct")
        .join(name)
}

fn frames() -> Vec<(String, Vec<String>)> {
    let path = fixture("wire_samples.jsonl");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    text.lines()
        .map(|line| {
            let v: Value = serde_json::from_str(line).unwrap();
            let frames = v["frames"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| f["text"].as_str().unwrap().to_owned())
                .collect();
            (v["tap"].as_str().unwrap().to_owned(), frames)
        })
        .collect()
}

#[test]
fn every_captured_command_decodes_and_reencodes_byte_identically() {
    let mut seen = 0;
    for (tap, frames) in frames() {
        if tap != "hq_pub" {
            continue;
        }
        assert_eq!(frames.len(), 1, "OCT commands are single-frame");
        let decoded = Command::decode(frames[0].as_bytes()).unwrap();
        assert_eq!(decoded.channel, "");
        assert_eq!(
            String::from_utf8(decoded.command.encode()).unwrap(),
            frames[0],
            "re-encoding {:?}",
            decoded.command
        );
        seen += 1;
    }
    assert!(seen >= 5, "only {seen} commands in the fixture");
}

#[test]
fn every_captured_status_and_result_decodes_and_statuses_reencode_identically() {
    let (mut statuses, mut results) = (0, 0);
    for (tap, frames) in frames() {
        let payload = match tap.as_str() {
            "rc" => &frames[0],
            // The external publisher re-publishes [topic, raw json].
            "ext_pub" => {
                assert_eq!(frames.len(), 2);
                assert_eq!(frames[0].len(), 32, "topic is a 32-hex uuid");
                &frames[1]
            }
            _ => continue,
        };
        match Message::decode(payload.as_bytes()).unwrap() {
            Message::Status(s) => {
                assert!(matches!(
                    s.status,
                    TurretState::Ready | TurretState::Running
                ));
                let again = Message::Status(s).encode();
                assert_eq!(String::from_utf8(again).unwrap(), *payload);
                statuses += 1;
            }
            Message::Result(r) => {
                assert_eq!(
                    r.turret_name, None,
                    "oct-turrets 0.2.8 sends no turret_name"
                );
                assert_eq!(r.custom_timers.len(), 2);
                let again = Message::Result(r).encode();
                assert_eq!(String::from_utf8(again).unwrap(), *payload);
                results += 1;
            }
            Message::Heartbeat(h) => panic!("OCT sends no heartbeats: {h:?}"),
            Message::Aggregate(a) => panic!("OCT sends no aggregates: {a:?}"),
        }
    }
    assert!(
        statuses >= 4 && results >= 5,
        "{statuses} statuses, {results} results"
    );
}

#[test]
fn captured_failures_keep_their_error_message() {
    let errors: Vec<String> = frames()
        .into_iter()
        .filter(|(tap, _)| tap == "rc")
        .filter_map(|(_, f)| match Message::decode(f[0].as_bytes()).unwrap() {
            Message::Result(r) if !r.error.is_empty() => Some(r.error),
            _ => None,
        })
        .collect();
    assert_eq!(errors, ["simulated failure #7", "simulated failure #14"]);
}
