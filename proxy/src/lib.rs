//! `oct proxy`: a chaos proxy compatible with Vaurien (Mozilla's TCP chaos proxy). It sits
//! between an application and a backend and, per call, draws a behaviour — pass, delay, error,
//! hang, blackout, abort, and toxiproxy's latency, bandwidth, reset, slow close, data limit and
//! timeout — from the plan it was given, so a load test shows how the application degrades.
//!
//! # Layout
//!
//! - `behavior`: the behaviours, their options and the percentage mix (`5:error,10:delay`).
//! - `frame`: where one call ends, per protocol (http, redis, memcache; tcp, mysql, smtp):
//!   pure parsers over bytes.
//! - `state`: one proxy's state — backend, plan (routes by method, path and client, then the
//!   default mix), counts per route and behaviour, events.
//! - `relay`: the connections (`relay/framed.rs` request–reply, `relay/streamed.rs` streams),
//!   each behaviour's effect.
//! - `timer`: sleeps to the tenth of a millisecond, each a `timerfd` in the sleeper's runtime
//!   (tokio's timer rounds up to the next millisecond).
//! - `api`: the control API of `--http` (Vaurien's routes, which vaurienclient drives; ours;
//!   `/metrics`).
//! - `config`: `--config FILE`, Vaurien's INI with `[proxy:NAME]` sections, or JSON.
//!
//! This file starts the proxies: [`run`] for `oct proxy`, [`spawn`] for a load test's chaos.

pub mod api;
pub mod behavior;
pub mod config;
pub mod frame;
pub mod relay;
pub mod state;
pub mod timer;

use std::sync::Arc;
use std::time::Duration;

pub use behavior::{Behavior, BehaviorError, Mix};
pub use frame::Protocol;
pub use state::{Plan, Proxy, Route};

/// One proxy to start.
#[derive(Debug, Clone, PartialEq)]
pub struct Spec {
    pub name: String,
    /// Where clients connect (`HOST:PORT`).
    pub listen: String,
    pub backend: String,
    pub protocol: Protocol,
    pub plan: Plan,
    /// How long a backend may take to connect and to answer; how long `hang` hangs.
    pub timeout: Duration,
}

/// Checked `oct proxy` options: the proxies, and the control API's address with `--http`.
#[derive(Debug, Clone)]
pub struct Options {
    pub proxies: Vec<Spec>,
    pub http: Option<String>,
}

/// Proxies serving on a runtime of their own; dropped, they stop.
pub struct Running {
    pub proxies: Vec<Arc<Proxy>>,
    /// The control API's address, with `--http`.
    pub api: Option<std::net::SocketAddr>,
    _rt: tokio::runtime::Runtime,
}

impl Running {
    pub fn get(&self, name: &str) -> Option<&Arc<Proxy>> {
        self.proxies.iter().find(|p| p.name == name)
    }
}

/// Binds every proxy (and the API), then serves them in the background.
pub fn spawn(o: Options) -> Result<Running, String> {
    if o.proxies.is_empty() {
        return Err("no proxy to start".into());
    }
    // As many workers as cores, at most two (one with taskset or a container's quota of one).
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cores.min(2))
        .thread_name("oct-proxy")
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let (proxies, api) = rt.block_on(async {
        let mut proxies = Vec::new();
        let mut listeners = Vec::new();
        for s in &o.proxies {
            let l = tokio::net::TcpListener::bind(&s.listen)
                .await
                .map_err(|e| format!("proxy {}: listen on {}: {e}", s.name, s.listen))?;
            let addr = l.local_addr().map_err(|e| e.to_string())?;
            let p = Arc::new(Proxy::new(
                s.name.clone(),
                addr,
                s.protocol,
                s.timeout,
                s.backend.clone(),
                s.plan.clone(),
            ));
            proxies.push(Arc::clone(&p));
            listeners.push((l, p));
        }
        let api = match &o.http {
            None => None,
            Some(addr) => {
                let l = tokio::net::TcpListener::bind(addr)
                    .await
                    .map_err(|e| format!("--http-host/--http-port {addr}: {e}"))?;
                let at = l.local_addr().map_err(|e| e.to_string())?;
                let app = api::router(Arc::new(proxies.clone()));
                tokio::spawn(async move {
                    if let Err(e) = axum::serve(l, app).await {
                        eprintln!("oct proxy: control API: {e}");
                    }
                });
                Some(at)
            }
        };
        for (l, p) in listeners {
            tokio::spawn(relay::serve(l, p));
        }
        Ok::<_, String>((proxies, api))
    })?;
    Ok(Running {
        proxies,
        api,
        _rt: rt,
    })
}

/// `oct proxy`: serves until the process ends; returns only if a socket cannot be bound.
pub fn run(o: Options) -> Result<(), String> {
    let running = spawn(o)?;
    for p in &running.proxies {
        eprintln!(
            "oct proxy {}: {} → {} ({}), behavior {}",
            p.name,
            p.listen,
            p.backend(),
            p.protocol.name(),
            p.plan().default.name()
        );
    }
    if let Some(at) = running.api {
        eprintln!("oct proxy: control API on http://{at}");
    }
    loop {
        std::thread::park();
    }
}
