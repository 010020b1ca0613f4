//! Observers (issue: dashboard, detach and observers): webhooks received by a real local HTTP
//! server (tests/sites/hook.py on python3's http.server) and commands, told of a test's end and
//! of a failed gate; an observer that is down or failing is logged and changes nothing.

mod util;

use std::time::Duration;

use serde_json::{json, Value};
use util::*;

#[test]
fn webhooks_and_commands_hear_the_end_and_a_failed_gate_and_a_dead_one_changes_nothing() {
    let mut hook = Proc::spawn({
        let mut c = std::process::Command::new("python3");
        c.arg("-u")
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sites/hook.py"));
        c
    });
    let line = hook.wait_line(Duration::from_secs(20), |l| l.starts_with("PORT "));
    let port: u16 = line[5..].trim().parse().unwrap();
    let [closed] = free_ports::<1>();
    let target = HttpServer::start();
    let p = Project::new(config(
        1.0,
        1,
        json!([{"name": "t", "cannons": 2, "rampup": 0, "script": "get.lua"}]),
    ));
    p.write(
        "get.lua",
        &lua_get(&format!("http://127.0.0.1:{}/", target.port), 5.0, 0.01),
    );
    let mut c: Value =
        serde_json::from_str(&std::fs::read_to_string(p.path().join("config.json")).unwrap())
            .unwrap();
    let marker = p.path().join("command-saw");
    c["thresholds"] = json!({"_run": ["count < 1"]});
    let command = format!(
        "cat > '{}'; echo \"$OCT_EVENT\" > '{}'",
        marker.with_extension("json").display(),
        marker.with_extension("event").display()
    );
    c["observers"] = json!([
        {"type": "webhook", "url": format!("http://127.0.0.1:{port}/hook"), "on": ["finish", "threshold_failed"]},
        {"type": "webhook", "url": format!("http://127.0.0.1:{port}/fail"), "retries": 1, "timeout": 2},
        {"type": "webhook", "url": format!("http://127.0.0.1:{closed}/down"), "retries": 1, "timeout": 1},
        {"type": "command", "run": command},
    ]);
    std::fs::write(p.path().join("config.json"), c.to_string()).unwrap();
    let started = std::time::Instant::now();
    let (status, out) = Proc::spawn(oct_run(p.path(), &p.results_dir(), &["--local"]))
        .wait_exit(Duration::from_secs(90));
    // The gate failed (exit 99), whatever the observers did.
    assert_eq!(status.code(), Some(99), "{out}");
    assert!(started.elapsed() < Duration::from_secs(30), "{out}");
    assert!(out.contains(&format!("oct: observer webhook http://127.0.0.1:{port}/fail failed on finish after 2 attempt(s): answered 500")), "{out}");
    assert!(out.contains(&format!("oct: observer webhook http://127.0.0.1:{closed}/down failed on finish after 2 attempt(s)")), "{out}");
    let summary: Value = serde_json::from_str(
        &std::fs::read_to_string(p.results_dir().join("summary.json")).unwrap(),
    )
    .unwrap();
    // The HQ waited for the deliveries before it exited: all of them are in the hook's output.
    let _ = hook.child.kill();
    let (_, text) = hook.wait_exit(Duration::from_secs(20));
    let got: Vec<Value> = text
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let on = |path: &str, event: &str| {
        got.iter()
            .filter(|g| g["path"] == path && g["event"] == event)
            .cloned()
            .collect::<Vec<_>>()
    };
    let finish = on("/hook", "finish");
    assert_eq!(finish.len(), 1, "{got:?}");
    assert_eq!(finish[0]["type"], "application/json");
    // `finish` carries summary.json itself.
    assert_eq!(finish[0]["body"], summary);
    let failed = on("/hook", "threshold_failed");
    assert_eq!(failed.len(), 1, "{got:?}");
    assert_eq!(failed[0]["body"]["event"], "threshold_failed");
    assert_eq!(
        failed[0]["body"]["failed"][0]["threshold"], "count < 1",
        "{got:?}"
    );
    // Retried once after the 500.
    assert_eq!(on("/fail", "finish").len(), 2, "{got:?}");
    let body = std::fs::read_to_string(marker.with_extension("json")).unwrap();
    let event = std::fs::read_to_string(marker.with_extension("event")).unwrap();
    assert_eq!(event.trim(), "finish");
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap(), summary);
}

#[test]
fn a_bad_observer_is_a_one_line_config_error() {
    let mut c = config(
        1.0,
        1,
        json!([{"name": "t", "cannons": 1, "script": "get.lua"}]),
    );
    c["observers"] = json!([{"type": "webhook", "url": "ftp://example"}]);
    let p = Project::new(c);
    p.write("get.lua", "function run(t) end");
    let (status, out) = p.run_local();
    assert_eq!(status.code(), Some(2), "{out}");
    assert!(
        out.contains("observers[0].url") && out.contains("must be an http:// or https:// URL"),
        "{out}"
    );
}
