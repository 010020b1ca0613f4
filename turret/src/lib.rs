//! The turret: connects to an HQ, runs canons (virtual users) that loop a user script, and
//! pushes one result per transaction back.
//!
//! # Layout
//!
//! `config` owns the turret's config.json (what `oct pack-turrets` writes) and resolves the
//! script against the config's folder. `run` owns the lifecycle and the two sockets; it alone
//! talks to the HQ, so a `ready` after `stop` always follows the results it closes. `canon` owns
//! one virtual user's loop on its own thread; it never touches a socket. `engine` owns the script
//! engines behind the `Engine`/`Script` traits (`engine::lua`); `http` owns the HTTP client that
//! Lua scripts get.

pub mod canon;
pub mod config;
pub mod engine;
mod http;
pub mod run;

pub use config::{Config, ConfigError};
pub use run::{run, TurretError};
