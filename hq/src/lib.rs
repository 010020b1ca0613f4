//! The HQ: reads a project's config, binds the OCT sockets, drives turrets through a test, stores
//! every result in an OCT-compatible results.sqlite and summarises the run.
//!
//! # Layout
//!
//! `config` owns config.json (DESIGN §5): OCT's required keys and defaults, turret entries, and
//! errors that name the file and key. It does no I/O beyond reading the config files.
//!
//! `transport` owns the three ZeroMQ sockets (command PUB, result PULL, external PUB), their
//! limits (frame size, queue) and the sealing of commands in secure mode. It knows frames, not
//! messages: decoding belongs to the `protocol` crate.
//!
//! `run` owns the lifecycle: wait, start, receive, stop, drain, finish. It is the only module
//! that sees both sockets and the store, and it never blocks on disk: results go to the store's
//! writer thread in batches. In secure mode it opens every frame (protocol's `Opener`) before
//! decoding it. Its `run::turrets` part owns what each turret's statuses and heartbeats change
//! and the commands sent to one turret alone (re-admission, a missed stop); its `run::aggregate`
//! part what a turret's interval (extension `aggregate`) changes.
//!
//! `load` owns a global shape (`load` at the top level): how it splits across turrets by
//! `weight`, and what each turret's packed config gets for it; `run::load` sends each
//! following turret its part as generation-numbered `load` commands.
//!
//! `forwarder` owns `oct forwarder`: results and commands relayed byte for byte between turrets
//! in another zone and the HQ (ZeroMQ's streamer and forwarder devices).
//!
//! `chaos` owns a test's `"chaos"`: `oct proxy`'s proxies started in the HQ, the fault schedule
//! played on the test's clock, and the windows it records (`oct_chaos`, marked on the graphs).
//!
//! `liveness` owns each turret's liveness (`running`, `late`, `lost`, `recovered`,
//! `unmonitored`) and the CPU flag, as pure state over the heartbeats `run` hands it.
//!
//! `store` owns results.sqlite: OCT's two tables byte-identical, our extra tables, and the writer
//! thread that commits one transaction per burst.
//!
//! `stats` owns the streaming statistics of a series (exact moments, percentiles, intervals);
//! `report` owns results.html, its SVG graphs (`report::svg`: plotters' SVG backend, text laid
//! out with an embedded font) and summary.json, computed in one pass over any results.sqlite (ours or OCT's:
//! OCT's rows and, through `report::aggregates`, the turrets' aggregates in `oct_agg`);
//! `csv` owns OCT's CSV export.
//!
//! `gate` owns the pass/fail gate: config.json's `thresholds` (`gate::expr` parses one),
//! evaluated on a finished run (through `report`'s scan) and, for `abort_on_fail` ones, live
//! during it (`gate::live`, fed by `run`); the ✓/✗ table and the JUnit XML.
//!
//! `history` owns what is known of a finished run (a `Digest`, read by the report's scan) and
//! `oct history`'s table; `compare` owns `oct compare`: two digests side by side, regressions
//! beyond a tolerance, as text and as a page with both runs' graphs overlaid.
//!
//! `web` owns `oct run --web`: the live dashboard, its JSON API and event stream, `/metrics`
//! (its own Layout inside); `run::web` is the HQ's side of it.
//!
//! `observe` owns config.json's `observers`: webhooks and commands told of a test's end, a
//! failed gate or a lost turret, each delivery on a thread of its own so none holds up the run.
//!
//! `summary` owns the numbers a run ends with; `console` owns what the operator sees while it
//! runs; `local` owns the child turret processes of `oct run --local`.

pub mod chaos;
pub mod compare;
pub mod config;
mod console;
pub mod csv;
pub mod forwarder;
pub mod gate;
pub mod history;
pub mod liveness;
pub mod load;
pub mod local;
pub mod observe;
pub mod report;
pub mod run;
pub mod stats;
pub mod store;
pub mod summary;
pub mod transport;
pub mod web;

pub use config::{Config, ConfigError, TurretEntry};
pub use run::{run, RunError, RunOptions, Shutdown, WebRun};
pub use summary::Summary;

/// `PROJECT/results/results_<%Y.%m.%d_%H.%M.%S>_<microseconds>`, OCT's naming, in local time.
pub fn default_results_dir(project: &std::path::Path) -> std::path::PathBuf {
    let now = chrono::Local::now();
    let name = format!(
        "results_{}_{}",
        now.format("%Y.%m.%d_%H.%M.%S"),
        now.timestamp_subsec_micros()
    );
    project.join("results").join(name)
}

/// A random 32-hex topic for the external publisher, as OCT prints it.
pub fn random_topic() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// A name (turret, timer) as a file name and URL fragment: ASCII letters, digits, `-` and `_`
/// kept, anything else (`/`, spaces, quotes, non-ASCII) an `_`. OCT crashes on a `/`.
pub fn file_safe(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}
