//! The HQ's web side (`oct run --web`): a live dashboard, its JSON API (`docs/api.md`), an
//! event stream and `/metrics` for Prometheus.
//!
//! # Layout
//!
//! This file owns what the HQ thread and the server share — [`Shared`]: the state the HQ
//! publishes once a second, the stream of those updates, the controls the page sends back —
//! and the server's thread (axum on a tokio runtime of its own, so the HQ's receive loop never
//! waits on a browser). `api` owns the routes: the page, `/api/v1/…`, `/metrics`, the report's
//! files, and the token check on every mutating call. `metrics` owns the counting the HQ does
//! per result (latency buckets per series, the current interval) and the Prometheus text.
//! `page.html` is the page, all of it (HTML, CSS, JS, its chart), embedded in the binary: it
//! loads nothing from elsewhere. The HQ's side — feeding results, publishing, obeying the
//! controls — is `run::web`.

pub mod api;
pub mod metrics;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use serde_json::Value;

/// What `--web` asked for.
#[derive(Debug, Clone)]
pub struct WebOptions {
    pub addr: SocketAddr,
    /// Required in a header by every mutating call (always off loopback: generated if not given).
    pub token: Option<String>,
    /// Start once `min_turrets` are in, without waiting for the page's Start.
    pub autostart: bool,
}

/// What the page can ask of the HQ.
#[derive(Debug, Clone, PartialEq)]
pub enum Control {
    Start,
    Stop,
    /// A new total of canons, or of iterations per second, through the global `load`.
    Shape {
        cannons: Option<u64>,
        rate: Option<f64>,
    },
}

/// The published state: each part as the API serves it.
#[derive(Debug, Default)]
pub struct State {
    pub run: Value,
    pub stats: Vec<metrics::Point>,
    pub turrets: Value,
    pub errors: Value,
    pub thresholds: Value,
    pub metrics: String,
}

/// Shared by the HQ thread (writer) and the server (reader).
pub struct Shared {
    pub state: Mutex<State>,
    /// Each update as one JSON text, for `/api/v1/events`.
    pub events: tokio::sync::broadcast::Sender<String>,
    pub control: Mutex<std::sync::mpsc::Sender<Control>>,
    pub token: Option<String>,
    /// The results folder: the report's files are served from it.
    pub results_dir: std::path::PathBuf,
}

/// The running server: where it listens.
pub struct Web {
    pub shared: Arc<Shared>,
    pub addr: SocketAddr,
    pub url: String,
}

impl Web {
    /// Binds `opts.addr` (here, so a port in use is an error at once) and serves on a thread of
    /// its own; returns the server and the receiving end of the controls.
    pub fn start(
        opts: &WebOptions,
        results_dir: &std::path::Path,
    ) -> std::io::Result<(Web, std::sync::mpsc::Receiver<Control>)> {
        let listener = std::net::TcpListener::bind(opts.addr)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let (tx, rx) = std::sync::mpsc::channel();
        let shared = Arc::new(Shared {
            // Until the HQ publishes its first state (within its first pass).
            state: Mutex::new(State {
                run: serde_json::json!({"state": "waiting", "transactions": 0, "errors": 0,
                    "elapsed": 0.0, "report": null}),
                turrets: Value::Array(Vec::new()),
                errors: Value::Array(Vec::new()),
                thresholds: Value::Array(Vec::new()),
                ..State::default()
            }),
            events: tokio::sync::broadcast::channel(64).0,
            control: Mutex::new(tx),
            token: opts.token.clone(),
            results_dir: results_dir.to_owned(),
        });
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let app = api::router(Arc::clone(&shared));
        std::thread::Builder::new()
            .name("oct-web".into())
            .spawn(move || {
                runtime.block_on(async move {
                    match tokio::net::TcpListener::from_std(listener) {
                        Ok(l) => {
                            if let Err(e) = axum::serve(l, app).await {
                                eprintln!("oct: web: {e}");
                            }
                        }
                        Err(e) => eprintln!("oct: web: {e}"),
                    }
                })
            })?;
        let host = match addr {
            SocketAddr::V6(a) => format!("[{}]", a.ip()),
            SocketAddr::V4(a) => a.ip().to_string(),
        };
        let mut url = format!("http://{host}:{}/", addr.port());
        if let Some(t) = &opts.token {
            url.push_str(&format!("#token={t}"));
        }
        Ok((Web { shared, addr, url }, rx))
    }

    /// Publishes a new state and tells the event stream.
    pub fn publish(&self, update: impl FnOnce(&mut State)) {
        let event = {
            let mut s = self.shared.state.lock().unwrap_or_else(|e| e.into_inner());
            update(&mut s);
            api::event_json(&s)
        };
        // No subscriber is no error.
        let _ = self.shared.events.send(event);
    }
}

/// A random token for the mutating calls (32 hex digits from the OS's generator).
pub fn random_token() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}
