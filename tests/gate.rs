//! The pass/fail gate (issue: gate, history, compare): thresholds on real runs of a real HQ and
//! real turrets against a real HTTP target, the exit code, the ✓/✗ table, summary.json, JUnit
//! XML read by junitparser (PyPI), `abort_on_fail`, and re-evaluation by rebuild-results on
//! our databases and OCT's.

mod util;

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use util::*;

/// A project of one `--local` turret of 2 canons GETting `/delay/20` of `target`.
fn project(run_time: f64, thresholds: Value, target: &HttpServer) -> Project {
    let mut c = config(
        run_time,
        1,
        json!([{"name": "gate", "cannons": 2, "rampup": 0, "script": "v.lua"}]),
    );
    c["thresholds"] = thresholds;
    let p = Project::new(c);
    p.write(
        "v.lua",
        &format!(
            "function run(t) t:timer('page', function() http.get('http://127.0.0.1:{}/delay/20') end) end",
            target.port
        ),
    );
    p
}

/// `oct run --local` with the report (and `extra` flags): exit code and output.
fn run(p: &Project, extra: &[&str]) -> (i32, String) {
    let mut args = vec!["--local"];
    args.extend_from_slice(extra);
    let (status, out) =
        Proc::spawn(oct_run(p.path(), &p.results_dir(), &args)).wait_exit(Duration::from_secs(120));
    (status.code().unwrap_or(-1), out)
}

fn summary(dir: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap()
}

#[test]
fn a_passing_gate_exits_0_and_says_so() {
    let target = HttpServer::start();
    let p = project(
        2.0,
        json!({"_run": ["p(95) < 5s", "error_rate < 1%", "rps > 10"], "page": ["avg < 2s"]}),
        &target,
    );
    let (code, out) = run(&p, &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("✓ All transactions  p(95) < 5s"), "{out}");
    assert!(out.contains("✓ page"), "{out}");
    assert!(out.contains("thresholds: 4 passed, 0 failed"), "{out}");
    let s = summary(&p.results_dir());
    assert_eq!(s["thresholds"]["passed"], true, "{s}");
    assert_eq!(s["thresholds"]["results"].as_array().unwrap().len(), 4);
    let html = std::fs::read_to_string(p.results_dir().join("results.html")).unwrap();
    assert!(html.contains("id=\"thresholds\""));
}

#[test]
fn a_failing_gate_exits_99_with_the_failing_line_in_the_table_and_the_junit_file() {
    let target = HttpServer::start();
    let p = project(
        2.0,
        json!({"_run": ["p(95) < 1ms", "error_rate < 1%"]}),
        &target,
    );
    let junit = p.path().join("junit.xml");
    let (code, out) = run(&p, &["--junit", junit.to_str().unwrap()]);
    assert_eq!(code, 99, "{out}");
    let failing = out
        .lines()
        .find(|l| l.contains("✗ All transactions  p(95) < 1ms"))
        .unwrap_or_else(|| panic!("no failing line in\n{out}"));
    assert!(failing.contains("ms (limit 1.00 ms)"), "{failing}");
    assert!(out.contains("thresholds: 1 passed, 1 failed"), "{out}");
    assert_eq!(summary(&p.results_dir())["thresholds"]["passed"], false);
    // A real JUnit parser reads it: two testcases, the failing one with its message.
    let py = junitparser_python();
    let script = r#"
import sys
from junitparser import JUnitXml, Failure
xml = JUnitXml.fromfile(sys.argv[1])
for suite in xml:
    print("suite", suite.name, suite.tests, suite.failures)
    for case in suite:
        failed = [r for r in case.result if isinstance(r, Failure)]
        print("case", case.classname, "|", case.name, "|", failed[0].message if failed else "ok")
"#;
    let parsed = std::process::Command::new(py)
        .args(["-c", script, junit.to_str().unwrap()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&parsed.stdout);
    assert!(
        parsed.status.success(),
        "{}",
        String::from_utf8_lossy(&parsed.stderr)
    );
    assert!(text.contains(" 2 1\n"), "{text}");
    assert!(
        text.contains("case All transactions | p(95) < 1ms | observed "),
        "{text}"
    );
    assert!(text.contains("limit 1.00 ms"), "{text}");
    assert!(
        text.contains("case All transactions | error_rate < 1% | ok"),
        "{text}"
    );
}

#[test]
fn abort_on_fail_ends_a_60_s_test_within_its_delay_and_two_intervals() {
    let target = HttpServer::start();
    let p = project(
        60.0,
        json!({"_run": [{"threshold": "avg < 1ms", "abort_on_fail": true, "delay": 2}]}),
        &target,
    );
    let mut hq = Proc::spawn(oct_run(
        p.path(),
        &p.results_dir(),
        &["--local", "--no-results"],
    ));
    hq.wait_line(Duration::from_secs(30), |l| {
        l.contains("started 1 turret(s)")
    });
    let started = Instant::now();
    let line = hq.wait_line(Duration::from_secs(30), |l| l.contains("aborts the test"));
    let after = started.elapsed();
    // delay 2 s + 2 intervals of 1 s.
    assert!(
        after < Duration::from_secs(4),
        "aborted after {after:?}: {line}"
    );
    assert!(
        line.contains("threshold `avg < 1ms` on All transactions failed (observed "),
        "{line}"
    );
    let (status, out) = hq.wait_exit(Duration::from_secs(30));
    assert_eq!(status.code(), Some(99), "{out}");
    assert!(out.contains("aborted: threshold `avg < 1ms`"), "{out}");
    assert!(out.contains("lost: 0"), "{out}");
}

#[test]
fn rebuild_results_judges_again_with_the_config_it_is_given_even_on_octs_database() {
    let tmp = tempfile::tempdir().unwrap();
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/oct");
    std::fs::copy(
        fixtures.join("real-oct-results.sqlite"),
        tmp.path().join("results.sqlite"),
    )
    .unwrap();
    let mut c: Value = serde_json::from_str(
        &std::fs::read_to_string(fixtures.join("real-oct-config.json")).unwrap(),
    )
    .unwrap();
    let judge = |c: &Value| {
        let config = tmp.path().join("config.json");
        std::fs::write(&config, c.to_string()).unwrap();
        let out = oct(&[
            "rebuild-results",
            tmp.path().to_str().unwrap(),
            config.to_str().unwrap(),
        ])
        .output()
        .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    // OCT's run: 339 results, 46 errors, timers `login` and `db query`.
    c["thresholds"] =
        json!({"_run": ["count == 339", "error_rate < 20%"], "login": ["p(99) < 1s"]});
    let (code, out) = judge(&c);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("thresholds: 3 passed, 0 failed"), "{out}");
    c["thresholds"] = json!({"_run": ["error_rate < 5%"], "*": ["max < 1ms"]});
    let (code, out) = judge(&c);
    assert_eq!(code, Some(99), "{out}");
    assert!(
        out.contains("✗ All transactions  error_rate < 5%  13.57 %"),
        "{out}"
    );
    assert!(out.contains("✗ db query"), "{out}");
    assert_eq!(summary(tmp.path())["thresholds"]["passed"], false);
}

#[test]
fn a_bad_expression_is_one_line_naming_the_key_and_column() {
    let target = HttpServer::start();
    let p = project(1.0, json!({"page": ["p(95) < 200xs"]}), &target);
    let (code, out) = run(&p, &[]);
    assert_eq!(code, 2, "{out}");
    assert_eq!(
        out.trim(),
        format!(
            "oct: {}: `thresholds.page[0]` \"p(95) < 200xs\": unknown unit `xs` (us, ms or s) at column 12",
            p.path().join("config.json").display()
        )
    );
}

#[test]
fn checks_and_counters_reach_the_report_and_the_gate() {
    let target = HttpServer::start();
    let mut c = config(
        2.0,
        1,
        json!([{"name": "checked", "cannons": 2, "rampup": 0, "script": "c.lua"}]),
    );
    c["thresholds"] = json!({"_run": ["checks > 99%"]});
    let p = Project::new(c);
    p.write(
        "c.lua",
        &format!(
            r#"function run(t)
  local r = http.get("http://127.0.0.1:{}/delay/10")
  check(r, {{
    ["status is 200"] = function(r) return r.status == 200 end,
    ["body is nope"] = function(r) return r.body == "nope" end,
  }})
  oct.counter("bytes", #r.body)
end"#,
            target.port
        ),
    );
    let (code, out) = run(&p, &[]);
    // Half the checks fail: the gate says so.
    assert_eq!(code, 99, "{out}");
    assert!(
        out.contains("✗ All transactions  checks > 99%  50.00 % (limit 99.00 %)"),
        "{out}"
    );
    let s = summary(&p.results_dir());
    let n = s["transactions"].as_u64().unwrap();
    assert!(n > 20, "{s}");
    let checks = s["checks"].as_array().unwrap();
    let find = |name: &str| checks.iter().find(|c| c["name"] == name).unwrap().clone();
    assert_eq!(
        (
            find("status is 200")["passed"].as_u64(),
            find("status is 200")["failed"].as_u64()
        ),
        (Some(n), Some(0))
    );
    assert_eq!(
        (
            find("body is nope")["passed"].as_u64(),
            find("body is nope")["failed"].as_u64()
        ),
        (Some(0), Some(n))
    );
    // Every body is "ok": two bytes each.
    assert_eq!(
        s["counters"]["bytes"]["total"].as_f64(),
        Some(2.0 * n as f64)
    );
    let html = std::fs::read_to_string(p.results_dir().join("results.html")).unwrap();
    assert!(html.contains("id=\"checks\"") && html.contains("id=\"counters\""));
    assert!(p.results_dir().join("graphs/counters.svg").is_file());
}
