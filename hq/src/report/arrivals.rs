//! The open model in the report: the arrival rate asked for against the one achieved, and the
//! iterations dropped, over the run (from each heartbeat's `rate`, `started` and `dropped` in
//! `oct_canons`); and the latencies measured from when each iteration was due (`oct_lag`), free
//! of coordinated omission.

use std::collections::HashMap;
use std::path::Path;

use rusqlite::Connection;
use serde_json::{json, Value};

use protocol::aggregate::Kind;

use super::aggregates::Source;
use super::{rows, table_exists, ReportError};
use crate::stats::Series;

/// The arrival-rate graph and what summary.json says of it.
pub(super) struct Arrivals {
    pub svg: String,
    /// `{started, dropped, per_second: [[elapsed, wanted, started, dropped], …]}`.
    pub json: Value,
}

/// `None` when no heartbeat carried an arrival rate (a closed-model test, an OCT database).
pub(super) fn read(
    conn: &Connection,
    db: &Path,
    origin: f64,
) -> Result<Option<Arrivals>, ReportError> {
    if !has_column(conn, "oct_canons", "rate") {
        return Ok(None);
    }
    let samples = rows(
        conn,
        db,
        "SELECT uuid, epoch, rate, started, dropped FROM oct_canons WHERE rate IS NOT NULL ORDER BY epoch",
        |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, f64>(1)?,
                r.get::<_, f64>(2)?,
                r.get::<_, i64>(3)? as f64,
                r.get::<_, i64>(4)? as f64,
            ))
        },
    )?;
    if samples.is_empty() {
        return Ok(None);
    }
    // Per turret, rates between its consecutive heartbeats; summed over turrets at each
    // sample (a turret's last figures count until its next heartbeat).
    struct Last {
        epoch: f64,
        rate: f64,
        started: f64,
        dropped: f64,
        started_per_s: f64,
        dropped_per_s: f64,
    }
    let mut last: HashMap<String, Last> = HashMap::new();
    let (mut wanted, mut started, mut dropped) = (Vec::new(), Vec::new(), Vec::new());
    let mut table = Vec::new();
    for (uuid, epoch, rate, s, d) in samples {
        let (sps, dps) = match last.get(&uuid) {
            Some(p) if epoch > p.epoch => (
                (s - p.started) / (epoch - p.epoch),
                (d - p.dropped) / (epoch - p.epoch),
            ),
            _ => (0.0, 0.0),
        };
        last.insert(
            uuid,
            Last {
                epoch,
                rate,
                started: s,
                dropped: d,
                started_per_s: sps,
                dropped_per_s: dps,
            },
        );
        let x = epoch - origin;
        let sum = |f: fn(&Last) -> f64| last.values().map(f).sum::<f64>();
        let row = [
            (x * 1000.0).round() / 1000.0,
            round1(sum(|l| l.rate)),
            round1(sum(|l| l.started_per_s)),
            round1(sum(|l| l.dropped_per_s)),
        ];
        wanted.push((x, row[1]));
        started.push((x, row[2]));
        dropped.push((x, row[3]));
        table.push(row);
    }
    let total = |f: fn(&Last) -> f64| last.values().map(f).sum::<f64>() as u64;
    let svg = super::svg::lines(
        "Arrival rate (all turrets)",
        "elapsed time (s)",
        "iterations / s",
        &[
            super::svg::Line {
                label: "wanted by the schedule",
                color: "#a0aec0",
                points: wanted,
            },
            super::svg::Line {
                label: "started",
                color: "#2b6cb0",
                points: started,
            },
            super::svg::Line {
                label: "dropped (no canon free)",
                color: "#c53030",
                points: dropped,
            },
        ],
    );
    Ok(Some(Arrivals {
        svg,
        json: json!({
            "started": total(|l| l.started),
            "dropped": total(|l| l.dropped),
            "per_second": table,
        }),
    }))
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

fn has_column(conn: &Connection, table: &str, column: &str) -> bool {
    table_exists(conn, table)
        && conn
            .prepare(&format!("SELECT {column} FROM {table} LIMIT 0"))
            .is_ok()
}

/// Every open-model result's latency from when it was due (`scriptrun_time + lag`), as a
/// series of its own; `None` when no result has a lag.
pub(super) fn corrected(
    conn: &Connection,
    db: &Path,
    interval: u64,
    source: Source,
) -> Result<Option<Series>, ReportError> {
    let mut series = Series::new(
        "All transactions, from when they were due (corrected for coordinated omission)",
        interval,
    );
    let (raw, aggregates) = source.tables(conn);
    if aggregates {
        super::aggregates::each(conn, Some(Kind::Corrected), &mut |row| {
            series.add_delta(&row.delta())
        })
        .map_err(|e| super::db_error(db, e))?;
    }
    if !raw || !table_exists(conn, "oct_lag") {
        return Ok((series.count() > 0).then_some(series));
    }
    let mut stmt = conn
        .prepare("SELECT r.scriptrun_time + l.lag, r.epoch FROM oct_lag l JOIN result r ON r.id = l.result_id ORDER BY r.id")
        .map_err(|e| super::db_error(db, e))?;
    let mut q = stmt.query([]).map_err(|e| super::db_error(db, e))?;
    while let Some(r) = q.next().map_err(|e| super::db_error(db, e))? {
        let (v, epoch): (f64, f64) = (
            r.get(0).map_err(|e| super::db_error(db, e))?,
            r.get(1).map_err(|e| super::db_error(db, e))?,
        );
        series.add(v, epoch);
    }
    Ok((series.count() > 0).then_some(series))
}
