//! The embedded Lua 5.4 engine (DESIGN §6). The script's top level runs once per canon and
//! defines `run(t)`, optionally `setup()` and `tear_down()`. Built in: `http`, `tcp`, `ws`, `t:timer`,
//! `t.custom_timers`, `oct.sleep/now/context/canon/turret`, `json`, `log`.
//!
//! One Lua state per worker thread, shared by the canons it hosts: each canon is a coroutine of
//! that state with its own global table (its `_ENV`, whose misses fall through to the shared
//! libraries), so its globals and the script's top-level locals are its own, as in a state of
//! its own. The libraries, the prelude and the compiled script exist once per thread instead of
//! once per canon (~35 KB each): a canon costs a few KB, and a transaction touches far less
//! memory — with 50 canons on one core, what decides the turret's speed is the cache.
//!
//! # Layout
//!
//! This file builds the shared state and drives each canon's coroutine (`run_loop`); `co`
//! resumes that coroutine through Lua's C API and reads what it yielded off its stack;
//! `prelude.lua` is the canon's loop (setup, timed run, tear_down, the `oct:report` yield),
//! `canon_env.lua` a canon's global table, `tally.lua` `check()` and `oct.counter()`.

use std::cell::RefCell;
use std::ffi::c_int;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mlua::{
    ffi, ChunkMode, Function, IntoLuaMulti, Lua, LuaSerdeExt, MultiValue, Table, Value as LuaValue,
};
use protocol::Timers;

use super::{Canon, CanonInfo, Engine, Iteration, LocalFuture, Script, ScriptError};

mod co;
use co::{Co, Tag};

/// The per-iteration object `t` and the canon loop, written in Lua: a transaction crosses into
/// Rust only for its own I/O and one `oct:report` yield. Returns the loop function.
const PRELUDE: &str = include_str!("prelude.lua");

/// A canon's global table: its own globals, the shared ones read through. `_G` is the canon's
/// own table, and `load` compiles into it unless told otherwise, so that a script's globals
/// never leak into the canons beside it.
const CANON_ENV: &str = include_str!("canon_env.lua");
const TALLY: &str = include_str!("tally.lua");

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
    /// Gives a canon's globals `check` and `oct.counter`; returns their tally.
    new_tally: Function,
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
            // SAFETY: each pushes one value onto the stack it is given.
            let clock = unsafe { lua.create_c_function(clock) }.map_err(err)?;
            let state_of = unsafe { lua.create_c_function(co::state_of) }.map_err(err)?;
            lua.load(PRELUDE)
                .set_name("@oct-prelude")
                .call((clock, state_of))
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
        let new_tally: Function = lua.load(TALLY).set_name("@oct-tally").eval().map_err(err)?;
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
            new_tally,
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
        let tally: Table = shared.new_tally.call(env.clone()).map_err(err)?;
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
            tally,
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
    tally: Table,
    setup: Option<Function>,
    tear_down: Option<Function>,
    shared: Shared,
}

/// `{name = {passed, failed}}` as tally.lua keeps it, sorted by name.
fn tallied_checks(t: Table) -> Vec<(String, u64, u64)> {
    let mut out: Vec<(String, u64, u64)> = t
        .pairs::<String, Table>()
        .filter_map(Result::ok)
        .map(|(name, c)| {
            let n = |i| c.raw_get::<u64>(i).unwrap_or(0);
            (name, n(1), n(2))
        })
        .collect();
    out.sort();
    out
}

fn tallied_counters(t: Table) -> Timers {
    let mut out: Timers = t.pairs::<String, f64>().filter_map(Result::ok).collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// The iteration the prelude yielded with `oct:report`: `elapsed, err, phase, timers, checks,
/// counters`, each but the first possibly nil. Numbers, strings and nils are read off the
/// coroutine's stack; an error that is not a string, and the tables, as mlua values.
fn iteration(lua: &Lua, co: &Co) -> mlua::Result<Iteration> {
    let elapsed = co.number(1).unwrap_or(0.0);
    let mut error = match co.kind(2) {
        ffi::LUA_TNIL => String::new(),
        ffi::LUA_TSTRING => String::from_utf8_lossy(co.bytes(2).unwrap_or_default()).into_owned(),
        _ => error_text(&co.value(lua, 2)?),
    };
    if let Some(phase) = co.bytes(3) {
        error = format!("{}: {error}", String::from_utf8_lossy(phase));
    }
    let table = |i| -> mlua::Result<Option<Table>> {
        if co.kind(i) != ffi::LUA_TTABLE {
            return Ok(None);
        }
        Ok(co.value(lua, i)?.as_table().cloned())
    };
    let mut list = Timers::new();
    // nil: no timers (the prelude checked that they were a table).
    if let Some(timers) = table(4)? {
        for pair in timers.pairs::<String, f64>() {
            match pair {
                Ok(kv) => list.push(kv),
                Err(e) if error.is_empty() => {
                    error = format!("t.custom_timers must map names to seconds: {}", message(&e))
                }
                Err(_) => {}
            }
        }
    }
    // Lua's table order is arbitrary; a stable order keeps CSV columns stable.
    list.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(Iteration {
        scriptrun_time: elapsed,
        error,
        timers: list,
        checks: table(5)?.map(tallied_checks).unwrap_or_default(),
        counters: table(6)?.map(tallied_counters).unwrap_or_default(),
    })
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
            let paced = canon.paced();
            let thread = lua.create_thread(self.shared.looper.clone()).map_err(err)?;
            let client = crate::http::Client::default();
            let args = (
                self.setup.clone(),
                self.run.clone(),
                self.tear_down.clone(),
                go,
                paced,
                self.tally.clone(),
            )
                .into_lua_multi(lua)
                .map_err(err)?;
            let mut co = Co::start(thread, args).map_err(err)?;
            // Drive the canon's coroutine: it yields what it waits for (a request, a sleep, the
            // next iteration's turn after its result), the driver awaits it and resumes the
            // script with the answer: `answer` values pushed on the coroutine's stack.
            let mut answer = 0;
            while let Some(tag) = co.resume(lua, answer).map_err(err)? {
                answer = match tag {
                    Tag::Report => {
                        let iteration = iteration(lua, &co).map_err(err)?;
                        co.pop();
                        canon.report(iteration);
                        // NOTE: the canons beside this one take their turn before this one
                        // starts its next iteration, so the requests of a turn leave in a
                        // burst. A request sent alone often finds its server asleep, and waking
                        // it costs the sender's core more than a turn does (bench/RESULTS.md,
                        // "The target's wake-ups"); the wait is outside any timing. It also
                        // keeps a script that never awaits from starving the others. Paced canons
                        // wait for their dispatcher instead, which must find them idle in their
                        // pool the moment an iteration falls due, not in a turn.
                        if !paced {
                            tokio::task::yield_now().await;
                        }
                        co.push_bool(canon.keep_going())
                    }
                    Tag::Http => match plain_request(&co) {
                        Some((method, url, body)) => {
                            let sent = crate::http::send_plain(&client, method, url, body).await;
                            co.pop();
                            match sent {
                                Ok(response) => {
                                    let pushed = push_response(&mut co, &response);
                                    client.recycle(response);
                                    pushed
                                }
                                Err(message) => co
                                    .push_nil()
                                    .and_then(|_| co.push_bytes(message.as_bytes()))
                                    .map(|_| 2),
                            }
                        }
                        None => Ok(through_mlua(lua, &mut co, &client, tag).await?),
                    },
                    Tag::Sleep => {
                        let secs = co.number(1).unwrap_or(0.0);
                        co.pop();
                        if secs.is_finite() && secs > 0.0 {
                            tokio::time::sleep(Duration::from_secs_f64(secs.min(3600.0))).await;
                        }
                        Ok(0)
                    }
                    Tag::Pace => {
                        co.pop();
                        let go = canon.pace().await;
                        co.push_bool(go)
                    }
                    Tag::Tcp | Tag::Ws => Ok(through_mlua(lua, &mut co, &client, tag).await?),
                    Tag::Other => return Err(ScriptError(YIELDED.into())),
                }
                .map_err(err)?;
            }
            Ok(())
        })
    }
}

/// What the `http` table's `send` gets back: status, body, header block.
fn push_response(co: &mut Co, response: &crate::http::Response) -> mlua::Result<c_int> {
    co.push_int(response.status.into())?;
    co.push_bytes(&response.body)?;
    co.push_bytes(response.headers.as_bytes())?;
    Ok(3)
}

/// A yielded request of the common kind [`crate::http::send_plain`] sends — method and URL
/// strings, a string body or none, no options — as its method, URL and body.
fn plain_request(co: &Co) -> Option<(&[u8], &[u8], &[u8])> {
    let none = |i| matches!(co.kind(i), ffi::LUA_TNIL | ffi::LUA_TNONE);
    let body = if none(3) { b"" } else { co.bytes(3)? };
    none(4).then_some(())?;
    Some((co.bytes(1)?, co.bytes(2)?, body))
}

/// A yield with no fast path (a request with options, tcp, ws): its values through mlua to the
/// function that performs it, and the answer back.
async fn through_mlua(
    lua: &Lua,
    co: &mut Co,
    client: &crate::http::Client,
    tag: Tag,
) -> Result<c_int, ScriptError> {
    let args = co.take_values(lua).map_err(err)?;
    let out = match tag {
        Tag::Http => crate::http::perform(lua, client, args).await,
        Tag::Tcp => crate::tcp::perform(lua, args).await,
        _ => crate::ws::perform(lua, args).await,
    };
    co.push_values(lua, raise(lua, out)?).map_err(err)
}

/// What a request function answers the script: its result, or — for bad arguments — `nil`
/// and the message, which the script's side raises as a Lua error: an error result for that
/// iteration, never the end of the canon.
fn raise(lua: &Lua, r: mlua::Result<MultiValue>) -> Result<MultiValue, ScriptError> {
    match r {
        Ok(v) => Ok(v),
        Err(mlua::Error::RuntimeError(m)) => (LuaValue::Nil, m).into_lua_multi(lua).map_err(err),
        Err(e) => (LuaValue::Nil, e.to_string())
            .into_lua_multi(lua)
            .map_err(err),
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
    g.set("tcp", crate::tcp::table(lua)?)?;
    g.set("ws", crate::ws::table(lua)?)?;
    g.set("html", crate::html::table(lua)?)?;
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
mod tests;

/// A value's type as Lua's `type()` names it (mlua says "integer" for some numbers).
pub(crate) fn type_of(v: &LuaValue) -> &'static str {
    match v {
        LuaValue::Integer(_) | LuaValue::Number(_) => "number",
        other => other.type_name(),
    }
}
