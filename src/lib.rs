//! The `oct` binaries: parse the command line, build the checked options of the crates, call one
//! function, map the outcome to an exit code (0 ok, 2 usage or setup error, 99 the test failed
//! its thresholds or `compare` found a regression). Diagnostics go to stderr as `oct: …`; results to stdout.
//!
//! # Layout
//!
//! `cli` owns the clap types and their help texts; this file owns dispatch; `detach` owns
//! tests in the background (`run --detach`, `attach`, `stop`, `status`); `vaurien` turns
//! `oct proxy`'s flags and `--config` into the proxies to start. The OCT command
//! names (`oct-run`, `oct-turrets-start`, …) are one-line binaries in `src/bin/` calling
//! [`alias`].

pub mod cli;
mod detach;
mod vaurien;

// Lua states and hyper allocate many small short-lived objects per transaction; mimalloc
// beats glibc malloc on the canon loop by ~1.7x (bench/RESULTS.md). In the library so every
// binary (oct, oct-run, oct-turrets-start…) gets it.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::ffi::OsString;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Args, CommandFactory, FromArgMatches, Parser};

use cli::{Cli, Cmd, RunArgs};

const USAGE_ERROR: u8 = 2;

/// `oct …`.
pub fn main() -> ExitCode {
    let (args, options) = behavior_options(std::env::args_os().collect());
    let mut cli = Cli::parse_from(args);
    if let Cmd::Proxy(p) = &mut cli.command {
        p.options = options;
    } else if let Some((b, o, _)) = options.first() {
        eprintln!("oct: --behavior-{b}-{o}: only `oct proxy` takes behaviour options");
        return ExitCode::from(USAGE_ERROR);
    }
    exit(dispatch(cli.command))
}

/// Takes Vaurien's `--behavior-NAME-OPTION VALUE` (or `=VALUE`) pairs out of the command line:
/// clap cannot know their names beforehand.
fn behavior_options(args: Vec<OsString>) -> (Vec<OsString>, Vec<(String, String, String)>) {
    let mut rest = Vec::with_capacity(args.len());
    let mut options = Vec::new();
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        let text = a.to_string_lossy().into_owned();
        let Some(spec) = text.strip_prefix("--behavior-") else {
            rest.push(a);
            continue;
        };
        let (key, value) = match spec.split_once('=') {
            Some((k, v)) => (k.to_owned(), Some(v.to_owned())),
            None => (spec.to_owned(), None),
        };
        let Some((name, option)) = key.split_once('-') else {
            rest.push(a);
            continue;
        };
        let value = match value {
            Some(v) => v,
            None => it
                .next()
                .map(|v| v.to_string_lossy().into_owned())
                .unwrap_or_default(),
        };
        options.push((name.to_owned(), option.replace('-', "_"), value));
    }
    (rest, options)
}

/// `oct forwarder`: runs until the process ends.
fn forwarder(a: cli::ForwarderArgs) -> Result<u8> {
    if !(a.progress.is_finite() && a.progress > 0.0) {
        bail!("--progress {}: must be seconds above 0", a.progress);
    }
    let f = hq::forwarder::Forwarder {
        pull: a.pull,
        push: a.push,
        sub: a.sub,
        publish: a.publish,
    };
    hq::forwarder::run(&f, std::time::Duration::from_secs_f64(a.progress), |l| {
        eprintln!("oct forwarder: {l}")
    })
    .map_err(|e| anyhow::anyhow!(e))?;
    Ok(0)
}

/// `oct proxy` / `oct-vaurien`.
fn proxy(a: cli::ProxyArgs) -> Result<u8> {
    proxy::run(vaurien::options(&a)?).map_err(|e| anyhow::anyhow!(e))?;
    Ok(0)
}

/// An OCT-named binary: `name` takes the options of the `oct` subcommand `sub`.
pub fn alias(name: &'static str, sub: &str) -> ExitCode {
    let about = Cli::command()
        .find_subcommand(sub)
        .and_then(|c| c.get_about().map(|a| a.to_string()))
        .unwrap_or_default();
    let args: Vec<OsString> = std::env::args_os().collect();
    let parsed = match sub {
        "new-project" => parse_as::<cli::NewProjectArgs>(name, &about, args).map(Cmd::NewProject),
        "pack-turrets" => parse_as::<cli::PackArgs>(name, &about, args).map(Cmd::PackTurrets),
        "run" => parse_as::<cli::RunArgs>(name, &about, args).map(Cmd::Run),
        "rebuild-results" => {
            parse_as::<cli::RebuildArgs>(name, &about, args).map(Cmd::RebuildResults)
        }
        "turret" => parse_as::<cli::TurretArgs>(name, &about, args).map(Cmd::Turret),
        "proxy" => {
            let (args, options) = behavior_options(args);
            parse_as::<cli::ProxyArgs>(name, &about, args).map(|mut p| {
                p.options = options;
                Cmd::Proxy(p)
            })
        }
        _ => Err(clap::Error::raw(
            clap::error::ErrorKind::InvalidSubcommand,
            format!("unknown alias {sub}\n"),
        )),
    };
    match parsed {
        Ok(cmd) => exit(dispatch(cmd)),
        Err(e) => e.exit(),
    }
}

fn parse_as<A: Args + FromArgMatches>(
    name: &'static str,
    about: &str,
    args: Vec<OsString>,
) -> Result<A, clap::Error> {
    let command = A::augment_args(
        clap::Command::new(name)
            .version(env!("CARGO_PKG_VERSION"))
            .about(about.to_owned()),
    );
    let matches = command.try_get_matches_from(args)?;
    A::from_arg_matches(&matches)
}

fn exit(outcome: Result<u8>) -> ExitCode {
    match outcome {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            eprintln!("oct: {err:#}");
            ExitCode::from(USAGE_ERROR)
        }
    }
}

fn dispatch(cmd: Cmd) -> Result<u8> {
    match cmd {
        Cmd::Run(args) => run(args),
        Cmd::NewProject(args) => {
            scaffold::new_project(&args.project_name, args.template.as_deref())?;
            Ok(0)
        }
        Cmd::PackTurrets(args) => {
            let opts = scaffold::PackOptions {
                project: args.path,
                config_file: args.config_file,
                python: args.python,
            };
            scaffold::pack_turrets(&opts, &mut std::io::stdout(), &mut std::io::stderr())?;
            Ok(0)
        }
        Cmd::RebuildResults(args) => rebuild(args),
        Cmd::ResultsToCsv(args) => {
            let n = hq::csv::export(&args.result_file, &args.output_file, &args.delimiter)?;
            eprintln!("oct: {n} results written to {}", args.output_file.display());
            Ok(0)
        }
        Cmd::Turret(args) => turret(args),
        Cmd::History(args) => {
            if !args.project.is_dir() {
                bail!("{}: no such project folder", args.project.display());
            }
            print!("{}", hq::history::history_table(&args.project, 1)?);
            Ok(0)
        }
        Cmd::Compare(args) => compare(args),
        Cmd::Attach(args) => detach::attach(&args.project),
        Cmd::Stop(args) => detach::stop(&args.project),
        Cmd::Status => detach::status(),
        Cmd::Proxy(args) => proxy(args),
        Cmd::Forwarder(a) => forwarder(a),
    }
}

fn compare(args: cli::CompareArgs) -> Result<u8> {
    let t = args.tolerance.trim();
    let tolerance = t
        .strip_suffix('%')
        .unwrap_or(t)
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|x| *x >= 0.0 && x.is_finite())
        .with_context(|| format!("--tolerance {t:?}: expected a percentage such as 10%"))?
        / 100.0;
    let base = hq::history::resolve(&args.base, &args.project)?;
    let new = hq::history::resolve(&args.new, &args.project)?;
    let (base, new) = (
        hq::history::Digest::read(&base, 1)?,
        hq::history::Digest::read(&new, 1)?,
    );
    let rows = hq::compare::compare(&base, &new, tolerance);
    println!(
        "base: {}\nnew:  {}",
        base.database.display(),
        new.database.display()
    );
    println!("{}", hq::compare::table(&rows, tolerance));
    if let Some(file) = &args.html {
        std::fs::write(file, hq::compare::html(&rows, &base, &new, tolerance))
            .with_context(|| format!("{}: writing the comparison", file.display()))?;
        eprintln!("oct: comparison: {}", file.display());
    }
    Ok(if rows.iter().any(|r| r.regression) {
        hq::gate::FAILED_EXIT
    } else {
        0
    })
}

fn turret(args: cli::TurretArgs) -> Result<u8> {
    // Keeps the unpacked tarball alive (and removes it) for as long as the turret runs.
    let mut unpacked = None;
    let config_file = match (args.config_file, args.tar) {
        (Some(file), _) => file,
        (None, Some(tar)) => {
            let u = scaffold::unpack_turret(&tar)?;
            let config = u.config();
            let dir = u.dir().to_owned();
            // Ctrl-C must not leave the unpacked copy behind.
            ctrlc_handler(move || {
                let _ = std::fs::remove_dir_all(&dir);
                std::process::exit(130);
            })?;
            unpacked = Some(u);
            config
        }
        (None, None) => bail!("give --config-file FILE or --tar X.tar.gz"),
    };
    let mut config = turret::Config::load(&config_file)?;
    config.once = args.once;
    let outcome = turret::run(config);
    drop(unpacked);
    outcome?;
    Ok(0)
}

fn rebuild(args: cli::RebuildArgs) -> Result<u8> {
    if !args.results_dir.is_dir() {
        bail!("{}: no such results folder", args.results_dir.display());
    }
    let config = hq::Config::load(&args.config_file)?;
    let database = args
        .results_file
        .clone()
        .unwrap_or_else(|| args.results_dir.join("results.sqlite"));
    let source = match args.from {
        cli::From::Auto => hq::report::aggregates::Source::Auto,
        cli::From::Raw => hq::report::aggregates::Source::Raw,
        cli::From::Aggregate => hq::report::aggregates::Source::Aggregate,
    };
    let out = report(&config, &args.results_dir, &database, source)?;
    println!("{}", out.html.display());
    gate(&out.thresholds, args.junit.as_deref(), &config)
}

/// Prints the ✓/✗ table, writes the JUnit file, and says the exit code: 99 when a threshold
/// failed.
fn gate(outcomes: &[hq::gate::Outcome], junit: Option<&Path>, config: &hq::Config) -> Result<u8> {
    if outcomes.is_empty() {
        if junit.is_some() {
            eprintln!("oct: warning: --junit: the config has no thresholds; nothing written");
        }
        return Ok(0);
    }
    println!("{}", hq::gate::table(outcomes));
    if let Some(file) = junit {
        let suite = config
            .path
            .parent()
            .and_then(|p| std::fs::canonicalize(p).ok())
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "oct".to_owned());
        std::fs::write(file, hq::gate::junit(outcomes, &suite))
            .with_context(|| format!("{}: writing the JUnit file", file.display()))?;
        eprintln!("oct: JUnit: {}", file.display());
    }
    Ok(if outcomes.iter().all(|o| o.passed) {
        0
    } else {
        hq::gate::FAILED_EXIT
    })
}

/// Renders the report of `database` into `dir` and says where it is.
fn report(
    config: &hq::Config,
    dir: &Path,
    database: &Path,
    source: hq::report::aggregates::Source,
) -> Result<hq::report::ReportOutput> {
    let project = config.path.parent().unwrap_or(Path::new("."));
    let title = std::fs::canonicalize(project)
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "oct".to_owned());
    let input = hq::report::ReportInput {
        results_dir: dir,
        database,
        interval_secs: config.results_ts_interval_secs,
        title,
        config_turrets: &config.turrets,
        css: hq::report::css_for_project(project),
        progress: true,
        thresholds: &config.thresholds,
        source,
    };
    let out = hq::report::render(&input)?;
    eprintln!(
        "oct: report: {} ({} transactions; summary in {})",
        out.html.display(),
        out.transactions,
        out.summary_json.display()
    );
    Ok(out)
}

fn run(args: RunArgs) -> Result<u8> {
    let project = &args.project_path;
    if !project.is_dir() {
        bail!("{}: no such project folder", project.display());
    }
    let config_path = args
        .config_file
        .clone()
        .unwrap_or_else(|| project.join("config.json"));
    let config = hq::Config::load(&config_path)?;
    let external_publisher = config.external_publisher;
    let results_dir = args
        .output_dir
        .clone()
        .unwrap_or_else(|| hq::default_results_dir(project));
    let detached = std::env::var_os(detach::DETACHED_ENV).is_some();
    if args.detach && !detached {
        if results_dir.join("results.sqlite").exists() {
            bail!("{}: already holds a results.sqlite", results_dir.display());
        }
        return detach::detach(args_again(&args), &results_dir);
    }
    let _registration = if detached {
        Some(detach::Registration::new(project, &results_dir)?)
    } else {
        None
    };
    let local_turrets = if args.local {
        Some(std::env::current_exe().context("finding the oct binary for --local")?)
    } else {
        None
    };
    let web = match &args.web {
        None => None,
        Some(addr) => Some(start_web(
            addr,
            args.web_token.clone(),
            args.autostart,
            &results_dir,
        )?),
    };
    let shutdown = hq::Shutdown::new();
    let handler = shutdown.clone();
    ctrlc_handler(move || handler.request())?;
    let opts = hq::RunOptions {
        config,
        results_dir,
        publisher_channel: args
            .publisher_channel
            .clone()
            .unwrap_or_else(hq::random_topic),
        forwarder: args.with_forwarder.then(|| {
            args.forwarder_address
                .clone()
                .unwrap_or_else(|| format!("127.0.0.1:{external_publisher}"))
        }),
        local_turrets,
        shutdown,
        web,
    };
    let summary = hq::run(&opts)?;
    // A Ctrl-C from now on ends the dashboard's stay (`linger`), not the test.
    let presses = opts.shutdown.presses();
    println!("{summary}");
    let c = &opts.config;
    let outcomes = if !args.no_results {
        report(c, &opts.results_dir, &summary.database, Default::default())?.thresholds
    } else if !c.thresholds.is_empty() {
        hq::report::evaluate_thresholds(
            &summary.database,
            c.results_ts_interval_secs,
            &c.thresholds,
        )?
    } else {
        Vec::new()
    };
    let code = gate(&outcomes, args.junit.as_deref(), c)?;
    if !outcomes.is_empty() || summary.aborted_by.is_some() {
        let passed = code == 0 && summary.aborted_by.is_none();
        hq::history::record_gate(&summary.database, passed)?;
    }
    // A test an `abort_on_fail` threshold ended has failed, whatever the others say.
    let code = if summary.aborted_by.is_some() {
        hq::gate::FAILED_EXIT
    } else {
        code
    };
    hq::observe::at_end(c, &opts.results_dir, &summary, &outcomes, code);
    // A detached HQ has no one at its console: it does not keep the page up.
    if let Some(web) = opts.web.as_ref().filter(|_| !detached) {
        linger(web, &opts, presses, !args.no_results, &outcomes);
    }
    Ok(code)
}

/// The options of `oct run` as a command line again (without `--detach` and `-o`), for the
/// detached HQ.
fn args_again(a: &RunArgs) -> Vec<OsString> {
    let mut v: Vec<OsString> = vec![a.project_path.clone().into()];
    let mut opt = |flag: &str, value: Option<OsString>| {
        v.push(flag.into());
        if let Some(x) = value {
            v.push(x);
        }
    };
    if a.no_results {
        opt("--no-results", None);
    }
    if let Some(c) = &a.publisher_channel {
        opt("--publisher-channel", Some(c.into()));
    }
    if let Some(f) = &a.config_file {
        opt("--config-file", Some(f.into()));
    }
    if a.with_forwarder {
        opt("--with-forwarder", None);
    }
    if let Some(f) = &a.forwarder_address {
        opt("--forwarder-address", Some(f.into()));
    }
    if a.local {
        opt("--local", None);
    }
    if let Some(j) = &a.junit {
        opt("--junit", Some(j.into()));
    }
    if let Some(w) = &a.web {
        v.push(format!("--web={w}").into());
    }
    if a.autostart {
        v.push("--autostart".into());
    }
    if let Some(t) = &a.web_token {
        v.push("--web-token".into());
        v.push(t.into());
    }
    v
}

/// `--web[=ADDR]`: binds the dashboard (a clear error if the address is bad or taken) and
/// prints its URL, with the token when there is one.
fn start_web(
    addr: &str,
    token: Option<String>,
    autostart: bool,
    results_dir: &Path,
) -> Result<hq::WebRun> {
    let addr: std::net::SocketAddr = addr
        .parse()
        .with_context(|| format!("--web={addr}: not an IP:PORT address"))?;
    // Off loopback, a mutating call needs a token: one is made up if none was given.
    let token = match token {
        Some(t) if t.trim().is_empty() => bail!("--web-token: empty"),
        Some(t) => Some(t),
        None if addr.ip().is_loopback() => None,
        None => Some(hq::web::random_token()),
    };
    let opts = hq::web::WebOptions {
        addr,
        token,
        autostart,
    };
    let (web, controls) = hq::web::Web::start(&opts, results_dir)
        .with_context(|| format!("--web={addr}: serving the dashboard"))?;
    eprintln!("oct: dashboard: {}", web.url);
    Ok(hq::WebRun {
        web: std::sync::Arc::new(web),
        controls,
        autostart,
    })
}

/// After the run: the page gets the report's link and the gate's verdicts, and stays up until
/// Ctrl-C or the page's Stop.
fn linger(
    web: &hq::WebRun,
    opts: &hq::RunOptions,
    presses: usize,
    report: bool,
    outcomes: &[hq::gate::Outcome],
) {
    let verdicts: Vec<serde_json::Value> = outcomes
        .iter()
        .map(|o| {
            serde_json::json!({"series": o.series, "threshold": o.threshold,
                "passed": o.passed, "observed": o.observed_text()})
        })
        .collect();
    web.web.publish(|s| {
        s.run["state"] = "finished".into();
        if report {
            s.run["report"] = "/report/results.html".into();
        }
        if !verdicts.is_empty() {
            s.thresholds = serde_json::Value::Array(verdicts);
        }
    });
    eprintln!(
        "oct: the test is over; the dashboard stays at {} until Ctrl-C",
        web.web.url
    );
    loop {
        if opts.shutdown.presses() != presses {
            return;
        }
        match web
            .controls
            .recv_timeout(std::time::Duration::from_millis(200))
        {
            Ok(hq::web::Control::Stop) => return,
            Ok(_) | Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return,
        }
    }
}

fn ctrlc_handler(f: impl Fn() + Send + 'static) -> Result<()> {
    ctrlc::set_handler(f).context("installing the Ctrl-C handler")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verify_cli() {
        Cli::command().debug_assert();
    }
}
