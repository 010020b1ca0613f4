//! The one pass over the `result` table that feeds every series.

use std::collections::HashMap;
use std::fmt;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use rusqlite::types::ValueRef;
use rusqlite::Connection;
use serde::de::{Deserializer, MapAccess, Visitor};

use crate::stats::Series;

pub struct Scan {
    pub all: Series,
    /// One series per custom timer, in order of first appearance.
    pub timers: Vec<Series>,
    pub errors: u64,
    pub first_epoch: Option<f64>,
    pub last_epoch: Option<f64>,
}

fn number(v: ValueRef) -> Option<f64> {
    match v {
        ValueRef::Real(x) => Some(x),
        ValueRef::Integer(i) => Some(i as f64),
        ValueRef::Text(t) => std::str::from_utf8(t).ok()?.trim().parse().ok(),
        _ => None,
    }
}

/// Calls `f(name, seconds)` for each numeric entry of a custom_timers JSON object, without
/// building a map.
fn for_each_timer(text: &str, f: &mut dyn FnMut(&str, f64)) {
    struct V<'f>(&'f mut dyn FnMut(&str, f64));
    impl<'de> Visitor<'de> for V<'_> {
        type Value = ();
        fn expecting(&self, fm: &mut fmt::Formatter) -> fmt::Result {
            fm.write_str("an object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                let v: serde_json::Value = map.next_value()?;
                let x = match &v {
                    serde_json::Value::Number(n) => n.as_f64(),
                    serde_json::Value::String(s) => s.trim().parse().ok(),
                    _ => None,
                };
                if let Some(x) = x {
                    (self.0)(&key, x);
                }
            }
            Ok(())
        }
        fn visit_unit<E>(self) -> Result<(), E> {
            Ok(())
        }
    }
    // A custom_timers text that is not a JSON object contributes no timers.
    let mut de = serde_json::Deserializer::from_str(text);
    let _ = de.deserialize_any(V(f));
}

impl Scan {
    pub fn run(conn: &Connection, interval: u64, progress: bool) -> rusqlite::Result<Scan> {
        let mut all = Series::new("All transactions", interval);
        let mut timers: Vec<Series> = Vec::new();
        let mut index: HashMap<String, usize> = HashMap::new();
        let (mut errors, mut first, mut last) = (0u64, f64::INFINITY, f64::NEG_INFINITY);
        let mut stmt =
            conn.prepare("SELECT scriptrun_time, epoch, error, custom_timers FROM result")?;
        let mut rows = stmt.query([])?;
        let tty = progress && std::io::stderr().is_terminal();
        let started = Instant::now();
        let mut next_report = started + Duration::from_secs(2);
        let mut n: u64 = 0;
        while let Some(row) = rows.next()? {
            n += 1;
            if progress && n % 65_536 == 0 && Instant::now() >= next_report {
                if tty {
                    eprint!("\roct: report: {n} rows scanned");
                } else {
                    eprintln!("oct: report: {n} rows scanned");
                }
                next_report = Instant::now() + Duration::from_secs(if tty { 1 } else { 5 });
            }
            let (Some(value), Some(epoch)) = (number(row.get_ref(0)?), number(row.get_ref(1)?))
            else {
                continue;
            };
            first = first.min(epoch);
            last = last.max(epoch);
            all.add(value, epoch);
            if let ValueRef::Text(e) = row.get_ref(2)? {
                if !e.is_empty() {
                    errors += 1;
                }
            }
            if let ValueRef::Text(t) = row.get_ref(3)? {
                if let Ok(text) = std::str::from_utf8(t) {
                    if text.len() > 2 {
                        for_each_timer(text, &mut |name, x| {
                            let i = match index.get(name) {
                                Some(i) => *i,
                                None => {
                                    index.insert(name.to_owned(), timers.len());
                                    timers.push(Series::new(name, interval));
                                    timers.len() - 1
                                }
                            };
                            timers[i].add(x, epoch);
                        });
                    }
                }
            }
        }
        if tty && n >= 65_536 {
            eprintln!("\roct: report: {n} rows scanned");
        }
        Ok(Scan {
            all,
            timers,
            errors,
            first_epoch: first.is_finite().then_some(first),
            last_epoch: last.is_finite().then_some(last),
        })
    }
}
