//! Script engines, chosen by the script's extension. An engine loads one [`Script`] per canon;
//! the canon drives it. NOTE: an error from `run` is data (the result's `error`), never a crash.

pub mod lua;

use std::path::Path;

use protocol::Timers;
use serde_json::Value;

/// What a canon's script knows of where it runs.
#[derive(Debug, Clone)]
pub struct CanonInfo {
    pub index: u64,
    pub turret: String,
    pub context: Value,
    pub config: Value,
}

#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct ScriptError(pub String);

/// One canon's instance of the user script.
pub trait Script {
    fn setup(&mut self) -> Result<(), ScriptError>;
    /// One timed transaction; fills `timers` with this iteration's custom timers.
    fn run(&mut self, timers: &mut Timers) -> Result<(), ScriptError>;
    fn tear_down(&mut self) -> Result<(), ScriptError>;
}

/// Loads a script for a canon.
pub trait Engine: Send + Sync {
    fn load(&self, canon: &CanonInfo) -> Result<Box<dyn Script>, ScriptError>;
}

/// The engine for `path`, by extension.
pub fn for_script(path: &Path) -> Result<Box<dyn Engine>, ScriptError> {
    match path.extension().and_then(|e| e.to_str()) {
        Some("lua") => Ok(Box::new(lua::LuaEngine::read(path)?)),
        Some(ext) => Err(ScriptError(format!(
            "{}: no script engine for .{ext} files yet (supported: .lua)",
            path.display()
        ))),
        None => Err(ScriptError(format!(
            "{}: no script engine for files without an extension yet (supported: .lua)",
            path.display()
        ))),
    }
}
