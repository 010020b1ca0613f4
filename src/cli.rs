//! The command line, as clap types. Nothing here runs anything: `lib.rs` turns these into the
//! checked options of the crates.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Distributed load testing, compatible with OCT: an HQ drives turrets over ZeroMQ, stores every
/// result in SQLite and renders an HTML report.
#[derive(Debug, Parser)]
#[command(name = "oct", version, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Cmd,
}

#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Create a new project: config.json, test scripts and report templates.
    #[command(name = "new-project", visible_alias = "new")]
    NewProject(NewProjectArgs),
    /// Pack one <turret name>.tar.gz per turret of a project.
    #[command(name = "pack-turrets", visible_alias = "pack")]
    PackTurrets(PackArgs),
    /// Run a test: the HQ waits for turrets, starts them, stores every result, stops them.
    Run(RunArgs),
    /// Render the report again from a results directory.
    #[command(name = "rebuild-results", visible_alias = "rebuild")]
    RebuildResults(RebuildArgs),
    /// Export a results.sqlite to CSV with OCT's columns.
    #[command(name = "results-to-csv", visible_alias = "to-csv")]
    ResultsToCsv(CsvArgs),
    /// Start a turret (what oct-turrets-start does).
    Turret(TurretArgs),
    /// Every run under PROJECT/results/, newest first, with its figures and gate.
    History(HistoryArgs),
    /// Two runs side by side per series; exits 99 when NEW regressed beyond the tolerance.
    Compare(CompareArgs),
    /// Follow the console of a test started with `oct run --detach`; Ctrl-C asks whether to
    /// stop it or detach again.
    Attach(DetachedArgs),
    /// Stop a test started with `oct run --detach` cleanly (stop, drain, store, report).
    Stop(DetachedArgs),
    /// List the tests started with `oct run --detach` that are running on this machine.
    Status,
    /// A chaos proxy compatible with Vaurien: relays clients to a backend, injecting delays,
    /// errors, hangs and disconnects (`--behavior-NAME-OPTION VALUE` sets an option).
    Proxy(ProxyArgs),
    /// Relay results and commands between turrets in another zone and the HQ (OCT's
    /// run-device; ZeroMQ's streamer and forwarder), byte for byte, sealed frames untouched.
    Forwarder(ForwarderArgs),
}

/// `oct forwarder`: bound where the turrets connect, connected to the HQ.
#[derive(Debug, Args)]
pub struct ForwarderArgs {
    /// Where turrets push their results (their `hq_rc`): bound, e.g. `*:5502`.
    #[arg(long, value_name = "HOST:PORT")]
    pub pull: String,
    /// The HQ's results port (its `rc_port`): connected, e.g. `hq.example:5502`.
    #[arg(long, value_name = "HOST:PORT")]
    pub push: String,
    /// The HQ's command port (its `publish_port`): connected; with --pub.
    #[arg(long, value_name = "HOST:PORT", requires = "publish")]
    pub sub: Option<String>,
    /// Where turrets subscribe to commands (their `hq_publisher`): bound; with --sub.
    #[arg(long = "pub", value_name = "HOST:PORT", requires = "sub")]
    pub publish: Option<String>,
    /// Seconds between progress lines (results forwarded so far).
    #[arg(long, default_value_t = 10.0, value_name = "SECS")]
    pub progress: f64,
}

/// Vaurien's flags (`oct-vaurien` takes them too). With `--config`, a flag given here wins
/// over the file's `[vaurien]` value, which wins over the default.
#[derive(Debug, Args)]
pub struct ProxyArgs {
    /// Where clients connect [default: localhost:8000].
    #[arg(long, value_name = "HOST:PORT")]
    pub proxy: Option<String>,
    /// The backend the proxy relays to (required, unless --config gives it or only
    /// [proxy:NAME] sections).
    #[arg(long, value_name = "HOST:PORT")]
    pub backend: Option<String>,
    /// How calls are told apart: http (one per request; HTTP/1.1 keep-alive, chunked bodies),
    /// redis (one per command; RESP, inline commands), memcache (one per command; text
    /// protocol), or tcp, mysql, smtp (one per chunk, packet or command line the client sends;
    /// the backend's bytes relayed as they come) [default: tcp].
    #[arg(long)]
    pub protocol: Option<String>,
    /// The mix of behaviours: `5:error,10:delay` (integer percentages, the rest `dummy`), or
    /// one name. The behaviours: abort, bandwidth, blackout, delay, dummy, error, hang,
    /// latency, limit_data, reset_peer, slow_close, timeout, transient [default: dummy].
    #[arg(long, value_name = "SPEC")]
    pub behavior: Option<String>,
    /// A route: calls that match draw from their own mix, e.g. `"POST /api=50:error"`,
    /// `"GET=delay"`, `"from 127.0.0.2=blackout"`, `"/slow from 10.0.0.0/8=hang"` (method,
    /// path prefix, client address or network; the first route that matches wins, the rest
    /// draw from --behavior). Repeat for more.
    #[arg(long, value_name = "MATCH=SPEC")]
    pub route: Vec<String>,
    /// Seconds a backend may take to connect and to answer; how long `hang` hangs
    /// [default: 30].
    #[arg(long, value_name = "SECS")]
    pub timeout: Option<f64>,
    /// Vaurien's: keep the backend connection between calls (always so here).
    #[arg(long)]
    pub stay_connected: bool,
    /// Serve the control API (Vaurien's GET/PUT /behavior, GET /behaviors, GET/PUT /backend;
    /// ours: GET/PUT /routes, GET /stats, GET /proxies, /proxies/NAME/…, GET /metrics).
    #[arg(long)]
    pub http: bool,
    /// The control API's host [default: localhost].
    #[arg(long)]
    pub http_host: Option<String>,
    /// The control API's port (0: any free one, printed) [default: 8080].
    #[arg(long)]
    pub http_port: Option<u16>,
    /// A Vaurien INI file (`[vaurien]` with these flags' names, `[behavior:NAME]` options,
    /// and our `[proxy:NAME]` sections for more proxies), or a JSON file
    /// `{"proxies": [{"name", "listen", "backend", "protocol", "behavior", "options",
    /// "routes", "timeout"}], "http": "HOST:PORT"}`.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Vaurien's log level (accepted; oct proxy logs connection errors to stderr).
    #[arg(long, default_value = "info")]
    pub log_level: String,
    /// `--behavior-NAME-OPTION VALUE` pairs, taken out of the command line before the rest is
    /// parsed.
    #[arg(skip)]
    pub options: Vec<(String, String, String)>,
}

#[derive(Debug, Args)]
pub struct DetachedArgs {
    /// The project folder of the detached test (or its results folder).
    pub project: PathBuf,
}

#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// The project folder (its results/ holds the runs, ours or OCT's).
    pub project: PathBuf,
}

#[derive(Debug, Args)]
pub struct CompareArgs {
    /// The base run: a result folder, a results.sqlite, or `last` / `last~N` (of --project).
    pub base: String,
    /// The new run, as BASE.
    pub new: String,
    /// How much worse NEW may be before it is a regression (latencies and error rate higher,
    /// rps lower), in percent.
    #[arg(long, default_value = "10%", value_name = "PERCENT")]
    pub tolerance: String,
    /// The project whose results/ `last` and `last~N` name.
    #[arg(long, default_value = ".", value_name = "DIR")]
    pub project: PathBuf,
    /// Also write the comparison as an HTML page with both runs' graphs overlaid.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct NewProjectArgs {
    /// The project folder to create; it must not exist.
    pub project_name: PathBuf,
    /// Start from a template tarball holding config.json, test_scripts/ and templates/.
    #[arg(short, long, value_name = "TEMPLATE.tar.gz")]
    pub template: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct PackArgs {
    /// The project folder.
    pub path: PathBuf,
    /// Also add OCT's setup.py, for Python turrets.
    #[arg(long)]
    pub python: bool,
    /// Use this config instead of PATH/config.json.
    #[arg(long, value_name = "FILE")]
    pub config_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The project folder (holds config.json and test_scripts/).
    pub project_path: PathBuf,
    /// Put results here instead of PROJECT/results/results_<date>_<µs>/ (refused if it already
    /// holds a results.sqlite).
    #[arg(short, long, value_name = "DIR")]
    pub output_dir: Option<PathBuf>,
    /// Store results but do not render the report.
    #[arg(long)]
    pub no_results: bool,
    /// Topic of the external publisher (default: a random 32-hex id, printed at start).
    #[arg(short, long, value_name = "CHANNEL")]
    pub publisher_channel: Option<String>,
    /// Use this config instead of PROJECT/config.json.
    #[arg(long, value_name = "FILE")]
    pub config_file: Option<PathBuf>,
    /// Connect the external publisher to a forwarder instead of binding it.
    #[arg(long)]
    pub with_forwarder: bool,
    /// The forwarder, as IP:PORT (default 127.0.0.1:<external_publisher>).
    #[arg(long, value_name = "IP:PORT", requires = "with_forwarder")]
    pub forwarder_address: Option<String>,
    /// Also start every turret of the config on this machine, and stop them at the end.
    #[arg(long)]
    pub local: bool,
    /// Write the thresholds' outcomes as JUnit XML (one testcase per threshold and series).
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// Serve the live dashboard, its API (docs/api.md) and /metrics at ADDR (`--web` alone:
    /// 127.0.0.1:8089; port 0: any free port). The test starts on the page's Start unless
    /// --autostart; the page stays up after the end until Ctrl-C.
    #[arg(long, value_name = "ADDR", num_args = 0..=1, require_equals = true,
          default_missing_value = "127.0.0.1:8089")]
    pub web: Option<String>,
    /// With --web: start once min_turrets are in, without waiting for the page's Start.
    #[arg(long, requires = "web")]
    pub autostart: bool,
    /// Run in the background: the HQ's console goes to RESULTS_DIR/console.log; follow it with
    /// `oct attach PROJECT`, end it with `oct stop PROJECT`, list such tests with `oct status`.
    #[arg(long)]
    pub detach: bool,
    /// With --web: the token every mutating call must send (`Authorization: Bearer TOKEN`).
    /// Default: none on a loopback address; off loopback, a random one, printed with the URL.
    #[arg(long, value_name = "TOKEN", requires = "web")]
    pub web_token: Option<String>,
}

#[derive(Debug, Args)]
pub struct RebuildArgs {
    /// The results directory to write the report into.
    pub results_dir: PathBuf,
    /// The config.json of the run (for results_ts_interval and the turrets).
    pub config_file: PathBuf,
    /// The results database (default RESULTS_DIR/results.sqlite).
    #[arg(short = 'f', long = "results-file", value_name = "SQLITE")]
    pub results_file: Option<PathBuf>,
    /// Write the thresholds' outcomes (of CONFIG_FILE, evaluated again) as JUnit XML.
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// What to read the transactions from: OCT's result rows and the turrets' aggregates
    /// (`auto`; a `"results": "both"` run's rows alone), the rows alone, or the aggregates alone.
    #[arg(long, value_enum, default_value = "auto")]
    pub from: From,
}

/// `rebuild-results --from`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum From {
    Auto,
    Raw,
    Aggregate,
}

#[derive(Debug, Args)]
pub struct CsvArgs {
    /// The results.sqlite to export.
    pub result_file: PathBuf,
    /// The CSV file to write.
    pub output_file: PathBuf,
    /// The column delimiter.
    #[arg(short, long, default_value = ";")]
    pub delimiter: String,
}

/// One of --tar and --config-file, exactly; --once with either.
#[derive(Debug, Args)]
#[group(skip)]
#[command(group = clap::ArgGroup::new("source").required(true).multiple(false))]
pub struct TurretArgs {
    /// A turret tarball made by `oct pack-turrets`.
    #[arg(long, value_name = "X.tar.gz", group = "source")]
    pub tar: Option<PathBuf>,
    /// A turret config.json (its `script` is relative to the file's folder).
    #[arg(long, value_name = "FILE", group = "source")]
    pub config_file: Option<PathBuf>,
    /// Exit (0) once the first test it runs has ended, its last results sent: for a
    /// Kubernetes Job's pods, which must complete.
    #[arg(long)]
    pub once: bool,
}
