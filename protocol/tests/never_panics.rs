//! Random bytes and mangled frames never panic the decoders.

use proptest::prelude::*;
use protocol::{split_batch, Command, Message, Opener, Sealer, Secret, Session};

fn secret() -> Secret {
    Secret::new(b"a test secret of enough length", "test").unwrap()
}

const VALID: &str = r#"{"elapsed": 0.1, "epoch": 1795305491.0, "scriptrun_time": 0.1, "error": "", "custom_timers": {"login": 0.05}}"#;

/// A real aggregate: 200 transactions of one turret, with a timer and errors.
fn aggregate_frame() -> Vec<u8> {
    let mut agg = protocol::Aggregator::new(1, "nav", "u1");
    for i in 0..200 {
        agg.add(&protocol::TestResult {
            elapsed: 0.0,
            epoch: 1795305491.0 + i as f64 / 200.0,
            scriptrun_time: 0.001 + i as f64 * 1e-5,
            error: if i % 10 == 0 {
                "boom".into()
            } else {
                String::new()
            },
            custom_timers: vec![("login".into(), 0.0005)],
            turret_name: Some("nav".into()),
            seq: None,
            turret_uuid: None,
            lag: None,
            checks: Vec::new(),
            counters: Vec::new(),
        });
    }
    agg.drain().remove(0).encode()
}

#[test]
fn a_histogram_that_claims_a_huge_range_is_refused_before_it_is_read() {
    use base64::Engine as _;
    let mut h = protocol::aggregate::histogram();
    h.record(1000).unwrap();
    let mut bytes = Vec::new();
    hdrhistogram::serialization::Serializer::serialize(
        &mut hdrhistogram::serialization::V2Serializer::new(),
        &h,
        &mut bytes,
    )
    .unwrap();
    assert!(protocol::aggregate::decode_histogram(&bytes).is_ok());
    // Highest trackable value (bytes 24..32) set to 2^62.
    bytes[24..32].copy_from_slice(&(1u64 << 62).to_be_bytes());
    let err = protocol::aggregate::decode_histogram(&bytes).unwrap_err();
    assert!(err.contains("at most"), "{err}");
    // Inside a frame, the whole aggregate is refused.
    let frame = String::from_utf8(aggregate_frame()).unwrap();
    let v: serde_json::Value = serde_json::from_str(&frame).unwrap();
    let good = v["series"][0]["hist"].as_str().unwrap().to_owned();
    let bad = base64::engine::general_purpose::STANDARD.encode(&bytes);
    let err = Message::decode(frame.replace(&good, &bad).as_bytes()).unwrap_err();
    assert_eq!(err.kind(), "wrong_type", "{err}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    #[test]
    fn random_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = Message::decode(&bytes);
        let _ = Command::decode(&bytes);
        let _ = split_batch(&bytes);
        let _ = Message::decode_batch(&bytes);
    }

    #[test]
    fn random_bytes_to_the_openers(bytes in proptest::collection::vec(any::<u8>(), 0..256), sealed_prefix in any::<bool>()) {
        let mut frame = if sealed_prefix { b"\0OCS".to_vec() } else { Vec::new() };
        frame.extend_from_slice(&bytes);
        let mut out = Vec::new();
        let _ = Opener::for_hq(&secret(), Session([1; 16])).open(b"", &frame, &mut out);
        let _ = Opener::for_turret(&secret()).open(b"", &frame, &mut out);
    }

    #[test]
    fn mangled_sealed_frame(pos in 0usize..200, byte in any::<u8>(), cut in 0usize..200) {
        let mut frame = Vec::new();
        Sealer::to_hq(&secret(), Session([1; 16]), [2; 16]).seal(b"", VALID.as_bytes(), &mut frame);
        let pos = pos % frame.len();
        let mut opener = Opener::for_hq(&secret(), Session([1; 16]));
        let mut out = Vec::new();
        let mut bad = frame.clone();
        bad[pos] = byte;
        if opener.open(b"", &bad, &mut out).is_ok() {
            prop_assert_eq!(&bad, &frame, "only the untouched frame opens");
            let _ = Message::decode(&out);
        }
        let _ = opener.open(b"", &frame[..cut.min(frame.len())], &mut out);
    }

    #[test]
    fn mangled_aggregate(pos in 0usize..4096, byte in any::<u8>(), cut in 0usize..4096) {
        let frame = aggregate_frame();
        let mut bad = frame.clone();
        let pos = pos % bad.len();
        bad[pos] = byte;
        if let Ok(Message::Aggregate(a)) = Message::decode(&bad) {
            for s in &a.series {
                prop_assert!(s.histogram().is_ok());
            }
        }
        let _ = Message::decode(&frame[..cut % frame.len()]);
    }

    #[test]
    fn mangled_batch(pos in 0usize..VALID.len() * 2 + 4, byte in any::<u8>()) {
        let mut b = format!("[{VALID}, {VALID}]").into_bytes();
        b[pos] = byte;
        let _ = Message::decode_batch(&b);
        if let Some(Ok(parts)) = split_batch(&b) {
            for p in parts {
                let _ = Message::decode(p);
            }
        }
    }

    #[test]
    fn mangled_valid_result(pos in 0usize..VALID.len(), byte in any::<u8>(), cut in 0usize..VALID.len()) {
        let mut b = VALID.as_bytes().to_vec();
        b[pos] = byte;
        let _ = Message::decode(&b);
        let _ = Message::decode(&VALID.as_bytes()[..cut]);
        let mut c = b" ".to_vec();
        c.extend_from_slice(&b);
        let _ = Command::decode(&c);
    }

    #[test]
    fn json_shaped_garbage(s in r#"\{("[a-z_]{1,14}": ?(-?[0-9.e]{1,8}|"[^"]{0,6}"|null|true|\[\]|\{\}),? ?){0,8}\}"#) {
        let _ = Message::decode(s.as_bytes());
    }
}
