//! The report's workload table: OCT's `turret` table, joined with ours where the database has
//! them — what each turret sent and what was stored (`oct_turret_count`), its liveness, the
//! times it changed and its CPU flag (`oct_turret_health`) — and the graph of active canons
//! against what the shapes asked for (`oct_canons`).

use std::collections::HashMap;
use std::path::Path;

use rusqlite::Connection;
use serde_json::{json, Value};

use super::{rows, table_exists, ReportError};
use crate::config::TurretEntry;

pub(super) struct TurretView {
    pub name: String,
    pub uuid: String,
    pub cannons: String,
    pub rampup: String,
    pub script: String,
    pub status: String,
    pub updated_at: String,
    pub sent: String,
    pub stored: String,
    pub lost: String,
    pub liveness: String,
    pub changes: String,
    pub cpu: String,
    /// The same, for summary.json.
    pub json: Value,
}

struct Health {
    liveness: String,
    changes: Value,
    heartbeats: i64,
    cpu_max: f64,
    cpu_suspect: bool,
}

/// The turrets of `conn`, or those of the config when the database has none.
pub(super) fn read(
    conn: &Connection,
    db: &Path,
    config_turrets: &[TurretEntry],
) -> Result<Vec<TurretView>, ReportError> {
    let mut counts: HashMap<String, (i64, Option<i64>)> = HashMap::new();
    if table_exists(conn, "oct_turret_count") {
        for (uuid, received, sent) in rows(
            conn,
            db,
            "SELECT uuid, received, sent FROM oct_turret_count",
            |r| Ok((r.get::<_, String>(0)?, r.get(1)?, r.get(2)?)),
        )? {
            counts.insert(uuid, (received, sent));
        }
    }
    let mut health: HashMap<String, Health> = HashMap::new();
    if table_exists(conn, "oct_turret_health") {
        for (uuid, h) in rows(
            conn,
            db,
            "SELECT uuid, liveness, changes, heartbeats, cpu_max, cpu_suspect FROM oct_turret_health",
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    Health {
                        liveness: r.get(1)?,
                        changes: serde_json::from_str(&r.get::<_, String>(2)?)
                            .unwrap_or(Value::Null),
                        heartbeats: r.get(3)?,
                        cpu_max: r.get(4)?,
                        cpu_suspect: r.get(5)?,
                    },
                ))
            },
        )? {
            health.insert(uuid, h);
        }
    }
    let mut turrets = Vec::new();
    if table_exists(conn, "turret") {
        turrets = rows(
            conn,
            db,
            "SELECT name, uuid, cannons, rampup, script, status, updated_at FROM turret ORDER BY id",
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, String>(5)?,
                    r.get::<_, String>(6).unwrap_or_default(),
                ))
            },
        )?
        .into_iter()
        .map(|(name, uuid, cannons, rampup, script, status, updated_at)| {
            let count = counts.get(&uuid);
            let h = health.get(&uuid);
            view(
                [name, uuid.clone(), script, status, updated_at],
                [Some(cannons), Some(rampup)],
                count,
                h,
            )
        })
        .collect();
    }
    if turrets.is_empty() {
        turrets = config_turrets
            .iter()
            .map(|t| {
                view(
                    [
                        t.name.clone(),
                        "-".into(),
                        t.script.clone(),
                        "-".into(),
                        "-".into(),
                    ],
                    [Some(t.cannons as i64), Some(t.rampup as i64)],
                    None,
                    None,
                )
            })
            .collect();
    }
    Ok(turrets)
}

fn view(
    [name, uuid, script, status, updated_at]: [String; 5],
    [cannons, rampup]: [Option<i64>; 2],
    count: Option<&(i64, Option<i64>)>,
    health: Option<&Health>,
) -> TurretView {
    let text = |v: Option<i64>| v.map_or_else(|| "-".to_owned(), |n| n.to_string());
    let received = count.map(|c| c.0);
    let sent = count.and_then(|c| c.1);
    let lost = sent.zip(received).map(|(s, r)| (s - r).max(0));
    let changes = health
        .and_then(|h| h.changes.as_array())
        .map(|a| {
            a.iter()
                .skip_while(|c| c["state"] == "running")
                .map(|c| {
                    let at = c["at"].as_str().unwrap_or("");
                    // `2026-12-03T10:01:02.123+00:00` → `10:01:02`
                    let time = at.get(11..19).unwrap_or(at);
                    format!("{} {time}", c["state"].as_str().unwrap_or("?"))
                })
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default();
    let cpu = match health {
        Some(h) if h.heartbeats > 0 => format!(
            "{:.0} %{}",
            h.cpu_max,
            if h.cpu_suspect {
                " — suspect (CPU saturated)"
            } else {
                ""
            }
        ),
        _ => "-".into(),
    };
    let json = json!({
        "name": name, "uuid": uuid, "cannons": cannons, "rampup": rampup, "script": script,
        "status": status, "sent": sent, "received": received, "lost": lost,
        "liveness": health.map(|h| h.liveness.as_str()),
        "liveness_changes": health.map(|h| h.changes.clone()),
        "heartbeats": health.map(|h| h.heartbeats),
        "cpu_max": health.filter(|h| h.heartbeats > 0).map(|h| h.cpu_max),
        "cpu_suspect": health.map(|h| h.cpu_suspect),
    });
    TurretView {
        liveness: health.map_or_else(|| "-".to_owned(), |h| h.liveness.clone()),
        changes: if changes.is_empty() {
            "-".into()
        } else {
            changes
        },
        cpu,
        sent: text(sent),
        stored: text(received),
        lost: text(lost),
        cannons: text(cannons),
        rampup: text(rampup),
        name,
        uuid,
        script,
        status,
        updated_at,
        json,
    }
}

/// The canons graph and its `[elapsed, active, wanted]` rows.
pub(super) type Canons = (String, Vec<[f64; 3]>);

/// The canons of every turret together over the run, one point per heartbeat (each turret's
/// last sample counts until its next): the graph, and `[elapsed, active, wanted]` rows for
/// summary.json. `None` without samples.
pub(super) fn canons(
    conn: &Connection,
    db: &Path,
    origin: f64,
) -> Result<Option<Canons>, ReportError> {
    if !table_exists(conn, "oct_canons") {
        return Ok(None);
    }
    let samples = rows(
        conn,
        db,
        "SELECT uuid, epoch, active, target FROM oct_canons WHERE target IS NOT NULL ORDER BY epoch",
        |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, f64>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, i64>(3)?,
            ))
        },
    )?;
    if samples.is_empty() {
        return Ok(None);
    }
    let mut last: HashMap<String, (i64, i64)> = HashMap::new();
    let (mut active, mut wanted) = (Vec::new(), Vec::new());
    for (uuid, epoch, a, t) in samples {
        last.insert(uuid, (a, t));
        let x = epoch - origin;
        active.push((x, last.values().map(|v| v.0).sum::<i64>() as f64));
        wanted.push((x, last.values().map(|v| v.1).sum::<i64>() as f64));
    }
    let rows: Vec<[f64; 3]> = active
        .iter()
        .zip(&wanted)
        .map(|(a, w)| [(a.0 * 1000.0).round() / 1000.0, a.1, w.1])
        .collect();
    let svg = super::svg::lines(
        "Active canons (all turrets)",
        "elapsed time (s)",
        "canons",
        &[
            super::svg::Line {
                label: "wanted by the shape",
                color: "#a0aec0",
                points: wanted,
            },
            super::svg::Line {
                label: "active",
                color: "#2b6cb0",
                points: active,
            },
        ],
    );
    Ok(Some((svg, rows)))
}
