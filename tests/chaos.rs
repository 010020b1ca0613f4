//! A load test's `"chaos"`: `oct run` starts the proxy in front of a real nginx, applies the
//! schedule on the test's clock (a delay from 1 s to 2 s), the results show it, and the report
//! marks the window on its graphs, lists it, and summary.json records it.

mod util;

use std::time::Duration;

use serde_json::json;
use util::nginx::Nginx;
use util::*;

#[test]
fn a_scheduled_delay_shows_in_the_results_and_is_marked_in_the_report() {
    let nginx = Nginx::start("    location / { return 200 \"backend\"; }\n", &[]);
    let [listen] = free_ports::<1>();
    let mut c = config(
        3.0,
        1,
        json!([{"name": "web", "cannons": 2, "rampup": 0, "script": "web.lua"}]),
    );
    c["chaos"] = json!({
        "proxies": [{"name": "web", "listen": format!("127.0.0.1:{listen}"),
                     "backend": format!("127.0.0.1:{}", nginx.port), "protocol": "http"}],
        "schedule": [{"at": 1, "for": 1, "proxy": "web", "behavior": "delay", "sleep": 0.2}]
    });
    let p = Project::new(c);
    p.write(
        "web.lua",
        &format!(
            "function run(t)\n  local r = http.get(\"http://127.0.0.1:{listen}/\")\n  assert(r.status == 200, r.status)\nend\n"
        ),
    );
    let out = p.results_dir();
    let (status, text) =
        Proc::spawn(oct_run(p.path(), &out, &["--local"])).wait_exit(Duration::from_secs(90));
    assert!(status.success(), "{text}");
    assert!(
        text.contains(&format!("chaos proxy web 127.0.0.1:{listen} →")),
        "{text}"
    );

    // Inside the window every transaction took the 200 ms; outside, none did.
    let conn = rusqlite::Connection::open(p.db()).unwrap();
    let (start, finish): (f64, f64) = conn
        .query_row(
            "SELECT start, finish FROM oct_chaos WHERE proxy = 'web' AND behavior = 'delay'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert!(
        (finish - start - 1.0).abs() < 0.1,
        "window {start}..{finish}"
    );
    let rows: Vec<(f64, f64)> = conn
        .prepare("SELECT epoch, scriptrun_time FROM result WHERE error = ''")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    // `epoch` is when a transaction ended: one that ended 0.25 s into the window began in it.
    let inside: Vec<f64> = rows
        .iter()
        .filter(|(e, _)| *e > start + 0.25 && *e < finish)
        .map(|r| r.1)
        .collect();
    let outside: Vec<f64> = rows
        .iter()
        .filter(|(e, _)| *e < start - 0.05 || *e > finish + 0.25)
        .map(|r| r.1)
        .collect();
    assert!(
        !inside.is_empty() && inside.iter().all(|t| *t >= 0.2),
        "{inside:?}"
    );
    assert!(
        outside.len() > 10 && outside.iter().all(|t| *t < 0.1),
        "{} outside",
        outside.len()
    );

    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    let fault = &summary["chaos"]["faults"][0];
    assert_eq!(fault["behavior"], "delay", "{summary}");
    assert_eq!(fault["options"]["sleep"], 0.2, "{summary}");
    assert!(
        fault["calls"]["delay"].as_u64().unwrap() >= inside.len() as u64,
        "{summary}"
    );
    // Seconds on the graphs' axis, whose 0 is the whole second the run started in.
    let from = fault["from"].as_f64().unwrap();
    assert!((0.95..2.5).contains(&from), "{from}");
    assert_eq!(summary["chaos"]["proxies"][0]["name"], "web");

    let html = std::fs::read_to_string(out.join("results.html")).unwrap();
    assert!(html.contains("<h3>Faults injected</h3>"), "no fault list");
    // Every graph of the report shades the window, labelled.
    let graphs: Vec<_> = std::fs::read_dir(out.join("graphs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(graphs.len() >= 3);
    for g in graphs {
        let svg = std::fs::read_to_string(&g).unwrap();
        assert!(
            svg.contains("web: delay"),
            "{} has no fault band",
            g.display()
        );
    }
}

#[test]
fn a_bad_chaos_key_is_a_one_line_error_naming_it() {
    let mut c = config(
        1.0,
        1,
        json!([{"name": "web", "cannons": 1, "rampup": 0, "script": "web.lua"}]),
    );
    c["chaos"] = json!({"proxies": [{"name": "db", "listen": "127.0.0.1:0", "backend": "127.0.0.1:1"}],
                        "schedule": [{"at": 1, "for": 1, "proxy": "web", "behavior": "delay"}]});
    let p = Project::new(c);
    p.write("web.lua", "function run(t) end\n");
    let (status, text) = p.run_local();
    assert_eq!(status.code(), Some(2), "{text}");
    assert!(
        text.contains("`chaos.schedule[0].proxy` \"web\" is not a proxy (the proxies: db)"),
        "{text}"
    );
}
