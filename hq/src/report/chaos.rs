//! The chaos schedule's fault windows (`oct_chaos`): listed in the report, marked as bands on
//! every graph, recorded in summary.json.

use std::path::Path;

use rusqlite::Connection;
use serde_json::{json, Value};

use super::{rows, table_exists, ReportError};

/// One fault window, as the report lists it.
pub struct FaultView {
    pub proxy: String,
    pub behavior: String,
    pub options: String,
    /// Seconds since the start of the test.
    pub from: String,
    pub to: String,
    pub calls: String,
}

pub struct Faults {
    pub views: Vec<FaultView>,
    /// (from, to) in seconds since the origin of the graphs, and a label.
    pub bands: Vec<(f64, f64, String)>,
    pub json: Value,
}

pub fn read(conn: &Connection, db: &Path, origin: f64) -> Result<Option<Faults>, ReportError> {
    if !table_exists(conn, "oct_chaos") {
        return Ok(None);
    }
    let rows = rows(
        conn,
        db,
        "SELECT proxy, behavior, options, start, finish, calls FROM oct_chaos ORDER BY start",
        |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, f64>(3)?,
                r.get::<_, f64>(4)?,
                r.get::<_, String>(5)?,
            ))
        },
    )?;
    let proxies: Option<Value> =
        super::meta(conn, "chaos_proxies").and_then(|t| serde_json::from_str(&t).ok());
    if rows.is_empty() && proxies.is_none() {
        return Ok(None);
    }
    let parse = |t: &str| serde_json::from_str::<Value>(t).unwrap_or(Value::Null);
    let mut views = Vec::new();
    let mut bands = Vec::new();
    let mut list = Vec::new();
    for (proxy, behavior, options, start, finish, calls) in rows {
        let (options, calls) = (parse(&options), parse(&calls));
        let text = |v: &Value| match v.as_object() {
            Some(m) if !m.is_empty() => m
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect::<Vec<_>>()
                .join(", "),
            _ => "-".into(),
        };
        views.push(FaultView {
            proxy: proxy.clone(),
            behavior: behavior.clone(),
            options: text(&options),
            from: format!("{:.1} s", start - origin),
            to: format!("{:.1} s", finish - origin),
            calls: text(&calls),
        });
        bands.push((
            start - origin,
            finish - origin,
            format!("{proxy}: {behavior}"),
        ));
        list.push(
            json!({"proxy": proxy, "behavior": behavior, "options": options,
            "from": start - origin, "to": finish - origin, "calls": calls}),
        );
    }
    Ok(Some(Faults {
        views,
        bands,
        json: json!({"faults": list, "proxies": proxies.unwrap_or(Value::Null)}),
    }))
}
