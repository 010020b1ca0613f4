//! OCT Python compatibility: the real oct-turrets against our HQ, OCT scripts in our turret,
//! and our turret speaking plain OCT to an HQ that announces nothing.

mod util;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use util::*;

const T: Duration = Duration::from_secs(90);

fn fixture_script() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/oct/oct_style_user.py")
}

/// Runs a test of the real oct-turrets 0.2.8 (`real-oct`) beside ours (`ours`), both from
/// tarballs `pack-turrets` made of a project with `config` (its ports filled in) and the OCT
/// fixture script; returns the HQ's exit, its output and the results database.
fn mixed_fleet(
    mut config: Value,
) -> (
    std::process::ExitStatus,
    String,
    std::path::PathBuf,
    tempfile::TempDir,
) {
    let bin = real_oct_turrets();
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join("project");
    std::fs::create_dir_all(p.join("test_scripts")).unwrap();
    std::fs::copy(fixture_script(), p.join("test_scripts/v_user.py")).unwrap();
    let [publish, rc, ext] = free_ports::<3>();
    config["publish_port"] = json!(publish);
    config["rc_port"] = json!(rc);
    config["external_publisher"] = json!(ext);
    std::fs::write(p.join("config.json"), config.to_string()).unwrap();
    succeeds(Command::new(env!("CARGO_BIN_EXE_oct")).args([
        "pack-turrets",
        p.to_str().unwrap(),
        "--python",
    ]));
    let results = tmp.path().join("out");
    let mut hq = Proc::spawn(oct_run(&p, &results, &[]));
    hq.hq_ports();
    let mut real = Command::new(bin.join("oct-turrets-start"));
    real.args(["--tar", p.join("real-oct.tar.gz").to_str().unwrap()])
        .current_dir(tmp.path());
    let _real = Proc::spawn(real);
    let _ours = Proc::spawn(oct(&[
        "turret",
        "--tar",
        p.join("ours.tar.gz").to_str().unwrap(),
    ]));
    let (status, text) = hq.wait_exit(T);
    (status, text, results.join("results.sqlite"), tmp)
}

#[test]
fn the_real_oct_turret_and_ours_run_the_same_script_against_our_hq() {
    let (status, text, db, _tmp) = mixed_fleet(json!({
        "run_time": 4, "results_ts_interval": 1, "testing": false, "progress_bar": false,
        "min_turrets": 2, "drain_timeout": 8,
        "turrets": [
            {"name": "real-oct", "cannons": 2, "rampup": 0, "script": "test_scripts/v_user.py"},
            {"name": "ours", "cannons": 2, "rampup": 0, "script": "test_scripts/v_user.py"}
        ]
    }));
    assert!(status.success(), "{text}");
    // oct-turrets 0.2.8's cannons push straight to the HQ without `turret_name` (an OCT bug),
    // so its rows are `Noname`, as OCT's own HQ stores them.
    for turret in ["Noname", "ours"] {
        let n = count_rows(
            &db,
            &format!("SELECT count(*) FROM result WHERE turret_name = '{turret}'"),
        );
        assert!(n >= 20, "{n} results from {turret}\n{text}");
        let timed = count_rows(
            &db,
            &format!("SELECT count(*) FROM result WHERE turret_name = '{turret}' AND custom_timers LIKE '%\"login\":%' AND custom_timers LIKE '%\"db query\":%'"),
        );
        assert_eq!(timed, n, "{turret}: every result carries both timers");
        let failures = count_rows(
            &db,
            &format!("SELECT count(*) FROM result WHERE turret_name = '{turret}' AND error LIKE 'simulated failure #%'"),
        );
        assert!(failures >= 2, "{turret}: {failures} failures\n{text}");
        assert_eq!(
            count_rows(&db, &format!("SELECT count(*) FROM result WHERE turret_name = '{turret}' AND error != '' AND error NOT LIKE 'simulated failure #%'")),
            0
        );
    }
    assert_eq!(count_rows(&db, "SELECT count(*) FROM turret"), 2);
    // OCT's turret sends no heartbeats: it is unmonitored, not lost; ours is watched.
    assert!(
        text.lines()
            .any(|l| l.starts_with("turret real-oct:") && l.ends_with("· unmonitored")),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("turret ours:") && l.contains("· running")),
        "{text}"
    );
    // Both turrets in the report's workload table.
    let html = std::fs::read_to_string(db.with_file_name("results.html")).unwrap();
    let workload = html
        .split("id=\"workload\"")
        .nth(1)
        .unwrap()
        .split("</section>")
        .next()
        .unwrap();
    assert!(
        workload.contains(">real-oct<") && workload.contains(">ours<"),
        "{workload}"
    );
    // Ours sub-second, OCT's rounded to the second (its bug, kept in its rows).
    assert!(count_rows(&db, "SELECT count(*) FROM result WHERE turret_name = 'ours' AND epoch != CAST(epoch AS INTEGER)") > 0);
}

#[test]
fn the_oct_style_script_runs_under_our_turret_with_octs_result_shape() {
    let c = config(
        2.0,
        1,
        json!([{"name": "nav", "cannons": 8, "script": "test_scripts/v_user.py"}]),
    );
    let p = Project::new(c);
    std::fs::create_dir_all(p.path().join("test_scripts")).unwrap();
    std::fs::copy(fixture_script(), p.path().join("test_scripts/v_user.py")).unwrap();
    let (status, text) = p.run_local();
    assert!(status.success(), "{text}");
    let db = p.db();
    let n = count_rows(&db, "SELECT count(*) FROM result");
    // 8 canons × ~0.08 s per transaction × 2 s: well over what one canon could do.
    assert!(n >= 80, "{n}\n{text}");
    // Per-iteration timers (OCT accumulates them): exactly the two of this script.
    assert_eq!(
        count_rows(
            &db,
            "SELECT count(*) FROM result WHERE custom_timers LIKE '{\"db query\":%,\"login\":%}'"
        ),
        n
    );
    // Each canon has its own transaction counter: the 7th of every canon fails.
    assert_eq!(
        count_rows(
            &db,
            "SELECT count(*) FROM result WHERE error = 'simulated failure #7'"
        ),
        8
    );
    assert!(text.contains("lost: 0"), "{text}");
}

#[test]
fn broken_python_scripts_are_reported_clearly() {
    let cases = [
        (
            "import does_not_exist_anywhere\n",
            "ModuleNotFoundError: No module named 'does_not_exist_anywhere'",
        ),
        ("x = 1\n", "defines no Transaction class"),
    ];
    for (script, want) in cases {
        let c = config(
            1.0,
            1,
            json!([{"name": "py", "cannons": 1, "script": "test_scripts/bad.py"}]),
        );
        let p = Project::new(c);
        p.write("test_scripts/bad.py", script);
        let (status, text) = p.run_local();
        assert_eq!(status.code(), Some(2), "{text}");
        let log_path = text.split("; see ").nth(1).unwrap().lines().next().unwrap();
        let log = std::fs::read_to_string(log_path).unwrap();
        assert!(log.contains(want), "{log}");
        assert!(log.contains("bad.py"), "{log}");
    }
}

#[test]
fn a_worker_that_keeps_dying_aborts_its_turret_without_hanging() {
    let script = r#"
import os
from oct_turrets.base import BaseTransaction


class Transaction(BaseTransaction):
    def run(self):
        os._exit(3)
"#;
    // A long run: the HQ must end it early once its only turret has aborted.
    let c = config(
        120.0,
        1,
        json!([{"name": "dies", "cannons": 1, "script": "test_scripts/dies.py"}]),
    );
    let p = Project::new(c);
    p.write("test_scripts/dies.py", script);
    let (status, text) = p.run_local();
    assert!(status.success(), "{text}");
    assert!(text.contains("turret dies is Aborted"), "{text}");
    assert!(text.contains("stopping the test early"), "{text}");
    let db = p.db();
    assert_eq!(
        count_rows(
            &db,
            "SELECT count(*) FROM result WHERE error = 'worker died: the worker exited'"
        ),
        3
    );
    assert_eq!(
        count_rows(&db, "SELECT count(*) FROM turret WHERE status = 'Aborted'"),
        1
    );
}

/// An HQ that speaks OCT 0.4.12's frames exactly (fixtures/oct/wire_samples.jsonl) and
/// announces no extension: our turret must answer in OCT's messages only.
#[test]
fn our_turret_speaks_only_octs_messages_to_an_oct_hq() {
    let ctx = zmq::Context::new();
    let publish = ctx.socket(zmq::PUB).unwrap();
    publish.bind("tcp://127.0.0.1:*").unwrap();
    let pull = ctx.socket(zmq::PULL).unwrap();
    pull.bind("tcp://127.0.0.1:*").unwrap();
    let port = |s: &zmq::Socket| -> u16 {
        s.get_last_endpoint()
            .unwrap()
            .unwrap()
            .rsplit(':')
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("u.lua"),
        "function run(t) t:timer('w', function() oct.sleep(0.005) end) end",
    )
    .unwrap();
    let cfg = json!({"name": "nav", "cannons": 2, "rampup": 0, "script": "u.lua",
                     "hq_address": "127.0.0.1", "hq_publisher": port(&publish), "hq_rc": port(&pull)});
    std::fs::write(dir.path().join("config.json"), cfg.to_string()).unwrap();
    let _turret = Proc::spawn(oct(&[
        "turret",
        "--config-file",
        dir.path().join("config.json").to_str().unwrap(),
    ]));

    let mut frames: Vec<Value> = Vec::new();
    let recv_for = |d: Duration, frames: &mut Vec<Value>| {
        let until = Instant::now() + d;
        while Instant::now() < until {
            if pull.poll(zmq::POLLIN, 20).unwrap() > 0 {
                let f = pull.recv_bytes(0).unwrap();
                frames.push(serde_json::from_slice(&f).unwrap());
            }
        }
    };
    // Ask until it answers, as OCT's HQ does.
    wait_until(T, "a status", || {
        publish
            .send(&b" {\"command\":\"status_request\",\"msg\":null}"[..], 0)
            .unwrap();
        recv_for(Duration::from_millis(100), &mut frames);
        (!frames.is_empty()).then_some(())
    });
    publish
        .send(
            &b" {\"command\":\"set_transaction_context\",\"msg\":{}}"[..],
            0,
        )
        .unwrap();
    publish
        .send(&b" {\"command\":\"start\",\"msg\":\"open fire\"}"[..], 0)
        .unwrap();
    recv_for(Duration::from_millis(800), &mut frames);
    publish
        .send(
            &b" {\"command\":\"stop\",\"msg\":\"premature stop\"}"[..],
            0,
        )
        .unwrap();
    recv_for(Duration::from_millis(800), &mut frames);
    publish
        .send(&b" {\"command\":\"kill\",\"msg\":null}"[..], 0)
        .unwrap();
    recv_for(Duration::from_millis(300), &mut frames);

    let status_keys = ["cannons", "rampup", "script", "status", "turret", "uuid"];
    let result_keys = [
        "custom_timers",
        "elapsed",
        "epoch",
        "error",
        "scriptrun_time",
        "turret_name",
    ];
    let mut results = 0;
    let mut statuses = Vec::new();
    for f in &frames {
        let mut keys: Vec<&str> = f.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort();
        if f.get("uuid").is_some() {
            assert_eq!(keys, status_keys, "{f}");
            statuses.push(f["status"].as_str().unwrap().to_owned());
        } else {
            assert_eq!(keys, result_keys, "{f}");
            results += 1;
        }
    }
    assert!(results > 20, "{results} results");
    assert_eq!(statuses.first().map(String::as_str), Some("ready"));
    assert!(statuses.contains(&"Running".to_owned()), "{statuses:?}");
    assert!(
        statuses.ends_with(&["ready".to_owned(), "Killed".to_owned()]),
        "{statuses:?}"
    );
}

/// The real OCT 0.4.12 HQ (Python, PyPI) drives our turret through a test and stores its
/// results: our turret speaks plain OCT to an HQ that announces nothing.
#[test]
fn the_real_oct_hq_runs_a_test_with_our_turret() {
    let bin = real_oct_hq();
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join("project");
    std::fs::create_dir_all(p.join("test_scripts")).unwrap();
    std::fs::write(
        p.join("test_scripts/u.lua"),
        "function run(t) t:timer('work', function() oct.sleep(0.01) end) end",
    )
    .unwrap();
    let [publish, rc, ext] = free_ports::<3>();
    let config = json!({
        "run_time": 3, "results_ts_interval": 1, "testing": false, "progress_bar": false,
        "publish_port": publish, "rc_port": rc, "external_publisher": ext, "min_turrets": 1,
        "turrets": [{"name": "ours", "cannons": 2, "rampup": 0, "script": "test_scripts/u.lua"}],
        "turrets_requirements": [], "extra_turret_config": {}
    });
    std::fs::write(p.join("config.json"), config.to_string()).unwrap();
    let packed = Command::new(env!("CARGO_BIN_EXE_oct"))
        .args(["pack-turrets", p.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(packed.status.success());
    let out = tmp.path().join("out");
    let mut hq = Command::new(bin.join("oct"));
    hq.args([
        "run",
        p.to_str().unwrap(),
        "--no-results",
        "-o",
        out.to_str().unwrap(),
    ]);
    let mut hq = Proc::spawn(hq);
    let _turret = Proc::spawn(oct(&[
        "turret",
        "--tar",
        p.join("ours.tar.gz").to_str().unwrap(),
    ]));
    let (status, text) = hq.wait_exit(T);
    assert!(status.success(), "{text}");
    let db = out.join("results.sqlite");
    let n = count_rows(&db, "SELECT count(*) FROM result WHERE turret_name = 'ours' AND custom_timers LIKE '{\"work\":%'");
    assert!(n > 50, "{n} results stored by OCT's HQ\n{text}");
    assert_eq!(
        count_rows(&db, "SELECT count(*) FROM turret WHERE name = 'ours'"),
        1
    );
}

#[test]
fn in_a_global_shape_the_real_oct_turret_runs_its_share_and_ours_follows_the_rest() {
    let (status, text, db, _tmp) = mixed_fleet(json!({
        "run_time": 4, "results_ts_interval": 1, "testing": false, "progress_bar": false,
        "min_turrets": 2, "drain_timeout": 8, "heartbeat_interval": 0.2,
        "load": {"cannons": 6},
        "turrets": [
            {"name": "real-oct", "script": "test_scripts/v_user.py"},
            {"name": "ours", "script": "test_scripts/v_user.py", "weight": 1}
        ]
    }));
    assert!(status.success(), "{text}");
    // OCT's turret knows only `cannons`: its half of 6, from start to stop.
    assert_eq!(
        count_rows(&db, "SELECT cannons FROM turret WHERE name = 'real-oct'"),
        3
    );
    assert!(
        count_rows(
            &db,
            "SELECT count(*) FROM result WHERE turret_name = 'Noname'"
        ) >= 20
    );
    // Ours follows the HQ, which gives it what the shape asks beyond OCT's 3.
    let last_target = count_rows(
        &db,
        "SELECT target FROM oct_canons WHERE name = 'ours' AND target IS NOT NULL ORDER BY epoch DESC LIMIT 1",
    );
    assert_eq!(last_target, 3, "{text}");
    assert!(
        count_rows(
            &db,
            "SELECT count(*) FROM result WHERE turret_name = 'ours'"
        ) >= 20
    );
}

#[test]
fn the_python_adapter_is_kept_in_the_users_cache_and_leaves_no_temp_folder() {
    let cache = tempfile::tempdir().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let run = || {
        // The iterations end the test (a run_time as short as the work let a slow start
        // cut it short).
        let p = Project::new(config(
            60.0,
            1,
            json!([{"name": "py", "cannons": 2, "iterations": 3, "script": "v_user.py"}]),
        ));
        std::fs::copy(fixture_script(), p.path().join("v_user.py")).unwrap();
        let mut cmd = oct_run(p.path(), &p.results_dir(), &["--local", "--no-results"]);
        cmd.env("XDG_CACHE_HOME", cache.path())
            .env("TMPDIR", tmp.path());
        let (status, text) = Proc::spawn(cmd).wait_exit(T);
        assert!(status.success(), "{text}");
        assert_eq!(
            count_rows(&p.db(), "SELECT count(*) FROM result"),
            6,
            "{text}"
        );
    };
    let adapters = || -> Vec<std::path::PathBuf> {
        std::fs::read_dir(cache.path().join("oct"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect()
    };
    run();
    let dirs = adapters();
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    assert!(dirs[0]
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .starts_with("python-"));
    let worker = dirs[0].join("oct_worker.py");
    let good = std::fs::read(&worker).unwrap();
    // The local turrets were killed at the end of the run: nothing of theirs is left in TMPDIR.
    let leftovers: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    // A damaged copy is replaced at the next start.
    std::fs::write(&worker, "raise SystemExit('damaged')\n").unwrap();
    run();
    assert_eq!(std::fs::read(&worker).unwrap(), good);
    assert_eq!(adapters(), dirs);
}
