//! Run history and run-vs-run comparison (issue: gate, history, compare): two real runs of a
//! real HQ and turret against a real HTTP target, the second against a slowed target.

mod util;

use std::time::Duration;

use serde_json::json;
use util::*;

/// Runs the project into `results/NAME` with its turret GETting `path`.
fn run_into(p: &Project, name: &str, port: u16, path: &str) -> String {
    p.write(
        "v.lua",
        &format!(
            "function run(t) t:timer('page', function() http.get('http://127.0.0.1:{port}{path}') end) end"
        ),
    );
    let out = p.path().join("results").join(name);
    let (status, text) =
        Proc::spawn(oct_run(p.path(), &out, &["--local"])).wait_exit(Duration::from_secs(120));
    assert!(
        status.code() == Some(0) || status.code() == Some(99),
        "{text}"
    );
    text
}

#[test]
fn compare_flags_a_slowed_target_and_history_lists_both_runs() {
    let target = HttpServer::start();
    let mut c = config(
        2.0,
        1,
        json!([{"name": "h", "cannons": 2, "rampup": 0, "script": "v.lua"}]),
    );
    c["thresholds"] = json!({"_run": ["p(95) < 20ms"]});
    let p = Project::new(c);
    run_into(
        &p,
        "results_2026.01.01_00.00.00_000001",
        target.port,
        "/delay/2",
    );
    run_into(
        &p,
        "results_2026.01.01_00.00.01_000001",
        target.port,
        "/delay/40",
    );

    // A folder the real OCT 0.4.12 wrote, older than both.
    let oct_run = p.path().join("results/results_2025.12.31_23.59.59_000001");
    std::fs::create_dir_all(&oct_run).unwrap();
    std::fs::copy(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures/oct/real-oct-results.sqlite"),
        oct_run.join("results.sqlite"),
    )
    .unwrap();
    let (status, history) = Proc::spawn(oct(&["history", p.path().to_str().unwrap()]))
        .wait_exit(Duration::from_secs(30));
    assert!(status.success(), "{history}");
    let rows: Vec<&str> = history
        .lines()
        .filter(|l| l.starts_with("results_"))
        .collect();
    assert_eq!(rows.len(), 3, "{history}");
    // OCT's run: its 339 results and 13.57 % errors, no gate.
    assert!(
        rows[2].contains(" 339 ") && rows[2].contains("13.57 %") && rows[2].ends_with(" -"),
        "{history}"
    );
    // Newest first, each with its gate.
    assert!(
        rows[0].starts_with("results_2026.01.01_00.00.01") && rows[0].ends_with("✗ failed"),
        "{history}"
    );
    assert!(
        rows[1].starts_with("results_2026.01.01_00.00.00") && rows[1].ends_with("✓ passed"),
        "{history}"
    );
    assert!(history.contains(" ms"), "{history}");

    let page = p.path().join("compare.html");
    let (status, text) = Proc::spawn(oct(&[
        "compare",
        "last~1",
        "last",
        "--project",
        p.path().to_str().unwrap(),
        "--tolerance",
        "10%",
        "--html",
        page.to_str().unwrap(),
    ]))
    .wait_exit(Duration::from_secs(30));
    assert_eq!(status.code(), Some(99), "{text}");
    let p95 = text
        .lines()
        .find(|l| l.starts_with("All transactions") && l.contains(" p95 "))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(p95.ends_with("✗ regression"), "{p95}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("page") && l.contains(" rps ") && l.ends_with("✗ regression")),
        "{text}"
    );
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(html.contains("id=\"compare\"") && html.contains("new: average"));
    assert_eq!(html.matches("<svg").count(), 2, "All transactions and page");

    // The same run against itself: nothing regressed.
    let (status, text) = Proc::spawn(oct(&[
        "compare",
        "last",
        p.path()
            .join("results/results_2026.01.01_00.00.01_000001")
            .to_str()
            .unwrap(),
        "--project",
        p.path().to_str().unwrap(),
    ]))
    .wait_exit(Duration::from_secs(30));
    assert!(status.success(), "{text}");
    assert!(text.contains("0 regression(s) beyond 10 %"), "{text}");
    // Bad input: one line.
    let (status, text) = Proc::spawn(oct(&[
        "compare",
        "last~5",
        "last",
        "--project",
        p.path().to_str().unwrap(),
    ]))
    .wait_exit(Duration::from_secs(30));
    assert_eq!(status.code(), Some(2), "{text}");
    assert!(
        text.contains("`last~5`: there are only 3 run(s) here"),
        "{text}"
    );
}
