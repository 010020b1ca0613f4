//! Test data (feeders) a turret entry states — `"data": {"users": {"file": "data/users.csv",
//! "mode": "unique", "on_exhausted": "stop"}}` — and the CSV files they name, read the same by
//! the HQ (which checks them before anything starts) and by the turret (which serves their rows
//! to canons).

use std::path::Path;

use serde_json::Value;

use crate::shape::ShapeError;

/// How a feeder hands out its rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// In file order, one row per `next()`, shared by the canons of a turret.
    Sequential,
    /// Any row, each time.
    Random,
    /// Never the same row twice in the whole test: turret `i` of `n` takes rows `i`, `i + n`, …,
    /// and its canons share that part.
    Unique,
}

/// What a feeder does once every row was handed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exhausted {
    /// `next()` returns nothing and every canon stops after its iteration: the turret is done.
    Stop,
    /// Start again from the first row.
    Recycle,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DataSpec {
    pub name: String,
    /// As written: relative to the config's folder.
    pub file: String,
    pub mode: Mode,
    pub on_exhausted: Exhausted,
}

/// A CSV file: the header row names the fields.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Table {
    pub fields: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

fn bad(key: String, why: impl Into<String>) -> ShapeError {
    ShapeError {
        key,
        why: why.into(),
    }
}

/// Reads a `data` object; `key` names it in errors (e.g. `turrets[0].data`).
pub fn specs(v: &Value, key: &str) -> Result<Vec<DataSpec>, ShapeError> {
    let Value::Object(map) = v else {
        return Err(bad(
            key.to_owned(),
            "must map names to {\"file\": \"….csv\"}",
        ));
    };
    map.iter()
        .map(|(name, spec)| {
            let k = format!("{key}.{name}");
            let Value::Object(o) = spec else {
                return Err(bad(k, "must be {\"file\": \"….csv\", \"mode\": …}"));
            };
            for field in o.keys() {
                if !["file", "mode", "on_exhausted"].contains(&field.as_str()) {
                    return Err(bad(
                        format!("{k}.{field}"),
                        "is not a key of a feeder (file, mode, on_exhausted)",
                    ));
                }
            }
            let file = match o.get("file") {
                Some(Value::String(f)) if !f.is_empty() => f.clone(),
                Some(other) => {
                    return Err(bad(
                        format!("{k}.file"),
                        format!("must be the path of a CSV file, got {other}"),
                    ))
                }
                None => return Err(bad(format!("{k}.file"), "is missing")),
            };
            let mode = match o.get("mode").map(|m| m.as_str()) {
                None | Some(Some("sequential")) => Mode::Sequential,
                Some(Some("random")) => Mode::Random,
                Some(Some("unique")) => Mode::Unique,
                Some(_) => {
                    return Err(bad(
                        format!("{k}.mode"),
                        format!("must be sequential, random or unique, got {}", o["mode"]),
                    ))
                }
            };
            let on_exhausted = match o.get("on_exhausted").map(|m| m.as_str()) {
                None if mode == Mode::Unique => Exhausted::Stop,
                None | Some(Some("recycle")) => Exhausted::Recycle,
                Some(Some("stop")) => Exhausted::Stop,
                Some(_) => {
                    return Err(bad(
                        format!("{k}.on_exhausted"),
                        format!("must be stop or recycle, got {}", o["on_exhausted"]),
                    ))
                }
            };
            Ok(DataSpec {
                name: name.clone(),
                file,
                mode,
                on_exhausted,
            })
        })
        .collect()
}

/// Reads a CSV file (UTF-8, quoted fields, a header row). Errors are one line naming the file
/// and, for a bad row, its line.
pub fn load(path: &Path) -> Result<Table, String> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_path(path)
        .map_err(|e| format!("{}: {}", path.display(), io_text(&e)))?;
    let fields: Vec<String> = reader
        .headers()
        .map_err(|e| row_error(path, &e))?
        .iter()
        .map(str::to_owned)
        .collect();
    if fields.is_empty() || fields.iter().all(String::is_empty) {
        return Err(format!(
            "{}: no header row naming the fields",
            path.display()
        ));
    }
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| row_error(path, &e))?;
        rows.push(record.iter().map(str::to_owned).collect());
    }
    if rows.is_empty() {
        return Err(format!("{}: no rows below the header", path.display()));
    }
    Ok(Table { fields, rows })
}

fn io_text(e: &csv::Error) -> String {
    match e.kind() {
        csv::ErrorKind::Io(io) => io.to_string(),
        _ => e.to_string(),
    }
}

fn row_error(path: &Path, e: &csv::Error) -> String {
    let line = e.position().map_or(0, |p| p.line());
    match e.kind() {
        csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => format!(
            "{}: line {line}: {len} fields where the header has {expected_len}",
            path.display()
        ),
        csv::ErrorKind::Utf8 { .. } => format!("{}: line {line}: not UTF-8", path.display()),
        _ => format!("{}: {}", path.display(), io_text(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn specs_take_defaults_and_name_bad_keys() {
        let s = specs(
            &json!({"users": {"file": "u.csv", "mode": "unique"}, "items": {"file": "i.csv"}}),
            "data",
        )
        .unwrap();
        let by = |n: &str| s.iter().find(|d| d.name == n).unwrap();
        assert_eq!(
            (by("items").mode, by("items").on_exhausted),
            (Mode::Sequential, Exhausted::Recycle)
        );
        assert_eq!(
            (by("users").mode, by("users").on_exhausted),
            (Mode::Unique, Exhausted::Stop)
        );
        let e = |v| specs(&v, "turrets[0].data").unwrap_err().to_string();
        assert_eq!(
            e(json!({"u": {"file": "u.csv", "mode": "shuffled"}})),
            "`turrets[0].data.u.mode` must be sequential, random or unique, got \"shuffled\""
        );
        assert_eq!(
            e(json!({"u": {"mode": "random"}})),
            "`turrets[0].data.u.file` is missing"
        );
        assert_eq!(
            e(json!({"u": {"file": "u.csv", "loop": true}})),
            "`turrets[0].data.u.loop` is not a key of a feeder (file, mode, on_exhausted)"
        );
    }

    #[test]
    fn csv_files_load_with_quotes_and_ragged_rows_name_their_line() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("u.csv");
        std::fs::write(&good, "login,password\nbob,\"s3,cret\"\n\"zoë\",x\n").unwrap();
        let t = load(&good).unwrap();
        assert_eq!(t.fields, ["login", "password"]);
        assert_eq!(t.rows, [vec!["bob", "s3,cret"], vec!["zoë", "x"]]);
        let ragged = dir.path().join("r.csv");
        std::fs::write(&ragged, "a,b\n1,2\n3\n").unwrap();
        assert_eq!(
            load(&ragged).unwrap_err(),
            format!(
                "{}: line 3: 1 fields where the header has 2",
                ragged.display()
            )
        );
        let missing = dir.path().join("none.csv");
        assert!(load(&missing)
            .unwrap_err()
            .starts_with(&format!("{}: No such file", missing.display())));
    }
}
