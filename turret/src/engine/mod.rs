//! Script engines, chosen by the script's extension. An engine loads one [`Script`] per canon;
//! the canon drives it. NOTE: an error from `run` is data (the result's `error`), never a crash.

pub mod lua;
pub mod process;

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::rc::Rc;

use protocol::Timers;
use serde_json::Value;

/// What a canon's script knows of where it runs.
#[derive(Debug, Clone)]
pub struct CanonInfo {
    pub index: u64,
    /// How many canons the turret runs in all.
    pub canons: u64,
    pub turret: String,
    pub context: Value,
    pub config: Value,
    /// The test's feeders (`oct.data` in Lua).
    pub data: std::sync::Arc<crate::data::Feeders>,
}

#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct ScriptError(pub String);

/// A future that stays on its canon's thread (Lua states are thread-local).
pub type LocalFuture<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;

/// What one iteration produced.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Iteration {
    /// Duration of `run()` alone, in seconds.
    pub scriptrun_time: f64,
    /// `""` on success, else the error message (`setup: …`/`tear_down: …` for those).
    pub error: String,
    pub timers: Timers,
    /// `check()`s of the iteration: name, passed, failed.
    pub checks: Vec<(String, u64, u64)>,
    /// What `oct.counter()` added in the iteration.
    pub counters: Timers,
}

/// The canon's side of the loop: whether to go on, and where each iteration goes.
pub trait Canon {
    fn keep_going(&self) -> bool;
    fn report(&self, iteration: Iteration);
    /// The open model: the canon waits for its schedule before each iteration.
    fn paced(&self) -> bool {
        false
    }
    /// Waits until this canon's next iteration is due; false: the test is over. Engines call
    /// it before each iteration when [`Canon::paced`].
    fn pace(&self) -> LocalFuture<'_, bool> {
        Box::pin(async { true })
    }
}

/// One canon's instance of the user script. The engine owns the loop (setup, timed run,
/// tear_down, report, until `keep_going` says no) so that it can run it without crossing into
/// Rust more than once per iteration. Async, so that one thread hosts many canons.
pub trait Script {
    fn run_loop(
        self: Box<Self>,
        canon: Rc<dyn Canon>,
    ) -> LocalFuture<'static, Result<(), ScriptError>>;
}

/// Loads a script for a canon, on the thread that will run it.
pub trait Engine: Send + Sync {
    /// Loads the script once, outside any test, so a broken script is reported at start.
    fn check(&self) -> Result<(), ScriptError>;
    fn load(&self, canon: &CanonInfo) -> Result<Box<dyn Script>, ScriptError>;
}

/// The engine for `path`, by extension: `.lua` embedded, `.py` through the Python adapter,
/// anything else executable through the JSON-lines protocol.
pub fn for_script(path: &Path) -> Result<Box<dyn Engine>, ScriptError> {
    match path.extension().and_then(|e| e.to_str()) {
        Some("lua") => Ok(Box::new(lua::LuaEngine::read(path)?)),
        Some("py") => Ok(Box::new(process::ProcessEngine::python(path)?)),
        _ => Ok(Box::new(process::ProcessEngine::executable(path)?)),
    }
}
