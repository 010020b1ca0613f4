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
    std::fs::create_dir_all(p.path().join("test_scripts")).unwrap();
    std::fs::write(p.path().join("test_scripts/v_user.lua"), script).unwrap();
    p
}

fn run_local(p: &Project) -> (std::process::ExitStatus, String) {
    let out = p.results_dir();
    let mut hq = Proc::spawn(oct(&[
        "run",
        p.path().to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--local",
        "--no-results",
    ]));
    hq.wait_exit(T)
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
    let (status, out) = run_local(&p);
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
    let (status, out) = run_local(&p);
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
    let (status, out) = run_local(&p);
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
