//! `oct proxy`: a chaos proxy compatible with Vaurien (Mozilla's TCP chaos proxy). It sits
//! between an application and a backend and, per call, draws a behaviour — pass, delay, error,
//! hang, blackout, abort — from the mix it was given, so a load test shows how the application
//! degrades.
//!
//! # Layout
//!
//! `behavior` owns Vaurien's behaviours, their options and the percentage mix
//! (`--behavior 5:error,10:delay`); `relay` owns the connections (accept, connect the backend,
//! one call per HTTP request or per TCP chunk, each behaviour's effect); `api` owns the control
//! API of `--http` (Vaurien's routes, which vaurienclient drives). This file starts them.

pub mod api;
pub mod behavior;
pub mod relay;

use std::sync::{Arc, RwLock};
use std::time::Duration;

pub use behavior::{Behavior, BehaviorError, Mix};
pub use relay::Protocol;

/// A checked `oct proxy`.
#[derive(Debug, Clone)]
pub struct Options {
    /// Where clients connect (`HOST:PORT`).
    pub proxy: String,
    pub backend: String,
    pub protocol: Protocol,
    pub mix: Mix,
    pub timeout: Duration,
    /// The control API's address, with `--http`.
    pub http: Option<String>,
}

/// Serves until the process ends; returns only if a socket cannot be bound.
pub fn run(o: Options) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&o.proxy)
            .await
            .map_err(|e| format!("--proxy {}: {e}", o.proxy))?;
        let state = Arc::new(relay::State {
            mix: RwLock::new(o.mix.clone()),
            backend: RwLock::new(o.backend.clone()),
            calls: Default::default(),
            applied: Default::default(),
            protocol: o.protocol,
            timeout: o.timeout,
        });
        eprintln!(
            "oct proxy: {} → {} ({:?}), behavior {}",
            listener.local_addr().map_err(|e| e.to_string())?,
            o.backend,
            o.protocol,
            o.mix.name()
        );
        if let Some(addr) = &o.http {
            let api = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| format!("--http-host/--http-port {addr}: {e}"))?;
            eprintln!(
                "oct proxy: control API on http://{}",
                api.local_addr().map_err(|e| e.to_string())?
            );
            let app = api::router(Arc::clone(&state));
            tokio::spawn(async move {
                if let Err(e) = axum::serve(api, app).await {
                    eprintln!("oct proxy: control API: {e}");
                }
            });
        }
        relay::serve(listener, state).await;
        Ok(())
    })
}
