//! `oct results-to-csv`: OCT's CSV export of a results.sqlite — its header labels, one row per
//! result in id order, one column per custom timer (in order of first appearance), CRLF line
//! ends, numbers as Python writes them.

use std::collections::HashMap;
use std::io::{BufWriter, Write};
use std::path::Path;

use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags};

#[derive(Debug, thiserror::Error)]
pub enum CsvError {
    #[error("{path}: {message}")]
    Database { path: String, message: String },
    #[error("{path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error("-d/--delimiter must be one character, got {0:?}")]
    Delimiter(String),
}

/// A float as Python's `repr` writes it: shortest round-trip digits, `.0` on whole numbers,
/// exponent form below 1e-4 and from 1e16 (`1e-05`, `1.5e+16`).
pub fn py_float(x: f64) -> String {
    if x.is_nan() {
        return "nan".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "inf".into() } else { "-inf".into() };
    }
    let a = x.abs();
    if a == 0.0 || (1e-4..1e16).contains(&a) {
        let s = format!("{x}");
        if s.contains('.') {
            s
        } else {
            format!("{s}.0")
        }
    } else {
        let s = format!("{x:e}");
        let (mantissa, exp) = s.split_once('e').unwrap_or((&s, "0"));
        let exp: i32 = exp.parse().unwrap_or(0);
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exp.abs())
    }
}

fn cell(v: ValueRef) -> String {
    match v {
        ValueRef::Null => String::new(),
        ValueRef::Integer(i) => i.to_string(),
        ValueRef::Real(x) => py_float(x),
        ValueRef::Text(t) => String::from_utf8_lossy(t).into_owned(),
        ValueRef::Blob(b) => String::from_utf8_lossy(b).into_owned(),
    }
}

/// Python csv's QUOTE_MINIMAL.
fn quote(field: &str, delimiter: char) -> String {
    if field.contains(delimiter)
        || field.contains('"')
        || field.contains('\n')
        || field.contains('\r')
    {
        format!("\"{}\"", field.replace('"', "\"\""))
    } else {
        field.to_owned()
    }
}

fn timers_of(text: &str) -> Vec<(String, String)> {
    match serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(text) {
        Ok(map) => map
            .into_iter()
            .map(|(k, v)| {
                let s = match v {
                    serde_json::Value::Number(n) => n.as_f64().map(py_float).unwrap_or_default(),
                    serde_json::Value::String(s) => s,
                    serde_json::Value::Null => String::new(),
                    other => other.to_string(),
                };
                (k, s)
            })
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// Writes the CSV; returns the number of rows.
pub fn export(database: &Path, out: &Path, delimiter: &str) -> Result<u64, CsvError> {
    let mut chars = delimiter.chars();
    let d = match (chars.next(), chars.next()) {
        (Some(c), None) => c,
        _ => return Err(CsvError::Delimiter(delimiter.to_owned())),
    };
    let db_err = |e: &dyn std::fmt::Display| CsvError::Database {
        path: database.display().to_string(),
        message: e.to_string(),
    };
    if !database.is_file() {
        return Err(db_err(&"no such results database"));
    }
    let conn = Connection::open_with_flags(database, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|e| db_err(&e))?;
    // A run of `"results": "aggregate"` has no row per transaction to export.
    let aggregated = conn
        .query_row(
            "SELECT (SELECT count(*) FROM oct_agg) > 0 AND NOT EXISTS (SELECT 1 FROM result)",
            [],
            |r| r.get::<_, bool>(0),
        )
        .unwrap_or(false);
    if aggregated {
        return Err(db_err(
            &"holds aggregates (\"results\": \"aggregate\"), not one row per transaction: there is nothing to export as CSV; the report has the figures",
        ));
    }
    // First pass: the timer columns, in order of first appearance.
    let mut names: Vec<String> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    {
        let mut stmt = conn
            .prepare("SELECT custom_timers FROM result ORDER BY id")
            .map_err(|e| db_err(&e))?;
        let mut rows = stmt.query([]).map_err(|e| db_err(&e))?;
        while let Some(row) = rows.next().map_err(|e| db_err(&e))? {
            if let ValueRef::Text(t) = row.get_ref(0).map_err(|e| db_err(&e))? {
                for (k, _) in timers_of(&String::from_utf8_lossy(t)) {
                    if !index.contains_key(&k) {
                        index.insert(k.clone(), names.len());
                        names.push(k);
                    }
                }
            }
        }
    }
    let werr = |source| CsvError::Write {
        path: out.display().to_string(),
        source,
    };
    let file = std::fs::File::create(out).map_err(werr)?;
    let mut w = BufWriter::new(file);
    let sep = d.to_string();
    let mut header = vec![
        "elapsed time".to_owned(),
        "epoch (in seconds)".to_owned(),
        "turret name".to_owned(),
        "transaction time".to_owned(),
        "error".to_owned(),
    ];
    header.extend(names.iter().cloned());
    let header: Vec<String> = header.iter().map(|h| quote(h, d)).collect();
    write!(w, "{}\r\n", header.join(&sep)).map_err(werr)?;
    let mut stmt = conn
        .prepare("SELECT elapsed, epoch, turret_name, scriptrun_time, error, custom_timers FROM result ORDER BY id")
        .map_err(|e| db_err(&e))?;
    let mut rows = stmt.query([]).map_err(|e| db_err(&e))?;
    let mut n = 0u64;
    let mut timer_cells = vec![String::new(); names.len()];
    while let Some(row) = rows.next().map_err(|e| db_err(&e))? {
        let mut fields = Vec::with_capacity(5 + names.len());
        for i in 0..5 {
            fields.push(quote(&cell(row.get_ref(i).map_err(|e| db_err(&e))?), d));
        }
        timer_cells.iter_mut().for_each(String::clear);
        if let ValueRef::Text(t) = row.get_ref(5).map_err(|e| db_err(&e))? {
            for (k, v) in timers_of(&String::from_utf8_lossy(t)) {
                if let Some(i) = index.get(&k) {
                    timer_cells[*i] = v;
                }
            }
        }
        fields.extend(timer_cells.iter().map(|c| quote(c, d)));
        write!(w, "{}\r\n", fields.join(&sep)).map_err(werr)?;
        n += 1;
    }
    w.flush().map_err(werr)?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_look_like_python() {
        for (x, want) in [
            (1795305491.0, "1795305491.0"),
            (0.10273146629333496, "0.10273146629333496"),
            (0.0, "0.0"),
            (1e-05, "1e-05"),
            (0.0001, "0.0001"),
            (1.5e16, "1.5e+16"),
            (-2.5, "-2.5"),
            (123456789.125, "123456789.125"),
        ] {
            assert_eq!(py_float(x), want, "{x}");
        }
    }

    #[test]
    fn quoting_is_minimal() {
        assert_eq!(quote("a;b", ';'), "\"a;b\"");
        assert_eq!(quote("say \"hi\"", ';'), "\"say \"\"hi\"\"\"");
        assert_eq!(quote("plain", ';'), "plain");
    }
}
