//! The turret: connects to an HQ, runs canons (virtual users) that loop a user script, and
//! pushes one result per transaction back.
//!
//! # Layout
//!
//! `config` owns the turret's config.json (what `oct pack-turrets` writes), resolves the
//! script against the config's folder and finds secure mode's secret. `run` owns the lifecycle
//! (start, stop, heartbeats, stopping when the HQ is silent); it alone talks to the HQ, through
//! `link`, so a `ready` after `stop` always follows the results it closes. `link` owns the two
//! sockets, what the HQ announced and when it was last heard, and secure mode (sealing what
//! goes out, ignoring whatever its HQ did not seal). `health` owns the CPU figure a heartbeat
//! carries. `data` owns the feeders that hand CSV rows to canons (`oct.data` in Lua). `canon` owns
//! one virtual user's loop on its own thread; it never touches a socket. `pace` owns the open
//! model: each worker thread's dispatcher that starts iterations on the schedule of an
//! `arrival_rate`, hands them to its pool of canons and counts what it had to drop. `engine` owns the script
//! engines behind the `Engine`/`Script` traits (`engine::lua`); `http` owns the HTTP client that
//! Lua scripts get (its own Layout inside); `tcp` owns the raw connections of `tcp.connect`,
//! on the same byte streams; `ws` the WebSocket clients of `ws.connect` (tokio-tungstenite).

pub mod canon;
pub mod config;
pub mod data;
pub mod engine;
mod health;
mod html;
mod http;
mod link;
pub mod pace;
pub mod run;
mod tcp;
mod ws;

pub use config::{Config, ConfigError};
pub use run::{run, TurretError};
