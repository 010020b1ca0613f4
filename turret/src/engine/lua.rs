//! The embedded Lua 5.4 engine (DESIGN §6). The script's top level runs once per canon and
//! defines `run(t)`, optionally `setup()` and `tear_down()`. Built in: `http`, `t:timer`,
//! `t.custom_timers`, `oct.sleep/now/context/canon/turret`, `json`, `log`.
//!
//! One Lua state per worker thread, shared by the canons it hosts: each canon is a coroutine of
//! that state with its own global table (its `_ENV`, whose misses fall through to the shared
//! libraries), so its globals and the script's top-level locals are its own, as in a state of
//! its own. The libraries, the prelude and the compiled script exist once per thread instead of
//! once per canon (~35 KB each): a canon costs a few KB, and a transaction touches far less
//! memory — with 50 canons on one core, what decides the turret's speed is the cache.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mlua::{
    ChunkMode, Function, IntoLuaMulti, Lua, LuaSerdeExt, MultiValue, Table, ThreadStatus,
    Value as LuaValue,
};
use protocol::Timers;

use super::{Canon, CanonInfo, Engine, Iteration, LocalFuture, Script, ScriptError};

/// The per-iteration object `t` and the canon loop, written in Lua: a transaction crosses into
/// Rust only for its own I/O and one `report` call. Returns the loop function.
const PRELUDE: &str = r#"
local clock = ...
local co_yield = coroutine.yield
-- Let the canons beside this one run: the driver resumes at once after a turn.
local function yield_now() co_yield("oct:yield") end
local pcall, setmetatable, type, next = pcall, setmetatable, type, next

-- A script's own coroutines may call http.* and oct.sleep too: what they yield for the turret
-- ("oct:…") is passed up to the canon's driver, and its answer handed back down, so the
-- script's coroutine.resume only ever sees the script's own yields.
local co_resume, co_status, co_create, co_close = coroutine.resume, coroutine.status, coroutine.create, coroutine.close
local OURS = {["oct:http"] = true, ["oct:sleep"] = true, ["oct:yield"] = true}
local function pass(co, ok, tag, ...)
  if ok and OURS[tag] and co_status(co) == "suspended" then
    return pass(co, co_resume(co, co_yield(tag, ...)))
  end
  return ok, tag, ...
end
function coroutine.resume(co, ...)
  return pass(co, co_resume(co, ...))
end
local resume, error = coroutine.resume, error
local function unwrap(co, ok, ...)
  if not ok then
    co_close(co)
    error((...), 0)
  end
  return ...
end
function coroutine.wrap(f)
  local co = co_create(f)
  return function(...) return unwrap(co, resume(co, ...)) end
end

local T = {}
T.__index = T
function T:timer(name, fn, ...)
  local t0 = clock()
  local r = table.pack(fn(...))
  self.custom_timers[name] = clock() - t0
  return table.unpack(r, 1, r.n)
end
return function(setup, run, tear_down, go, report)
  local n = 0
  -- One `t` for the canon's life, its timers table replaced only once used: an iteration
  -- that times nothing leaves nothing for the collector.
  local t = setmetatable({custom_timers = {}}, T)
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

/// A canon's global table: its own globals, the shared ones read through. `_G` is the canon's
/// own table, and `load` compiles into it unless told otherwise, so that a script's globals
/// never leak into the canons beside it.
const CANON_ENV: &str = r##"
local shared, load, select, setmetatable = ...
local meta = {__index = shared}
return function()
  local env = setmetatable({}, meta)
  env._G = env
  env.load = function(...)
    if select("#", ...) < 4 then
      local chunk, name, mode = ...
      return load(chunk, name, mode, env)
    end
    return load(...)
  end
  return env
end
"##;

const YIELDED: &str =
    "the script yielded its canon's coroutine (coroutine.yield outside a coroutine of its own)";

/// Engines get distinct ids, so a thread's shared state is never one built for another script.
static NEXT_ENGINE: AtomicUsize = AtomicUsize::new(0);

pub struct LuaEngine {
    id: usize,
    path: PathBuf,
    /// `@file.lua`: what Lua's messages call the script.
    name: String,
    source: String,
}

impl LuaEngine {
    pub fn read(path: &Path) -> Result<Self, ScriptError> {
        let source = std::fs::read_to_string(path)
            .map_err(|e| ScriptError(format!("{}: {e}", path.display())))?;
        Ok(LuaEngine {
            id: NEXT_ENGINE.fetch_add(1, Ordering::Relaxed),
            path: path.to_owned(),
            name: format!(
                "@{}",
                path.file_name().unwrap_or_default().to_string_lossy()
            ),
            source,
        })
    }
}

/// What the canons of one worker thread share: the state, the compiled script, the loop.
#[derive(Clone)]
struct Shared {
    engine: usize,
    lua: Lua,
    /// The script compiled once, as bytecode: each canon loads its own closure of it, with its
    /// own `_ENV`.
    bytecode: Rc<[u8]>,
    looper: Function,
    new_env: Function,
    sleep: Function,
    now: Function,
}

thread_local! {
    static SHARED: RefCell<Option<Shared>> = const { RefCell::new(None) };
}

/// Canons per turret up to which Lua collects generationally.
const GENERATIONAL_UP_TO: u64 = 2_000;

/// A transaction's garbage (the response, its strings) dies young while the libraries and the
/// canons' own state live forever: generational collection never re-marks the old part, where
/// incremental at pause 120 marked all of it every few transactions (with the loop changes that
/// came with it: 20 → 15 µs of turret CPU per transaction). It keeps a little more garbage, so
/// a turret of thousands of canons — each mostly waiting on the network, where memory is what
/// runs out — collects incrementally when the heap grows by 20 % rather than the default 100 %
/// (10,000 canons: 418 MB peak against 452 MB generational).
fn set_gc(lua: &Lua, canons: u64) {
    if canons <= GENERATIONAL_UP_TO {
        lua.gc_gen(20, 100);
    } else {
        lua.gc_inc(120, 0, 0);
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

impl LuaEngine {
    /// A new state with everything the canons of one thread share, the script compiled.
    fn shared(&self, canons: u64) -> Result<Shared, ScriptError> {
        let lua = Lua::new();
        set_gc(&lua, canons);
        let bytecode: Rc<[u8]> = lua
            .load(&self.source)
            .set_name(&self.name)
            .into_function()
            .map_err(err)?
            .dump(false)
            .into();
        install(&lua).map_err(err)?;
        let looper: Function = {
            // SAFETY: `clock` only pushes a number onto the stack it is given.
            let clock = unsafe { lua.create_c_function(clock) }.map_err(err)?;
            lua.load(PRELUDE)
                .set_name("@oct-prelude")
                .call(clock)
                .map_err(err)?
        };
        let g = lua.globals();
        let new_env: Function = lua
            .load(CANON_ENV)
            .set_name("@oct-env")
            .call((
                g.clone(),
                g.get::<Function>("load").map_err(err)?,
                g.get::<Function>("select").map_err(err)?,
                g.get::<Function>("setmetatable").map_err(err)?,
            ))
            .map_err(err)?;
        // Yields to the canon's driver, which sleeps without blocking the thread's other canons.
        let sleep: Function = lua
            .load("local y = coroutine.yield; return function(s) y('oct:sleep', s) end")
            .set_name("@oct-sleep")
            .eval()
            .map_err(err)?;
        let now = lua
            .create_function(|_, ()| {
                Ok(SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_secs_f64())
                    .unwrap_or(0.0))
            })
            .map_err(err)?;
        Ok(Shared {
            engine: self.id,
            lua,
            bytecode,
            looper,
            new_env,
            sleep,
            now,
        })
    }

    /// This thread's shared state for this engine, built on first use.
    fn thread_shared(&self, canons: u64) -> Result<Shared, ScriptError> {
        SHARED.with(|cell| {
            if let Some(s) = cell.borrow().as_ref().filter(|s| s.engine == self.id) {
                return Ok(s.clone());
            }
            let s = self.shared(canons)?;
            *cell.borrow_mut() = Some(s.clone());
            Ok(s)
        })
    }

    /// Runs the script's top level for one canon, in a global table of its own.
    fn instantiate(
        &self,
        shared: Shared,
        canon: &CanonInfo,
    ) -> Result<Box<dyn Script>, ScriptError> {
        let lua = &shared.lua;
        let env: Table = shared.new_env.call(()).map_err(err)?;
        canon_globals(lua, &env, &shared, canon).map_err(err)?;
        lua.load(&shared.bytecode[..])
            .set_name(&self.name)
            .set_mode(ChunkMode::Binary)
            .set_environment(env.clone())
            .exec()
            .map_err(err)?;
        let run: Function = match env.raw_get::<LuaValue>("run").map_err(err)? {
            LuaValue::Function(f) => f,
            _ => {
                return Err(ScriptError(format!(
                    "{}: the script defines no run(t) function",
                    self.path.display()
                )))
            }
        };
        let optional = |name: &str| match env.raw_get::<LuaValue>(name) {
            Ok(LuaValue::Function(f)) => Some(f),
            _ => None,
        };
        Ok(Box::new(LuaScript {
            setup: optional("setup"),
            tear_down: optional("tear_down"),
            run,
            shared,
        }))
    }
}

impl Engine for LuaEngine {
    fn check(&self) -> Result<(), ScriptError> {
        let info = CanonInfo {
            index: 0,
            canons: 1,
            turret: String::new(),
            context: serde_json::json!({}),
            config: serde_json::json!({}),
            data: Default::default(),
        };
        // A state of its own, not kept: this thread runs no canons.
        let shared = self.shared(1)?;
        self.instantiate(shared, &info).map(drop)
    }

    fn load(&self, canon: &CanonInfo) -> Result<Box<dyn Script>, ScriptError> {
        let shared = self.thread_shared(canon.canons)?;
        self.instantiate(shared, canon)
    }
}

struct LuaScript {
    run: Function,
    setup: Option<Function>,
    tear_down: Option<Function>,
    shared: Shared,
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
            let lua = &self.shared.lua;
            // Whether to start at all; after that, each report says whether to go on.
            let go = canon.keep_going();
            let report = lua
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
            let thread = lua.create_thread(self.shared.looper.clone()).map_err(err)?;
            let client = crate::http::Client::default();
            let mut args = (
                self.setup.clone(),
                self.run.clone(),
                self.tear_down.clone(),
                go,
                report,
            )
                .into_lua_multi(lua)
                .map_err(err)?;
            // Drive the canon's coroutine: it yields what it waits for (a request, a sleep, a
            // turn), the driver awaits it and resumes the script with the answer.
            loop {
                let mut out: MultiValue = thread.resume(args).map_err(err)?;
                if thread.status() != ThreadStatus::Resumable {
                    return Ok(());
                }
                let tag = match out.pop_front() {
                    Some(LuaValue::String(s)) => s,
                    _ => return Err(ScriptError(YIELDED.into())),
                };
                let tag = tag.as_bytes();
                args = match &*tag {
                    b"oct:http" => crate::http::perform(lua, &client, out).await.map_err(err)?,
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

/// The globals every canon of a state shares: `json` and `http`.
fn install(lua: &Lua) -> mlua::Result<()> {
    let g = lua.globals();
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
    g.set("http", crate::http::table(lua)?)?;
    Ok(())
}

/// A canon's own globals: `oct` (which canon, which turret, the context) and `log`.
fn canon_globals(lua: &Lua, env: &Table, shared: &Shared, canon: &CanonInfo) -> mlua::Result<()> {
    let oct = lua.create_table()?;
    oct.set("sleep", shared.sleep.clone())?;
    oct.set("now", shared.now.clone())?;
    oct.set("context", lua.to_value(&canon.context)?)?;
    oct.set("config", lua.to_value(&canon.config)?)?;
    oct.set("canon", canon.index)?;
    oct.set("turret", canon.turret.as_str())?;
    oct.set("data", crate::data::lua_table(lua, &canon.data)?)?;
    env.raw_set("oct", oct)?;
    let prefix = format!("[{} canon {}]", canon.turret, canon.index);
    env.raw_set(
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
            data: Default::default(),
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
    fn canons_sharing_a_thread_keep_their_globals_and_locals_apart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.lua");
        std::fs::write(
            &path,
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
        let engine = LuaEngine::read(&path).unwrap();
        let info = |index| CanonInfo {
            index,
            canons: 2,
            turret: "nav".into(),
            context: serde_json::json!({}),
            config: serde_json::json!({}),
            data: Default::default(),
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let (a, b) = (
            engine.load(&info(0)).unwrap(),
            engine.load(&info(1)).unwrap(),
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
