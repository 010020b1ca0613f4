//! The embedded Lua 5.4 engine (DESIGN §6): one Lua state per canon. The script's top level runs
//! once per canon and defines `run(t)`, optionally `setup()` and `tear_down()`. Built in: `http`,
//! `t:timer`, `t.custom_timers`, `oct.sleep/now/context/canon/turret`, `json`, `log`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mlua::{Function, Lua, LuaSerdeExt, Table, Value as LuaValue};
use protocol::Timers;

use super::{CanonInfo, Engine, Script, ScriptError};

/// Per-iteration object `t`, written in Lua so `t:timer` costs no boundary crossings but two
/// clock reads.
const PRELUDE: &str = r#"
local clock = __oct_clock
__oct_clock = nil
local T = {}
T.__index = T
function T:timer(name, fn, ...)
  local t0 = clock()
  local r = table.pack(fn(...))
  self.custom_timers[name] = clock() - t0
  return table.unpack(r, 1, r.n)
end
__oct_T = T
"#;

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
    fn load(&self, canon: &CanonInfo) -> Result<Box<dyn Script>, ScriptError> {
        let lua = Lua::new();
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
        let t_meta: Table = globals.get("__oct_T").map_err(err)?;
        Ok(Box::new(LuaScript {
            run,
            setup,
            tear_down,
            t_meta,
            lua,
        }))
    }
}

struct LuaScript {
    run: Function,
    setup: Option<Function>,
    tear_down: Option<Function>,
    t_meta: Table,
    // Last: the functions above must drop before the state.
    lua: Lua,
}

impl Script for LuaScript {
    fn setup(&mut self) -> Result<(), ScriptError> {
        match &self.setup {
            Some(f) => f.call::<()>(()).map_err(err),
            None => Ok(()),
        }
    }

    fn run(&mut self, timers: &mut Timers) -> Result<(), ScriptError> {
        let t = self.lua.create_table().map_err(err)?;
        let custom = self.lua.create_table().map_err(err)?;
        t.set("custom_timers", &custom).map_err(err)?;
        t.set_metatable(Some(self.t_meta.clone()));
        let outcome = self.run.call::<()>(&t).map_err(err);
        for pair in custom.pairs::<String, f64>() {
            match pair {
                Ok(kv) => timers.push(kv),
                Err(e) => {
                    return Err(ScriptError(format!(
                        "t.custom_timers must map names to seconds: {}",
                        message(&e)
                    )))
                }
            }
        }
        // Lua's table order is arbitrary; a stable order keeps CSV columns and reports stable.
        timers.sort_by(|a, b| a.0.cmp(&b.0));
        outcome
    }

    fn tear_down(&mut self) -> Result<(), ScriptError> {
        match &self.tear_down {
            Some(f) => f.call::<()>(()).map_err(err),
            None => Ok(()),
        }
    }
}

fn install(lua: &Lua, canon: &CanonInfo) -> mlua::Result<()> {
    let g = lua.globals();
    let origin = Instant::now();
    g.set(
        "__oct_clock",
        lua.create_function(move |_, ()| Ok(origin.elapsed().as_secs_f64()))?,
    )?;
    lua.load(PRELUDE).set_name("@oct-prelude").exec()?;

    let oct = lua.create_table()?;
    oct.set(
        "sleep",
        lua.create_function(|_, secs: f64| {
            if secs.is_finite() && secs > 0.0 {
                std::thread::sleep(Duration::from_secs_f64(secs.min(3600.0)));
            }
            Ok(())
        })?,
    )?;
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
    use super::*;

    fn load(src: &str) -> Result<Box<dyn Script>, ScriptError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.lua");
        std::fs::write(&path, src).unwrap();
        let info = CanonInfo {
            index: 3,
            turret: "nav".into(),
            context: serde_json::json!({"user": "bob"}),
            config: serde_json::json!({}),
        };
        LuaEngine::read(&path)?.load(&info)
    }

    #[test]
    fn timers_errors_and_builtins() {
        let mut s = load(
            r#"
            local n = 0
            function run(t)
              n = n + 1
              local v = t:timer("work", function(a) return a * 2 end, 21)
              assert(v == 42)
              t.custom_timers["direct"] = 0.5
              assert(oct.canon == 3 and oct.turret == "nav" and oct.context.user == "bob")
              assert(json.decode(json.encode({a = 1})).a == 1)
              if n == 2 then error("second run fails") end
            end
            "#,
        )
        .unwrap();
        let mut timers = Timers::new();
        s.run(&mut timers).unwrap();
        assert_eq!(timers[0].0, "direct");
        assert_eq!(timers[1].0, "work");
        assert!(timers[1].1 >= 0.0 && timers[1].1 < 0.1);
        timers.clear();
        let e = s.run(&mut timers).unwrap_err();
        assert_eq!(e.0, "s.lua:10: second run fails");
        // Timers of the failed iteration are still reported, and only its own.
        assert_eq!(timers.len(), 2);
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
    }

    #[test]
    fn setup_and_tear_down_are_optional_and_called() {
        let mut s = load(
            "calls = {}\nfunction setup() table.insert(calls, 's') end\n\
             function run(t) end\nfunction tear_down() error('td') end",
        )
        .unwrap();
        s.setup().unwrap();
        assert_eq!(s.tear_down().unwrap_err().0, "s.lua:4: td");
        let mut s = load("function run(t) end").unwrap();
        s.setup().unwrap();
        s.tear_down().unwrap();
    }
}
