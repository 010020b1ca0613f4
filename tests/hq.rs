//! End-to-end tests of `oct run`: the real binary, real ZeroMQ sockets on loopback, raw test
//! turrets speaking OCT's frames, and the real results.sqlite.

mod util;

use std::time::Duration;

use serde_json::json;
use util::*;

const T: Duration = Duration::from_secs(30);

fn one_turret() -> serde_json::Value {
    json!([{"name": "navigation", "cannons": 2, "rampup": 0, "script": "test_scripts/v_user.py"}])
}

fn start_hq(project: &Project) -> Proc {
    Proc::spawn(oct_run(
        project.path(),
        &project.results_dir(),
        &["--no-results"],
    ))
}

/// An HQ on `project` and one raw turret, `navigation`, that answered it and got `start`.
fn started(project: &Project, uuid: &str) -> (Proc, TestTurret) {
    let mut hq = start_hq(project);
    let (publish, rc, _) = hq.hq_ports();
    let turret = TestTurret::connect("navigation", uuid, publish, rc);
    turret.expect("start", "ready");
    (hq, turret)
}

#[test]
fn an_output_dir_with_results_already_is_refused_untouched() {
    let project = Project::new(config(1.0, 1, one_turret()));
    let out = project.results_dir();
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("results.sqlite"), b"earlier results").unwrap();
    std::fs::write(out.join("config.json"), b"earlier config").unwrap();
    let (status, text) = start_hq(&project).wait_exit(T);
    assert_eq!(status.code(), Some(2), "{text}");
    assert!(
        text.contains(&format!(
            "oct: {} already exists: a run never writes over earlier results",
            out.join("results.sqlite").display()
        )),
        "{text}"
    );
    assert_eq!(
        std::fs::read(out.join("results.sqlite")).unwrap(),
        b"earlier results"
    );
    assert_eq!(
        std::fs::read(out.join("config.json")).unwrap(),
        b"earlier config"
    );
}

#[test]
fn stores_exactly_the_results_a_turret_sent() {
    let project = Project::new(config(1.0, 1, one_turret()));
    let (mut hq, turret) = started(&project, "u-1");
    turret.send(turret.status("Running"));
    const N: usize = 500;
    for i in 0..N {
        // Half without turret_name, as oct-turrets 0.2.8 sends them.
        let name = (i % 2 == 0).then_some("navigation");
        turret.send(result_frame(i, name));
    }
    turret.expect("stop", "Running");
    turret.send(turret.status("ready"));
    let (status, out) = hq.wait_exit(T);
    assert!(status.success(), "{out}");
    assert!(out.contains(&format!("transactions: {N}")), "{out}");

    let db = project.db();
    assert_eq!(count_rows(&db, "SELECT count(*) FROM result"), N as i64);
    assert_eq!(
        count_rows(&db, "SELECT count(*) FROM result WHERE error != ''"),
        (0..N).filter(|i| i % 7 == 0).count() as i64
    );
    assert_eq!(
        count_rows(
            &db,
            "SELECT count(*) FROM result WHERE turret_name = 'Noname'"
        ),
        (N / 2) as i64
    );
    let conn = rusqlite::Connection::open(&db).unwrap();
    let row: (String, f64, f64, f64, String, String) = conn
        .query_row("SELECT error, scriptrun_time, elapsed, epoch, custom_timers, turret_name FROM result WHERE id = 8", [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?))
        })
        .unwrap();
    // id 8 is the 8th frame, i = 7: an error, without turret_name.
    assert_eq!(
        row,
        (
            "failure #7".to_owned(),
            0.1 + 7.0 * 1e-6,
            7.0 * 0.01,
            1795305491.0 + 7.0 * 0.001,
            format!(r#"{{"login":{},"db query":0.04}}"#, 0.05 + 7.0 * 1e-7),
            "Noname".to_owned()
        )
    );
    // The turret table really follows the status: ready → Running → ready.
    let status: String = conn
        .query_row("SELECT status FROM turret WHERE uuid = 'u-1'", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(status, "ready");
    assert_eq!(count_rows(&db, "SELECT count(*) FROM turret"), 1);
    assert!(project.results_dir().join("config.json").is_file());
}

#[test]
fn waits_for_min_turrets_and_starts_a_late_joiner() {
    let turrets = json!([
        {"name": "a", "cannons": 1, "script": "s.py"},
        {"name": "b", "cannons": 1, "script": "s.py"},
        {"name": "c", "cannons": 1, "script": "s.py"}
    ]);
    let project = Project::new(config(3.0, 2, turrets));
    let mut hq = start_hq(&project);
    let (publish, rc, _) = hq.hq_ports();
    let a = TestTurret::connect("a", "u-a", publish, rc);
    // Alone, `a` is asked for its status but never started.
    assert_eq!(a.next_command(Duration::from_millis(1500), "ready"), None);
    let b = TestTurret::connect("b", "u-b", publish, rc);
    b.expect("start", "ready");
    a.expect("start", "ready");
    for t in [&a, &b] {
        t.send(t.status("Running"));
        t.send(result_frame(1, Some(&t.name)));
    }
    hq.wait_line(T, |l| l.contains("started 2 turret(s)"));
    let c = TestTurret::connect("c", "u-c", publish, rc);
    c.expect("start", "ready");
    c.send(c.status("Running"));
    c.send(result_frame(2, Some("c")));
    for t in [&a, &b, &c] {
        t.expect("stop", "Running");
        t.send(t.status("ready"));
    }
    let (status, out) = hq.wait_exit(T);
    assert!(status.success(), "{out}");
    assert!(out.contains("joined late"), "{out}");
    let db = project.db();
    assert_eq!(count_rows(&db, "SELECT count(*) FROM turret"), 3);
    assert_eq!(
        count_rows(&db, "SELECT count(DISTINCT turret_name) FROM result"),
        3
    );
    assert_eq!(
        count_rows(&db, "SELECT count(*) FROM turret WHERE status = 'ready'"),
        3
    );
}

#[test]
fn garbage_never_aborts_the_run_and_is_counted_by_kind() {
    let project = Project::new(config(1.5, 1, one_turret()));
    let (mut hq, turret) = started(&project, "u-g");
    let garbage: Vec<(&str, Vec<Vec<u8>>)> = vec![
        ("invalid_json", vec![b"{\"elapsed\": 1,".to_vec()]),
        ("not_utf8", vec![b"\xff\xfe{}".to_vec()]),
        ("not_an_object", vec![b"\"a string\"".to_vec()]),
        (
            "missing_field",
            vec![br#"{"scriptrun_time": 1, "epoch": 2}"#.to_vec()],
        ),
        (
            "unknown_field",
            vec![br#"{"scriptrun_time": 1, "epoch": 2, "elapsed": 3, "x": 1}"#.to_vec()],
        ),
        (
            "wrong_type",
            vec![br#"{"scriptrun_time": "ten", "epoch": 2, "elapsed": 3}"#.to_vec()],
        ),
        ("unknown_kind", vec![br#"{"status": "hello"}"#.to_vec()]),
        (
            "multipart",
            vec![b"part one".to_vec(), result_frame(0, None).into_bytes()],
        ),
    ];
    const VALID: usize = 300;
    const ROUNDS: usize = VALID / 2;
    let mut sent_valid = 0;
    for _round in 0..ROUNDS {
        for (_, frames) in &garbage {
            let (last, first) = frames.split_last().unwrap();
            for f in first {
                turret.push.send(f.as_slice(), zmq::SNDMORE).unwrap();
            }
            turret.push.send(last.as_slice(), 0).unwrap();
        }
        // Two valid results after every round of garbage.
        for _ in 0..2 {
            turret.send(result_frame(sent_valid, Some("navigation")));
            sent_valid += 1;
        }
    }
    assert_eq!(sent_valid, VALID);
    turret.expect("stop", "Running");
    turret.send(turret.status("ready"));
    let (status, out) = hq.wait_exit(T);
    assert!(status.success(), "{out}");
    let db = project.db();
    assert_eq!(count_rows(&db, "SELECT count(*) FROM result"), VALID as i64);
    for (kind, _) in &garbage {
        let n = count_rows(
            &db,
            &format!("SELECT count FROM oct_rejected WHERE kind = '{kind}'"),
        );
        assert_eq!(n, ROUNDS as i64, "{kind}");
    }
    assert!(
        out.contains(&format!("rejected: {}", ROUNDS * garbage.len())),
        "{out}"
    );
    // One log line per kind, not one per message.
    assert_eq!(
        out.matches("rejected a message").count(),
        garbage.len(),
        "{out}"
    );
}

#[test]
fn batched_results_are_stored_one_row_each_and_bad_elements_rejected_one_by_one() {
    let project = Project::new(config(1.0, 1, one_turret()));
    let (mut hq, turret) = started(&project, "u-b");
    // Extension `batch`: many result frames in one message.
    let mut sent = 0;
    for _ in 0..20 {
        let frames: Vec<String> = (sent..sent + 50)
            .map(|i| result_frame(i, Some("navigation")))
            .collect();
        turret.send(format!("[{}]", frames.join(", ")));
        sent += 50;
    }
    // Bad elements are rejected on their own, the good ones beside them kept.
    let (a, b) = (
        result_frame(sent, Some("navigation")),
        result_frame(sent + 1, Some("navigation")),
    );
    turret.send(format!(r#"[{a}, 1, {{"status": "hello"}}, {b}]"#));
    sent += 2;
    // A batch that is not even JSON is one rejected message.
    turret.send(format!("[{a}, "));
    turret.expect("stop", "Running");
    turret.send(turret.status("ready"));
    let (status, out) = hq.wait_exit(T);
    assert!(status.success(), "{out}");
    let db = project.db();
    assert_eq!(count_rows(&db, "SELECT count(*) FROM result"), sent as i64);
    assert_eq!(
        count_rows(&db, "SELECT count(DISTINCT epoch) FROM result"),
        sent as i64
    );
    let rejected = |kind: &str| {
        count_rows(
            &db,
            &format!("SELECT count FROM oct_rejected WHERE kind = '{kind}'"),
        )
    };
    assert_eq!(
        (
            rejected("not_an_object"),
            rejected("unknown_kind"),
            rejected("invalid_json")
        ),
        (1, 1, 1)
    );
}

#[test]
fn results_sent_before_the_turret_heard_the_announcement_still_count_as_received() {
    let project = Project::new(config(1.0, 1, one_turret()));
    let (mut hq, turret) = started(&project, "u-a");
    // A test can start before the HQ's announcement reaches a turret: its first results are
    // plain OCT (a name, no uuid), the rest carry seq and turret_uuid; it counts them all.
    for i in 0..3 {
        turret.send(result_frame(i, Some("navigation")));
    }
    for i in 3..5 {
        let f = result_frame(i, Some("navigation"));
        let f = f.strip_suffix('}').unwrap();
        turret.send(format!(r#"{f}, "seq": {}, "turret_uuid": "u-a"}}"#, i - 2));
    }
    turret.expect("stop", "Running");
    let ready = turret.status("ready");
    let ready = ready.strip_suffix('}').unwrap();
    turret.send(format!(r#"{ready}, "results_sent": 5}}"#));
    let (status, out) = hq.wait_exit(T);
    assert!(status.success(), "{out}");
    assert!(
        out.contains("turret navigation: ready (sent 5, received 5)"),
        "{out}"
    );
    assert!(out.contains("lost: 0"), "{out}");
}

#[test]
fn results_sent_during_the_last_transaction_before_stop_are_stored() {
    let project = Project::new(config(1.0, 1, one_turret()));
    let (mut hq, turret) = started(&project, "u-s");
    turret.send(result_frame(0, Some("navigation")));
    turret.expect("stop", "Running");
    // In-flight transactions finish up to a second after stop (OCT drops these).
    let mut sent = 1;
    let until = std::time::Instant::now() + Duration::from_secs(1);
    while std::time::Instant::now() < until {
        turret.send(result_frame(sent, Some("navigation")));
        sent += 1;
        // Answer the HQ's status requests meanwhile, as a busy turret does.
        let _ = turret.next_command(Duration::from_millis(50), "Running");
    }
    turret.send(turret.status("ready"));
    let (status, out) = hq.wait_exit(T);
    assert!(status.success(), "{out}");
    assert_eq!(
        count_rows(&project.db(), "SELECT count(*) FROM result"),
        sent as i64
    );
}

#[test]
fn sigkill_mid_run_leaves_a_readable_database() {
    let project = Project::new(config(120.0, 1, one_turret()));
    let (mut hq, turret) = started(&project, "u-k");
    for i in 0..1000 {
        turret.send(result_frame(i, Some("navigation")));
    }
    let db = project.db();
    // Everything sent is committed within moments; then the HQ dies without warning.
    wait_until(T, "1000 committed rows", || {
        (count_rows(&db, "SELECT count(*) FROM result") == 1000).then_some(())
    });
    hq.child.kill().unwrap();
    hq.child.wait().unwrap();
    assert_eq!(count_rows(&db, "SELECT count(*) FROM result"), 1000);
    assert_eq!(count_rows(&db, "SELECT count(*) FROM turret"), 1);
}

#[test]
fn bad_config_is_one_line_naming_the_key_and_exit_2() {
    let mut c = config(1.0, 1, one_turret());
    c["run_time"] = json!("ten");
    let project = Project::new(c);
    let out = oct(&["run", project.path().to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("oct: ")
            && err.contains("`run_time` must be a number of seconds, got \"ten\""),
        "{err}"
    );
}

#[test]
fn a_port_in_use_is_named() {
    let taken = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let mut c = config(1.0, 1, one_turret());
    c["publish_port"] = json!(port);
    let project = Project::new(c);
    let out = oct(&[
        "run",
        project.path().to_str().unwrap(),
        "-o",
        project.results_dir().to_str().unwrap(),
    ])
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains(&format!("`publish_port` {port}: cannot bind")),
        "{err}"
    );
}

#[test]
fn ctrl_c_once_stops_gracefully_and_stores_everything() {
    let project = Project::new(config(120.0, 1, one_turret()));
    let (mut hq, turret) = started(&project, "u-c");
    for i in 0..200 {
        turret.send(result_frame(i, Some("navigation")));
    }
    let pid = hq.child.id().to_string();
    assert!(std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap()
        .success());
    turret.expect("stop", "Running");
    turret.send(result_frame(200, Some("navigation")));
    turret.send(turret.status("ready"));
    let (status, out) = hq.wait_exit(T);
    assert!(status.success(), "{out}");
    assert_eq!(
        count_rows(&project.db(), "SELECT count(*) FROM result"),
        201
    );
}

#[test]
fn external_publisher_republishes_each_result_with_its_topic_and_can_use_a_forwarder() {
    for forwarder in [false, true] {
        let project = Project::new(config(1.5, 1, one_turret()));
        let ctx = zmq::Context::new();
        let sub = ctx.socket(zmq::SUB).unwrap();
        sub.set_subscribe(b"").unwrap();
        let out = project.results_dir();
        let mut hq = oct_run(project.path(), &out, &["--no-results", "-p", "mytopic"]);
        let forwarder_address;
        if forwarder {
            // The forwarder's side: our SUB binds, the HQ's PUB connects to it.
            sub.bind("tcp://127.0.0.1:*").unwrap();
            forwarder_address = sub
                .get_last_endpoint()
                .unwrap()
                .unwrap()
                .trim_start_matches("tcp://")
                .to_owned();
            hq.args([
                "--with-forwarder",
                "--forwarder-address",
                forwarder_address.as_str(),
            ]);
        }
        let mut hq = Proc::spawn(hq);
        let (publish, rc, external) = hq.hq_ports();
        if !forwarder {
            sub.connect(&format!("tcp://127.0.0.1:{external}")).unwrap();
        }
        let turret = TestTurret::connect("navigation", "u-x", publish, rc);
        turret.expect("start", "ready");
        // Keep sending until the subscription is live (PUB drops for late subscribers).
        let frame = result_frame(3, Some("navigation"));
        let got = wait_until(T, "a re-published result", || {
            turret.send(&frame);
            if sub.poll(zmq::POLLIN, 50).unwrap() > 0 {
                return Some(sub.recv_multipart(0).unwrap());
            }
            None
        });
        assert_eq!(got, vec![b"mytopic".to_vec(), frame.clone().into_bytes()]);
        // A batch (extension) goes out as OCT's one message per result.
        let (a, b) = (result_frame(4, None), result_frame(5, None));
        turret.send(format!("[{a}, {b}]"));
        let next = || loop {
            assert!(
                sub.poll(zmq::POLLIN, 5000).unwrap() > 0,
                "nothing republished"
            );
            let m = sub.recv_multipart(0).unwrap();
            if m[1] != frame.as_bytes() {
                return m;
            }
        };
        assert_eq!(next(), vec![b"mytopic".to_vec(), a.into_bytes()]);
        assert_eq!(next(), vec![b"mytopic".to_vec(), b.into_bytes()]);
        // A packed batch (extension) too: each result as OCT JSON, naming its turret.
        let packed: Vec<protocol::TestResult> = [6, 7]
            .iter()
            .map(|&i| {
                let protocol::Message::Result(mut r) =
                    protocol::Message::decode(result_frame(i, None).as_bytes()).unwrap()
                else {
                    panic!("not a result")
                };
                r.seq = Some(i as u64);
                r
            })
            .collect();
        let mut frame6 = Vec::new();
        protocol::encode_packed("u-x", Some("navigation"), &packed, &mut frame6);
        turret.send(&frame6);
        for r in &packed {
            let mut want = r.clone();
            want.turret_name = Some("navigation".into());
            want.turret_uuid = Some("u-x".into());
            assert_eq!(next(), vec![b"mytopic".to_vec(), want.encode()]);
        }
        // A mangled one is rejected whole, and said so.
        turret.send(&frame6[..frame6.len() - 3]);
        turret.expect("stop", "Running");
        turret.send(turret.status("ready"));
        let (status, text) = hq.wait_exit(T);
        assert!(status.success(), "{text}");
        assert!(
            text.contains("bad packed batch: truncated"),
            "no word of the mangled packed frame: {text}"
        );
        let db = project.db();
        assert_eq!(
            count_rows(
                &db,
                "SELECT count(*) FROM result WHERE turret_name = 'navigation' \
                 AND error = 'failure #7' AND custom_timers LIKE '%\"db query\"%'"
            ),
            1
        );
    }
}

#[test]
fn ctrl_c_twice_exits_at_once_with_everything_received_committed() {
    let mut c = config(120.0, 1, one_turret());
    c["drain_timeout"] = json!(120);
    let project = Project::new(c);
    let (mut hq, turret) = started(&project, "u-cc");
    for i in 0..300 {
        turret.send(result_frame(i, Some("navigation")));
    }
    let pid = hq.child.id().to_string();
    let sigint = || {
        assert!(std::process::Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap()
            .success())
    };
    sigint();
    // The turret never reports ready: only a second Ctrl-C ends the 120 s drain.
    turret.expect("stop", "Running");
    let pressed = std::time::Instant::now();
    sigint();
    let (_, out) = hq.wait_exit(T);
    assert!(
        pressed.elapsed() < Duration::from_secs(5),
        "took {:?}\n{out}",
        pressed.elapsed()
    );
    assert_eq!(
        count_rows(&project.db(), "SELECT count(*) FROM result"),
        300
    );
}

#[test]
fn a_sustained_flood_loses_no_frame_when_the_hq_breaks_off_to_ask_for_statuses() {
    // Far more than the HQ handles before its 100 ms turns end: it breaks off its receiving
    // loop again and again (every 256 frames once a turn is over) to send status requests,
    // and every frame it had in hand then must still count.
    let n = 60_000;
    let project = Project::new(config(120.0, 1, one_turret()));
    let (mut hq, turret) = started(&project, "u-f");
    let frames: Vec<String> = (0..n)
        .map(|i| result_frame(i, Some("navigation")))
        .collect();
    for f in &frames {
        turret.send(f);
    }
    let db = project.db();
    wait_until(T, "every flooded result stored", || {
        (count_rows(&db, "SELECT count(*) FROM result") == n as i64).then_some(())
    });
    hq.child.kill().unwrap();
    hq.child.wait().unwrap();
}
