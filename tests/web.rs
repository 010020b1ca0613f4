//! `oct run --web` (issue: live dashboard, metrics endpoint): the JSON API, its event stream
//! and controls on a real run; `/metrics` checked by a real `promtool` and scraped by a real
//! Prometheus (Debian's `prometheus` package); off loopback, no token, no control.

mod util;

use std::io::{BufRead, BufReader};
use std::time::Duration;

use serde_json::{json, Value};
use util::*;

const T: Duration = Duration::from_secs(60);

/// A project whose one local Lua turret GETs `target` (sleeping 10 ms between requests).
fn project(run_time: f64, target: &HttpServer) -> Project {
    let mut c = config(
        run_time,
        1,
        json!([{"name": "t1", "cannons": 2, "rampup": 0, "script": "get.lua"}]),
    );
    c["thresholds"] = json!({"_run": ["error_rate < 50%"]});
    let p = Project::new(c);
    p.write(
        "get.lua",
        &lua_get(&format!("http://127.0.0.1:{}/", target.port), 5.0, 0.01),
    );
    p
}

/// `oct run --local --web=ADDR …`, started; returns it with the dashboard's URL (as printed).
fn web_run(p: &Project, web: &str, extra: &[&str]) -> (Proc, String) {
    let mut args = vec!["--local", web];
    args.extend_from_slice(extra);
    let mut hq = Proc::spawn(oct_run(p.path(), &p.results_dir(), &args));
    let line = hq.wait_line(T, |l| l.starts_with("oct: dashboard: "));
    let url = line["oct: dashboard: ".len()..].trim().to_owned();
    (hq, url)
}

fn base(url: &str) -> String {
    url.split('#').next().unwrap().to_owned()
}

fn get(url: &str) -> Value {
    serde_json::from_str(&ureq::get(url).call().unwrap().into_string().unwrap()).unwrap()
}

fn post(url: &str, token: Option<&str>) -> u16 {
    let mut r = ureq::post(url);
    if let Some(t) = token {
        r = r.set("Authorization", &format!("Bearer {t}"));
    }
    match r.send_string("{}") {
        Ok(resp) => resp.status(),
        Err(ureq::Error::Status(code, _)) => code,
        Err(e) => panic!("POST {url}: {e}"),
    }
}

fn state(base: &str) -> Value {
    get(&format!("{base}api/v1/run"))
}

/// Ctrl-C for an HQ whose test is over and whose dashboard stays up: it then exits.
fn interrupt(p: &mut Proc) {
    p.wait_line(T, |l| l.contains("the dashboard stays at"));
    let ok = std::process::Command::new("kill")
        .args(["-INT", &p.child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
}

/// Stop from the page, wait for the end, Ctrl-C the lingering page: a clean exit.
fn stop_and_exit(hq: &mut Proc, base: &str, token: Option<&str>) {
    assert_eq!(post(&format!("{base}api/v1/stop"), token), 202);
    wait_until(T, "the end", || {
        (state(base)["state"] == "finished").then_some(())
    });
    interrupt(hq);
    let (status, out) = hq.wait_exit(T);
    assert!(status.success(), "{out}");
}

#[test]
fn the_page_waits_for_start_streams_the_run_and_stops_it() {
    let target = HttpServer::start();
    let p = project(60.0, &target);
    let (mut hq, url) = web_run(&p, "--web=127.0.0.1:0", &[]);
    let base = base(&url);
    // The page itself, with nothing from elsewhere.
    let page = ureq::get(&base).call().unwrap().into_string().unwrap();
    assert!(page.contains("<canvas id=\"chart-rps\">"), "{page}");
    assert!(
        !page.contains("http://") && !page.contains("https://"),
        "the page loads something from elsewhere"
    );
    // Turrets in, but no test until Start.
    wait_until(T, "the turret to be in", || {
        (state(&base)["state"] == "ready").then_some(())
    });
    assert_eq!(target.count(), 0);
    assert_eq!(post(&format!("{base}api/v1/start"), None), 202);
    wait_until(T, "a first interval", || {
        let s = state(&base);
        let intervals = get(&format!("{base}api/v1/stats"))["intervals"]
            .as_array()?
            .len();
        (s["state"] == "running" && intervals > 0).then_some(())
    });
    // The event stream: the whole state first, then an update per second, numbers moving.
    let stream = ureq::get(&format!("{base}api/v1/events")).call().unwrap();
    assert_eq!(stream.content_type(), "text/event-stream");
    let mut lines = BufReader::new(stream.into_reader()).lines();
    let mut events: Vec<Value> = Vec::new();
    while events.len() < 3 {
        let line = lines.next().unwrap().unwrap();
        if let Some(data) = line.strip_prefix("data: ") {
            events.push(serde_json::from_str(data).unwrap());
        }
    }
    assert!(
        events[0]["intervals"]
            .as_array()
            .is_some_and(|i| !i.is_empty()),
        "{}",
        events[0]
    );
    let counts: Vec<u64> = events
        .iter()
        .map(|e| e["run"]["transactions"].as_u64().unwrap_or(0))
        .collect();
    assert!(counts[2] > counts[0], "{counts:?}");
    let point = &events[2]["point"];
    assert!(point["rps"].as_f64().unwrap() > 10.0, "{point}");
    assert!(point["p50"].as_f64().unwrap() > 0.0, "{point}");
    assert_eq!(events[2]["turrets"][0]["name"], "t1");
    assert_eq!(
        get(&format!("{base}api/v1/turrets"))[0]["liveness"],
        "running"
    );
    assert!(!get(&format!("{base}api/v1/stats"))["intervals"]
        .as_array()
        .unwrap()
        .is_empty());
    // Thresholds judged on the results so far, while the test runs.
    let live = &get(&format!("{base}api/v1/thresholds"))[0];
    assert_eq!(
        (&live["threshold"], &live["passed"], &live["observed"]),
        (&json!("error_rate < 50%"), &json!(true), &json!("0.00 %")),
        "{live}"
    );
    // Stop: the run drains, the report is written and linked, the page stays up.
    assert_eq!(post(&format!("{base}api/v1/stop"), None), 202);
    let report = wait_until(T, "the report link", || {
        let s = state(&base);
        (s["state"] == "finished")
            .then(|| s["report"].as_str().map(str::to_owned))
            .flatten()
    });
    let html = ureq::get(&format!("{base}{}", report.trim_start_matches('/')))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    assert!(html.contains("All transactions"), "{html}");
    assert_eq!(get(&format!("{base}api/v1/thresholds"))[0]["passed"], true);
    let elapsed = state(&base)["elapsed"].as_f64().unwrap();
    assert!(elapsed < 30.0, "stopped after {elapsed} s of a 60 s test");
    interrupt(&mut hq);
    let (status, out) = hq.wait_exit(T);
    assert!(status.success(), "{out}");
    assert!(out.contains("stop asked from the dashboard"), "{out}");
}

#[test]
fn metrics_pass_promtool_and_a_real_prometheus_scrapes_them() {
    for tool in ["promtool", "prometheus"] {
        assert!(
            std::process::Command::new(tool)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success()),
            "{tool} is needed (apt-get install prometheus; .ci/run installs it)"
        );
    }
    let target = HttpServer::start();
    let p = project(60.0, &target);
    let (mut hq, url) = web_run(&p, "--web=127.0.0.1:0", &["--autostart"]);
    let base = base(&url);
    wait_until(T, "results", || {
        (state(&base)["transactions"].as_u64().unwrap_or(0) > 0).then_some(())
    });
    let text = ureq::get(&format!("{base}metrics")).call().unwrap();
    assert!(text.content_type().starts_with("text/plain"));
    let text = text.into_string().unwrap();
    promtool_check(&text);
    let dir = tempfile::tempdir().unwrap();
    assert!(
        text.contains("oct_run_state{state=\"running\"} 1"),
        "{text}"
    );
    // A real Prometheus scrapes it every second.
    let [prom_port] = free_ports::<1>();
    let addr = base.trim_start_matches("http://").trim_end_matches('/');
    std::fs::write(
        dir.path().join("prometheus.yml"),
        format!("global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: oct\n    static_configs:\n      - targets: ['{addr}']\n"),
    )
    .unwrap();
    let mut prom = Proc::spawn({
        let mut c = std::process::Command::new("prometheus");
        c.arg(format!(
            "--config.file={}",
            dir.path().join("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"));
        c
    });
    let query = format!(
        "http://127.0.0.1:{prom_port}/api/v1/query?query=oct_results_total%7Bseries%3D%22All%20transactions%22%7D"
    );
    let scraped = wait_until(T, "Prometheus to have scraped oct_results_total", || {
        let v: Value =
            serde_json::from_str(&ureq::get(&query).call().ok()?.into_string().ok()?).ok()?;
        let n: f64 = v["data"]["result"][0]["value"][1].as_str()?.parse().ok()?;
        (n > 0.0).then_some(n)
    });
    assert!(scraped > 0.0);
    let up: Value = get(&format!(
        "http://127.0.0.1:{prom_port}/api/v1/query?query=up"
    ));
    assert_eq!(up["data"]["result"][0]["value"][1], "1", "{up}");
    let _ = prom.child.kill();
    stop_and_exit(&mut hq, &base, None);
}

#[test]
fn off_loopback_no_token_means_no_control() {
    let target = HttpServer::start();
    let p = project(60.0, &target);
    let (mut hq, url) = web_run(&p, "--web=0.0.0.0:0", &[]);
    let token = url
        .split("#token=")
        .nth(1)
        .expect("a token in the printed URL")
        .to_owned();
    assert_eq!(token.len(), 32, "{url}");
    // Reached over loopback, served on every interface: the token is needed all the same.
    let port = base(&url)
        .rsplit(':')
        .next()
        .unwrap()
        .trim_end_matches('/')
        .to_owned();
    let base = format!("http://127.0.0.1:{port}/");
    wait_until(T, "the turret to be in", || {
        (state(&base)["state"] == "ready").then_some(())
    });
    for path in ["start", "stop", "shape"] {
        assert_eq!(post(&format!("{base}api/v1/{path}"), None), 401, "{path}");
        assert_eq!(
            post(
                &format!("{base}api/v1/{path}"),
                Some("0123456789abcdef0123456789abcdef")
            ),
            401,
            "{path}"
        );
    }
    // A cookie is no token.
    let with_cookie = ureq::post(&format!("{base}api/v1/start"))
        .set("Cookie", &format!("token={token}"))
        .send_string("{}");
    assert!(matches!(with_cookie, Err(ureq::Error::Status(401, _))));
    assert_eq!(state(&base)["state"], "ready");
    assert_eq!(target.count(), 0, "nothing started");
    assert_eq!(post(&format!("{base}api/v1/start"), Some(&token)), 202);
    wait_until(T, "the test to run", || {
        (state(&base)["transactions"].as_u64().unwrap_or(0) > 0).then_some(())
    });
    stop_and_exit(&mut hq, &base, Some(&token));
}

#[test]
fn in_real_chromium_the_page_starts_shows_and_stops_a_run() {
    for tool in ["chromium", "chromedriver"] {
        assert!(
            std::process::Command::new(tool)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success()),
            "{tool} is needed (apt-get install chromium chromium-driver; .ci/run installs them)"
        );
    }
    let python = selenium_python();
    let target = HttpServer::start();
    let p = project(60.0, &target);
    let (mut hq, url) = web_run(&p, "--web=127.0.0.1:0", &[]);
    // Kept as the test's artefact, beside the other test outputs.
    let shot = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png");
    let _ = std::fs::remove_file(&shot);
    let out = std::process::Command::new(&python)
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/sites/dashboard.py"
        ))
        .arg(&url)
        .arg(&shot)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let saw: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(saw["console_errors"], json!([]), "{saw}");
    assert_eq!(saw["page_errors"], json!([]), "{saw}");
    assert_ne!(saw["first"], saw["later"], "{saw}");
    assert!(saw["p50"].as_str().unwrap().ends_with(" ms"), "{saw}");
    assert_eq!(saw["turret"], "t1");
    assert!(
        saw["report"]
            .as_str()
            .unwrap()
            .ends_with("/report/results.html"),
        "{saw}"
    );
    let png = std::fs::read(&shot).unwrap();
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "{} bytes",
        png.len()
    );
    interrupt(&mut hq);
    let (status, out) = hq.wait_exit(T);
    assert!(status.success(), "{out}");
    assert!(out.contains("stop asked from the dashboard"), "{out}");
}

#[test]
fn a_new_canon_count_from_the_page_reaches_the_turrets_through_the_global_load() {
    let target = HttpServer::start();
    let mut c = config(
        60.0,
        1,
        json!([{"name": "t1", "rampup": 0, "script": "get.lua"}]),
    );
    c["load"] = json!({"cannons": 6});
    let p = Project::new(c);
    p.write(
        "get.lua",
        &lua_get(&format!("http://127.0.0.1:{}/", target.port), 5.0, 0.01),
    );
    let (mut hq, url) = web_run(&p, "--web=127.0.0.1:0", &["--autostart"]);
    let base = base(&url);
    let canons = |base: &str| get(&format!("{base}api/v1/turrets"))[0]["canons"].as_u64();
    wait_until(T, "6 canons", || (canons(&base) == Some(6)).then_some(()));
    let shape = |body: &str| match ureq::post(&format!("{base}api/v1/shape")).send_string(body) {
        Ok(r) => r.status(),
        Err(ureq::Error::Status(code, _)) => code,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(shape("{\"cannons\": 0}"), 400);
    assert_eq!(shape("not json"), 400);
    assert_eq!(shape("{\"cannons\": 2}"), 202);
    wait_until(T, "2 canons", || (canons(&base) == Some(2)).then_some(()));
    hq.wait_line(T, |l| l.contains("dashboard: 2 canons from now on"));
    assert_eq!(post(&format!("{base}api/v1/stop"), None), 202);
    interrupt(&mut hq);
    let (status, out) = hq.wait_exit(T);
    assert!(status.success(), "{out}");
}
