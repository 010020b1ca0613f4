//! The open model and the global shape (issue: load shapes, open model, test data), run by a
//! real HQ and real turret processes against a real HTTP target: iterations start on schedule
//! whatever the response times, what cannot start is dropped and counted, latencies are also
//! measured from when each iteration was due; a `load` block is split across turrets.

mod util;

use std::time::Duration;

use serde_json::{json, Value};
use util::*;

/// A project of `--local` turrets (`entries`), each GETting `path` of `target` once per
/// iteration, with heartbeats every 200 ms.
fn project(run_time: f64, entries: Value, target: &HttpServer, path: &str) -> Project {
    let n = entries.as_array().unwrap().len() as u64;
    let mut c = config(run_time, n, entries);
    c["heartbeat_interval"] = json!(0.2);
    let p = Project::new(c);
    p.write(
        "v.lua",
        &format!(
            "function run(t) http.get('http://127.0.0.1:{}{path}', {{timeout = 30}}) end",
            target.port
        ),
    );
    p
}

fn run_local(project: &Project) -> String {
    let (status, out) = project.run_local();
    assert!(status.success(), "{out}");
    assert!(out.contains("lost: 0"), "{out}");
    out
}

/// `iterations started: N, dropped: M` from the HQ's summary.
fn iterations(out: &str) -> (u64, u64) {
    let line = out
        .lines()
        .find_map(|l| l.strip_prefix("iterations started: "))
        .unwrap_or_else(|| panic!("no iterations line in\n{out}"));
    let (started, dropped) = line.split_once(", dropped: ").unwrap();
    (started.parse().unwrap(), dropped.trim().parse().unwrap())
}

/// The series of latencies from when iterations were due, in a report's summary.json.
fn corrected(summary: &Value) -> Value {
    summary["series"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"].as_str().unwrap().contains("coordinated omission"))
        .cloned()
        .unwrap_or_else(|| panic!("no corrected series: {summary}"))
}

#[test]
fn two_hundred_a_second_for_five_seconds_start_a_thousand_iterations() {
    let target = HttpServer::start();
    let project = project(
        5.0,
        json!([{"name": "open", "script": "v.lua",
                "arrival_rate": {"rate": 200, "max_cannons": 40}}]),
        &target,
        "/delay/50",
    );
    let out = run_local(&project);
    let (started, dropped) = iterations(&out);
    assert!(
        (980..=1020).contains(&started),
        "{started} started, want 1000 ± 2 %\n{out}"
    );
    assert_eq!(dropped, 0, "{out}");
    // Every started iteration is a stored result, and each has its lag beside it.
    let rows = count_rows(&project.db(), "SELECT count(*) FROM result") as u64;
    assert_eq!(rows, started, "{out}");
    assert_eq!(target.count(), started);
    let lagged = count_rows(&project.db(), "SELECT count(*) FROM oct_lag") as u64;
    assert_eq!(lagged, rows);
    // On time: the schedule lag stays far below a response time.
    let p99_lag_ms = count_rows(
        &project.db(),
        "SELECT CAST(lag * 1000 AS INTEGER) FROM oct_lag ORDER BY lag LIMIT 1 OFFSET (SELECT count(*) * 99 / 100 FROM oct_lag)",
    );
    assert!(p99_lag_ms < 25, "p99 lag {p99_lag_ms} ms");
    // The progress line says the rate.
    assert!(out.contains("· arrivals 200/s, dropped 0"), "{out}");
    let summary = project.rebuild();
    assert_eq!(summary["dropped_iterations"], 0, "{summary}");
    let per_second = summary["arrivals"]["per_second"].as_array().unwrap();
    assert!(per_second.len() >= 15, "{summary}");
    assert!(
        per_second
            .iter()
            .any(|r| r[1] == 200.0 && r[2].as_f64().unwrap() > 150.0),
        "wanted 200/s and started about as many: {summary}"
    );
    let corrected = corrected(&summary);
    assert_eq!(corrected["count"].as_u64(), Some(started));
    assert!(corrected["p50"].as_f64().unwrap() >= 0.05, "{corrected}");
    let html = std::fs::read_to_string(project.results_dir().join("results.html")).unwrap();
    assert!(html.contains("<h3>Arrival rate</h3>"));
    assert!(project.results_dir().join("graphs/arrivals.svg").is_file());
}

#[test]
fn a_target_slower_than_the_pool_drops_iterations_and_counts_every_one() {
    let target = HttpServer::start();
    // Two canons, 200 ms a request: they carry 10/s of the 100/s asked for.
    let project = project(
        3.0,
        json!([{"name": "open", "script": "v.lua",
                "arrival_rate": {"rate": 100, "max_cannons": 2}}]),
        &target,
        "/delay/200",
    );
    let out = run_local(&project);
    let (started, dropped) = iterations(&out);
    // Scheduled: 100/s over the 3 s the turret fired (its clock, not ours: ± 2 %).
    assert!(
        (294..=306).contains(&(started + dropped)),
        "{started} + {dropped}, want 300 ± 2 %\n{out}"
    );
    assert!(dropped >= 250, "{out}");
    assert!((25..=45).contains(&started), "{started}\n{out}");
    let rows = count_rows(&project.db(), "SELECT count(*) FROM result") as u64;
    assert_eq!(rows, started, "{out}");
    // The lag of what did start shows how late it was: corrected latencies are far above the
    // 200 ms the target took.
    let summary = project.rebuild();
    assert_eq!(summary["dropped_iterations"].as_u64(), Some(dropped));
    let corrected = corrected(&summary);
    assert!(corrected["max"].as_f64().unwrap() >= 0.2, "{corrected}");
}

#[test]
fn a_global_shape_over_two_turrets_is_split_and_their_sum_follows_it() {
    let target = HttpServer::start();
    let p = project(
        6.0,
        json!([{"name": "a", "script": "v.lua"}, {"name": "b", "script": "v.lua", "weight": 3}]),
        &target,
        "/delay/20",
    );
    let mut c: Value =
        serde_json::from_str(&std::fs::read_to_string(p.path().join("config.json")).unwrap())
            .unwrap();
    c["load"] = json!({"stages": [{"duration": 3, "target": 16}, {"duration": 3, "target": 0}]});
    p.write("config.json", &c.to_string());
    let out = run_local(&p);
    let conn = rusqlite::Connection::open(p.db()).unwrap();
    let start: f64 = conn
        .query_row(
            "SELECT (julianday(value) - 2440587.5) * 86400.0 FROM oct_run WHERE key = 'start'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let mut stmt = conn
        .prepare("SELECT name, epoch, active, target FROM oct_canons WHERE target IS NOT NULL ORDER BY epoch")
        .unwrap();
    let rows: Vec<(String, f64, i64, i64)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let mut last: std::collections::HashMap<String, (i64, i64)> = Default::default();
    let mut checked = 0;
    let mut peak = (0, 0);
    for (name, epoch, active, target) in rows {
        last.insert(name, (active, target));
        if last.len() < 2 {
            continue;
        }
        let secs = epoch - start;
        // The global shape: 0 → 16 over 3 s, then back to 0.
        let want = if secs < 3.0 {
            16.0 * secs / 3.0
        } else {
            16.0 * (6.0 - secs).max(0.0) / 3.0
        };
        let sum_active: i64 = last.values().map(|v| v.0).sum();
        let sum_target: i64 = last.values().map(|v| v.1).sum();
        // Heartbeats of two turrets, 200 ms apart at most, on a line of 5.3 canons/s.
        assert!(
            (sum_target as f64 - want).abs() <= 3.0,
            "at {secs:.2} s the turrets want {sum_target}, the shape {want:.1}\n{out}"
        );
        assert!(
            (sum_active - sum_target).abs() <= 2,
            "at {secs:.2} s: {sum_active} active for {sum_target} wanted"
        );
        if sum_target > peak.0 + peak.1 {
            peak = (last["a"].1, last["b"].1);
        }
        checked += 1;
    }
    assert!(checked >= 15, "{checked} samples\n{out}");
    // Weight 1 against 3: at the top, a quarter and three quarters of 16.
    assert!(
        (3..=5).contains(&peak.0) && (11..=13).contains(&peak.1),
        "peak split {peak:?}"
    );
    assert!(out.contains("· stage "), "{out}");
}

/// The canons turret `name` was asked for at its heartbeats so far.
fn targets_of(project: &Project, name: &str) -> Vec<i64> {
    let conn = rusqlite::Connection::open(project.db()).unwrap();
    let mut stmt = conn
        .prepare(
            "SELECT target FROM oct_canons WHERE name = ?1 AND target IS NOT NULL ORDER BY epoch",
        )
        .unwrap();
    let rows = stmt
        .query_map([name], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    rows
}

#[test]
fn a_turret_that_joins_a_global_shape_late_takes_its_part_of_it() {
    let target = HttpServer::start();
    let p = project(
        30.0,
        json!([{"name": "first", "script": "v.lua"}, {"name": "late", "script": "v.lua"}]),
        &target,
        "/delay/20",
    );
    let mut c: Value =
        serde_json::from_str(&std::fs::read_to_string(p.path().join("config.json")).unwrap())
            .unwrap();
    c["load"] = json!({"cannons": 8});
    c["min_turrets"] = json!(1);
    p.write("config.json", &c.to_string());
    let mut hq = Proc::spawn(oct_run(p.path(), &p.results_dir(), &[]));
    let (publish, rc, _) = hq.hq_ports();
    // What `pack-turrets` writes for each of two equal turrets of an 8-canon global shape.
    let turret = |name: &str| {
        let path = p.path().join(format!("{name}.json"));
        let cfg = json!({"name": name, "script": "v.lua", "cannons": 4,
            "follow_load": {"model": "closed", "pool": 8}, "workers": 1,
            "hq_address": "127.0.0.1", "hq_publisher": publish, "hq_rc": rc});
        std::fs::write(&path, cfg.to_string()).unwrap();
        Proc::spawn(oct(&["turret", "--config-file", path.to_str().unwrap()]))
    };
    let _first = turret("first");
    hq.wait_line(Duration::from_secs(30), |l| {
        l.contains("started 1 turret(s)")
    });
    // Alone, it carries the whole shape.
    wait_until(
        Duration::from_secs(20),
        "the first turret at 8 canons",
        || (targets_of(&p, "first").last() == Some(&8)).then_some(()),
    );
    let _late = turret("late");
    hq.wait_line(Duration::from_secs(30), |l| l.contains("joined late"));
    // Then the shape is split between the two: 4 and 4.
    wait_until(Duration::from_secs(20), "a split of 4 and 4", || {
        let (a, b) = (targets_of(&p, "first"), targets_of(&p, "late"));
        (a.last() == Some(&4) && b.last() == Some(&4)).then_some(())
    });
    drop(hq);
}

#[test]
fn an_executable_script_is_paced_by_the_schedule_too() {
    // A worker process (the JSON-lines protocol) gets each `iteration` line when it is due.
    let script = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("examples/executable/test_scripts/user.sh"),
    )
    .unwrap();
    let mut c = config(
        2.0,
        1,
        json!([{"name": "shell", "script": "user.sh",
                "arrival_rate": {"rate": 50, "max_cannons": 4}}]),
    );
    c["heartbeat_interval"] = json!(0.2);
    let p = Project::new(c);
    p.write("user.sh", &script);
    std::fs::set_permissions(
        p.path().join("user.sh"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let out = run_local(&p);
    let (started, dropped) = iterations(&out);
    // 50/s for 2 s; its first iterations wait for the worker processes to start.
    assert!((90..=102).contains(&(started + dropped)), "{out}");
    assert!(started >= 80, "{out}");
    let rows = count_rows(&p.db(), "SELECT count(*) FROM result") as u64;
    assert_eq!(rows, started, "{out}");
    assert_eq!(
        count_rows(&p.db(), "SELECT count(*) FROM oct_lag") as u64,
        rows
    );
}
