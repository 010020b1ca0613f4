//! Raw TCP scripting (issue: scripting beyond GET): Lua's `tcp.connect` speaking RESP to a real
//! redis-server (Debian's package, started by the test on a free port), and bad use of a
//! connection as error results, never a crash.

mod util;

use std::time::Duration;

use serde_json::json;
use util::servers::Redis;
use util::*;

#[test]
fn a_lua_user_speaks_resp_to_a_real_redis_and_every_iteration_is_a_result() {
    let redis = Redis::start();
    let mut c = config(
        2.0,
        1,
        json!([{"name": "redis", "cannons": 4, "rampup": 0, "script": "resp.lua"}]),
    );
    c["thresholds"] = json!({"_run": ["error_rate == 0"]});
    let p = Project::new(c);
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples/redis/test_scripts/resp.lua");
    p.write("resp.lua", &std::fs::read_to_string(script).unwrap());
    let mut cmd = oct_run(p.path(), &p.results_dir(), &["--local", "--no-results"]);
    cmd.env("OCT_REDIS", format!("127.0.0.1:{}", redis.port));
    let (status, out) = Proc::spawn(cmd).wait_exit(Duration::from_secs(90));
    assert!(status.success(), "{out}");
    let rows = count_rows(&p.db(), "SELECT count(*) FROM result");
    assert!(rows > 100, "{rows} results\n{out}");
    // Each stored result is one iteration that INCRed the counter: Redis agrees.
    let incr: i64 = redis.ask("GET oct:iterations").unwrap().parse().unwrap();
    assert_eq!(incr, rows, "{out}");
    assert_eq!(
        count_rows(&p.db(), "SELECT count(*) FROM result WHERE custom_timers LIKE '%\"get\":%' AND custom_timers LIKE '%\"set\":%'"),
        rows
    );
    assert!(out.contains("✓ All transactions  error_rate == 0"), "{out}");
}

#[test]
fn bad_use_of_a_connection_is_an_error_result_naming_it() {
    let redis = Redis::start();
    let [closed] = free_ports::<1>();
    let script = format!(
        r#"
local cases = {{
  [0] = function() local c = tcp.connect("127.0.0.1", {port}) c:close() c:receive(1) end,
  [1] = function() tcp.connect("127.0.0.1", {closed}) end,
  [2] = function() local c = tcp.connect("127.0.0.1", {port}) c:receive("x") end,
  [3] = function() local c = tcp.connect("127.0.0.1", {port}, {{timeout = 0.2}}) c:receive_until("never") end,
  [4] = function() local c = tcp.connect("127.0.0.1", {port}) c:send("PING\r\n") assert(c:receive_until("\r\n") == "+PONG") end,
}}
function run(t) cases[oct.canon]() end
"#,
        port = redis.port
    );
    let p = Project::new(config(
        30.0,
        1,
        json!([{"name": "bad", "cannons": 5, "rampup": 0, "iterations": 1, "script": "bad.lua"}]),
    ));
    p.write("bad.lua", &script);
    let (status, out) = p.run_local();
    assert!(status.success(), "{out}");
    let errors = texts(&p.db(), "SELECT error FROM result ORDER BY error");
    let peer = format!("127.0.0.1:{}", redis.port);
    let want = [
        String::new(),
        format!("tcp {peer}: receive: the byte count must be a whole number ≥ 0, not \"x\""),
        format!("tcp {peer}: receive on a closed connection"),
        format!("tcp {peer}: receive_until: timed out after 200ms"),
        format!("tcp.connect: connecting to 127.0.0.1:{closed}: Connection refused (os error 111)"),
    ];
    let mut want = want.to_vec();
    want.sort();
    // Each message is prefixed by where the script raised it.
    assert_eq!(errors.len(), 5, "{errors:?}\n{out}");
    for (got, want) in errors.iter().zip(&want) {
        assert!(
            got.ends_with(want.as_str()),
            "{got:?} does not end with {want:?}"
        );
    }
}
