//! The one pass over the `result` table that feeds every series.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use rusqlite::types::ValueRef;
use rusqlite::Connection;
use serde::de::{Deserializer, MapAccess, Visitor};

use protocol::aggregate::Kind;

use super::aggregates::{self, Source};
use crate::stats::{Moments, Series};

/// Distinct error messages tracked at most; the rest are counted together.
pub const MAX_ERROR_MESSAGES: usize = 10_000;

pub struct ErrorStat {
    pub count: u64,
    pub first: f64,
    pub last: f64,
}

pub struct Scan {
    /// turret_name → (scriptrun_time moments, errors), by name.
    pub turrets: BTreeMap<String, (Moments, u64)>,
    /// Error message → count and first/last epoch.
    pub error_messages: HashMap<String, ErrorStat>,
    /// Errors past [`MAX_ERROR_MESSAGES`] distinct messages.
    pub other_errors: u64,
    pub all: Series,
    /// One series per custom timer, in order of first appearance.
    pub timers: Vec<Series>,
    pub errors: u64,
    pub first_epoch: Option<f64>,
    pub last_epoch: Option<f64>,
    /// Transactions read from OCT's rows, and from the turrets' aggregates.
    pub from_rows: u64,
    pub from_aggregates: u64,
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
                if let Lenient(Some(x)) = map.next_value()? {
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

/// A timer value: a number, or a numeric string; anything else is skipped without allocating.
struct Lenient(Option<f64>);

impl<'de> serde::Deserialize<'de> for Lenient {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct N;
        impl<'de> Visitor<'de> for N {
            type Value = Lenient;
            fn expecting(&self, fm: &mut fmt::Formatter) -> fmt::Result {
                fm.write_str("a number")
            }
            fn visit_f64<E>(self, v: f64) -> Result<Lenient, E> {
                Ok(Lenient(Some(v)))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Lenient, E> {
                Ok(Lenient(Some(v as f64)))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Lenient, E> {
                Ok(Lenient(Some(v as f64)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Lenient, E> {
                Ok(Lenient(v.trim().parse().ok()))
            }
            fn visit_unit<E>(self) -> Result<Lenient, E> {
                Ok(Lenient(None))
            }
            fn visit_bool<E>(self, _: bool) -> Result<Lenient, E> {
                Ok(Lenient(None))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut a: A,
            ) -> Result<Lenient, A::Error> {
                while a.next_element::<serde::de::IgnoredAny>()?.is_some() {}
                Ok(Lenient(None))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Lenient, A::Error> {
                while a
                    .next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?
                    .is_some()
                {}
                Ok(Lenient(None))
            }
        }
        d.deserialize_any(N)
    }
}

impl Scan {
    /// Every transaction of the database: OCT's rows and the turrets' aggregates
    /// ([`Source::Auto`]).
    pub fn run(conn: &Connection, interval: u64, progress: bool) -> rusqlite::Result<Scan> {
        Scan::run_from(conn, interval, progress, Source::Auto)
    }

    pub fn run_from(
        conn: &Connection,
        interval: u64,
        progress: bool,
        source: Source,
    ) -> rusqlite::Result<Scan> {
        let (raw, aggregates) = source.tables(conn);
        let mut all = Series::new("All transactions", interval);
        let mut timers: Vec<Series> = Vec::new();
        let mut index: HashMap<String, usize> = HashMap::new();
        let mut turrets: BTreeMap<String, (Moments, u64)> = BTreeMap::new();
        let mut error_messages: HashMap<String, ErrorStat> = HashMap::new();
        let mut other_errors = 0u64;
        let (mut errors, mut first, mut last) = (0u64, f64::INFINITY, f64::NEG_INFINITY);
        let mut stmt = conn.prepare(if raw {
            "SELECT scriptrun_time, epoch, error, custom_timers, turret_name FROM result"
        } else {
            "SELECT scriptrun_time, epoch, error, custom_timers, turret_name FROM result LIMIT 0"
        })?;
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
            let mut failed = false;
            if let ValueRef::Text(e) = row.get_ref(2)? {
                if !e.is_empty() {
                    failed = true;
                    errors += 1;
                    let msg = String::from_utf8_lossy(e);
                    let room = error_messages.len() < MAX_ERROR_MESSAGES;
                    match error_messages.get_mut(msg.as_ref()) {
                        Some(stat) => {
                            stat.count += 1;
                            stat.first = stat.first.min(epoch);
                            stat.last = stat.last.max(epoch);
                        }
                        None if room => {
                            error_messages.insert(
                                msg.into_owned(),
                                ErrorStat {
                                    count: 1,
                                    first: epoch,
                                    last: epoch,
                                },
                            );
                        }
                        None => other_errors += 1,
                    }
                }
            }
            let turret = match row.get_ref(4)? {
                ValueRef::Text(t) => String::from_utf8_lossy(t),
                _ => std::borrow::Cow::Borrowed(""),
            };
            let entry = match turrets.get_mut(turret.as_ref()) {
                Some(e) => e,
                None => turrets.entry(turret.into_owned()).or_default(),
            };
            entry.0.add(value);
            entry.1 += failed as u64;
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
        let rows_count = all.count();
        if aggregates {
            aggregates::each(conn, None, &mut |row| match row.kind {
                Kind::Transaction => {
                    all.add_delta(&row.delta());
                    errors += row.errors;
                    first = first.min(row.first);
                    last = last.max(row.last);
                    let entry = turrets.entry(row.turret.clone()).or_default();
                    entry.0.merge(&row.moments);
                    entry.1 += row.errors;
                }
                Kind::Timer => {
                    let i = *index.entry(row.name.clone()).or_insert_with(|| {
                        timers.push(Series::new(&row.name, interval));
                        timers.len() - 1
                    });
                    timers[i].add_delta(&row.delta());
                }
                // The open model's corrected latencies are the arrivals' (report::arrivals).
                Kind::Corrected => {}
            })?;
            aggregates::each_error(conn, &mut |message, count, first, last| {
                if message.is_empty() {
                    other_errors += count;
                    return;
                }
                let room = error_messages.len() < MAX_ERROR_MESSAGES;
                match error_messages.get_mut(message) {
                    Some(stat) => {
                        stat.count += count;
                        stat.first = stat.first.min(first);
                        stat.last = stat.last.max(last);
                    }
                    None if room => {
                        let stat = ErrorStat { count, first, last };
                        error_messages.insert(message.to_owned(), stat);
                    }
                    None => other_errors += count,
                }
            })?;
        }
        let from_aggregates = all.count() - rows_count;
        Ok(Scan {
            from_rows: rows_count,
            from_aggregates,
            turrets,
            error_messages,
            other_errors,
            all,
            timers,
            errors,
            first_epoch: first.is_finite().then_some(first),
            last_epoch: last.is_finite().then_some(last),
        })
    }
}
