//! The report and the CSV export, on our databases and on the one the real OCT 0.4.12 wrote.

mod util;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use util::*;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/oct")
        .join(name)
}

fn oct_utc(args: &[&str]) -> std::process::Output {
    let out = oct(args).env("TZ", "UTC").output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A small database with fixed values: OCT's schema via our store, a timer whose name needs
/// escaping, two errors.
fn small_db(dir: &Path) -> PathBuf {
    let db = dir.join("results.sqlite");
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute_batch(&std::fs::read_to_string(fixture("schema.sql")).unwrap())
        .unwrap();
    let rows = [
        (
            0.5,
            1795305490.25,
            0.10,
            "",
            r#"{"login":0.05,"a/b <c> \"q\" é":0.01}"#,
            "nav",
        ),
        (1.0, 1795305490.75, 0.20, "", r#"{"login":0.07}"#, "nav"),
        (
            1.5,
            1795305491.5,
            0.30,
            "timeout; retry",
            r#"{"login":0.09,"a/b <c> \"q\" é":0.02}"#,
            "search",
        ),
        (2.5, 1795305492.5, 0.40, "", r#"{}"#, "search"),
        (
            3.0,
            1795305493.0,
            0.25,
            "timeout; retry",
            r#"{"login":0.04}"#,
            "nav",
        ),
    ];
    for (elapsed, epoch, srt, err, timers, turret) in rows {
        conn.execute(
            "INSERT INTO result (error, scriptrun_time, elapsed, epoch, custom_timers, turret_name) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            rusqlite::params![err, srt, elapsed, epoch, timers, turret],
        )
        .unwrap();
    }
    conn.execute(
        "INSERT INTO turret (name, uuid, cannons, script, rampup, status, updated_at) VALUES ('nav', 'u-1', 2, 'v.lua', 0, 'ready', '2026-11-21 23:58:11.001041')",
        [],
    )
    .unwrap();
    db
}

/// A config in `dir/project/`, so the report's title (the project folder's name) is stable.
fn small_config(dir: &Path) -> PathBuf {
    let project = dir.join("project");
    std::fs::create_dir_all(&project).unwrap();
    let path = project.join("config.json");
    std::fs::write(
        &path,
        r#"{"run_time": 5, "results_ts_interval": 2, "testing": false, "progress_bar": false,
            "turrets": [{"name": "nav", "cannons": 2, "rampup": 0, "script": "v.lua"}]}"#,
    )
    .unwrap();
    path
}

/// `oct rebuild-results DIR CONFIG` (DIR/results.sqlite), in UTC.
fn rebuild(dir: &Path, config: &Path) {
    oct_utc(&[
        "rebuild-results",
        dir.to_str().unwrap(),
        config.to_str().unwrap(),
    ]);
}

/// The summary.json a rebuild wrote into `dir`.
fn summary_of(dir: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap()
}

/// The HTML with what changes between machines or versions blanked, and the SVGs (tested on
/// their own) reduced to their titles.
fn structure(html: &str) -> String {
    let mut out = String::new();
    let mut rest = html;
    while let Some(i) = rest.find("<svg") {
        out.push_str(&rest[..i]);
        let end = rest[i..].find("</svg>").unwrap() + i + 6;
        let svg = &rest[i..end];
        let title = svg
            .split("<title>")
            .nth(1)
            .and_then(|t| t.split("</title>").next())
            .unwrap_or("");
        out.push_str(&format!("<svg>{title}</svg>"));
        rest = &rest[end..];
    }
    out.push_str(rest);
    let css_start = out.find("<style>").unwrap() + 7;
    let css_end = out.find("</style>").unwrap();
    out.replace_range(css_start..css_end, "…");
    out.replace(env!("CARGO_PKG_VERSION"), "[version]")
}

#[test]
fn report_of_a_small_database_matches_its_snapshot() {
    let tmp = tempfile::tempdir().unwrap();
    small_db(tmp.path());
    let config = small_config(tmp.path());
    rebuild(tmp.path(), &config);
    let html = std::fs::read_to_string(tmp.path().join("results.html")).unwrap();
    insta::assert_snapshot!("small_report_html", structure(&html));
    // The awkward timer name is escaped in HTML and safe as a file name (OCT crashes on '/').
    assert!(html.contains("a/b &lt;c&gt; &quot;q&quot; é"));
    assert!(!html.contains("<c>"));
    let graphs: Vec<String> = std::fs::read_dir(tmp.path().join("graphs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(graphs.len(), 9, "{graphs:?}");
    assert!(
        graphs.iter().any(|g| g.starts_with("s2-a_b__c___q___")),
        "{graphs:?}"
    );

    let summary: Value = summary_of(tmp.path());
    assert_eq!(summary["transactions"], 5);
    assert_eq!(summary["errors"], 2);
    let all = &summary["series"][0];
    assert_eq!(all["name"], "All transactions");
    assert_eq!(all["count"], 5);
    // 0.10 0.20 0.25 0.30 0.40: p80 pos 3.2 → 0.30 + 0.2 × 0.10 = 0.32
    assert!((all["p80"].as_f64().unwrap() - 0.32).abs() < 1e-12, "{all}");
    assert!((all["avg"].as_f64().unwrap() - 0.25).abs() < 1e-12, "{all}");
    assert_eq!(summary["series"][1]["name"], "login");
    assert_eq!(summary["series"][1]["count"], 4);
}

#[test]
fn csv_of_a_small_database_matches_its_snapshot() {
    let tmp = tempfile::tempdir().unwrap();
    let db = small_db(tmp.path());
    let out = tmp.path().join("out.csv");
    oct_utc(&[
        "results-to-csv",
        db.to_str().unwrap(),
        out.to_str().unwrap(),
    ]);
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(
        text.split('\n')
            .filter(|l| !l.is_empty())
            .all(|l| l.ends_with('\r')),
        "CRLF line ends"
    );
    insta::assert_snapshot!("small_csv", text.replace('\r', "<CR>"));
    let out2 = tmp.path().join("comma.csv");
    oct_utc(&[
        "to-csv",
        db.to_str().unwrap(),
        out2.to_str().unwrap(),
        "-d",
        ",",
    ]);
    let text = std::fs::read_to_string(&out2).unwrap();
    assert!(text.starts_with("elapsed time,epoch (in seconds),turret name,transaction time,error,login,\"a/b <c> \"\"q\"\" é\"\r\n"), "{text}");
}

#[test]
fn csv_of_the_real_oct_database_matches_octs_own_export() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out.csv");
    oct_utc(&[
        "results-to-csv",
        fixture("real-oct-results.sqlite").to_str().unwrap(),
        out.to_str().unwrap(),
    ]);
    let ours = std::fs::read_to_string(&out).unwrap();
    let want: Vec<String> = std::fs::read_to_string(fixture("csv_head.txt"))
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| l.replace("<CR>", "\r"))
        .collect();
    let got: Vec<&str> = ours.split('\n').take(want.len()).collect();
    assert_eq!(got, want);
    assert_eq!(ours.split('\n').filter(|l| !l.is_empty()).count(), 340);
}

/// The report of the database the real OCT 0.4.12 wrote, rebuilt into a temp folder.
fn rebuilt_real_oct_results() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::copy(
        fixture("real-oct-results.sqlite"),
        tmp.path().join("results.sqlite"),
    )
    .unwrap();
    rebuild(tmp.path(), &fixture("real-oct-config.json"));
    tmp
}

#[test]
fn report_of_the_real_oct_database_agrees_with_oct_to_two_decimals() {
    let tmp = rebuilt_real_oct_results();
    let summary: Value = summary_of(tmp.path());
    // What OCT computes on this file (pandas describe, percentiles [.8, .9, .95]), rounded as
    // OCT displays it.
    let oct: [(&str, u64, [f64; 7]); 4] = [
        (
            "All transactions",
            339,
            [0.04, 0.13, 0.09, 0.10, 0.11, 3.37, 0.36],
        ),
        ("login", 333, [0.02, 0.04, 0.05, 0.06, 0.06, 0.06, 0.01]),
        ("db query", 333, [0.02, 0.04, 0.05, 0.06, 0.06, 0.06, 0.01]),
        ("a timer", 6, [1.15, 1.39, 1.52, 1.60, 1.64, 1.68, 0.21]),
    ];
    let series = summary["series"].as_array().unwrap();
    assert_eq!(series.len(), 4);
    for (name, count, [min, avg, p80, p90, p95, max, stdev]) in oct {
        let s = series
            .iter()
            .find(|s| s["name"] == name)
            .unwrap_or_else(|| panic!("{name}"));
        assert_eq!(s["count"], count, "{name}");
        for (key, want) in [
            ("min", min),
            ("avg", avg),
            ("p80", p80),
            ("p90", p90),
            ("p95", p95),
            ("max", max),
            ("stdev", stdev),
        ] {
            let got = s[key].as_f64().unwrap();
            assert_eq!(
                format!("{got:.2}"),
                format!("{want:.2}"),
                "{name} {key}: {got}"
            );
        }
    }
    assert_eq!(summary["errors"], 46);
    assert_eq!(
        summary["rejected"],
        Value::Null,
        "OCT's database has no record of rejections"
    );
    let html = std::fs::read_to_string(tmp.path().join("results.html")).unwrap();
    assert!(
        html.contains("navigation") && html.contains("random"),
        "workload from OCT's turret table"
    );
}

#[test]
fn zero_results_is_a_clear_no_results_report() {
    let tmp = tempfile::tempdir().unwrap();
    let conn = rusqlite::Connection::open(tmp.path().join("results.sqlite")).unwrap();
    conn.execute_batch(&std::fs::read_to_string(fixture("schema.sql")).unwrap())
        .unwrap();
    drop(conn);
    let config = small_config(tmp.path());
    rebuild(tmp.path(), &config);
    let html = std::fs::read_to_string(tmp.path().join("results.html")).unwrap();
    assert!(html.contains("id=\"no-results\""), "{html}");
    let summary: Value = summary_of(tmp.path());
    assert_eq!(summary["transactions"], 0);
    assert_eq!(summary["series"], serde_json::json!([]));
}

#[test]
fn bad_input_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let config = small_config(tmp.path());
    let run = |args: &[&str]| {
        let out = oct(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        String::from_utf8(out.stderr).unwrap()
    };
    let err = run(&[
        "rebuild-results",
        tmp.path().to_str().unwrap(),
        config.to_str().unwrap(),
    ]);
    assert!(
        err.contains("results.sqlite: no such results database"),
        "{err}"
    );
    std::fs::write(
        tmp.path().join("junk.sqlite"),
        "not a database at all, just text",
    )
    .unwrap();
    let err = run(&[
        "rebuild-results",
        tmp.path().to_str().unwrap(),
        config.to_str().unwrap(),
        "-f",
        tmp.path().join("junk.sqlite").to_str().unwrap(),
    ]);
    assert!(err.contains("junk.sqlite: "), "{err}");
    let db = small_db(tmp.path());
    let err = run(&[
        "results-to-csv",
        db.to_str().unwrap(),
        "/nonexistent/dir/out.csv",
    ]);
    assert!(err.contains("/nonexistent/dir/out.csv: "), "{err}");
    let err = run(&[
        "results-to-csv",
        db.to_str().unwrap(),
        tmp.path().join("x.csv").to_str().unwrap(),
        "-d",
        ";;",
    ]);
    assert!(
        err.contains("-d/--delimiter must be one character"),
        "{err}"
    );
}

/// Opens the report in headless Chromium (Debian's `chromium`, installed by .ci/run): it
/// renders with its graphs, and the DOM has every section.
#[test]
fn the_report_renders_in_a_real_browser() {
    let chromium = ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|c| {
            Command::new(c)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .expect(
            "headless Chromium is needed for this test: apt-get install chromium (.ci/run does)",
        );
    let tmp = rebuilt_real_oct_results();
    let url = format!("file://{}", tmp.path().join("results.html").display());
    let profile = tmp.path().join("profile");
    let flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
    ];
    let dom = Command::new(chromium)
        .args(flags)
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(["--dump-dom", &url])
        .output()
        .unwrap();
    let dom = String::from_utf8_lossy(&dom.stdout);
    for id in [
        "summary",
        "workload",
        "errors",
        "rejected",
        "s0-All_transactions",
        "s1-login",
        "s3-a_timer",
    ] {
        assert!(
            dom.contains(&format!("id=\"{id}\"")),
            "section {id} missing from the rendered DOM"
        );
    }
    assert!(
        dom.matches("<svg").count() >= 12,
        "graphs missing from the rendered DOM"
    );
    let shot = std::env::var_os("OCT_SCREENSHOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| tmp.path().join("report.png"));
    let out = Command::new(chromium)
        .args(flags)
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--screenshot={}", shot.display()))
        .args(["--window-size=1280,2400", &url])
        .output()
        .unwrap();
    assert!(
        shot.is_file(),
        "no screenshot: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let size = std::fs::metadata(&shot).unwrap().len();
    // A blank page of that size is a few KB; tables and graphs make it far larger.
    assert!(size > 60_000, "screenshot only {size} bytes");
}
