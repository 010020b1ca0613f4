//! Runs after the fact: `oct history` (every run under `PROJECT/results/`, newest first) and
//! `oct compare` (two runs side by side, regressions beyond a tolerance). Both read a run as a
//! [`Digest`]: one streaming pass over its results.sqlite (ours or OCT's), the same scan the
//! report makes.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags};

use crate::report::scan::Scan;
use crate::report::{db_error, duration, meta, window, ReportError};
use crate::stats::{latency, Series};

/// One series of a run.
#[derive(Debug, Clone)]
pub struct SeriesDigest {
    pub name: String,
    pub count: u64,
    pub rps: Option<f64>,
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    /// (seconds since the start, average) per interval, for the overlaid graphs.
    pub intervals: Vec<(f64, f64)>,
}

/// What `history` and `compare` know of a run.
#[derive(Debug, Clone)]
pub struct Digest {
    pub database: PathBuf,
    pub start: Option<f64>,
    pub duration_secs: Option<f64>,
    pub transactions: u64,
    pub errors: u64,
    /// `All transactions` first, then the custom timers.
    pub series: Vec<SeriesDigest>,
    /// The gate's verdict, when the run had thresholds (`oct_run.gate`).
    pub gate: Option<bool>,
}

impl Digest {
    pub fn error_rate(&self) -> f64 {
        self.errors as f64 / self.transactions.max(1) as f64
    }

    pub fn read(database: &Path, interval_secs: u64) -> Result<Digest, ReportError> {
        if !database.is_file() {
            return Err(db_error(database, "no such results database"));
        }
        let conn = Connection::open_with_flags(database, OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(|e| db_error(database, e))?;
        let mut scan =
            Scan::run(&conn, interval_secs.max(1), false).map_err(|e| db_error(database, e))?;
        let (start, finish) = window(&conn, &scan);
        let secs = duration(start, finish);
        let origin = start.unwrap_or(0.0);
        let digest = |s: &mut Series| {
            let intervals = s
                .intervals
                .iter()
                .map(|(at, i)| (*at as f64 - origin.floor(), i.moments.mean()))
                .collect();
            SeriesDigest {
                name: s.name.clone(),
                count: s.count(),
                rps: secs.filter(|d| *d > 0.0).map(|d| s.count() as f64 / d),
                p50: s.quantile(0.5),
                p95: s.quantile(0.95),
                p99: s.quantile(0.99),
                intervals,
            }
        };
        let mut series = vec![digest(&mut scan.all)];
        for t in &mut scan.timers {
            series.push(digest(t));
        }
        Ok(Digest {
            database: database.to_owned(),
            start,
            duration_secs: secs,
            transactions: scan.all.count(),
            errors: scan.errors,
            series,
            gate: meta(&conn, "gate").map(|g| g == "passed"),
        })
    }
}

/// Records the gate's verdict in the run's own table, for `oct history`.
pub fn record_gate(database: &Path, passed: bool) -> Result<(), ReportError> {
    let conn = Connection::open(database).map_err(|e| db_error(database, e))?;
    conn.execute(
        "INSERT OR REPLACE INTO oct_run (key, value) VALUES ('gate', ?1)",
        [if passed { "passed" } else { "failed" }],
    )
    .map_err(|e| db_error(database, e))?;
    Ok(())
}

/// The result folders under `project/results/` (ours and OCT's: any folder holding a
/// results.sqlite), newest first by name (OCT's and ours are named by date).
pub fn runs(project: &Path) -> Result<Vec<PathBuf>, ReportError> {
    let dir = project.join("results");
    let entries = std::fs::read_dir(&dir).map_err(|e| db_error(&dir, e))?;
    let mut runs: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.join("results.sqlite").is_file())
        .collect();
    runs.sort_by(|a, b| b.file_name().cmp(&a.file_name()));
    Ok(runs)
}

/// `last` is the newest run of `project`, `last~1` the one before; anything else a result
/// folder or a results.sqlite.
pub fn resolve(spec: &str, project: &Path) -> Result<PathBuf, ReportError> {
    let back = match spec {
        "last" => Some(0),
        s => s
            .strip_prefix("last~")
            .and_then(|n| n.parse::<usize>().ok()),
    };
    if let Some(back) = back {
        let runs = runs(project)?;
        return runs
            .get(back)
            .map(|r| r.join("results.sqlite"))
            .ok_or_else(|| {
                db_error(
                    &project.join("results"),
                    format!("`{spec}`: there are only {} run(s) here", runs.len()),
                )
            });
    }
    let path = PathBuf::from(spec);
    if path.is_dir() {
        Ok(path.join("results.sqlite"))
    } else {
        Ok(path)
    }
}

/// `oct history`'s table, newest first.
pub fn history_table(project: &Path, interval_secs: u64) -> Result<String, ReportError> {
    let runs = runs(project)?;
    let mut rows = vec![[
        "run".to_owned(),
        "date".to_owned(),
        "duration".to_owned(),
        "transactions".to_owned(),
        "rps".to_owned(),
        "p95".to_owned(),
        "errors".to_owned(),
        "gate".to_owned(),
    ]];
    for run in &runs {
        let d = Digest::read(&run.join("results.sqlite"), interval_secs)?;
        let all = &d.series[0];
        rows.push([
            run.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            d.start
                .and_then(|s| chrono::DateTime::from_timestamp_micros((s * 1e6) as i64))
                .map(|t| {
                    t.with_timezone(&chrono::Local)
                        .format("%Y-%m-%d %H:%M:%S")
                        .to_string()
                })
                .unwrap_or_else(|| "-".into()),
            d.duration_secs
                .map_or_else(|| "-".into(), |s| format!("{s:.1} s")),
            d.transactions.to_string(),
            all.rps.map_or_else(|| "-".into(), |r| format!("{r:.1}")),
            if all.count > 0 {
                latency(all.p95)
            } else {
                "-".into()
            },
            format!("{:.2} %", d.error_rate() * 100.0),
            match d.gate {
                Some(true) => "✓ passed".into(),
                Some(false) => "✗ failed".into(),
                None => "-".into(),
            },
        ]);
    }
    Ok(columns(&rows))
}

/// Rows as aligned columns, the first left-aligned, the rest right-aligned.
pub fn columns<const N: usize>(rows: &[[String; N]]) -> String {
    let mut widths = [0usize; N];
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    for r in rows {
        let cells: Vec<String> = r
            .iter()
            .zip(widths)
            .enumerate()
            .map(|(i, (c, w))| {
                let pad = " ".repeat(w - c.chars().count());
                if i == 0 {
                    format!("{c}{pad}")
                } else {
                    format!("{pad}{c}")
                }
            })
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}
