//! `oct run --local` end to end: the real HQ starts real turret processes running Lua scripts
//! against a real HTTP server started by the test.

mod util;

use std::time::Duration;

use serde_json::json;
use util::*;

const T: Duration = Duration::from_secs(60);

fn project(script: &str, run_time: f64, server: &HttpServer) -> Project {
    let mut c = config(
        run_time,
        2,
        json!([
            {"name": "navigation", "cannons": 2, "rampup": 0, "script": "test_scripts/v_user.lua"},
            {"name": "search", "cannons": 3, "rampup": 0, "script": "test_scripts/v_user.lua"}
        ]),
    );
    c["transaction_context"] = json!({"base": format!("http://127.0.0.1:{}", server.port)});
    let p = Project::new(c);
    p.write("test_scripts/v_user.lua", script);
    p
}

#[test]
fn every_request_served_is_one_stored_transaction_from_both_turrets() {
    let server = HttpServer::start();
    let p = project(
        r#"
        function run(t)
          local r = t:timer("home", function() return http.get(oct.context.base .. "/") end)
          if r.status ~= 200 then error("home returned " .. r.status) end
        end
        "#,
        2.0,
        &server,
    );
    let (status, out) = p.run_local();
    assert!(status.success(), "{out}");
    let db = p.db();
    let rows = count_rows(&db, "SELECT count(*) FROM result");
    assert!(rows > 50, "only {rows} transactions\n{out}");
    // Nothing lost, nothing invented: one request per transaction.
    assert_eq!(rows as u64, server.count(), "{out}");
    assert_eq!(
        count_rows(&db, "SELECT count(*) FROM result WHERE error != ''"),
        0
    );
    assert_eq!(
        count_rows(&db, "SELECT count(DISTINCT turret_name) FROM result WHERE turret_name IN ('navigation', 'search')"),
        2
    );
    assert_eq!(
        count_rows(
            &db,
            "SELECT count(*) FROM result WHERE custom_timers LIKE '{\"home\":%'"
        ),
        rows
    );
    // Our turrets report what they sent, so the HQ can prove nothing was lost.
    assert!(out.contains("lost: 0"), "{out}");
    assert_eq!(
        count_rows(&db, "SELECT count(*) FROM turret WHERE status = 'ready'"),
        2
    );
}

#[test]
fn script_errors_are_result_errors_with_the_message() {
    let server = HttpServer::start();
    let p = project(
        r#"
        local n = 0
        function run(t)
          n = n + 1
          local path = (n % 3 == 0) and "/fail" or "/"
          local r = http.get(oct.context.base .. path)
          if r.status ~= 200 then error("got " .. r.status .. " from " .. path) end
        end
        "#,
        1.0,
        &server,
    );
    let (status, out) = p.run_local();
    assert!(status.success(), "{out}");
    let db = p.db();
    let errors = count_rows(
        &db,
        "SELECT count(*) FROM result WHERE error = 'v_user.lua:7: got 500 from /fail'",
    );
    let total = count_rows(&db, "SELECT count(*) FROM result");
    assert!(errors > 0 && errors < total, "{errors} of {total}\n{out}");
    assert_eq!(count_rows(&db, "SELECT count(*) FROM result WHERE error != '' AND error NOT LIKE '%got 500 from /fail'"), 0);
}

#[test]
fn a_script_with_a_syntax_error_fails_clearly() {
    let server = HttpServer::start();
    let p = project("function run(t) if then end", 1.0, &server);
    let (status, out) = p.run_local();
    assert_eq!(status.code(), Some(2), "{out}");
    assert!(
        out.contains("local turret") && out.contains("exited"),
        "{out}"
    );
    // The log the message names (whichever turret failed first) holds the Lua error.
    let log_path = out.split("; see ").nth(1).unwrap().lines().next().unwrap();
    let log = std::fs::read_to_string(log_path).unwrap();
    assert!(log.contains("v_user.lua:1:"), "{log}");
}

/// Each canon opens its own keep-alive connection on its first request, so the server's accept
/// times show when canons started: evenly over `rampup`.
#[test]
fn canons_start_evenly_over_the_rampup() {
    let server = HttpServer::start();
    let mut c = config(
        3.0,
        1,
        json!([{"name": "ramp", "cannons": 4, "rampup": 2, "script": "test_scripts/v_user.lua"}]),
    );
    c["transaction_context"] = json!({"base": format!("http://127.0.0.1:{}", server.port)});
    let p = Project::new(c);
    p.write(
        "test_scripts/v_user.lua",
        "function run(t) http.get(oct.context.base .. '/') oct.sleep(0.01) end",
    );
    let (status, out) = p.run_local();
    assert!(status.success(), "{out}");
    let accepted = server.accepted.lock().unwrap().clone();
    assert_eq!(accepted.len(), 4, "one connection per canon");
    let offsets: Vec<f64> = accepted
        .iter()
        .map(|t| t.duration_since(accepted[0]).as_secs_f64())
        .collect();
    // 4 canons over 2 s: 0, 0.5, 1.0, 1.5 s after the first.
    for (i, got) in offsets.iter().enumerate() {
        let want = i as f64 * 0.5;
        assert!(
            (got - want).abs() < 0.2,
            "canon {i} started at +{got:.3} s, wanted +{want} s: {offsets:?}"
        );
    }
}

/// A long-lived turret outlives its HQ: it serves one test, waits while no HQ is there, and
/// serves the next test of a new HQ on the same ports.
#[test]
fn a_turret_survives_its_hq_and_serves_the_next_one() {
    let dir = tempfile::tempdir().unwrap();
    let [publish, rc, ext] = free_ports::<3>();
    std::fs::write(
        dir.path().join("u.lua"),
        "function run(t) oct.sleep(0.01) end",
    )
    .unwrap();
    let turret_cfg = json!({"name": "lasting", "cannons": 2, "rampup": 0, "script": "u.lua",
        "hq_address": "127.0.0.1", "hq_publisher": publish, "hq_rc": rc});
    std::fs::write(dir.path().join("turret.json"), turret_cfg.to_string()).unwrap();
    // The turret first, before any HQ exists.
    let mut turret = Proc::spawn(oct(&[
        "turret",
        "--config-file",
        dir.path().join("turret.json").to_str().unwrap(),
    ]));
    for round in 0..2 {
        let mut c = config(
            1.0,
            1,
            json!([{"name": "lasting", "cannons": 2, "script": "u.lua"}]),
        );
        c["publish_port"] = json!(publish);
        c["rc_port"] = json!(rc);
        c["external_publisher"] = json!(ext);
        let p = Project::new(c);
        let out = p.results_dir();
        let mut hq = Proc::spawn(oct_run(p.path(), &out, &["--no-results"]));
        let (status, text) = hq.wait_exit(T);
        assert!(status.success(), "round {round}: {text}");
        let n = count_rows(
            &p.db(),
            "SELECT count(*) FROM result WHERE turret_name = 'lasting'",
        );
        assert!(n > 20, "round {round}: {n} results");
        assert!(text.contains("lost: 0"), "round {round}: {text}");
        assert!(
            turret.child.try_wait().unwrap().is_none(),
            "the turret exited after round {round}"
        );
    }
}

/// HTTPS with rustls: the turret trusts the server's self-signed certificate through
/// `OCT_CA_FILE`, and refuses it without.
#[test]
fn https_requests_are_verified_against_the_trusted_roots() {
    let tmp = tempfile::tempdir().unwrap();
    let cert = tmp.path().join("cert.pem");
    let server = HttpServer::start_tls(&cert);
    let script = r#"
        function run(t)
          local r = t:timer("secure", function() return http.get(oct.context.base .. "/") end)
          if r.status ~= 200 then error("status " .. r.status) end
        end
    "#;
    for trusted in [true, false] {
        let mut c = config(
            1.0,
            1,
            json!([{"name": "tls", "cannons": 2, "script": "test_scripts/v_user.lua"}]),
        );
        c["transaction_context"] = json!({"base": format!("https://127.0.0.1:{}", server.port)});
        let p = Project::new(c);
        p.write("test_scripts/v_user.lua", script);
        let out = p.results_dir();
        let mut cmd = oct_run(p.path(), &out, &["--local", "--no-results"]);
        if trusted {
            cmd.env("OCT_CA_FILE", &cert);
        } else {
            cmd.env_remove("OCT_CA_FILE");
        }
        let mut hq = Proc::spawn(cmd);
        let (status, text) = hq.wait_exit(T);
        assert!(status.success(), "{text}");
        let db = p.db();
        let ok = count_rows(&db, "SELECT count(*) FROM result WHERE error = ''");
        let failed = count_rows(
            &db,
            "SELECT count(*) FROM result WHERE error LIKE '%TLS: invalid peer certificate%'",
        );
        if trusted {
            assert!(ok > 10 && failed == 0, "{ok} ok, {failed} failed\n{text}");
        } else {
            assert!(ok == 0 && failed > 0, "{ok} ok, {failed} failed\n{text}");
        }
    }
}

#[test]
fn local_turrets_die_with_an_hq_killed_outright() {
    let p = Project::new(config(
        120.0,
        1,
        json!([{"name": "orphan", "cannons": 1, "rampup": 0, "script": "idle.lua"}]),
    ));
    p.write("idle.lua", "function run(t) oct.sleep(0.05) end");
    let mut hq = Proc::spawn(oct_run(
        p.path(),
        &p.results_dir(),
        &["--local", "--no-results"],
    ));
    hq.wait_line(Duration::from_secs(60), |l| {
        l.contains("started 1 turret(s)")
    });
    let config = p.results_dir().join("turrets").join("orphan.json");
    let pgrep = || {
        let out = std::process::Command::new("pgrep")
            .args(["-f", &format!("turret --config-file {}", config.display())])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    assert!(!pgrep().is_empty(), "no local turret process found");
    // No Drop, no goodbye: the kernel must take the turret along.
    hq.child.kill().unwrap();
    hq.child.wait().unwrap();
    wait_until(
        Duration::from_secs(20),
        "the local turret to be gone",
        || pgrep().is_empty().then_some(()),
    );
}
