//! Reading what turrets aggregated (extension `aggregate`): `oct_agg`'s rows, one per turret,
//! interval and series, and `oct_agg_errors`'s, one per turret, interval and error message.
//! The report's scan folds them into the same series as raw rows (`Series::add_delta`).

use hdrhistogram::Histogram;
use rusqlite::Connection;

use protocol::aggregate::{Kind, Moments};

/// Where the report reads transactions from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Source {
    /// OCT's `result` rows and the aggregates — except in a `"results": "both"` run, whose
    /// aggregates repeat its rows: then the rows alone.
    #[default]
    Auto,
    /// OCT's `result` rows alone.
    Raw,
    /// The aggregates alone.
    Aggregate,
}

impl Source {
    /// Whether to read `result` and `oct_agg`, for the database on `conn`.
    pub fn tables(self, conn: &Connection) -> (bool, bool) {
        match self {
            Source::Raw => (true, false),
            Source::Aggregate => (false, true),
            Source::Auto => {
                let both = conn
                    .query_row("SELECT value FROM oct_run WHERE key = 'results'", [], |r| {
                        r.get::<_, String>(0)
                    })
                    .is_ok_and(|v| v == "both");
                (true, !both)
            }
        }
    }
}

/// One row of `oct_agg`, its histogram decoded.
pub struct Row {
    pub turret: String,
    pub start: i64,
    pub kind: Kind,
    pub name: String,
    pub errors: u64,
    pub moments: Moments,
    pub first: f64,
    pub last: f64,
    /// Nanoseconds.
    pub hist: Histogram<u64>,
    pub seconds: Vec<(i64, u64)>,
    pub sample: Vec<(f64, f64)>,
}

impl Row {
    pub fn delta(&self) -> crate::stats::Delta<'_> {
        crate::stats::Delta {
            start: self.start,
            moments: self.moments,
            hist: &self.hist,
            seconds: &self.seconds,
            sample: &self.sample,
        }
    }
}

/// Calls `f` for each row of `oct_agg` of `kind` (every kind with `None`); nothing when the
/// database has no such table (OCT's, or ours from before aggregates).
pub fn each(conn: &Connection, kind: Option<Kind>, f: &mut dyn FnMut(Row)) -> rusqlite::Result<()> {
    if !super::table_exists(conn, "oct_agg") {
        return Ok(());
    }
    let mut stmt = conn.prepare(
        "SELECT turret_name, start, kind, name, count, errors, mean, m2, min, max, first, last, hist, seconds, sample FROM oct_agg WHERE ?1 IS NULL OR kind = ?1 ORDER BY start, rowid",
    )?;
    let mut rows = stmt.query([kind.map(Kind::as_str)])?;
    while let Some(r) = rows.next()? {
        let Some(kind) = Kind::parse(&r.get::<_, String>(2)?) else {
            continue;
        };
        let blob: Vec<u8> = r.get(12)?;
        // A histogram that does not decode leaves the percentiles to the others; the counts
        // and moments still count.
        let hist = protocol::aggregate::decode_histogram(&blob)
            .unwrap_or_else(|_| protocol::aggregate::histogram());
        let json = |i: usize| r.get::<_, String>(i);
        f(Row {
            turret: r.get(0)?,
            start: r.get(1)?,
            kind,
            name: r.get(3)?,
            moments: Moments {
                count: r.get(4)?,
                mean: r.get(6)?,
                m2: r.get(7)?,
                min: r.get(8)?,
                max: r.get(9)?,
            },
            errors: r.get(5)?,
            first: r.get(10)?,
            last: r.get(11)?,
            hist,
            seconds: serde_json::from_str(&json(13)?).unwrap_or_default(),
            sample: serde_json::from_str(&json(14)?).unwrap_or_default(),
        });
    }
    Ok(())
}

/// One row of `oct_agg_errors`: message (empty for errors past the cap of distinct messages),
/// count, first and last epoch.
pub fn each_error(
    conn: &Connection,
    f: &mut dyn FnMut(&str, u64, f64, f64),
) -> rusqlite::Result<()> {
    if !super::table_exists(conn, "oct_agg_errors") {
        return Ok(());
    }
    let mut stmt = conn.prepare("SELECT message, count, first, last FROM oct_agg_errors")?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        f(&r.get::<_, String>(0)?, r.get(1)?, r.get(2)?, r.get(3)?);
    }
    Ok(())
}
