//! `"results": "aggregate"` (issue: scale-out): turrets send one HDR histogram delta per
//! interval and series instead of a row per transaction. Real HQ, real local turrets, a real
//! HTTP target; one run stored both ways (`"both"`) gives the same report numbers within HDR
//! precision and the same counts exactly; an aggregate-only run feeds the report, the gate, the
//! checks, the counters and `/metrics`; an interval never received is counted as lost.

mod util;

use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};
use util::*;

const T: Duration = Duration::from_secs(120);

/// Two local turrets of 2 canons: a `page` timer, a check, a counter, every 10th iteration an
/// error.
fn project(results: &str, run_time: f64, target: &HttpServer, thresholds: Value) -> Project {
    let mut c = config(
        run_time,
        2,
        json!([
            {"name": "a", "cannons": 2, "rampup": 0, "script": "v.lua"},
            {"name": "b", "cannons": 2, "rampup": 0, "script": "v.lua"}
        ]),
    );
    c["results"] = json!(results);
    c["thresholds"] = thresholds;
    let p = Project::new(c);
    p.write(
        "v.lua",
        &format!(
            r#"local n = 0
function run(t)
  n = n + 1
  t:timer('page', function() http.get('http://127.0.0.1:{port}/delay/1') end)
  local r = http.get('http://127.0.0.1:{port}/')
  check(r, {{["status is 200"] = function(r) return r.status == 200 end}})
  oct.counter("bytes", #r.body)
  if n % 10 == 0 then error("every tenth fails") end
end"#,
            port = target.port
        ),
    );
    p
}

fn run(p: &Project, extra: &[&str]) -> String {
    let mut args = vec!["--local"];
    args.extend_from_slice(extra);
    let (status, out) = Proc::spawn(oct_run(p.path(), &p.results_dir(), &args)).wait_exit(T);
    assert!(status.success(), "{out}");
    out
}

fn summary(dir: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap()
}

/// `oct rebuild-results OUT CONFIG -f DB --from FROM`: its summary.json and page.
fn rebuild(p: &Project, from: &str) -> (Value, String) {
    let out = p.path().join(format!("from-{from}"));
    std::fs::create_dir_all(&out).unwrap();
    let db = p.db();
    let config = p.path().join("config.json");
    succeeds(&mut oct(&[
        "rebuild-results",
        out.to_str().unwrap(),
        config.to_str().unwrap(),
        "-f",
        db.to_str().unwrap(),
        "--from",
        from,
    ]));
    let html = std::fs::read_to_string(out.join("results.html")).unwrap();
    (summary(&out), html)
}

/// The values of `sql`'s first column, sorted.
fn sorted(db: &Path, sql: &str) -> Vec<f64> {
    let mut v: Vec<f64> = texts(db, &format!("SELECT CAST(x AS TEXT) FROM ({sql})"))
        .iter()
        .map(|t| t.parse().unwrap())
        .collect();
    v.sort_by(f64::total_cmp);
    v
}

/// An aggregate's percentile `q` is within HDR's 3 significant digits (0.1 %) of a raw value at
/// that rank (pandas interpolates between two neighbours; a histogram reports one of them).
fn within_hdr(values: &[f64], q: f64, got: f64, what: &str) {
    let pos = q * (values.len() - 1) as f64;
    let lo = values[(pos.floor() as usize).saturating_sub(1)];
    let hi = values[(pos.ceil() as usize + 1).min(values.len() - 1)];
    assert!(
        got >= lo * (1.0 - 1e-3) - 1e-9 && got <= hi * (1.0 + 1e-3) + 1e-9,
        "{what} p{q}: {got} is not within 0.1 % of [{lo}, {hi}]"
    );
}

fn close(a: &Value, b: &Value, rel: f64, what: &str) {
    let (a, b) = (a.as_f64().unwrap(), b.as_f64().unwrap());
    assert!(
        (a - b).abs() <= rel * a.abs().max(b.abs()) + 1e-15,
        "{what}: {a} vs {b}"
    );
}

#[test]
fn one_run_stored_both_ways_gives_the_same_report_within_hdr_precision() {
    let target = HttpServer::start();
    let p = project("both", 3.0, &target, json!({"_run": ["p(95) < 5s"]}));
    let out = run(&p, &[]);
    assert!(out.contains("lost: 0"), "{out}");
    assert!(out.contains("lost intervals: 0"), "{out}");
    let db = p.db();
    let rows = count_rows(&db, "SELECT count(*) FROM result");
    assert!(rows > 100, "only {rows} transactions:\n{out}");
    let (raw, raw_html) = rebuild(&p, "raw");
    let (agg, agg_html) = rebuild(&p, "aggregate");
    assert_eq!(raw["results"], "both");
    // Counts exactly.
    for key in ["transactions", "errors"] {
        assert_eq!(raw[key], agg[key], "{key}");
    }
    assert_eq!(raw["transactions"], rows);
    assert_eq!(
        raw["errors"].as_i64().unwrap(),
        count_rows(&db, "SELECT count(*) FROM result WHERE error != ''")
    );
    assert!(raw["errors"].as_u64().unwrap() > 0);
    // The same series, the same counts, min and max; the moments to float precision; the
    // percentiles within HDR's precision.
    let (rs, gs) = (
        raw["series"].as_array().unwrap(),
        agg["series"].as_array().unwrap(),
    );
    assert_eq!(rs.len(), 2, "{raw}");
    assert_eq!(gs.len(), 2, "{agg}");
    let values = [
        sorted(&db, "SELECT scriptrun_time AS x FROM result"),
        sorted(
            &db,
            "SELECT json_extract(custom_timers, '$.page') AS x FROM result",
        ),
    ];
    for ((r, g), values) in rs.iter().zip(gs).zip(&values) {
        let name = r["name"].as_str().unwrap();
        assert_eq!(r["name"], g["name"]);
        assert_eq!(r["count"], g["count"], "{name}");
        assert_eq!(r["count"].as_u64().unwrap() as usize, values.len());
        close(&r["min"], &g["min"], 1e-12, name);
        close(&r["max"], &g["max"], 1e-12, name);
        close(&r["avg"], &g["avg"], 1e-9, name);
        close(&r["stdev"], &g["stdev"], 1e-6, name);
        for (key, q) in [
            ("p50", 0.5),
            ("p80", 0.8),
            ("p90", 0.9),
            ("p95", 0.95),
            ("p99", 0.99),
        ] {
            within_hdr(values, q, g[key].as_f64().unwrap(), name);
        }
    }
    // Per turret, exactly.
    let turrets = |s: &Value| -> Vec<(String, u64)> {
        let mut t: Vec<_> = s["turrets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| {
                (
                    t["name"].as_str().unwrap().to_owned(),
                    t["received"].as_u64().unwrap(),
                )
            })
            .collect();
        t.sort();
        t
    };
    assert_eq!(turrets(&raw), turrets(&agg));
    // Per second, exactly: the throughput graph is the same.
    let per_second_raw = texts(
        &db,
        "SELECT CAST(CAST(epoch AS INTEGER) AS TEXT) || ':' || count(*) FROM result GROUP BY CAST(epoch AS INTEGER) ORDER BY 1",
    );
    let per_second_agg = texts(
        &db,
        "SELECT CAST(s.value ->> 0 AS TEXT) || ':' || sum(s.value ->> 1) FROM oct_agg, json_each(oct_agg.seconds) s WHERE kind = 'transaction' GROUP BY s.value ->> 0 ORDER BY 1",
    );
    assert_eq!(per_second_raw, per_second_agg);
    // Errors by message, exactly.
    assert_eq!(
        texts(
            &db,
            "SELECT error || ':' || count(*) FROM result WHERE error != '' GROUP BY error"
        ),
        texts(
            &db,
            "SELECT message || ':' || sum(count) FROM oct_agg_errors GROUP BY message"
        ),
    );
    assert!(!raw_html.contains("id=\"results-mode\""));
    assert!(agg_html.contains("id=\"results-mode\""));
    // The same page: every graph drawn, the same gate.
    assert_eq!(
        raw_html.matches("<svg").count(),
        agg_html.matches("<svg").count()
    );
    assert_eq!(raw["thresholds"]["passed"], agg["thresholds"]["passed"]);
    // Auto reads the rows alone in a "both" run, not both twice.
    let (auto, _) = rebuild(&p, "auto");
    assert_eq!(auto["transactions"], raw["transactions"]);
}

#[test]
fn an_aggregate_run_feeds_the_report_the_gate_checks_counters_and_metrics() {
    let target = HttpServer::start();
    let p = project(
        "aggregate",
        3.0,
        &target,
        json!({"_run": ["p(95) < 5s", "error_rate < 50%"], "page": ["avg < 2s"]}),
    );
    let mut hq = Proc::spawn(oct_run(
        p.path(),
        &p.results_dir(),
        &["--local", "--web=127.0.0.1:0", "--autostart"],
    ));
    let line = hq.wait_line(T, |l| l.starts_with("oct: dashboard: "));
    let base = line["oct: dashboard: ".len()..]
        .trim()
        .split('#')
        .next()
        .unwrap()
        .to_owned();
    let scrape = || -> Option<(u64, String)> {
        let text = ureq::get(&format!("{base}metrics"))
            .call()
            .ok()?
            .into_string()
            .ok()?;
        let line = text
            .lines()
            .find(|l| l.starts_with("oct_results_total{series=\"All transactions\"}"))?;
        let n: u64 = line.rsplit(' ').next()?.parse().ok()?;
        Some((n, text))
    };
    let (_, metrics) = wait_until(T, "aggregates in /metrics", || {
        scrape().filter(|(n, text)| *n > 0 && text.contains("oct_latency_seconds_bucket"))
    });
    promtool_check(&metrics);
    // Once the test is over the page stays up: /metrics has counted every transaction.
    hq.wait_line(T, |l| l.contains("the dashboard stays at"));
    let (scraped, _) = scrape().expect("/metrics after the run");
    assert!(std::process::Command::new("kill")
        .args(["-INT", &hq.child.id().to_string()])
        .status()
        .unwrap()
        .success());
    let (_, out) = hq.wait_exit(T);
    assert!(out.contains("lost: 0"), "{out}");
    assert!(out.contains("lost intervals: 0"), "{out}");
    assert!(out.contains("thresholds: 3 passed, 0 failed"), "{out}");
    let db = p.db();
    assert_eq!(count_rows(&db, "SELECT count(*) FROM result"), 0);
    assert!(count_rows(&db, "SELECT count(*) FROM oct_agg") > 0);
    let s = summary(&p.results_dir());
    assert_eq!(s["results"], "aggregate");
    assert_eq!(s["lost"], 0);
    assert_eq!(s["lost_intervals"], 0);
    let n = s["transactions"].as_u64().unwrap();
    assert!(n > 100, "{s}");
    assert_eq!(scraped, n, "/metrics counted every transaction");
    assert_eq!(
        n as i64,
        count_rows(
            &db,
            "SELECT sum(count) FROM oct_agg WHERE kind = 'transaction'"
        )
    );
    // Every iteration ran its check once, added its body's length, and every tenth failed.
    let check = &s["checks"][0];
    assert_eq!(
        check["passed"].as_u64().unwrap() + check["failed"].as_u64().unwrap(),
        n
    );
    let bytes = s["counters"]["bytes"]["total"].as_f64().unwrap();
    assert_eq!(bytes % n as f64, 0.0, "{bytes} bytes over {n} iterations");
    let errors = s["errors"].as_u64().unwrap();
    assert!(errors > 0 && errors <= n / 10 + 4, "{errors} errors of {n}");
    let page = &s["series"][1];
    assert_eq!(page["name"], "page");
    assert_eq!(page["count"], n);
    let html = std::fs::read_to_string(p.results_dir().join("results.html")).unwrap();
    assert!(html.matches("<svg").count() >= 4, "graphs drawn");
    assert!(html.contains("every tenth fails"), "the error table");
    assert!(
        html.contains("aggregated by the turrets per 1 s interval"),
        "the page says how the transactions were kept"
    );
    // `oct compare` reads an aggregate run as it reads any other.
    let dir = p.results_dir();
    let (status, text) = Proc::spawn(oct(&[
        "compare",
        dir.to_str().unwrap(),
        db.to_str().unwrap(),
    ]))
    .wait_exit(T);
    assert_eq!(status.code(), Some(0), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("All transactions") && l.contains(" p95 ")),
        "{text}"
    );
    assert!(text.lines().any(|l| l.starts_with("page")), "{text}");
    // No row per transaction: the CSV export says why instead of writing an empty file.
    let csv = p.path().join("out.csv");
    let (status, text) = Proc::spawn(oct(&[
        "results-to-csv",
        db.to_str().unwrap(),
        csv.to_str().unwrap(),
    ]))
    .wait_exit(T);
    assert_eq!(status.code(), Some(2), "{text}");
    assert!(text.contains("holds aggregates"), "{text}");
    assert!(!csv.exists());
}

#[test]
fn an_interval_never_received_is_counted_as_lost_with_its_transactions() {
    let p = Project::new(config(
        1.0,
        1,
        json!([{"name": "navigation", "cannons": 2, "rampup": 0, "script": "test_scripts/v_user.py"}]),
    ));
    let mut hq = Proc::spawn(oct_run(p.path(), &p.results_dir(), &["--no-results"]));
    let (publish, rc, _) = hq.hq_ports();
    let turret = TestTurret::connect("navigation", "u-1", publish, rc);
    turret.expect("start", "ready");
    turret.send(turret.status("Running"));
    let mut agg = protocol::Aggregator::new(1, "navigation", "u-1");
    let result = |epoch: f64| protocol::TestResult {
        elapsed: 0.0,
        epoch,
        scriptrun_time: 0.01,
        error: String::new(),
        custom_timers: Vec::new(),
        turret_name: Some("navigation".into()),
        seq: None,
        turret_uuid: Some("u-1".into()),
        lag: None,
        checks: Vec::new(),
        counters: Vec::new(),
    };
    // Three intervals of 3, 5 and 7 transactions; the second never reaches the HQ.
    for (second, n) in [(100, 3), (101, 5), (102, 7)] {
        for i in 0..n {
            agg.add(&result(second as f64 + i as f64 / 10.0));
        }
    }
    let sent = agg.drain();
    assert_eq!(sent.len(), 3);
    turret.send(sent[0].encode());
    turret.send(sent[2].encode());
    turret.expect("stop", "Running");
    turret.send(turret.status("ready").replacen(
        '}',
        r#", "results_sent": 15, "intervals_sent": 3}"#,
        1,
    ));
    let (status, out) = hq.wait_exit(T);
    assert!(status.success(), "{out}");
    assert!(out.contains("transactions: 10"), "{out}");
    assert!(out.contains("lost: 5"), "{out}");
    assert!(out.contains("lost intervals: 1"), "{out}");
    assert!(out.contains("intervals sent 3, received 2"), "{out}");
    let db = p.db();
    assert_eq!(
        texts(
            &db,
            "SELECT CAST(received AS TEXT) || '/' || CAST(sent AS TEXT) FROM oct_agg_count"
        ),
        ["2/3"]
    );
    assert_eq!(
        texts(
            &db,
            "SELECT value FROM oct_run WHERE key = 'lost_intervals'"
        ),
        ["1"]
    );
}

#[test]
fn abort_on_fail_judges_the_aggregates_while_the_test_runs() {
    let target = HttpServer::start();
    let p = project(
        "aggregate",
        60.0,
        &target,
        json!({"_run": [{"threshold": "p(95) < 1ms", "abort_on_fail": true, "delay": 1}]}),
    );
    let mut hq = Proc::spawn(oct_run(
        p.path(),
        &p.results_dir(),
        &["--local", "--no-results"],
    ));
    hq.wait_line(T, |l| l.contains("started 2 turret(s)"));
    let started = std::time::Instant::now();
    let line = hq.wait_line(T, |l| l.contains("aborts the test"));
    // Its delay, the first interval's aggregate (1 s and 0.25 s of grace), one more interval.
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "aborted after {:?}: {line}",
        started.elapsed()
    );
    assert!(
        line.contains("threshold `p(95) < 1ms` on All transactions failed"),
        "{line}"
    );
    let (status, out) = hq.wait_exit(T);
    assert_eq!(status.code(), Some(99), "{out}");
    assert!(
        out.contains("lost: 0") && out.contains("lost intervals: 0"),
        "{out}"
    );
}
