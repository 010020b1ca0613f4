//! The report (DESIGN §7): `results.html` (askama, CSS and SVG inline, readable offline), the
//! graphs again as SVG files beside it, and `summary.json` for machines. Computed in one
//! streaming pass over results.sqlite (ours or OCT's) with bounded memory.

pub mod aggregates;
mod arrivals;
mod chaos;
pub(crate) mod checks;
pub(crate) mod scan;
pub mod svg;
mod turrets;

use std::path::{Path, PathBuf};

use askama::Template;
use chrono::{Local, TimeZone};
use rusqlite::{Connection, OpenFlags, OptionalExtension};
use serde_json::json;

use crate::config::TurretEntry;
use crate::gate::{Observed, Outcome, Thresholds};
use crate::stats::{latency, Series, Summary};
use scan::Scan;
use turrets::TurretView;

/// The stylesheet used when the project has no `templates/report.css` of its own.
pub const DEFAULT_CSS: &str = include_str!("../../../templates/report.css");

/// Error messages listed in the report at most.
const MAX_ERROR_ROWS: usize = 50;

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("{path}: {message}")]
    Database { path: PathBuf, message: String },
    #[error("{path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("rendering the report: {0}")]
    Render(#[from] askama::Error),
}

/// What to render, and where.
pub struct ReportInput<'a> {
    pub results_dir: &'a Path,
    pub database: &'a Path,
    pub interval_secs: u64,
    pub title: String,
    /// Shown in the workload table when the database has no turret rows.
    pub config_turrets: &'a [TurretEntry],
    pub css: String,
    /// Print progress while scanning (a long rebuild).
    pub progress: bool,
    /// Evaluated on the run; their outcomes go into summary.json and the page.
    pub thresholds: &'a Thresholds,
    /// OCT's rows, the turrets' aggregates, or both (`oct report --from`).
    pub source: aggregates::Source,
}

/// What was written.
#[derive(Debug)]
pub struct ReportOutput {
    pub html: PathBuf,
    pub summary_json: PathBuf,
    pub transactions: u64,
    pub thresholds: Vec<Outcome>,
}

/// The project's `templates/report.css` if it has one, else ours.
pub fn css_for_project(project: &Path) -> String {
    std::fs::read_to_string(project.join("templates").join("report.css"))
        .unwrap_or_else(|_| DEFAULT_CSS.to_owned())
}

struct BreakdownView {
    name: String,
    count: u64,
    errors: u64,
    min: String,
    avg: String,
    max: String,
}

struct SummaryView {
    count: u64,
    min: String,
    avg: String,
    p50: String,
    p80: String,
    p90: String,
    p95: String,
    p99: String,
    p999: String,
    max: String,
    stdev: String,
}

impl From<&Summary> for SummaryView {
    fn from(s: &Summary) -> Self {
        SummaryView {
            count: s.count,
            min: latency(s.min),
            avg: latency(s.avg),
            p50: latency(s.p50),
            p80: latency(s.p80),
            p90: latency(s.p90),
            p95: latency(s.p95),
            p99: latency(s.p99),
            p999: latency(s.p999),
            max: latency(s.max),
            stdev: s.stdev.map_or_else(|| "-".to_owned(), latency),
        }
    }
}

struct IntervalView {
    start: String,
    count: u64,
    rate: String,
    min: String,
    avg: String,
    p80: String,
    p90: String,
    p95: String,
    max: String,
    stdev: String,
}

struct SeriesView {
    name: String,
    anchor: String,
    summary: SummaryView,
    note: String,
    intervals: Vec<IntervalView>,
    response_svg: String,
    throughput_svg: String,
    raw_svg: String,
}

struct ErrorView {
    message: String,
    count: u64,
    first: String,
    last: String,
}

struct ThresholdView {
    passed: bool,
    series: String,
    threshold: String,
    observed: String,
    limit: String,
}

impl From<&Outcome> for ThresholdView {
    fn from(o: &Outcome) -> Self {
        ThresholdView {
            passed: o.passed,
            series: o.series.clone(),
            threshold: o.threshold.clone(),
            observed: o.observed_text(),
            limit: o.shown(o.limit),
        }
    }
}

struct RejectedView {
    kind: String,
    count: u64,
    first_error: String,
}

#[derive(Template)]
#[template(path = "report.html")]
struct Page {
    title: String,
    css: String,
    version: &'static str,
    transactions: u64,
    errors: u64,
    error_rate: String,
    run_time: String,
    start: String,
    finish: String,
    interval: u64,
    rejected_total: String,
    lost: String,
    /// How the transactions were stored, when turrets aggregated them.
    results: Option<String>,
    turrets: Vec<TurretView>,
    per_turret: Vec<BreakdownView>,
    /// Active vs wanted canons over the run, when heartbeats reported them.
    canons_svg: Option<String>,
    /// Open model: the arrival rate wanted, started and dropped over the run.
    arrivals_svg: Option<String>,
    checks: Vec<checks::CheckView>,
    faults: Vec<chaos::FaultView>,
    counters_svg: Option<String>,
    series: Vec<SeriesView>,
    error_rows: Vec<ErrorView>,
    errors_truncated: bool,
    rejected: Vec<RejectedView>,
    thresholds: Vec<ThresholdView>,
}

fn local_time(epoch: f64) -> String {
    Local
        .timestamp_opt(epoch.floor() as i64, 0)
        .single()
        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_else(|| "-".into())
}

/// A file-name- and anchor-safe id for the `i`th series.
pub fn slug(i: usize, name: &str) -> String {
    format!("s{i}-{}", crate::file_safe(name))
}

pub(crate) fn db_error(path: &Path, e: impl std::fmt::Display) -> ReportError {
    ReportError::Database {
        path: path.to_owned(),
        message: e.to_string(),
    }
}

fn table_exists(conn: &Connection, name: &str) -> bool {
    conn.query_row(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1",
        [name],
        |_| Ok(()),
    )
    .optional()
    .ok()
    .flatten()
    .is_some()
}

/// Every row of `sql`, mapped; errors name the database.
fn rows<T>(
    conn: &Connection,
    db: &Path,
    sql: &str,
    map: impl FnMut(&rusqlite::Row) -> rusqlite::Result<T>,
) -> Result<Vec<T>, ReportError> {
    let mut stmt = conn.prepare(sql).map_err(|e| db_error(db, e))?;
    let mapped = stmt.query_map([], map).map_err(|e| db_error(db, e))?;
    mapped
        .collect::<rusqlite::Result<Vec<T>>>()
        .map_err(|e| db_error(db, e))
}

pub(crate) fn meta(conn: &Connection, key: &str) -> Option<String> {
    if !table_exists(conn, "oct_run") {
        return None;
    }
    conn.query_row("SELECT value FROM oct_run WHERE key = ?1", [key], |r| {
        r.get(0)
    })
    .optional()
    .ok()
    .flatten()
}

fn series_view(i: usize, s: &mut Series, interval: u64, origin: f64) -> (SeriesView, Summary) {
    let summary = s.summary();
    let note = if s.exact() {
        "Percentiles are exact (linear interpolation, as OCT computes them).".to_owned()
    } else {
        "Percentiles are from an HdrHistogram (3 significant digits).".to_owned()
    };
    let mut avg = Vec::new();
    let mut p80 = Vec::new();
    let mut p90 = Vec::new();
    let mut rows = Vec::with_capacity(s.intervals.len());
    for (start, agg) in &s.intervals {
        let m = agg.summary();
        let x = *start as f64 - origin;
        avg.push((x, m.avg));
        p80.push((x, m.p80));
        p90.push((x, m.p90));
        rows.push(IntervalView {
            start: local_time(*start as f64),
            count: m.count,
            rate: format!("{:.2}", m.count as f64 / interval as f64),
            min: latency(m.min),
            avg: latency(m.avg),
            p80: latency(m.p80),
            p90: latency(m.p90),
            p95: latency(m.p95),
            max: latency(m.max),
            stdev: m.stdev.map_or_else(|| "-".to_owned(), latency),
        });
    }
    // A true per-second rate: transactions that ended in each second, zeros included.
    let mut rate = Vec::new();
    if let (Some((&first, _)), Some((&last, _))) = (
        s.per_second.first_key_value(),
        s.per_second.last_key_value(),
    ) {
        for sec in first..=last {
            rate.push((
                sec as f64 - origin,
                *s.per_second.get(&sec).unwrap_or(&0) as f64,
            ));
        }
    }
    let raw: Vec<(f64, f64)> = s.raw.iter().map(|(e, v)| (e - origin, *v)).collect();
    let name = s.name.clone();
    let x = "elapsed time (s)";
    let view = SeriesView {
        anchor: slug(i, &name),
        response_svg: svg::lines(
            &format!("{name}: response time per {interval} s interval"),
            x,
            "seconds",
            &[
                svg::Line {
                    label: "average",
                    color: "#2b6cb0",
                    points: avg,
                },
                svg::Line {
                    label: "80th percentile",
                    color: "#dd6b20",
                    points: p80,
                },
                svg::Line {
                    label: "90th percentile",
                    color: "#c53030",
                    points: p90,
                },
            ],
        ),
        throughput_svg: svg::lines(
            &format!("{name}: throughput"),
            x,
            "transactions per second",
            &[svg::Line {
                label: "transactions/s",
                color: "#2f855a",
                points: rate,
            }],
        ),
        raw_svg: svg::scatter(
            &format!(
                "{name}: raw response times ({} of {} points)",
                s.raw.len(),
                s.count()
            ),
            x,
            "seconds",
            &raw,
            "#553c9a",
        ),
        summary: SummaryView::from(&summary),
        note,
        intervals: rows,
        name,
    };
    (view, summary)
}

fn write(path: &Path, text: &str) -> Result<(), ReportError> {
    std::fs::write(path, text).map_err(|source| ReportError::Write {
        path: path.to_owned(),
        source,
    })
}

/// Renders results.html, the SVG files and summary.json into `results_dir`; the chaos
/// schedule's fault windows, if any, shaded on every graph.
pub fn render(input: &ReportInput) -> Result<ReportOutput, ReportError> {
    let db = input.database;
    if !db.is_file() {
        return Err(db_error(db, "no such results database"));
    }
    let conn = Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|e| db_error(db, e))?;
    if !table_exists(&conn, "result") {
        return Err(db_error(db, "not a results database (no `result` table)"));
    }
    // Only our databases have fault windows, and they say when the run started.
    let origin = meta_time(&conn, "start").unwrap_or(0.0).floor();
    let faults = chaos::read(&conn, db, origin)?;
    let bands = faults.as_ref().map(|f| f.bands.clone()).unwrap_or_default();
    svg::with_bands(bands, || render_with(input, conn, faults))
}

fn render_with(
    input: &ReportInput,
    conn: Connection,
    faults: Option<chaos::Faults>,
) -> Result<ReportOutput, ReportError> {
    let db = input.database;
    let interval = input.interval_secs.max(1);
    let mut scan = Scan::run_from(&conn, interval, input.progress, input.source)
        .map_err(|e| db_error(db, e))?;
    let (start_epoch, finish_epoch) = window(&conn, &scan);
    let origin = start_epoch.unwrap_or(0.0).floor();

    let mut series = Vec::new();
    let mut summaries = Vec::new();
    if scan.all.count() > 0 {
        let (v, s) = series_view(0, &mut scan.all, interval, origin);
        series.push(v);
        summaries.push(("All transactions".to_owned(), s));
        if let Some(mut c) = arrivals::corrected(&conn, db, interval, input.source)? {
            let name = c.name.clone();
            let (v, s) = series_view(scan.timers.len() + 1, &mut c, interval, origin);
            series.push(v);
            summaries.push((name, s));
        }
        for (i, t) in scan.timers.iter_mut().enumerate() {
            let (v, s) = series_view(i + 1, t, interval, origin);
            series.push(v);
            summaries.push((t.name.clone(), s));
        }
    }

    let turrets = turrets::read(&conn, db, input.config_turrets)?;
    let (canons_svg, canons) = match turrets::canons(&conn, db, origin)? {
        Some((svg, rows)) => (Some(svg), Some(rows)),
        None => (None, None),
    };

    let arrivals = arrivals::read(&conn, db, origin)?;
    let dropped_iterations = dropped(&conn, arrivals.as_ref());
    let check_rows = checks::read(&conn, db)?;
    let counters = checks::counters(&conn, db, origin, interval)?;

    let per_turret: Vec<BreakdownView> = scan
        .turrets
        .iter()
        .map(|(name, (m, errors))| BreakdownView {
            name: name.clone(),
            count: m.count,
            errors: *errors,
            min: latency(m.min),
            avg: latency(m.mean()),
            max: latency(m.max),
        })
        .collect();
    let mut by_count: Vec<(&String, &scan::ErrorStat)> = scan.error_messages.iter().collect();
    by_count.sort_by(|a, b| b.1.count.cmp(&a.1.count).then(a.0.cmp(b.0)));
    let distinct_errors = by_count.len();
    let mut error_rows: Vec<ErrorView> = by_count
        .into_iter()
        .take(MAX_ERROR_ROWS)
        .map(|(message, e)| ErrorView {
            message: message.clone(),
            count: e.count,
            first: local_time(e.first),
            last: local_time(e.last),
        })
        .collect();
    if scan.other_errors > 0 {
        error_rows.push(ErrorView {
            message: format!(
                "(other messages: more than {} distinct ones)",
                scan::MAX_ERROR_MESSAGES
            ),
            count: scan.other_errors,
            first: "-".into(),
            last: "-".into(),
        });
    }

    let ours = table_exists(&conn, "oct_rejected");
    let rejected = if ours {
        rows(
            &conn,
            db,
            "SELECT kind, count, first_error FROM oct_rejected ORDER BY kind",
            |r| {
                Ok(RejectedView {
                    kind: r.get(0)?,
                    count: r.get::<_, i64>(1)? as u64,
                    first_error: r.get(2)?,
                })
            },
        )?
    } else {
        Vec::new()
    };
    let rejected_count: Option<u64> = ours.then(|| rejected.iter().map(|r| r.count).sum());
    let lost: Option<u64> = meta(&conn, "lost").and_then(|v| v.parse().ok());
    let lost_intervals: Option<u64> = meta(&conn, "lost_intervals").and_then(|v| v.parse().ok());
    let mut lost_text = match (ours, lost) {
        (false, _) => "unknown (database written by OCT)".to_owned(),
        (true, Some(n)) => n.to_string(),
        (true, None) => "unknown (a turret did not report its count)".to_owned(),
    };
    if let Some(n) = lost_intervals {
        lost_text.push_str(&format!(" ({n} aggregated interval(s) never received)"));
    }

    let transactions = scan.all.count();
    let run_secs = duration(start_epoch, finish_epoch);
    let outcomes = judge(
        input.thresholds,
        &mut scan,
        run_secs,
        dropped_iterations,
        &check_rows,
    );
    let (fault_views, fault_json) = match faults {
        Some(f) => (f.views, Some(f.json)),
        None => (Vec::new(), None),
    };
    let page = Page {
        title: input.title.clone(),
        css: input.css.clone(),
        version: env!("CARGO_PKG_VERSION"),
        transactions,
        errors: scan.errors,
        error_rate: if transactions > 0 {
            format!("{:.2} %", scan.errors as f64 * 100.0 / transactions as f64)
        } else {
            "-".into()
        },
        run_time: run_secs.map_or_else(|| "-".into(), |s| format!("{s:.1} s")),
        start: start_epoch.map_or_else(|| "-".into(), local_time),
        finish: finish_epoch.map_or_else(|| "-".into(), local_time),
        interval,
        rejected_total: rejected_count.map_or_else(
            || "unknown (database written by OCT)".to_owned(),
            |n| n.to_string(),
        ),
        lost: lost_text,
        results: match (scan.from_rows, scan.from_aggregates) {
            (_, 0) => None,
            (0, _) => Some(format!(
                "aggregated by the turrets per {interval} s interval: percentiles from HDR histograms (3 significant digits)"
            )),
            (rows, aggregated) => Some(format!(
                "{rows} as rows, {aggregated} aggregated by the turrets per {interval} s interval (percentiles from HDR histograms)"
            )),
        },
        turrets,
        per_turret,
        canons_svg,
        arrivals_svg: arrivals.as_ref().map(|a| a.svg.clone()),
        checks: checks::views(&check_rows),
        counters_svg: counters.as_ref().map(|c| c.0.clone()),
        series,
        errors_truncated: distinct_errors > MAX_ERROR_ROWS,
        error_rows,
        rejected,
        thresholds: outcomes.iter().map(ThresholdView::from).collect(),
        faults: fault_views,
    };
    let html = page.render()?;
    let dir = input.results_dir;
    std::fs::create_dir_all(dir).map_err(|source| ReportError::Write {
        path: dir.to_owned(),
        source,
    })?;
    let graphs = dir.join("graphs");
    std::fs::create_dir_all(&graphs).map_err(|source| ReportError::Write {
        path: graphs.clone(),
        source,
    })?;
    for s in &page.series {
        write(
            &graphs.join(format!("{}_response.svg", s.anchor)),
            &s.response_svg,
        )?;
        write(
            &graphs.join(format!("{}_throughput.svg", s.anchor)),
            &s.throughput_svg,
        )?;
        write(&graphs.join(format!("{}_raw.svg", s.anchor)), &s.raw_svg)?;
    }
    if let Some(svg) = &page.canons_svg {
        write(&graphs.join("canons.svg"), svg)?;
    }
    if let Some(svg) = &page.arrivals_svg {
        write(&graphs.join("arrivals.svg"), svg)?;
    }
    if let Some(svg) = &page.counters_svg {
        write(&graphs.join("counters.svg"), svg)?;
    }
    let html_path = dir.join("results.html");
    write(&html_path, &html)?;

    let ts = |e: Option<f64>| {
        e.and_then(|e| Local.timestamp_micros((e * 1e6) as i64).single())
            .map(|t| t.to_rfc3339())
    };
    let summary = json!({
        "title": input.title,
        "start": ts(start_epoch),
        "finish": ts(finish_epoch),
        "run_time": run_secs,
        "interval": interval,
        "transactions": transactions,
        "errors": scan.errors,
        "rejected": rejected_count,
        "lost": lost,
        "results": meta(&conn, "results").unwrap_or_else(|| "raw".into()),
        "lost_intervals": lost_intervals,
        "turrets": page.turrets.iter().map(|t| t.json.clone()).collect::<Vec<_>>(),
        "canons": canons,
        "dropped_iterations": dropped_iterations,
        "arrivals": arrivals.map(|a| a.json),
        "checks": (!check_rows.is_empty()).then(|| checks::json(&check_rows)),
        "counters": counters.map(|c| c.1),
        "chaos": fault_json,
        "thresholds": (!outcomes.is_empty()).then(|| json!({
            "passed": outcomes.iter().all(|o| o.passed),
            "results": outcomes.iter().map(Outcome::json).collect::<Vec<_>>(),
        })),
        "series": summaries.iter().map(|(name, s)| json!({
            "name": name, "count": s.count, "min": s.min, "avg": s.avg, "p50": s.p50,
            "p80": s.p80, "p90": s.p90, "p95": s.p95, "p99": s.p99, "p999": s.p999,
            "max": s.max, "stdev": s.stdev,
        })).collect::<Vec<_>>(),
    });
    let summary_path = dir.join("summary.json");
    write(
        &summary_path,
        &serde_json::to_string_pretty(&summary).unwrap_or_default(),
    )?;
    Ok(ReportOutput {
        html: html_path,
        summary_json: summary_path,
        transactions,
        thresholds: outcomes,
    })
}

/// When the run started and finished: our `oct_run`, else (OCT's databases) the first and last
/// result.
pub(crate) fn window(conn: &Connection, scan: &Scan) -> (Option<f64>, Option<f64>) {
    (
        meta_time(conn, "start").or(scan.first_epoch),
        meta_time(conn, "finish").or(scan.last_epoch),
    )
}

/// A time of `oct_run` (RFC 3339) as Unix seconds.
fn meta_time(conn: &Connection, key: &str) -> Option<f64> {
    meta(conn, key)
        .and_then(|s| chrono::DateTime::parse_from_rfc3339(&s).ok())
        .map(|t| t.timestamp_micros() as f64 / 1e6)
}

pub(crate) fn duration(start: Option<f64>, finish: Option<f64>) -> Option<f64> {
    match (start, finish) {
        (Some(a), Some(b)) if b >= a => Some(b - a),
        _ => None,
    }
}

/// The exact count is the turrets' final word (the HQ's `oct_run`); the heartbeats' last one is
/// a lower bound.
fn dropped(conn: &Connection, arrivals: Option<&arrivals::Arrivals>) -> Option<u64> {
    meta(conn, "dropped_iterations")
        .and_then(|v| v.parse().ok())
        .or_else(|| arrivals.and_then(|a| a.json["dropped"].as_u64()))
}

fn judge(
    thresholds: &Thresholds,
    scan: &mut Scan,
    duration_secs: Option<f64>,
    dropped_iterations: Option<u64>,
    checks: &[(String, u64, u64)],
) -> Vec<Outcome> {
    if thresholds.is_empty() {
        return Vec::new();
    }
    crate::gate::evaluate(
        thresholds,
        &mut Observed {
            all: &mut scan.all,
            timers: &mut scan.timers,
            errors: scan.errors,
            duration_secs,
            dropped_iterations,
            checks: (!checks.is_empty())
                .then(|| checks.iter().fold((0, 0), |(p, f), c| (p + c.1, f + c.2))),
        },
    )
}

/// The thresholds evaluated on `database` without writing a report (`oct run --no-results`).
pub fn evaluate_thresholds(
    database: &Path,
    interval_secs: u64,
    thresholds: &Thresholds,
) -> Result<Vec<Outcome>, ReportError> {
    let conn = Connection::open_with_flags(database, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|e| db_error(database, e))?;
    let mut scan =
        Scan::run(&conn, interval_secs.max(1), false).map_err(|e| db_error(database, e))?;
    let (start, finish) = window(&conn, &scan);
    let arrivals = arrivals::read(&conn, database, start.unwrap_or(0.0).floor())?;
    let dropped_iterations = dropped(&conn, arrivals.as_ref());
    let check_rows = checks::read(&conn, database)?;
    Ok(judge(
        thresholds,
        &mut scan,
        duration(start, finish),
        dropped_iterations,
        &check_rows,
    ))
}
