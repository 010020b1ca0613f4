//! The embedded Lua 5.4 engine (DESIGN §6): one Lua state per canon. The script's top level runs
//! once per canon and defines `run(t)`, optionally `setup()` and `tear_down()`. Built in: `http`,
//! `t:timer`, `t.custom_timers`, `oct.sleep/now/context/canon/turret`, `json`, `log`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mlua::{Function, IntoLuaMulti, Lua, LuaSerdeExt, MultiValue, ThreadStatus, Value as LuaValue};
use protocol::Timers;

use std::rc::Rc;

use super::{Canon, CanonInfo, Engine, Iteration, LocalFuture, Script, ScriptError};

/// The per-iteration object `t` and the canon loop, written in Lua: a transaction crosses into
/// Rust only for its own I/O and one `report` call, instead of three coroutine calls.
const PRELUDE: &str = r#"
local clock = __oct_clock
__oct_clock = nil
local co_yield = coroutine.yield
-- Let the canons beside this one run: the driver resumes at once after a turn.
local function yield_now() co_yield("oct:yield") end
local pcall, setmetatable = pcall, setmetatable
local keep_going, report
function __oct_bind(k, r)
  keep_going, report = k, r
end
local T = {}
T.__index = T
function T:timer(name, fn, ...)
  local t0 = clock()
  local r = table.pack(fn(...))
  self.custom_timers[name] = clock() - t0
  return table.unpack(r, 1, r.n)
end
function __oct_loop(setup, run, tear_down)
  local n = 0
  -- One `t` for the canon's life, its timers table replaced only once used: an iteration
  -- that times nothing leaves nothing for the collector.
  local t = setmetatable({custom_timers = {}}, T)
  local go = keep_going()
  while go do
    local err, phase = nil, nil
    local elapsed = 0
    if setup then
      local ok, e = pcall(setup)
      if not ok then err, phase = e, "setup" end
    end
    if err == nil then
      local t0 = clock()
      local ok, e = pcall(run, t)
      elapsed = clock() - t0
      if not ok then err = e end
    end
    if tear_down then
      local ok, e = pcall(tear_down)
      if not ok and err == nil then err, phase = e, "tear_down" end
    end
    local timers = t.custom_timers
    -- Sends the result; says whether to go on.
    go = report(elapsed, err, phase, timers)
    if type(timers) ~= "table" or next(timers) ~= nil then t.custom_timers = {} end
    -- A script that never awaits (no I/O, no sleep) must not starve the canons beside it.
    n = n + 1
    if n % 64 == 0 then yield_now() end
  end
end
"#;

const YIELDED: &str =
    "the script yielded its canon's coroutine (coroutine.yield outside a coroutine of its own)";

pub struct LuaEngine {
    path: PathBuf,
    source: String,
}

impl LuaEngine {
    pub fn read(path: &Path) -> Result<Self, ScriptError> {
        let source = std::fs::read_to_string(path)
            .map_err(|e| ScriptError(format!("{}: {e}", path.display())))?;
        Ok(LuaEngine {
            path: path.to_owned(),
            source,
        })
    }
}

/// Canons per turret up to which each Lua state collects generationally.
const GENERATIONAL_UP_TO: u64 = 2_000;

trait GcChoice {
    fn set_gc(&self, canons: u64);
}

impl GcChoice for Lua {
    /// A transaction's garbage (the response, its strings) dies young while the state's own
    /// ~35 KB (libraries, script) lives forever: generational collection never re-marks the
    /// old part, a quarter of the turret's CPU less than incremental at pause 120 (which
    /// marks all of it every few transactions). It keeps a little more garbage per state, so
    /// a turret of thousands of canons — each mostly waiting on the network, where memory is
    /// what runs out — collects incrementally when the heap grows by 20 % rather than the
    /// default 100 % (10,000 canons: 903 MB peak, against 950 MB generational and more with
    /// the default pause).
    fn set_gc(&self, canons: u64) {
        if canons <= GENERATIONAL_UP_TO {
            self.gc_gen(20, 100);
        } else {
            self.gc_inc(120, 0, 0);
        }
    }
}

/// The message of a Lua error without mlua's wrapping and traceback.
fn message(e: &mlua::Error) -> String {
    match e {
        mlua::Error::CallbackError { cause, .. } => message(cause),
        mlua::Error::RuntimeError(m) | mlua::Error::SyntaxError { message: m, .. } => {
            m.split("\nstack traceback:").next().unwrap_or(m).to_owned()
        }
        mlua::Error::WithContext { cause, .. } => message(cause),
        other => other.to_string(),
    }
}

fn err(e: mlua::Error) -> ScriptError {
    ScriptError(message(&e))
}

impl Engine for LuaEngine {
    fn check(&self) -> Result<(), ScriptError> {
        let info = CanonInfo {
            index: 0,
            canons: 1,
            turret: String::new(),
            context: serde_json::json!({}),
            config: serde_json::json!({}),
        };
        self.load(&info).map(drop)
    }

    fn load(&self, canon: &CanonInfo) -> Result<Box<dyn Script>, ScriptError> {
        let lua = Lua::new();
        lua.set_gc(canon.canons);
        install(&lua, canon).map_err(err)?;
        let name = format!(
            "@{}",
            self.path.file_name().unwrap_or_default().to_string_lossy()
        );
        lua.load(&self.source).set_name(name).exec().map_err(err)?;
        let globals = lua.globals();
        let run: Function = match globals.get::<LuaValue>("run").map_err(err)? {
            LuaValue::Function(f) => f,
            _ => {
                return Err(ScriptError(format!(
                    "{}: the script defines no run(t) function",
                    self.path.display()
                )))
            }
        };
        let optional = |name: &str| match globals.get::<LuaValue>(name) {
            Ok(LuaValue::Function(f)) => Some(f),
            _ => None,
        };
        let setup = optional("setup");
        let tear_down = optional("tear_down");
        Ok(Box::new(LuaScript {
            run,
            setup,
            tear_down,
            lua,
        }))
    }
}

struct LuaScript {
    run: Function,
    setup: Option<Function>,
    tear_down: Option<Function>,
    // Last: the functions above must drop before the state.
    lua: Lua,
}

/// Turns what a failed `pcall` returned into the result's error message.
fn error_text(v: &LuaValue) -> String {
    match v {
        LuaValue::Error(e) => message(e),
        LuaValue::String(s) => s.to_string_lossy(),
        other => other.to_string().unwrap_or_else(|_| format!("{other:?}")),
    }
}

impl Script for LuaScript {
    fn run_loop(
        self: Box<Self>,
        canon: Rc<dyn Canon>,
    ) -> LocalFuture<'static, Result<(), ScriptError>> {
        Box::pin(async move {
            let g = self.lua.globals();
            let c = Rc::clone(&canon);
            let keep_going = self
                .lua
                .create_function(move |_, ()| Ok(c.keep_going()))
                .map_err(err)?;
            let report = self
                .lua
                .create_function(
                    move |_,
                          (elapsed, e, phase, timers): (
                        f64,
                        LuaValue,
                        Option<String>,
                        LuaValue,
                    )| {
                        let mut error = if e.is_nil() {
                            String::new()
                        } else {
                            error_text(&e)
                        };
                        if let Some(phase) = phase {
                            error = format!("{phase}: {error}");
                        }
                        let mut list = Timers::new();
                        match timers {
                            LuaValue::Table(timers) => {
                                for pair in timers.pairs::<String, f64>() {
                                    match pair {
                                        Ok(kv) => list.push(kv),
                                        Err(e) if error.is_empty() => {
                                            error = format!(
                                                "t.custom_timers must map names to seconds: {}",
                                                message(&e)
                                            )
                                        }
                                        Err(_) => {}
                                    }
                                }
                            }
                            _ if error.is_empty() => {
                                error = "t.custom_timers must be a table".into()
                            }
                            _ => {}
                        }
                        // Lua's table order is arbitrary; a stable order keeps CSV columns stable.
                        list.sort_by(|a, b| a.0.cmp(&b.0));
                        canon.report(Iteration {
                            scriptrun_time: elapsed,
                            error,
                            timers: list,
                        });
                        Ok(canon.keep_going())
                    },
                )
                .map_err(err)?;
            let bind: Function = g.get("__oct_bind").map_err(err)?;
            bind.call::<()>((keep_going, report)).map_err(err)?;
            let looper: Function = g.get("__oct_loop").map_err(err)?;
            let thread = self.lua.create_thread(looper).map_err(err)?;
            let client = crate::http::Client::default();
            let mut args = (self.setup.clone(), self.run.clone(), self.tear_down.clone())
                .into_lua_multi(&self.lua)
                .map_err(err)?;
            // Drive the canon's coroutine: it yields what it waits for (a request, a sleep, a
            // turn), the driver awaits it and resumes the script with the answer.
            loop {
                let out: MultiValue = thread.resume(args).map_err(err)?;
                if thread.status() != ThreadStatus::Resumable {
                    return Ok(());
                }
                let mut out = out;
                let tag = match out.pop_front() {
                    Some(LuaValue::String(s)) => s,
                    _ => return Err(ScriptError(YIELDED.into())),
                };
                let tag = tag.as_bytes();
                args = match &*tag {
                    b"oct:http" => crate::http::perform(&self.lua, &client, out)
                        .await
                        .map_err(err)?,
                    b"oct:sleep" => {
                        let secs = match out.pop_front() {
                            Some(LuaValue::Number(n)) => n,
                            Some(LuaValue::Integer(i)) => i as f64,
                            _ => 0.0,
                        };
                        if secs.is_finite() && secs > 0.0 {
                            tokio::time::sleep(Duration::from_secs_f64(secs.min(3600.0))).await;
                        }
                        MultiValue::new()
                    }
                    b"oct:yield" => {
                        tokio::task::yield_now().await;
                        MultiValue::new()
                    }
                    _ => return Err(ScriptError(YIELDED.into())),
                };
            }
        })
    }
}

/// Seconds since the first call in this process, as a plain C function: the canon loop reads
/// it twice per transaction, and mlua's callback machinery costs more than the clock itself.
unsafe extern "C-unwind" fn clock(state: *mut mlua::ffi::lua_State) -> std::os::raw::c_int {
    static ORIGIN: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let secs = ORIGIN.get_or_init(Instant::now).elapsed().as_secs_f64();
    mlua::ffi::lua_pushnumber(state, secs);
    1
}

fn install(lua: &Lua, canon: &CanonInfo) -> mlua::Result<()> {
    let g = lua.globals();
    // SAFETY: `clock` only pushes a number onto the stack it is given.
    g.set("__oct_clock", unsafe { lua.create_c_function(clock)? })?;
    lua.load(PRELUDE).set_name("@oct-prelude").exec()?;

    let oct = lua.create_table()?;
    // Yields to the canon's driver, which sleeps without blocking the thread's other canons.
    let sleep: Function = lua
        .load("local y = coroutine.yield; return function(s) y('oct:sleep', s) end")
        .set_name("@oct-sleep")
        .eval()?;
    oct.set("sleep", sleep)?;
    oct.set(
        "now",
        lua.create_function(|_, ()| {
            Ok(SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs_f64())
                .unwrap_or(0.0))
        })?,
    )?;
    oct.set("context", lua.to_value(&canon.context)?)?;
    oct.set("config", lua.to_value(&canon.config)?)?;
    oct.set("canon", canon.index)?;
    oct.set("turret", canon.turret.as_str())?;
    g.set("oct", oct)?;

    let json = lua.create_table()?;
    json.set(
        "encode",
        lua.create_function(|lua, v: LuaValue| {
            let v: serde_json::Value = lua.from_value(v)?;
            Ok(v.to_string())
        })?,
    )?;
    json.set(
        "decode",
        lua.create_function(|lua, s: mlua::String| {
            let v: serde_json::Value = serde_json::from_slice(&s.as_bytes())
                .map_err(|e| mlua::Error::RuntimeError(format!("json.decode: {e}")))?;
            lua.to_value(&v)
        })?,
    )?;
    g.set("json", json)?;

    let prefix = format!("[{} canon {}]", canon.turret, canon.index);
    g.set(
        "log",
        lua.create_function(move |_, args: mlua::Variadic<LuaValue>| {
            let parts: Vec<String> = args
                .iter()
                .map(|v| v.to_string().unwrap_or_else(|_| format!("{v:?}")))
                .collect();
            eprintln!("{prefix} {}", parts.join(" "));
            Ok(())
        })?,
    )?;
    g.set("http", crate::http::table(lua)?)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

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

    fn load(src: &str) -> Result<Box<dyn Script>, ScriptError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.lua");
        std::fs::write(&path, src).unwrap();
        let info = CanonInfo {
            index: 3,
            canons: 4,
            turret: "nav".into(),
            context: serde_json::json!({"user": "bob"}),
            config: serde_json::json!({}),
        };
        LuaEngine::read(&path)?.load(&info)
    }

    fn iterate(src: &str, n: usize) -> Vec<Iteration> {
        let script = load(src).unwrap();
        let canon = Rc::new(Collect {
            n,
            got: RefCell::new(Vec::new()),
        });
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        tokio::task::LocalSet::new()
            .block_on(&rt, script.run_loop(canon.clone()))
            .unwrap();
        let got = canon.got.borrow().clone();
        got
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
}
