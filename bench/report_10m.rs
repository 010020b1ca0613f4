//! Report benchmark (not a test): generates a 10,000,000-row results.sqlite (three custom
//! timers, 2 % errors, an hour of epochs; kept in target/bench-data/ for reruns) and times
//! `oct rebuild-results` on it, with its peak RSS. The reference, in the same run, is a bare
//! rusqlite scan reading the same columns and doing nothing with them.
//!
//! `cargo bench --bench report_10m` (or `bash bench/report-10m.sh`). Env: ROWS (10000000).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const SCHEMA: &str = r#"CREATE TABLE "result" ("id" INTEGER NOT NULL PRIMARY KEY, "error" TEXT, "scriptrun_time" REAL NOT NULL, "elapsed" REAL NOT NULL, "epoch" REAL NOT NULL, "custom_timers" TEXT, "turret_name" VARCHAR(255) NOT NULL);
CREATE TABLE "turret" ("id" INTEGER NOT NULL PRIMARY KEY, "name" TEXT NOT NULL, "uuid" TEXT NOT NULL, "cannons" INTEGER NOT NULL, "script" TEXT NOT NULL, "rampup" INTEGER NOT NULL, "status" TEXT NOT NULL, "updated_at" DATETIME NOT NULL);"#;

fn generate(path: &Path, rows: u64) {
    let tmp = path.with_extension("partial");
    let _ = std::fs::remove_file(&tmp);
    let mut conn = rusqlite::Connection::open(&tmp).unwrap();
    conn.execute_batch("PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF;")
        .unwrap();
    conn.execute_batch(SCHEMA).unwrap();
    let tx = conn.transaction().unwrap();
    {
        let mut insert = tx
            .prepare("INSERT INTO result (error, scriptrun_time, elapsed, epoch, custom_timers, turret_name) VALUES (?1, ?2, ?3, ?4, ?5, ?6)")
            .unwrap();
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        let mut rnd = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 11) as f64 / (1u64 << 53) as f64
        };
        let t0 = 1_795_305_491.0;
        for i in 0..rows {
            let login = 0.02 + rnd() * 0.05;
            let query = 0.01 + rnd() * 0.08;
            let checkout = 0.05 + rnd() * rnd() * 0.5;
            let run = login + query + checkout + rnd() * 0.01;
            let elapsed = i as f64 * 3600.0 / rows as f64;
            let error = if i % 50 == 7 {
                "HTTP 503 from /checkout"
            } else {
                ""
            };
            let timers = format!(r#"{{"login":{login},"db query":{query},"checkout":{checkout}}}"#);
            let turret = ["navigation", "search", "checkout"][(i % 3) as usize];
            insert
                .execute(rusqlite::params![
                    error,
                    run,
                    elapsed,
                    t0 + elapsed,
                    timers,
                    turret
                ])
                .unwrap();
        }
    }
    tx.commit().unwrap();
    drop(conn);
    std::fs::rename(&tmp, path).unwrap();
}

fn bare_scan(path: &Path) -> (Duration, u64) {
    let conn = rusqlite::Connection::open(path).unwrap();
    let t = Instant::now();
    let mut stmt = conn
        .prepare("SELECT scriptrun_time, epoch, error, custom_timers FROM result")
        .unwrap();
    let mut rows = stmt.query([]).unwrap();
    let mut bytes = 0u64;
    while let Some(r) = rows.next().unwrap() {
        let a: f64 = r.get(0).unwrap();
        let b: f64 = r.get(1).unwrap();
        let e = r.get_ref(2).unwrap().as_str().unwrap().len();
        let c = r.get_ref(3).unwrap().as_str().unwrap().len();
        bytes += (a + b) as u64 % 2 + (e + c) as u64;
    }
    (t.elapsed(), bytes)
}

fn vm_hwm_kb(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn main() {
    let rows: u64 = std::env::var("ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000_000);
    let data = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench-data");
    std::fs::create_dir_all(&data).unwrap();
    let db = data.join(format!("results-{rows}.sqlite"));
    if !db.is_file() {
        eprintln!("generating {} ({rows} rows)…", db.display());
        let t = Instant::now();
        generate(&db, rows);
        eprintln!("generated in {:.1} s", t.elapsed().as_secs_f64());
    }
    let (bare, _) = bare_scan(&db);
    println!("report_10m: {rows} rows, 3 custom timers");
    println!(
        "reference (bare rusqlite scan of the same columns): {:>6.2} s",
        bare.as_secs_f64()
    );

    let rebuild = |bin: &Path| -> (Duration, u64) {
        let out = tempfile::tempdir().unwrap();
        let config = out.path().join("config.json");
        std::fs::write(
            &config,
            r#"{"run_time": 3600, "results_ts_interval": 10, "testing": false, "progress_bar": false, "turrets": []}"#,
        )
        .unwrap();
        let t = Instant::now();
        let mut child = Command::new(bin)
            .args([
                "rebuild-results",
                out.path().to_str().unwrap(),
                config.to_str().unwrap(),
                "-f",
                db.to_str().unwrap(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut peak = 0;
        let status = loop {
            if let Some(kb) = vm_hwm_kb(child.id()) {
                peak = peak.max(kb);
            }
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            std::thread::park_timeout(Duration::from_millis(20));
        };
        assert!(status.success(), "{} rebuild-results failed", bin.display());
        (t.elapsed(), peak)
    };
    // OCT_BASELINE: another build's `oct` (an earlier commit), timed the same way in the same
    // run, alternated with this one ROUNDS times (default 1).
    let baseline = std::env::var_os("OCT_BASELINE").map(PathBuf::from);
    let rounds: usize = std::env::var("ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    for _ in 0..rounds {
        let (took, peak) = rebuild(Path::new(env!("CARGO_BIN_EXE_oct")));
        println!(
            "oct rebuild-results: {:>6.2} s = {:.2}x the bare scan, peak RSS {} MB",
            took.as_secs_f64(),
            took.as_secs_f64() / bare.as_secs_f64(),
            peak / 1024
        );
        if let Some(base) = &baseline {
            let (was, peak) = rebuild(base);
            println!(
                "baseline {}: {:>6.2} s, peak RSS {} MB -> this build takes {:.2}x the baseline",
                base.display(),
                was.as_secs_f64(),
                peak / 1024,
                took.as_secs_f64() / was.as_secs_f64()
            );
        }
    }
}
