//! Tests in the background (issue: detach and attach): `oct run --detach` returns at once and the
//! HQ goes on; `oct status` lists it, `oct attach` follows its console (and detaches again),
//! `oct stop` ends it cleanly, with every result stored and the report written.

mod util;

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;
use util::*;

const T: Duration = Duration::from_secs(60);

fn alive(pid: &str) -> bool {
    Command::new("kill")
        .args(["-0", pid])
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn a_detached_test_is_listed_followed_and_stopped_cleanly() {
    let runtime = tempfile::tempdir().unwrap();
    let with_env = |mut c: Command| {
        c.env("XDG_RUNTIME_DIR", runtime.path());
        c
    };
    let target = HttpServer::start();
    let p = Project::new(config(
        120.0,
        1,
        json!([{"name": "t1", "cannons": 2, "rampup": 0, "script": "get.lua"}]),
    ));
    p.write(
        "get.lua",
        &lua_get(&format!("http://127.0.0.1:{}/", target.port), 5.0, 0.01),
    );
    let project = p.path().to_str().unwrap().to_owned();
    let t0 = Instant::now();
    let (status, out) = Proc::spawn(with_env(oct_run(
        p.path(),
        &p.results_dir(),
        &["--local", "--detach"],
    )))
    .wait_exit(T);
    assert!(status.success(), "{out}");
    assert!(t0.elapsed() < Duration::from_secs(30), "{out}");
    let pid = out
        .split("HQ pid ")
        .nth(1)
        .and_then(|r| r.split(',').next())
        .expect("the HQ's pid")
        .to_owned();
    assert!(alive(&pid), "{out}");
    let described: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(p.results_dir().join("hq.json")).unwrap())
            .unwrap();
    assert_eq!(described["pid"].to_string(), pid);
    // Listed.
    let (status, listed) = Proc::spawn(with_env(oct(&["status"]))).wait_exit(T);
    assert!(status.success(), "{listed}");
    assert!(
        listed.contains(&pid) && listed.contains(&project),
        "{listed}"
    );
    // Followed, then detached again (Ctrl-C, and no answer: stdin is closed).
    let mut attach = Proc::spawn(with_env(oct(&["attach", &project])));
    attach.wait_line(T, |l| l.contains("started 1 turret(s)"));
    let db = p.db();
    wait_until(T, "results", || {
        (count_rows(&db, "SELECT count(*) FROM result") > 0).then_some(())
    });
    assert!(Command::new("kill")
        .args(["-INT", &attach.child.id().to_string()])
        .status()
        .unwrap()
        .success());
    let (status, text) = attach.wait_exit(T);
    assert!(status.success(), "{text}");
    assert!(
        text.contains("stop the test (s) or detach (d)?") && text.contains("detached;"),
        "{text}"
    );
    assert!(alive(&pid), "attach's Ctrl-C reached the HQ");
    // Stopped cleanly: drained, stored, reported, unregistered.
    let (status, stopped) = Proc::spawn(with_env(oct(&["stop", &project]))).wait_exit(T);
    assert!(status.success(), "{stopped}");
    wait_until(T, "the HQ to exit", || (!alive(&pid)).then_some(()));
    assert!(stopped.contains("lost: 0"), "{stopped}");
    let stored = count_rows(&db, "SELECT count(*) FROM result");
    assert!(
        stopped.contains(&format!("transactions: {stored}")),
        "{stopped}"
    );
    assert!(p.results_dir().join("results.html").is_file());
    let (_, listed) = Proc::spawn(with_env(oct(&["status"]))).wait_exit(T);
    assert!(
        listed.contains("no detached test is running here"),
        "{listed}"
    );
    // Nothing left to stop.
    let (status, text) = Proc::spawn(with_env(oct(&["stop", &project]))).wait_exit(T);
    assert_eq!(status.code(), Some(2), "{text}");
    assert!(
        text.contains("no detached test of it is running here"),
        "{text}"
    );
}
