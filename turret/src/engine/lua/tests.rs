use std::cell::{Cell, RefCell};

use super::*;

/// Stops after `n` iterations and keeps what was reported.
struct Collect {
    n: usize,
    got: RefCell<Vec<Iteration>>,
}

impl Canon for Collect {
    fn keep_going(&self) -> bool {
        self.got.borrow().len() < self.n
    }
    fn report(&self, iteration: Iteration) {
        self.got.borrow_mut().push(iteration);
    }
}

/// An engine for the script `src` (read from a file, as a turret reads it).
fn engine(src: &str) -> Result<LuaEngine, ScriptError> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.lua");
    std::fs::write(&path, src).unwrap();
    LuaEngine::read(&path)
}

fn load(src: &str) -> Result<Box<dyn Script>, ScriptError> {
    let info = CanonInfo {
        index: 3,
        canons: 4,
        turret: "nav".into(),
        context: serde_json::json!({"user": "bob"}),
        config: serde_json::json!({}),
        data: Default::default(),
    };
    engine(src)?.load(&info)
}

/// Runs `src` as one canon for up to `n` iterations: how its loop ended, and what it reported.
fn drive(src: &str, n: usize) -> (Result<(), ScriptError>, Vec<Iteration>) {
    let script = load(src).unwrap();
    let canon = Rc::new(Collect {
        n,
        got: RefCell::new(Vec::new()),
    });
    let ended = tokio::task::LocalSet::new().block_on(&runtime(), script.run_loop(canon.clone()));
    let got = canon.got.borrow().clone();
    (ended, got)
}

fn iterate(src: &str, n: usize) -> Vec<Iteration> {
    let (ended, got) = drive(src, n);
    ended.unwrap();
    got
}

/// Canon `index` of `canons`, of turret "nav", with an empty context.
fn canon_info(index: u64, canons: u64) -> CanonInfo {
    CanonInfo {
        index,
        canons,
        turret: "nav".into(),
        context: serde_json::json!({}),
        config: serde_json::json!({}),
        data: Default::default(),
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn canons_sharing_a_thread_keep_their_globals_and_locals_apart() {
    let engine = engine(
        r#"
        local count = 0
        mine = oct.canon
        function run(t)
          count = count + 1
          total = (total or 0) + 1
          _G.via_g = (_G.via_g or 0) + 1
          load("loaded = (loaded or 0) + 1")()
          assert(count == total and total == via_g and via_g == loaded,
                 count .. " " .. total .. " " .. via_g .. " " .. loaded)
          assert(mine == oct.canon and string.format("%d", 7) == "7")
          t.custom_timers.count = count
          t.custom_timers.canon = oct.canon
        end
        "#,
    )
    .unwrap();
    let rt = runtime();
    let (a, b) = (
        engine.load(&canon_info(0, 2)).unwrap(),
        engine.load(&canon_info(1, 2)).unwrap(),
    );
    let collect = |n| {
        Rc::new(Collect {
            n,
            got: RefCell::new(Vec::new()),
        })
    };
    let (ca, cb) = (collect(3), collect(2));
    let local = tokio::task::LocalSet::new();
    local.spawn_local(a.run_loop(ca.clone()));
    local.spawn_local(b.run_loop(cb.clone()));
    rt.block_on(local);
    let counts = |c: &Collect| -> Vec<(f64, f64)> {
        c.got
            .borrow()
            .iter()
            .map(|i| {
                assert_eq!(i.error, "");
                (i.timers[0].1, i.timers[1].1)
            })
            .collect()
    };
    // (canon, count) per iteration: each canon counts from 1 on its own.
    assert_eq!(counts(&ca), [(0.0, 1.0), (0.0, 2.0), (0.0, 3.0)]);
    assert_eq!(counts(&cb), [(1.0, 1.0), (1.0, 2.0)]);
    // And the libraries were loaded once for both.
    SHARED.with(|s| assert_eq!(s.borrow().as_ref().unwrap().engine, engine.id));
}

#[test]
fn a_scripts_own_coroutines_may_call_http_and_sleep() {
    let ok = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_owned();
    let server = crate::http::test_server::Server::start(vec![ok.clone(), ok.clone(), ok]);
    let got = iterate(
        &format!(
            r#"
            local url = "{}"
            function run(t)
              local gen = coroutine.wrap(function()
                for i = 1, 2 do
                  local r = http.get(url)
                  oct.sleep(0.001)
                  coroutine.yield(r.body .. i)
                end
              end)
              local a, b = gen(), gen()
              assert(a == "ok1" and b == "ok2", tostring(a) .. " " .. tostring(b))
              local co = coroutine.create(function(x)
                local inner = coroutine.wrap(function() return http.get(url).status end)
                return x + 1, inner()
              end)
              local ok, v, status = coroutine.resume(co, 41)
              assert(ok and v == 42 and status == 200, tostring(v))
              assert(coroutine.status(co) == "dead")
              local ok2, e = pcall(coroutine.wrap(function() error("inner boom") end))
              assert(not ok2 and e:find("inner boom"), e)
            end
            "#,
            server.url("/")
        ),
        1,
    );
    assert_eq!(got[0].error, "");
    assert_eq!(server.requests().len(), 3);
}

#[test]
fn timers_errors_and_builtins() {
    let got = iterate(
        r#"
        local n = 0
        function run(t)
          n = n + 1
          local v = t:timer("work", function(a) oct.sleep(0.001) return a * 2 end, 21)
          assert(v == 42)
          t.custom_timers["direct"] = 0.5
          assert(oct.canon == 3 and oct.turret == "nav" and oct.context.user == "bob")
          assert(json.decode(json.encode({a = 1})).a == 1)
          if n == 2 then error("second run fails") end
        end
        "#,
        3,
    );
    assert_eq!(got.len(), 3);
    assert_eq!(got[0].error, "");
    assert_eq!(got[1].error, "s.lua:10: second run fails");
    for it in &got {
        // Timers of this iteration only, failed or not, in name order.
        assert_eq!(it.timers.len(), 2);
        assert_eq!(it.timers[0], ("direct".to_owned(), 0.5));
        assert_eq!(it.timers[1].0, "work");
        assert!(
            it.timers[1].1 >= 0.001 && it.timers[1].1 < 0.5,
            "{:?}",
            it.timers
        );
        assert!(it.scriptrun_time >= it.timers[1].1);
    }
}

#[test]
fn custom_timers_that_are_not_a_table_of_seconds_are_error_results() {
    let got = iterate(
        r#"
        local n = 0
        function run(t)
          n = n + 1
          if n == 1 then t.custom_timers = 5
          elseif n == 2 then t.custom_timers = nil
          elseif n == 3 then t.custom_timers.x = "slow"
          elseif n == 4 then t.custom_timers = 5 error("own error first") end
        end
        "#,
        5,
    );
    assert_eq!(got[0].error, "t.custom_timers must be a table");
    assert_eq!(got[1].error, "t.custom_timers must be a table");
    assert!(
        got[2]
            .error
            .starts_with("t.custom_timers must map names to seconds"),
        "{}",
        got[2].error
    );
    assert_eq!(got[3].error, "s.lua:8: own error first");
    // A fresh table after each of them: the next iteration is clean.
    assert_eq!(got[4].error, "");
    assert!(got.iter().all(|it| it.timers.is_empty()));
}

#[test]
fn errors_that_are_not_strings_are_reported_by_their_text() {
    // The driver reads a string error off the coroutine's stack; anything else goes through
    // mlua's values: a number, a table, a Rust function's error.
    let got = iterate(
        r#"
        local n = 0
        function run(t)
          n = n + 1
          if n == 1 then error(42)
          elseif n == 2 then error(setmetatable({}, {__tostring = function() return "mine" end}))
          elseif n == 3 then json.decode("{")
          elseif n == 4 then error("plain", 0) end
        end
        "#,
        5,
    );
    let errors: Vec<&str> = got.iter().map(|it| it.error.as_str()).collect();
    assert_eq!(errors[0], "42");
    assert_eq!(errors[1], "mine");
    assert!(errors[2].starts_with("json.decode: "), "{}", errors[2]);
    assert_eq!(errors[3..], ["plain", ""]);
}

#[test]
fn a_script_yielding_its_canons_coroutine_is_a_clear_error() {
    for script in ["coroutine.yield(1)", "coroutine.yield('oct:bogus')"] {
        let (ended, _) = drive(&format!("function run(t) {script} end"), 3);
        assert_eq!(ended.unwrap_err().0, YIELDED, "{script}");
    }
}

#[test]
fn an_error_raised_in_the_canons_loop_itself_ends_the_canon_with_its_message() {
    // Outside the prelude's pcalls: its read of t.custom_timers, through the script's
    // metatable. The coroutine dies; the driver says why.
    let script = "function run(t)\n\
                  t.custom_timers = nil\n\
                  setmetatable(t, {__index = function() error('evil index', 0) end})\n\
                  end";
    let (ended, got) = drive(script, 3);
    assert_eq!(ended.unwrap_err().0, "evil index");
    assert!(got.is_empty());
}

#[test]
fn load_errors_are_clear() {
    let e = load("function run(t) end end").err().unwrap();
    assert!(e.0.starts_with("s.lua:1:"), "{}", e.0);
    let e = load("x = 1").err().unwrap();
    assert!(
        e.0.ends_with("s.lua: the script defines no run(t) function"),
        "{}",
        e.0
    );
    let e = load("error('top level boom')").err().unwrap();
    assert_eq!(e.0, "s.lua:1: top level boom");
    // http.* yields to the canon's driver: not possible at top level, and said so.
    let e = load("http.get('http://127.0.0.1:9/')\nfunction run(t) end")
        .err()
        .unwrap();
    assert!(
        e.0.contains("attempt to yield from outside a coroutine"),
        "{}",
        e.0
    );
}

#[test]
fn setup_and_tear_down_errors_are_named() {
    let got = iterate(
        "local n = 0\nfunction setup() n = n + 1; if n == 1 then error('s') end end\n\
         function run(t) end\nfunction tear_down() if n == 2 then error('td') end end",
        3,
    );
    let errors: Vec<&str> = got.iter().map(|i| i.error.as_str()).collect();
    assert_eq!(errors, ["setup: s.lua:2: s", "tear_down: s.lua:4: td", ""]);
    assert_eq!(
        got[0].scriptrun_time, 0.0,
        "run() did not run after a failed setup"
    );
}

#[test]
fn a_failed_request_is_an_error_result_naming_the_url() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let got = iterate(
        &format!("function run(t) http.get('http://127.0.0.1:{port}/x', {{timeout = 2}}) end"),
        1,
    );
    assert!(
        got[0].error.starts_with(&format!(
            "GET http://127.0.0.1:{port}/x: connecting to 127.0.0.1:{port}:"
        )),
        "{}",
        got[0].error
    );
}

#[test]
fn http_options_reach_the_server_and_the_response_reaches_the_script() {
    let server = crate::http::test_server::Server::start(vec![
        "HTTP/1.1 201 Created\r\nX-Req: 7\r\nContent-Length: 4\r\n\r\ndone".into(),
    ]);
    let got = iterate(
        &format!(
            r#"
            function run(t)
              local r = http.post("{}", nil, {{
                query = {{q = "a b", n = 2}}, headers = {{["X-Mine"] = "m"}},
                json = {{k = "v"}}, timeout = 5}})
              assert(r.status == 201, r.status)
              assert(r.body == "done", r.body)
              assert(r.headers["x-req"] == "7", r.headers["x-req"])
            end
            "#,
            server.url("/api?z=0")
        ),
        1,
    );
    assert_eq!(got[0].error, "");
    let host = format!("127.0.0.1:{}", server.port);
    assert_eq!(
        server.requests(),
        [format!(
            "POST /api?z=0&n=2&q=a%20b HTTP/1.1\r\nHost: {host}\r\nX-Mine: m\r\n\
             Content-Type: application/json\r\nContent-Length: 9\r\n\r\n{{\"k\":\"v\"}}"
        )]
    );
}

#[test]
fn checks_and_counters_are_tallied_per_iteration() {
    let got = iterate(
        r#"
        local n = 0
        function run(t)
          n = n + 1
          if n == 2 then return end
          local all = check(200, {
            ["is 200"] = function(s) return s == 200 end,
            ["is 500"] = function(s) return s == 500 end,
            ["raises"] = function() error("boom") end,
          })
          t.custom_timers.all = all and 1 or 0
          check(200, {["is 200"] = function(s) return s == 200 end})
          oct.counter("bytes", 10)
          oct.counter("hits")
        end
        "#,
        2,
    );
    assert_eq!(
        got[0].checks,
        [
            ("is 200".to_owned(), 2, 0),
            ("is 500".to_owned(), 0, 1),
            ("raises".to_owned(), 0, 1)
        ]
    );
    assert_eq!(got[0].timers, [("all".to_owned(), 0.0)]);
    assert_eq!(
        got[0].counters,
        [("bytes".to_owned(), 10.0), ("hits".to_owned(), 1.0)]
    );
    // The next iteration starts afresh.
    assert!(got[1].checks.is_empty() && got[1].counters.is_empty());
    let bad = iterate("function run(t) check(1, 'x') end", 1);
    assert!(
        bad[0].error.contains("check(value, {name = function(value) ... end}): the checks must be a table, not a string"),
        "{}",
        bad[0].error
    );
    let bad = iterate("function run(t) oct.counter('c', 'many') end", 1);
    assert!(
        bad[0]
            .error
            .contains("oct.counter(name [, n]): n must be a number, not a string"),
        "{}",
        bad[0].error
    );
}

#[test]
fn redirects_are_followed_only_when_asked_as_browsers_do() {
    use crate::http::test_server::Server;
    let b = Server::start(vec!["HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".into()]);
    let a = Server::start(vec![
        "HTTP/1.1 307 Temporary Redirect\r\nLocation: /two\r\nContent-Length: 0\r\n\r\n".into(),
        format!(
            "HTTP/1.1 302 Found\r\nLocation: {}\r\nContent-Length: 0\r\n\r\n",
            b.url("/three")
        ),
        "HTTP/1.1 301 Moved\r\nLocation: /elsewhere\r\nContent-Length: 0\r\n\r\n".into(),
    ]);
    let got = iterate(
        &format!(
            r#"
            function run(t)
              local r = http.request{{method = "post", url = "{one}", form = {{x = "1"}},
                headers = {{Authorization = "Bearer s"}}, redirects = 2}}
              assert(r.status == 200 and r.body == "ok" and r.url == "{three}", r.url)
              local kept = http.get("{one}")
              assert(kept.status == 301 and kept.url == "{one}" and kept.headers.location == "/elsewhere")
            end
            "#,
            one = a.url("/one"),
            three = b.url("/three")
        ),
        1,
    );
    assert_eq!(got[0].error, "");
    let host = format!("127.0.0.1:{}", a.port);
    let form = "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 3\r\n\r\nx=1";
    assert_eq!(
        a.requests()[..2],
        [
            format!("POST /one HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer s\r\n{form}"),
            // 307 keeps the method and the body.
            format!("POST /two HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer s\r\n{form}"),
        ]
    );
    // 302 after a POST is a GET, and another host gets no Authorization.
    assert_eq!(
        b.requests(),
        [format!(
            "GET /three HTTP/1.1\r\nHost: 127.0.0.1:{}\r\n\r\n",
            b.port
        )]
    );
}

#[test]
fn bad_http_arguments_are_clear_errors() {
    for (call, want) in [
        ("http.get('http://127.0.0.1:9/', {redirects = 99})", "http: redirects must be true or a count from 0 to 30, not 99"),
        ("http.get('http://127.0.0.1:9/', {redirects = 'x'})", "not a string"),
        ("http.post('http://127.0.0.1:9/', {a = {}})", ""),
        ("http.post('http://127.0.0.1:9/', {a = function() end})", "http: form value \"a\" must be a string or a number, not a function"),
        ("http.get('http://127.0.0.1:9/', {query = {{1}}})", "http: query value \"1\" must be a string or a number, not a nil"),
        ("http.request{method = 'GET'}", "http.request{…}: the table has no url"),
        ("http.request(7, 'http://x/')", "http.request: the method must be a string (or pass one table), not a number"),
        ("http.submit('x')", "http.submit: the first argument must be a form from html.parse(…):form(), not a string"),
    ] {
        let got = iterate(&format!("function run(t) {call} end"), 1);
        assert!(got[0].error.contains(want), "{call}: {}", got[0].error);
    }
}

/// Records which canon reported, in the order the reports came.
struct Turns {
    index: u64,
    n: usize,
    done: Cell<usize>,
    order: Rc<RefCell<Vec<u64>>>,
}

impl Canon for Turns {
    fn keep_going(&self) -> bool {
        self.done.get() < self.n
    }
    fn report(&self, _: Iteration) {
        self.done.set(self.done.get() + 1);
        self.order.borrow_mut().push(self.index);
    }
}

#[test]
fn canons_on_one_thread_take_turns_after_each_iteration() {
    // A script that never awaits: without a turn at each iteration's end, one canon ran 64
    // iterations before the next got the thread, and its requests left one by one.
    let engine = engine("function run(t) local x = 0 for i = 1, 10 do x = x + i end end").unwrap();
    let order = Rc::new(RefCell::new(Vec::new()));
    let local = tokio::task::LocalSet::new();
    for index in 0..3 {
        let canon = Rc::new(Turns {
            index,
            n: 4,
            done: Cell::new(0),
            order: Rc::clone(&order),
        });
        local.spawn_local(engine.load(&canon_info(index, 3)).unwrap().run_loop(canon));
    }
    runtime().block_on(local);
    // Each round, every canon runs one iteration (in whatever order the scheduler picks).
    let order = order.borrow();
    assert_eq!(order.len(), 12);
    for round in order.chunks(3) {
        let mut round = round.to_vec();
        round.sort();
        assert_eq!(round, [0, 1, 2], "{order:?}");
    }
}
