//! `oct forwarder` (issue: scale-out, fan-in): real HQ, forwarder and turret processes on
//! loopback; the turrets know only the forwarder. Every result arrives (0 lost, sent = received
//! per turret), and in secure mode the sealed frames pass without the forwarder knowing the
//! secret.

mod util;

use std::time::Duration;

use serde_json::{json, Value};
use util::*;

const T: Duration = Duration::from_secs(60);
const SECRET: &str = "forwarded-secret-of-32-bytes-or-more!";

/// A run of two turrets through one forwarder: its summary.json.
fn through_a_forwarder(secret: Option<&str>) -> Value {
    let target = HttpServer::start();
    let turrets = json!([{"name": "a", "cannons": 2, "rampup": 0, "script": "v.lua"},
                         {"name": "b", "cannons": 2, "rampup": 0, "script": "v.lua"}]);
    let mut c = config(3.0, 2, turrets);
    c["heartbeat_interval"] = json!(0.2);
    let project = Project::new(c);
    project.write(
        "v.lua",
        &format!(
            "function run(t)\n  local r = http.get(\"http://127.0.0.1:{}/\")\n  if r.status ~= 200 then error(r.status) end\n  oct.sleep(0.005)\nend\n",
            target.port
        ),
    );
    let mut run = oct_run(project.path(), &project.results_dir(), &[]);
    if let Some(s) = secret {
        run.env("OCT_SECRET", s);
    }
    let mut hq = Proc::spawn(run);
    let (publish, rc, _) = hq.hq_ports();
    let [pull, publ] = free_ports::<2>();
    let mut fwd = Proc::spawn(oct(&[
        "forwarder",
        "--pull",
        &format!("127.0.0.1:{pull}"),
        "--push",
        &format!("127.0.0.1:{rc}"),
        "--sub",
        &format!("127.0.0.1:{publish}"),
        "--pub",
        &format!("127.0.0.1:{publ}"),
        "--progress",
        "0.5",
    ]));
    fwd.wait_line(T, |l| {
        l.contains(&format!(
            "commands tcp://127.0.0.1:{publish} → tcp://127.0.0.1:{publ}"
        ))
    });
    let _turrets: Vec<Proc> = ["a", "b"]
        .iter()
        .map(|name| {
            let path = project.path().join(format!("{name}.json"));
            let cfg = json!({"name": name, "cannons": 2, "rampup": 0, "script": "v.lua",
                "hq_address": "127.0.0.1", "hq_publisher": publ, "hq_rc": pull, "workers": 1});
            std::fs::write(&path, cfg.to_string()).unwrap();
            let mut t = oct(&["turret", "--config-file", path.to_str().unwrap()]);
            if let Some(s) = secret {
                t.env("OCT_SECRET", s);
            }
            Proc::spawn(t)
        })
        .collect();
    hq.wait_line(T, |l| l.contains("started 2 turret(s)"));
    fwd.wait_line(T, |l| l.contains("result frames forwarded"));
    let (status, out) = hq.wait_exit(T);
    assert!(status.success(), "{out}");
    let text = std::fs::read_to_string(project.results_dir().join("summary.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn check(summary: &Value) {
    assert_eq!(summary["lost"], 0, "{summary}");
    assert_eq!(summary["rejected"], 0, "{summary}");
    let mut sent = 0;
    for t in summary["turrets"].as_array().unwrap() {
        assert_eq!(t["received"], t["sent"], "{t}");
        sent += t["sent"].as_u64().unwrap();
    }
    assert!(sent > 100, "{summary}");
    assert_eq!(summary["transactions"].as_u64().unwrap(), sent, "{summary}");
}

#[test]
fn turrets_behind_a_forwarder_lose_nothing() {
    check(&through_a_forwarder(None));
}

#[test]
fn sealed_frames_pass_a_forwarder_that_has_no_secret() {
    check(&through_a_forwarder(Some(SECRET)));
}

#[test]
fn bad_forwarder_flags_are_one_line_errors() {
    let [port] = free_ports::<1>();
    let held = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    for (args, want) in [
        (
            vec![
                "--pull",
                &*format!("127.0.0.1:{port}"),
                "--push",
                "127.0.0.1:9",
            ],
            "--pull 127.0.0.1:",
        ),
        (
            vec![
                "--pull",
                "127.0.0.1:0",
                "--push",
                "127.0.0.1:9",
                "--sub",
                "127.0.0.1:9",
            ],
            "--pub",
        ),
        (
            vec!["--pull", "nowhere", "--push", "127.0.0.1:9"],
            "--pull nowhere",
        ),
    ] {
        let mut all = vec!["forwarder"];
        all.extend(args.iter().map(|s| &**s));
        let out = oct(&all).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
    }
    drop(held);
}
