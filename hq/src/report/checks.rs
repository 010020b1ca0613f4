//! The scripts' own figures in the report: `check()` outcomes (`oct_checks`: passed and failed
//! per check over the run) and `oct.counter()` totals (`oct_counters`: the amount added per
//! second, summed here per interval and graphed).

use std::collections::BTreeMap;
use std::path::Path;

use rusqlite::Connection;
use serde_json::{json, Value};

use super::{rows, table_exists, ReportError};

pub(super) struct CheckView {
    pub name: String,
    pub passed: u64,
    pub failed: u64,
    pub rate: String,
}

/// Every check by name; empty for a run without any (or a database of OCT's).
pub(crate) fn read(conn: &Connection, db: &Path) -> Result<Vec<(String, u64, u64)>, ReportError> {
    if !table_exists(conn, "oct_checks") {
        return Ok(Vec::new());
    }
    rows(
        conn,
        db,
        "SELECT name, passed, failed FROM oct_checks ORDER BY name",
        |r| {
            Ok((
                r.get(0)?,
                r.get::<_, i64>(1)? as u64,
                r.get::<_, i64>(2)? as u64,
            ))
        },
    )
}

pub(super) fn views(checks: &[(String, u64, u64)]) -> Vec<CheckView> {
    checks
        .iter()
        .map(|(name, passed, failed)| CheckView {
            name: name.clone(),
            passed: *passed,
            failed: *failed,
            rate: format!(
                "{:.2} %",
                *passed as f64 * 100.0 / (passed + failed).max(1) as f64
            ),
        })
        .collect()
}

pub(super) fn json(checks: &[(String, u64, u64)]) -> Value {
    Value::Array(
        checks
            .iter()
            .map(|(name, passed, failed)| {
                json!({"name": name, "passed": passed, "failed": failed,
                       "rate": *passed as f64 / (passed + failed).max(1) as f64})
            })
            .collect(),
    )
}

/// The counters graph (amount added per interval, one line each) and summary.json's
/// `{name: {"total": n, "per_interval": [[elapsed, amount], …]}}`; `None` without counters.
pub(super) fn counters(
    conn: &Connection,
    db: &Path,
    origin: f64,
    interval: u64,
) -> Result<Option<(String, Value)>, ReportError> {
    if !table_exists(conn, "oct_counters") {
        return Ok(None);
    }
    let samples = rows(
        conn,
        db,
        "SELECT name, second, value FROM oct_counters ORDER BY name, second",
        |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, f64>(2)?,
            ))
        },
    )?;
    if samples.is_empty() {
        return Ok(None);
    }
    let step = interval.max(1) as i64;
    let mut by_name: BTreeMap<String, BTreeMap<i64, f64>> = BTreeMap::new();
    for (name, second, value) in samples {
        *by_name
            .entry(name)
            .or_default()
            .entry(second.div_euclid(step) * step)
            .or_default() += value;
    }
    const COLORS: [&str; 6] = [
        "#2b6cb0", "#c05621", "#2f855a", "#6b46c1", "#c53030", "#4a5568",
    ];
    let lines: Vec<super::svg::Line> = by_name
        .iter()
        .enumerate()
        .map(|(i, (name, bins))| super::svg::Line {
            label: name,
            color: COLORS[i % COLORS.len()],
            points: bins
                .iter()
                .map(|(at, v)| (*at as f64 - origin, *v))
                .collect(),
        })
        .collect();
    let svg = super::svg::lines(
        &format!("Counters per {interval} s interval"),
        "elapsed time (s)",
        "amount",
        &lines,
    );
    let json: serde_json::Map<String, Value> = by_name
        .iter()
        .map(|(name, bins)| {
            (
                name.clone(),
                json!({
                    "total": bins.values().sum::<f64>(),
                    "per_interval": bins.iter().map(|(at, v)| [*at as f64 - origin, *v]).collect::<Vec<_>>(),
                }),
            )
        })
        .collect();
    Ok(Some((svg, Value::Object(json))))
}
