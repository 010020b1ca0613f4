//! results.sqlite: OCT's two tables byte-identical (DESIGN §4) plus tables of ours, written by a
//! dedicated thread in batched transactions so the receive loop never waits on disk.

use std::collections::HashMap;
use std::path::Path;
use std::sync::mpsc::{self, Receiver, Sender};
use std::thread::JoinHandle;

use rusqlite::{params, Connection};

/// NOTE: byte-identical to fixtures/oct/schema.sql; OCT's tools read our files only
/// because of it. A test compares the two.
pub const OCT_SCHEMA: &str = r#"CREATE TABLE "result" ("id" INTEGER NOT NULL PRIMARY KEY, "error" TEXT, "scriptrun_time" REAL NOT NULL, "elapsed" REAL NOT NULL, "epoch" REAL NOT NULL, "custom_timers" TEXT, "turret_name" VARCHAR(255) NOT NULL);
CREATE TABLE "turret" ("id" INTEGER NOT NULL PRIMARY KEY, "name" TEXT NOT NULL, "uuid" TEXT NOT NULL, "cannons" INTEGER NOT NULL, "script" TEXT NOT NULL, "rampup" INTEGER NOT NULL, "status" TEXT NOT NULL, "updated_at" DATETIME NOT NULL);
"#;

/// Our own tables. OCT's tools never look at them.
const OUR_SCHEMA: &str = r#"CREATE TABLE oct_run (key TEXT NOT NULL PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE oct_rejected (kind TEXT NOT NULL PRIMARY KEY, count INTEGER NOT NULL, first_error TEXT NOT NULL, samples TEXT NOT NULL);
CREATE TABLE oct_turret_count (uuid TEXT NOT NULL PRIMARY KEY, name TEXT NOT NULL, received INTEGER NOT NULL, sent INTEGER);
CREATE TABLE oct_canons (uuid TEXT NOT NULL, name TEXT NOT NULL, epoch REAL NOT NULL, active INTEGER NOT NULL, target INTEGER, rate REAL, started INTEGER, dropped INTEGER);
CREATE TABLE oct_lag (result_id INTEGER NOT NULL PRIMARY KEY, lag REAL NOT NULL);
CREATE TABLE oct_checks (name TEXT NOT NULL PRIMARY KEY, passed INTEGER NOT NULL, failed INTEGER NOT NULL);
CREATE TABLE oct_counters (name TEXT NOT NULL, second INTEGER NOT NULL, value REAL NOT NULL, PRIMARY KEY (name, second));
CREATE TABLE oct_chaos (proxy TEXT NOT NULL, behavior TEXT NOT NULL, options TEXT NOT NULL, start REAL NOT NULL, finish REAL NOT NULL, calls TEXT NOT NULL);
CREATE TABLE oct_agg (turret_uuid TEXT NOT NULL, turret_name TEXT NOT NULL, seq INTEGER NOT NULL, start INTEGER NOT NULL, secs INTEGER NOT NULL, kind TEXT NOT NULL, name TEXT NOT NULL, count INTEGER NOT NULL, errors INTEGER NOT NULL, mean REAL NOT NULL, m2 REAL NOT NULL, min REAL NOT NULL, max REAL NOT NULL, first REAL NOT NULL, last REAL NOT NULL, hist BLOB NOT NULL, seconds TEXT NOT NULL, sample TEXT NOT NULL);
CREATE TABLE oct_agg_errors (turret_name TEXT NOT NULL, start INTEGER NOT NULL, message TEXT NOT NULL, count INTEGER NOT NULL, first REAL NOT NULL, last REAL NOT NULL);
CREATE TABLE oct_agg_count (uuid TEXT NOT NULL PRIMARY KEY, name TEXT NOT NULL, received INTEGER NOT NULL, sent INTEGER);
CREATE TABLE oct_turret_health (uuid TEXT NOT NULL PRIMARY KEY, name TEXT NOT NULL, liveness TEXT NOT NULL, changes TEXT NOT NULL, heartbeats INTEGER NOT NULL, cpu_max REAL NOT NULL, cpu_suspect INTEGER NOT NULL);
"#;

/// One row of OCT's `result` table.
#[derive(Debug, Clone, PartialEq)]
pub struct ResultRow {
    pub error: String,
    pub scriptrun_time: f64,
    pub elapsed: f64,
    pub epoch: f64,
    pub custom_timers: String,
    pub turret_name: String,
    /// Ours, open model: how late the iteration began against its schedule (`oct_lag`).
    pub lag: Option<f64>,
}

/// One row of OCT's `turret` table, keyed by `uuid`.
#[derive(Debug, Clone, PartialEq)]
pub struct TurretRow {
    pub name: String,
    pub uuid: String,
    pub cannons: u64,
    pub script: String,
    pub rampup: u64,
    pub status: String,
    /// `YYYY-MM-DD HH:MM:SS.ffffff`, as OCT writes it.
    pub updated_at: String,
}

/// An open-model turret's schedule at one heartbeat.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Arrivals {
    /// Iterations per second asked for.
    pub rate: f64,
    pub started: u64,
    pub dropped: u64,
}

/// What the writer thread is asked to do.
#[derive(Debug)]
pub enum Op {
    Results(Vec<ResultRow>),
    Turret(TurretRow),
    Meta(String, String),
    Rejected {
        kind: String,
        count: u64,
        first_error: String,
        samples: Vec<String>,
    },
    TurretCount {
        uuid: String,
        name: String,
        received: u64,
        sent: Option<u64>,
    },
    /// One heartbeat's canons, active and wanted by the shape, and in an open-model test the
    /// rate asked for and the iterations started and dropped so far (`oct_canons`).
    Canons {
        uuid: String,
        name: String,
        epoch: f64,
        active: u64,
        target: Option<u64>,
        arrivals: Option<Arrivals>,
    },
    /// The scripts' checks over the run: name, passed, failed (`oct_checks`).
    Checks(Vec<(String, u64, u64)>),
    /// The scripts' counters: name, Unix second, amount added in it (`oct_counters`).
    Counters(Vec<(String, i64, f64)>),
    /// A turret's liveness and CPU flag at the end of the run (`oct_turret_health`).
    TurretHealth(crate::summary::TurretSummary),
    /// The chaos schedule's fault windows (`oct_chaos`).
    Chaos(Vec<crate::chaos::Window>),
    /// One turret's interval (extension `aggregate`): a row per series in `oct_agg`, a row per
    /// error message in `oct_agg_errors`.
    Aggregate(Box<protocol::Aggregate>),
    /// A turret's aggregates received and sent (`oct_agg_count`).
    IntervalCount {
        uuid: String,
        name: String,
        received: u64,
        sent: Option<u64>,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: {source}")]
    Open {
        path: String,
        source: rusqlite::Error,
    },
    #[error("writing results: {0}")]
    Write(#[from] rusqlite::Error),
    #[error("the results writer thread stopped unexpectedly")]
    WriterGone,
}

/// Creates a results database at `path` (`:memory:` for tests) with every table.
pub fn create(path: &Path) -> Result<Connection, StoreError> {
    let open = |source| StoreError::Open {
        path: path.display().to_string(),
        source,
    };
    let conn = Connection::open(path).map_err(open)?;
    // WAL + NORMAL: a crash loses at most the transaction in flight, never the file.
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(open)?;
    conn.pragma_update(None, "synchronous", "NORMAL")
        .map_err(open)?;
    conn.execute_batch(OCT_SCHEMA).map_err(open)?;
    conn.execute_batch(OUR_SCHEMA).map_err(open)?;
    Ok(conn)
}

/// Applies a batch of operations in one transaction. `turret_ids` remembers each turret's row
/// (OCT's `turret` table has no index on `uuid`, and an index would change OCT's schema): a
/// status costs a lookup, not a scan of every turret's row — 1,000 turrets answer twice a second.
pub fn apply(
    conn: &mut Connection,
    ops: &mut Vec<Op>,
    turret_ids: &mut HashMap<String, i64>,
) -> Result<usize, StoreError> {
    let tx = conn.transaction()?;
    let mut rows = 0;
    {
        for op in ops.drain(..) {
            match op {
                Op::Results(batch) => {
                    insert_results(&tx, &batch)?;
                    rows += batch.len();
                }
                Op::Turret(t) => match turret_ids.get(&t.uuid) {
                    Some(id) => {
                        tx.prepare_cached(
                            "UPDATE turret SET name = ?1, cannons = ?2, script = ?3, rampup = ?4, status = ?5, updated_at = ?6 WHERE id = ?7",
                        )?
                        .execute(params![t.name, t.cannons, t.script, t.rampup, t.status, t.updated_at, id])?;
                    }
                    None => {
                        tx.execute(
                            "INSERT INTO turret (name, uuid, cannons, script, rampup, status, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                            params![t.name, t.uuid, t.cannons, t.script, t.rampup, t.status, t.updated_at],
                        )?;
                        turret_ids.insert(t.uuid.clone(), tx.last_insert_rowid());
                    }
                },
                Op::Meta(k, v) => {
                    tx.execute(
                        "INSERT OR REPLACE INTO oct_run (key, value) VALUES (?1, ?2)",
                        params![k, v],
                    )?;
                }
                Op::Rejected {
                    kind,
                    count,
                    first_error,
                    samples,
                } => {
                    let samples = serde_json::to_string(&samples).unwrap_or_default();
                    tx.execute(
                        "INSERT OR REPLACE INTO oct_rejected (kind, count, first_error, samples) VALUES (?1, ?2, ?3, ?4)",
                        params![kind, count, first_error, samples],
                    )?;
                }
                Op::TurretCount {
                    uuid,
                    name,
                    received,
                    sent,
                } => {
                    tx.execute(
                        "INSERT OR REPLACE INTO oct_turret_count (uuid, name, received, sent) VALUES (?1, ?2, ?3, ?4)",
                        params![uuid, name, received, sent],
                    )?;
                }
                Op::Canons {
                    uuid,
                    name,
                    epoch,
                    active,
                    target,
                    arrivals,
                } => {
                    tx.execute(
                        "INSERT INTO oct_canons (uuid, name, epoch, active, target, rate, started, dropped) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                        params![
                            uuid,
                            name,
                            epoch,
                            active,
                            target,
                            arrivals.map(|a| a.rate),
                            arrivals.map(|a| a.started),
                            arrivals.map(|a| a.dropped)
                        ],
                    )?;
                }
                Op::Checks(checks) => {
                    for (name, passed, failed) in checks {
                        tx.execute(
                            "INSERT OR REPLACE INTO oct_checks (name, passed, failed) VALUES (?1, ?2, ?3)",
                            params![name, passed, failed],
                        )?;
                    }
                }
                Op::Chaos(windows) => {
                    for w in windows {
                        tx.execute(
                            "INSERT INTO oct_chaos (proxy, behavior, options, start, finish, calls) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                            params![
                                w.proxy,
                                w.behavior,
                                serde_json::Value::Object(w.options).to_string(),
                                w.start,
                                w.finish,
                                serde_json::json!(w.calls).to_string()
                            ],
                        )?;
                    }
                }
                Op::Aggregate(a) => {
                    insert_aggregate(&tx, &a)?;
                    rows += a.transactions() as usize;
                }
                Op::IntervalCount {
                    uuid,
                    name,
                    received,
                    sent,
                } => {
                    tx.execute(
                        "INSERT OR REPLACE INTO oct_agg_count (uuid, name, received, sent) VALUES (?1, ?2, ?3, ?4)",
                        params![uuid, name, received, sent],
                    )?;
                }
                Op::Counters(counters) => {
                    for (name, second, value) in counters {
                        tx.execute(
                            "INSERT OR REPLACE INTO oct_counters (name, second, value) VALUES (?1, ?2, ?3)",
                            params![name, second, value],
                        )?;
                    }
                }
                Op::TurretHealth(t) => {
                    let changes: Vec<serde_json::Value> = t
                        .changes
                        .iter()
                        .map(|c| {
                            serde_json::json!({
                                "at": c.at.to_rfc3339(),
                                "state": c.to.as_str(),
                                "silent_secs": (c.silent_secs * 1000.0).round() / 1000.0,
                            })
                        })
                        .collect();
                    tx.execute(
                        "INSERT OR REPLACE INTO oct_turret_health (uuid, name, liveness, changes, heartbeats, cpu_max, cpu_suspect) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                        params![
                            t.uuid,
                            t.name,
                            t.liveness.as_str(),
                            serde_json::Value::Array(changes).to_string(),
                            t.heartbeats,
                            t.cpu_max,
                            t.cpu_suspect
                        ],
                    )?;
                }
            }
        }
    }
    tx.commit()?;
    Ok(rows)
}

/// Result rows inserted per statement: one statement of many rows costs SQLite's VM far less
/// per row than one per row (6 parameters a row, well under SQLite's limit).
const ROWS_PER_INSERT: usize = 32;

/// OCT's rows, [`ROWS_PER_INSERT`] a statement (the rest one a statement, so that only two
/// statements are ever cached), and each lag beside its row (`oct_lag`): the rows of one
/// statement get consecutive ids, the last of them `last_insert_rowid`.
fn insert_results(tx: &rusqlite::Transaction, batch: &[ResultRow]) -> rusqlite::Result<()> {
    const ROW: &str = "(?,?,?,?,?,?)";
    let insert = "INSERT INTO result (error, scriptrun_time, elapsed, epoch, custom_timers, turret_name) VALUES ";
    let many = format!("{insert}{}", vec![ROW; ROWS_PER_INSERT].join(","));
    let one = format!("{insert}{ROW}");
    let mut insert_lag =
        tx.prepare_cached("INSERT INTO oct_lag (result_id, lag) VALUES (?1, ?2)")?;
    let full = batch.len() / ROWS_PER_INSERT * ROWS_PER_INSERT;
    let chunks = batch[..full]
        .chunks(ROWS_PER_INSERT)
        .chain(batch[full..].chunks(1));
    for chunk in chunks {
        let mut stmt = tx.prepare_cached(if chunk.len() == 1 { &one } else { &many })?;
        let mut i = 1;
        for r in chunk {
            stmt.raw_bind_parameter(i, &r.error)?;
            stmt.raw_bind_parameter(i + 1, r.scriptrun_time)?;
            stmt.raw_bind_parameter(i + 2, r.elapsed)?;
            stmt.raw_bind_parameter(i + 3, r.epoch)?;
            stmt.raw_bind_parameter(i + 4, &r.custom_timers)?;
            stmt.raw_bind_parameter(i + 5, &r.turret_name)?;
            i += 6;
        }
        stmt.raw_execute()?;
        if chunk.iter().any(|r| r.lag.is_some()) {
            let first = tx.last_insert_rowid() - chunk.len() as i64 + 1;
            for (k, r) in chunk.iter().enumerate() {
                if let Some(lag) = r.lag {
                    insert_lag.execute(params![first + k as i64, lag])?;
                }
            }
        }
    }
    Ok(())
}

/// An aggregate's rows. A histogram that is not base64 is stored empty (the report counts the
/// series' transactions all the same): the HQ refused nothing the turret counted as sent.
fn insert_aggregate(tx: &rusqlite::Transaction, a: &protocol::Aggregate) -> rusqlite::Result<()> {
    let mut series = tx.prepare_cached(
        "INSERT INTO oct_agg (turret_uuid, turret_name, seq, start, secs, kind, name, count, errors, mean, m2, min, max, first, last, hist, seconds, sample) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)",
    )?;
    let failed = a.failed();
    for s in &a.series {
        let errors = if s.kind == protocol::aggregate::Kind::Transaction {
            failed
        } else {
            0
        };
        series.execute(params![
            a.turret_uuid,
            a.turret,
            a.aggregate,
            a.start,
            a.secs,
            s.kind.as_str(),
            s.name,
            s.count,
            errors,
            s.mean,
            s.m2,
            s.min,
            s.max,
            s.first,
            s.last,
            s.histogram_bytes().unwrap_or_default(),
            serde_json::to_string(&s.seconds).unwrap_or_default(),
            serde_json::to_string(&s.sample).unwrap_or_default(),
        ])?;
    }
    let mut errors = tx.prepare_cached(
        "INSERT INTO oct_agg_errors (turret_name, start, message, count, first, last) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    for e in &a.errors {
        errors.execute(params![
            a.turret, a.start, e.message, e.count, e.first, e.last
        ])?;
    }
    if a.other_errors > 0 {
        errors.execute(params![
            a.turret,
            a.start,
            "",
            a.other_errors,
            a.start,
            a.start
        ])?;
    }
    Ok(())
}

/// The handle of the writer thread. Dropping the last [`Writer`] sender ends the thread after it
/// has committed everything it was sent.
pub struct Writer {
    tx: Sender<Op>,
    thread: JoinHandle<Result<u64, StoreError>>,
}

/// Ops a writer commits together at most; bounds a transaction's size under flood.
const MAX_BATCH_OPS: usize = 256;

impl Writer {
    /// Starts the writer thread on `conn`.
    pub fn spawn(mut conn: Connection) -> Writer {
        let (tx, rx) = mpsc::channel::<Op>();
        let thread = std::thread::Builder::new()
            .name("oct-store".into())
            .spawn(move || write_loop(&mut conn, rx))
            .expect("spawning the store thread");
        Writer { tx, thread }
    }

    pub fn send(&self, op: Op) -> Result<(), StoreError> {
        self.tx.send(op).map_err(|_| StoreError::WriterGone)
    }

    /// Commits everything sent so far and stops; returns the number of result rows written.
    pub fn finish(self) -> Result<u64, StoreError> {
        drop(self.tx);
        self.thread.join().map_err(|_| StoreError::WriterGone)?
    }
}

fn write_loop(conn: &mut Connection, rx: Receiver<Op>) -> Result<u64, StoreError> {
    let mut total = 0u64;
    let mut ops = Vec::with_capacity(MAX_BATCH_OPS);
    let mut turret_ids = HashMap::new();
    // Block for the first op, then take whatever else is queued: one transaction per burst.
    while let Ok(op) = rx.recv() {
        ops.push(op);
        while ops.len() < MAX_BATCH_OPS {
            match rx.try_recv() {
                Ok(op) => ops.push(op),
                Err(_) => break,
            }
        }
        total += apply(conn, &mut ops, &mut turret_ids)? as u64;
    }
    // Leave a plain single-file database, as OCT's: no -wal/-shm beside it for readers (or
    // copies) to trip over. Everything is committed already; failure here loses nothing.
    let _ = conn.pragma_update(None, "journal_mode", "DELETE");
    Ok(total)
}

/// `YYYY-MM-DD HH:MM:SS.ffffff` in local time, as OCT (peewee) writes `updated_at`.
pub fn now_timestamp() -> String {
    chrono::Local::now()
        .format("%Y-%m-%d %H:%M:%S%.6f")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(i: usize) -> ResultRow {
        ResultRow {
            error: if i % 3 == 0 {
                "boom".into()
            } else {
                String::new()
            },
            scriptrun_time: i as f64 / 10.0,
            elapsed: i as f64,
            epoch: 1795305491.25 + i as f64,
            custom_timers: format!("{{\"a\":{i}}}"),
            turret_name: "nav".into(),
            lag: (i % 2 == 1).then_some(i as f64 / 1000.0),
        }
    }

    #[test]
    fn oct_tables_are_byte_identical_to_the_real_schema() {
        let conn = create(Path::new(":memory:")).unwrap();
        let mut stmt = conn
            .prepare(
                "SELECT sql FROM sqlite_master WHERE name IN ('result', 'turret') ORDER BY name",
            )
            .unwrap();
        let sqls: Vec<String> = stmt
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let fixture = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/oct/schema.sql"),
        )
        .unwrap();
        let want: Vec<&str> = fixture.lines().map(|l| l.trim_end_matches(';')).collect();
        assert_eq!(sqls, want);
    }

    #[test]
    fn writes_results_and_updates_turret_status_in_place() {
        let mut conn = create(Path::new(":memory:")).unwrap();
        let turret = |status: &str| TurretRow {
            name: "nav".into(),
            uuid: "u1".into(),
            cannons: 2,
            script: "s.lua".into(),
            rampup: 0,
            status: status.into(),
            updated_at: now_timestamp(),
        };
        let mut ops = vec![
            Op::Turret(turret("ready")),
            Op::Results((0..5).map(row).collect()),
            Op::Turret(turret("Running")),
        ];
        assert_eq!(apply(&mut conn, &mut ops, &mut HashMap::new()).unwrap(), 5);
        let (n, status): (i64, String) = conn
            .query_row("SELECT count(*), max(status) FROM turret", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        assert_eq!((n, status.as_str()), (1, "Running"));
        let (err, epoch, timers): (String, f64, String) = conn
            .query_row(
                "SELECT error, epoch, custom_timers FROM result WHERE id = 4",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap();
        assert_eq!(
            (err.as_str(), epoch, timers.as_str()),
            ("boom", 1795305494.25, "{\"a\":3}")
        );
        // The lag of an open-model result sits beside it, keyed by its id (row i has id i + 1).
        let lags: Vec<(i64, f64)> = conn
            .prepare("SELECT result_id, lag FROM oct_lag ORDER BY result_id")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(lags, [(2, 0.001), (4, 0.003)]);
    }

    #[test]
    fn lags_sit_beside_their_rows_across_many_row_statements() {
        let mut conn = create(Path::new(":memory:")).unwrap();
        // Two full statements and 6 rows one by one.
        let mut ops = vec![Op::Results((0..70).map(row).collect())];
        assert_eq!(apply(&mut conn, &mut ops, &mut HashMap::new()).unwrap(), 70);
        let pairs: Vec<(f64, f64)> = conn
            .prepare("SELECT r.elapsed, l.lag FROM oct_lag l JOIN result r ON r.id = l.result_id ORDER BY r.id")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(pairs.len(), 35);
        for (elapsed, lag) in pairs {
            assert_eq!(lag, elapsed / 1000.0, "row {elapsed}");
        }
        let ids: Vec<i64> = conn
            .prepare("SELECT id FROM result ORDER BY id")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(ids, (1..=70).collect::<Vec<i64>>());
    }

    #[test]
    fn writer_thread_commits_everything_before_finishing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("results.sqlite");
        let writer = Writer::spawn(create(&path).unwrap());
        for chunk in 0..10 {
            writer
                .send(Op::Results(
                    (chunk * 100..chunk * 100 + 100).map(row).collect(),
                ))
                .unwrap();
        }
        assert_eq!(writer.finish().unwrap(), 1000);
        let conn = Connection::open(&path).unwrap();
        let n: i64 = conn
            .query_row("SELECT count(*) FROM result", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 1000);
    }

    #[test]
    fn timestamp_has_microseconds() {
        let ts = now_timestamp();
        assert_eq!(ts.len(), "2026-11-21 23:58:11.001041".len(), "{ts}");
    }
}
