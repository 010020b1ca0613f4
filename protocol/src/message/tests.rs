use super::*;

fn status() -> Status {
    Status {
        turret: "navigation".into(),
        status: TurretState::Ready,
        uuid: "5f8fc2ef-faee-4921-b62e-b466f67d705c".into(),
        rampup: 0,
        script: "test_scripts/v_user.py".into(),
        cannons: 2,
        message: None,
        results_sent: None,
        done: None,
        iterations_started: None,
        iterations_dropped: None,
        intervals_sent: None,
    }
}

fn result() -> TestResult {
    TestResult {
        elapsed: 0.10273146629333496,
        epoch: 1795305491.0,
        scriptrun_time: 0.10091710090637207,
        error: String::new(),
        custom_timers: vec![
            ("login".into(), 0.058175086975097656),
            ("db query".into(), 0.04268169403076172),
        ],
        turret_name: None,
        ..Default::default()
    }
}

fn text(m: &Message) -> String {
    String::from_utf8(m.encode()).unwrap()
}

#[test]
fn encodes_status_exactly_like_oct_turrets() {
    assert_eq!(
        text(&Message::Status(status())),
        r#"{"turret": "navigation", "status": "ready", "uuid": "5f8fc2ef-faee-4921-b62e-b466f67d705c", "rampup": 0, "script": "test_scripts/v_user.py", "cannons": 2}"#
    );
}

#[test]
fn encodes_result_exactly_like_oct_turrets() {
    assert_eq!(
        text(&Message::Result(result())),
        r#"{"elapsed": 0.10273146629333496, "epoch": 1795305491.0, "scriptrun_time": 0.10091710090637207, "error": "", "custom_timers": {"login": 0.058175086975097656, "db query": 0.04268169403076172}}"#
    );
}

#[test]
fn encodes_extensions_only_when_set() {
    let mut r = result();
    r.turret_name = Some("nav".into());
    r.seq = Some(7);
    r.turret_uuid = Some("u".into());
    r.custom_timers.clear();
    assert_eq!(
        text(&Message::Result(r)),
        r#"{"elapsed": 0.10273146629333496, "epoch": 1795305491.0, "scriptrun_time": 0.10091710090637207, "error": "", "custom_timers": {}, "turret_name": "nav", "seq": 7, "turret_uuid": "u"}"#
    );
    let mut s = status();
    s.status = TurretState::Aborted;
    s.message = Some("boom".into());
    s.results_sent = Some(3);
    assert_eq!(
        text(&Message::Status(s)),
        r#"{"turret": "navigation", "status": "Aborted", "uuid": "5f8fc2ef-faee-4921-b62e-b466f67d705c", "rampup": 0, "script": "test_scripts/v_user.py", "cannons": 2, "message": "boom", "results_sent": 3}"#
    );
}

#[test]
fn batches_are_arrays_of_result_frames_and_split_back_into_them() {
    let mut r = result();
    r.custom_timers.truncate(1);
    let mut out = Vec::new();
    Message::encode_batch(&[r.clone(), r.clone()], &mut out);
    let one = r#"{"elapsed": 0.10273146629333496, "epoch": 1795305491.0, "scriptrun_time": 0.10091710090637207, "error": "", "custom_timers": {"login": 0.058175086975097656}}"#;
    assert_eq!(
        String::from_utf8(out.clone()).unwrap(),
        format!("[{one}, {one}]")
    );
    let parts = split_batch(&out).unwrap().unwrap();
    assert_eq!(parts, [one.as_bytes(), one.as_bytes()]);
    assert_eq!(Message::decode(parts[1]), Ok(Message::Result(r)));
    // Not a batch: a single frame, whatever it holds.
    assert_eq!(split_batch(one.as_bytes()), None);
    assert_eq!(split_batch(b"  \"text\""), None);
    assert_eq!(split_batch(b""), None);
    // A batch's elements are decoded (and rejected) one by one.
    let parts = split_batch(b" [1, {\"a\": [2]}, []]").unwrap().unwrap();
    assert_eq!(parts, [&b"1"[..], br#"{"a": [2]}"#, b"[]"]);
    assert_eq!(
        Message::decode(parts[0]),
        Err(DecodeError::NotAnObject("a number"))
    );
    assert_eq!(split_batch(b"[]"), Some(Ok(vec![])));
    assert_eq!(
        split_batch(b"[{}, ").unwrap().unwrap_err().kind(),
        "invalid_json"
    );
    assert_eq!(
        split_batch(b"[\xff]").unwrap().unwrap_err().kind(),
        "not_utf8"
    );
}

#[test]
fn heartbeats_encode_exactly_and_are_classified_by_their_keys() {
    let h = Heartbeat {
        heartbeat: 3,
        turret: "nav".into(),
        uuid: "u".into(),
        results_sent: 120,
        cannons_active: 2,
        cannons_target: None,
        cpu: 12.5,
        ..Default::default()
    };
    let frame = r#"{"heartbeat": 3, "turret": "nav", "uuid": "u", "results_sent": 120, "cannons_active": 2, "cpu": 12.5}"#;
    assert_eq!(text(&Message::Heartbeat(h.clone())), frame);
    assert_eq!(Message::decode(frame.as_bytes()), Ok(Message::Heartbeat(h)));
    // An open-model turret that follows `load` commands says so, and how its schedule goes.
    let open = Heartbeat {
        heartbeat: 4,
        turret: "nav".into(),
        uuid: "u".into(),
        load_generation: Some(7),
        arrival_rate: Some(200.0),
        iterations_started: Some(995),
        iterations_dropped: Some(5),
        ..Default::default()
    };
    let frame = r#"{"heartbeat": 4, "turret": "nav", "uuid": "u", "results_sent": 0, "cannons_active": 0, "cpu": 0.0, "load_generation": 7, "arrival_rate": 200.0, "iterations_started": 995, "iterations_dropped": 5}"#;
    assert_eq!(text(&Message::Heartbeat(open.clone())), frame);
    assert_eq!(
        Message::decode(frame.as_bytes()),
        Ok(Message::Heartbeat(open))
    );
    let late = TestResult {
        lag: Some(0.25),
        ..result()
    };
    let Ok(Message::Result(back)) = Message::decode(&Message::Result(late.clone()).encode()) else {
        panic!("a result with its lag decodes")
    };
    assert_eq!(back, late);
    // Checks and counters (extension `checks`), exactly as sent.
    let checked = TestResult {
        checks: vec![("status is 200".into(), 2, 1)],
        counters: vec![("bytes".into(), 512.0)],
        ..result()
    };
    let text = String::from_utf8(Message::Result(checked.clone()).encode()).unwrap();
    assert!(
        text.ends_with(r#""checks": {"status is 200": {"passed": 2, "failed": 1}}, "counters": {"bytes": 512.0}}"#),
        "{text}"
    );
    assert_eq!(
        Message::decode(text.as_bytes()),
        Ok(Message::Result(checked))
    );
    let both = r#"{"heartbeat": 3, "uuid": "u", "status": "ready"}"#;
    assert_eq!(
        Message::decode(both.as_bytes()),
        Err(DecodeError::Ambiguous)
    );
    let missing = r#"{"heartbeat": 3, "uuid": "u", "turret": "t"}"#;
    assert_eq!(
        Message::decode(missing.as_bytes()),
        Err(DecodeError::MissingField("results_sent"))
    );
}

#[test]
fn timers_are_stored_as_compact_json() {
    assert_eq!(
        result().timers_json(),
        r#"{"login":0.058175086975097656,"db query":0.04268169403076172}"#
    );
}

#[test]
fn decodes_lenient_numbers_whitespace_and_missing_turret_name() {
    let m = Message::decode(
        b"{ \"elapsed\" : 1 ,\n\"epoch\":\"1795305491.5\",\"scriptrun_time\":\" 0.25 \",\
          \"error\":\"\",\"custom_timers\":{\"a\":2,\"b\":\"0.5\"}}",
    )
    .unwrap();
    let Message::Result(r) = m else {
        panic!("not a result")
    };
    assert_eq!(r.elapsed, 1.0);
    assert_eq!(r.epoch, 1795305491.5);
    assert_eq!(r.scriptrun_time, 0.25);
    assert_eq!(r.custom_timers, vec![("a".into(), 2.0), ("b".into(), 0.5)]);
    assert_eq!(r.turret_name, None);
}

#[test]
fn a_result_whose_text_contains_status_is_still_a_result() {
    let m = Message::decode(
        br#"{"elapsed":1,"epoch":2,"scriptrun_time":3,"error":"status 500 from /status","custom_timers":{"status":1}}"#,
    )
    .unwrap();
    assert!(matches!(m, Message::Result(r) if r.error == "status 500 from /status"));
}

#[test]
fn status_case_and_old_canons_key_are_accepted() {
    let m = Message::decode(
        br#"{"turret":"t","status":"RUNNING","uuid":"u","rampup":"3","script":"s.py","canons":4}"#,
    )
    .unwrap();
    let Message::Status(s) = m else {
        panic!("not a status")
    };
    assert_eq!(s.status, TurretState::Running);
    assert_eq!((s.rampup, s.cannons), (3, 4));
}

#[test]
fn rejects_with_the_reason() {
    let cases: &[(&[u8], &str)] = &[
        (b"\xff\xfe", "not UTF-8"),
        (
            b"{\"elapsed\":",
            "invalid JSON at line 1 column 11: EOF while parsing a value",
        ),
        (b"[1,2]", "expected a JSON object, got an array"),
        (
            b"{\"a\":1}",
            "neither a status (keys uuid and status) nor a result (key scriptrun_time)",
        ),
        (
            b"{\"scriptrun_time\":1,\"epoch\":2}",
            "missing field `elapsed`",
        ),
        (
            b"{\"scriptrun_time\":1,\"epoch\":2,\"elapsed\":3,\"extra\":1}",
            "unknown field `extra`",
        ),
        (
            b"{\"scriptrun_time\":\"ten\",\"epoch\":2,\"elapsed\":3}",
            "field `scriptrun_time` should be a number, got a string",
        ),
        (
            b"{\"scriptrun_time\":1,\"epoch\":2,\"elapsed\":3,\"custom_timers\":{\"x\":[]}}",
            "field `custom_timers.x` should be a number, got an array",
        ),
        (
            b"{\"scriptrun_time\":1,\"epoch\":2,\"elapsed\":3,\"error\":5}",
            "field `error` should be a string, got a number",
        ),
        (
            br#"{"turret":"t","status":"dancing","uuid":"u","rampup":0,"script":"s","cannons":1}"#,
            "unknown turret status `dancing` (expected ready, Running, Aborted or Killed)",
        ),
        (
            br#"{"turret":"t","status":"ready","uuid":"u","rampup":-1,"script":"s","cannons":1}"#,
            "field `rampup` should be a whole number ≥ 0, got a number",
        ),
        (
            br#"{"status":"ready","uuid":"u","scriptrun_time":1}"#,
            "has the keys of both a status and a result",
        ),
    ];
    for (frame, want) in cases {
        let got = Message::decode(frame).unwrap_err().to_string();
        assert_eq!(&got, want, "{}", String::from_utf8_lossy(frame));
    }
}
