//! Load shapes (issue: load shapes, open model, test data): stages, Loads' cycles and
//! iterations per canon, run by real turrets against a real HTTP target, with the active canons
//! each heartbeat reported (our `oct_canons` table) compared to what the shape asked for; and
//! test data (feeders) whose rows the target sees.

mod util;

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use util::*;

/// A project of one `--local` turret `shaped` with `entry`'s shape keys, hitting `target`.
fn project(run_time: Option<f64>, entry: Value, target: &HttpServer) -> Project {
    let mut turret = json!({"name": "shaped", "rampup": 0, "script": "v.lua"});
    for (k, v) in entry.as_object().unwrap() {
        turret[k] = v.clone();
    }
    let mut c = config(run_time.unwrap_or(1.0), 1, json!([turret]));
    if run_time.is_none() {
        c.as_object_mut().unwrap().remove("run_time");
    }
    c["heartbeat_interval"] = json!(0.2);
    let p = Project::new(c);
    p.write(
        "v.lua",
        &lua_get(&format!("http://127.0.0.1:{}/", target.port), 30.0, 0.02),
    );
    p
}

/// (seconds since the first sample, active, target) of every heartbeat stored.
fn samples(project: &Project) -> Vec<(f64, i64, i64)> {
    let conn = rusqlite::Connection::open(project.db()).unwrap();
    let mut stmt = conn
        .prepare(
            "SELECT epoch, active, target FROM oct_canons WHERE target IS NOT NULL ORDER BY epoch",
        )
        .unwrap();
    let rows: Vec<(f64, i64, i64)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let t0 = rows.first().map_or(0.0, |r| r.0);
    rows.into_iter().map(|(e, a, t)| (e - t0, a, t)).collect()
}

fn run_local(project: &Project) -> String {
    let (status, out) = project.run_local();
    assert!(status.success(), "{out}");
    assert!(out.contains("lost: 0"), "{out}");
    out
}

#[test]
fn stages_0_20_0_over_6_s_are_followed_within_one_canon_and_every_result_is_stored() {
    let target = HttpServer::start();
    let project = project(
        None,
        json!({"stages": [{"duration": 3, "target": 20}, {"duration": 3, "target": 0}]}),
        &target,
    );
    let started = Instant::now();
    let out = run_local(&project);
    // run_time is the sum of the durations.
    assert!(started.elapsed() < Duration::from_secs(20), "{out}");
    assert!(out.contains("for 6s"), "{out}");
    // The progress line shows canons active against what the shape wants.
    assert!(
        out.lines()
            .any(|l| l.contains("· canons ") && l.contains('/')),
        "{out}"
    );
    let s = samples(&project);
    assert!(s.len() >= 20, "{} heartbeats stored", s.len());
    for (at, active, want) in &s {
        assert!(
            (active - want).abs() <= 1,
            "at {at:.1} s: {active} canons active, the shape wants {want}\n{s:?}"
        );
    }
    let peak = s.iter().map(|x| x.1).max().unwrap();
    assert!(peak >= 19, "peak {peak}: {s:?}");
    assert!(
        s.iter().any(|x| x.0 > 2.0 && x.0 < 4.0 && x.1 >= 15),
        "the middle is near 20: {s:?}"
    );
    // Every transaction the target served is a stored result: nothing cut mid-way.
    let rows = count_rows(&project.db(), "SELECT count(*) FROM result") as u64;
    assert_eq!(rows, target.count(), "{out}");
    // The report graphs the active canons against the shape.
    let summary = project.rebuild();
    let html = std::fs::read_to_string(project.results_dir().join("results.html")).unwrap();
    assert!(html.contains("<h3>Active canons</h3>"), "no canons graph");
    assert!(html.contains("wanted by the shape"));
    assert!(project.results_dir().join("graphs/canons.svg").is_file());
    // summary.json has the load as run.
    let canons = summary["canons"].as_array().unwrap();
    assert!(canons.len() >= 20, "{summary}");
    assert!(
        canons.iter().any(|c| c[1].as_f64().unwrap() >= 19.0),
        "{summary}"
    );
}

#[test]
fn loads_cycles_step_through_their_counts() {
    let target = HttpServer::start();
    let project = project(Some(3.0), json!({"canons": "2:5"}), &target);
    run_local(&project);
    let s = samples(&project);
    let early: Vec<i64> = s.iter().filter(|x| x.0 < 1.2).map(|x| x.2).collect();
    let late: Vec<i64> = s.iter().filter(|x| x.0 > 1.8).map(|x| x.2).collect();
    assert!(early.iter().all(|t| *t == 2) && !early.is_empty(), "{s:?}");
    assert!(late.iter().all(|t| *t == 5) && !late.is_empty(), "{s:?}");
    assert!(s.iter().any(|x| x.1 == 5), "five canons ran: {s:?}");
}

#[test]
fn iterations_per_canon_end_the_test_early_with_exact_counts() {
    let target = HttpServer::start();
    let project = project(Some(60.0), json!({"cannons": 3, "iterations": 7}), &target);
    let started = Instant::now();
    let out = run_local(&project);
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "run_time is a cap, not a wait: {out}"
    );
    assert!(out.contains("every turret has run its iterations"), "{out}");
    assert_eq!(count_rows(&project.db(), "SELECT count(*) FROM result"), 21);
    assert_eq!(target.count(), 21);
}

#[test]
fn bad_shapes_are_one_line_errors_and_nothing_starts() {
    let target = HttpServer::start();
    let cases = [
        (
            json!({"cannons": "10::20"}),
            "`turrets[0].cannons` \"10::20\" must be canon counts ≥ 1 separated by `:`",
        ),
        (
            json!({"stages": [{"duration": -1, "target": 3}]}),
            "`turrets[0].stages[0].duration` must be a positive number of seconds, got -1",
        ),
        (
            json!({"cannons": 2, "canons": 2}),
            "`turrets[0].canons` and `cannons` are both given",
        ),
    ];
    for (entry, want) in cases {
        let project = project(Some(1.0), entry.clone(), &target);
        let (status, out) = project.run_local();
        assert_eq!(status.code(), Some(2), "{entry}: {out}");
        assert!(out.contains(want), "{entry}: {out}");
        assert!(!project.db().exists(), "{entry}: a database was made");
    }
    assert_eq!(target.count(), 0);
}

#[test]
fn a_unique_feeder_over_two_turrets_of_10_canons_never_serves_a_row_twice() {
    let target = HttpServer::start();
    let turrets = json!([
        {"name": "a", "cannons": 10, "rampup": 0, "script": "v.lua"},
        {"name": "b", "canons": 10, "rampup": 0, "script": "v.lua"},
    ]);
    let mut c = config(60.0, 2, turrets);
    c["data"] =
        json!({"users": {"file": "data/users.csv", "mode": "unique", "on_exhausted": "stop"}});
    let project = Project::new(c);
    let rows: String = (0..1000)
        .map(|i| format!("user{i},\"pw, {i}\"\n"))
        .collect();
    project.write("data/users.csv", &format!("login,password\n{rows}"));
    project.write(
        "v.lua",
        &format!(
            "local base = 'http://127.0.0.1:{}/u/'\n\
             function run(t)\n\
               local u = oct.data.users:next()\n\
               if u then http.get(base .. u.login .. '?p=' .. #u.password) end\n\
             end",
            target.port
        ),
    );
    let started = Instant::now();
    let out = run_local(&project);
    assert!(
        started.elapsed() < Duration::from_secs(40),
        "the test ends when the data does: {out}"
    );
    let paths = target.paths.lock().unwrap().clone();
    let unique: std::collections::HashSet<&String> = paths.iter().collect();
    assert_eq!(paths.len(), 1000, "every row once: {out}");
    assert_eq!(unique.len(), 1000, "a row was used twice");
    assert!(paths
        .iter()
        .all(|p| p.starts_with("/u/user") && p.contains("?p=")));
    for t in ["a", "b"] {
        assert!(
            count_rows(
                &project.db(),
                &format!("SELECT count(*) FROM result WHERE turret_name = '{t}'")
            ) >= 400,
            "both turrets served rows"
        );
    }
}

#[test]
fn missing_or_ragged_test_data_is_a_one_line_error_naming_file_key_and_line() {
    let target = HttpServer::start();
    let project = project(
        Some(1.0),
        json!({"cannons": 1, "data": {"users": {"file": "users.csv"}}}),
        &target,
    );
    let (status, out) = project.run_local();
    assert_eq!(status.code(), Some(2), "{out}");
    assert!(out.contains("`turrets[0].data.users.file`: "), "{out}");
    assert!(out.contains("users.csv: No such file"), "{out}");
    project.write("users.csv", "login,password\nbob,1\neve\n");
    let (status, out) = project.run_local();
    assert_eq!(status.code(), Some(2), "{out}");
    assert!(
        out.contains("users.csv: line 3: 1 fields where the header has 2"),
        "{out}"
    );
    assert!(!project.db().exists());
}

#[test]
fn an_oct_python_script_reads_its_rows_through_the_data_helper() {
    let target = HttpServer::start();
    let mut c = config(
        60.0,
        1,
        json!([{"name": "py", "cannons": 3, "rampup": 0, "script": "v_user.py",
            "data": {"users": {"file": "users.csv", "mode": "unique"}}}]),
    );
    c["heartbeat_interval"] = json!(0.2);
    let project = Project::new(c);
    let rows: String = (0..20).map(|i| format!("user{i}\n")).collect();
    project.write("users.csv", &format!("login\n{rows}"));
    project.write(
        "v_user.py",
        &format!(
            "import urllib.request\n\
             from oct_turrets.base import BaseTransaction\n\
             from oct_turrets.data import row\n\n\
             class Transaction(BaseTransaction):\n\
             \x20   def run(self):\n\
             \x20       user = row('users')\n\
             \x20       if user is not None:\n\
             \x20           urllib.request.urlopen('http://127.0.0.1:{}/u/' + user['login']).read()\n",
            target.port
        ),
    );
    let started = Instant::now();
    let out = run_local(&project);
    assert!(started.elapsed() < Duration::from_secs(40), "{out}");
    let mut paths = target.paths.lock().unwrap().clone();
    paths.sort();
    let mut want: Vec<String> = (0..20).map(|i| format!("/u/user{i}")).collect();
    want.sort();
    assert_eq!(paths, want, "{out}");
}
