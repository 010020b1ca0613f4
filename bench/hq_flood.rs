//! HQ ingest benchmark (not a test): several pusher processes flood `oct run` with results; it
//! prints results/s stored (all of them committed to results.sqlite, 0 lost) and, as the
//! reference measured in the same run, the rate at which a bare ZeroMQ PULL socket merely drains
//! the same pushers.
//!
//! Then the same flood in secure mode (OCT_SECRET; every frame sealed by the pushers beforehand,
//! so only the HQ's cost is measured), and both again with results batched 64 to a frame as our
//! turrets send them: sealed vs plain, each pair measured in the same run; `packed64` sends the
//! same batches as packed binary frames (extension `packed`, what our turrets send our HQ).
//!
//! `cargo bench --bench hq_flood` (or `bash bench/hq-flood.sh`). Env: PUSHERS (4), PER_PUSHER
//! (500000), MODES (`plain,sealed,plain64,sealed64`).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn frame(i: usize, turret: &str) -> Vec<u8> {
    format!(
        r#"{{"elapsed": {}, "epoch": {}, "scriptrun_time": {}, "error": "{}", "custom_timers": {{"login": 0.0581750869, "db query": 0.0426816940}}, "turret_name": "{turret}"}}"#,
        i as f64 * 1e-4,
        1795305491.0 + i as f64 * 1e-4,
        0.1009171009 + (i % 1000) as f64 * 1e-6,
        if i % 50 == 0 { "simulated failure" } else { "" },
    )
    .into_bytes()
}

fn env_usize(key: &str, default: usize) -> usize {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

const SECRET: &str = "the hq_flood benchmark's shared secret";

/// `--raw-pusher RC N`: push N frames to a bare PULL.
/// `--turret-pusher PUB RC NAME N SEALED BATCH`: behave as a turret, push N results after start,
/// BATCH to a frame, sealed if SEALED is 1.
fn pusher(args: &[String]) {
    let ctx = zmq::Context::new();
    let push = ctx.socket(zmq::PUSH).unwrap();
    push.set_sndhwm(0).unwrap();
    push.set_linger(-1).unwrap();
    if args[0] == "--raw-pusher" {
        push.connect(&format!("tcp://127.0.0.1:{}", args[1]))
            .unwrap();
        let n: usize = args[2].parse().unwrap();
        let frames: Vec<Vec<u8>> = (0..1000).map(|i| frame(i, "raw")).collect();
        for i in 0..n {
            push.send(&frames[i % 1000], 0).unwrap();
        }
        return;
    }
    let (publish, rc, name, n) = (
        &args[1],
        &args[2],
        &args[3],
        args[4].parse::<usize>().unwrap(),
    );
    let sealed = args[5] == "1";
    // `p64`: 64 results a frame, packed (extension `packed`, as our turrets send them).
    let packed = args[6].starts_with('p');
    let batch: usize = args[6].trim_start_matches('p').parse().unwrap();
    let secret = protocol::Secret::new(SECRET.as_bytes(), "bench").unwrap();
    let mut opener = protocol::Opener::for_turret(&secret);
    let mut sealer: Option<protocol::Sealer> = None;
    let mut opened = Vec::new();
    let sub = ctx.socket(zmq::SUB).unwrap();
    sub.connect(&format!("tcp://127.0.0.1:{publish}")).unwrap();
    sub.set_subscribe(b"").unwrap();
    push.connect(&format!("tcp://127.0.0.1:{rc}")).unwrap();
    let status = |s: &str| {
        format!(
            r#"{{"turret": "{name}", "status": "{s}", "uuid": "{name}-uuid", "rampup": 0, "script": "s.lua", "cannons": 1}}"#
        )
    };
    let singles: Vec<Vec<u8>> = (0..1000).map(|i| frame(i, name)).collect();
    let plain: Vec<Vec<u8>> = if packed {
        (0..1000 / batch.min(1000))
            .map(|b| {
                let results: Vec<protocol::TestResult> = (0..batch)
                    .map(|i| {
                        let at = b * batch + i;
                        let Ok(protocol::Message::Result(mut r)) =
                            protocol::Message::decode(&singles[at % 1000])
                        else {
                            panic!("the bench's own frames decode")
                        };
                        r.turret_name = None;
                        r.seq = Some(at as u64 + 1);
                        r
                    })
                    .collect();
                let mut out = Vec::new();
                protocol::encode_packed(&format!("{name}-uuid"), Some(name), &results, &mut out);
                out
            })
            .collect()
    } else if batch <= 1 {
        singles
    } else {
        (0..1000 / batch.min(1000))
            .map(|b| {
                let parts: Vec<&[u8]> = (0..batch)
                    .map(|i| &singles[(b * batch + i) % 1000][..])
                    .collect();
                [&b"["[..], &parts.join(&b", "[..]), b"]"].concat()
            })
            .collect()
    };
    let frames_needed = n.div_ceil(batch.max(1));
    let mut frames: Vec<Vec<u8>> = Vec::new();
    let mut running = false;
    loop {
        let raw = sub.recv_bytes(0).unwrap();
        let cmd = if sealed {
            let at = raw.iter().position(|&b| b == b' ').unwrap();
            let session = opener
                .open(&raw[..=at], &raw[at + 1..], &mut opened)
                .unwrap();
            if sealer.is_none() {
                // Two senders of this pusher (each its own key and counter): one for statuses,
                // one for the results, all sealed now so that the timed flood measures the HQ.
                let sender = |lane: u8| {
                    let mut id = [b'_'; 16];
                    id[0] = lane;
                    for (d, s) in id[1..].iter_mut().zip(name.bytes()) {
                        *d = s;
                    }
                    id
                };
                let mut s = protocol::Sealer::to_hq(&secret, session, sender(b'r'));
                frames = (0..frames_needed)
                    .map(|i| {
                        let mut out = Vec::new();
                        s.seal(b"", &plain[i % plain.len()], &mut out);
                        out
                    })
                    .collect();
                sealer = Some(protocol::Sealer::to_hq(&secret, session, sender(b's')));
            }
            String::from_utf8_lossy(&opened).into_owned()
        } else {
            String::from_utf8(raw).unwrap()
        };
        let mut send = |text: String| {
            let bytes = text.into_bytes();
            match &mut sealer {
                None => push.send(&bytes[..], 0).unwrap(),
                Some(s) => {
                    let mut out = Vec::new();
                    s.seal(b"", &bytes, &mut out);
                    push.send(out, 0).unwrap();
                }
            }
        };
        if cmd.contains("\"status_request\"") {
            send(status(if running { "Running" } else { "ready" }));
        } else if cmd.contains("\"start\"") && !running {
            running = true;
            // Status first: in secure mode the frames sealed beforehand carry later counters.
            send(status("Running"));
            for i in 0..frames_needed {
                match sealer {
                    Some(_) => push.send(&frames[i][..], 0).unwrap(),
                    None => push.send(&plain[i % plain.len()][..], 0).unwrap(),
                }
            }
        } else if cmd.contains("\"stop\"") {
            send(status("ready"));
            return;
        }
    }
}

fn spawn_self(args: &[String]) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args(args)
        .stdin(Stdio::null())
        .spawn()
        .unwrap()
}

fn reference(pushers: usize, per: usize) -> f64 {
    let ctx = zmq::Context::new();
    let pull = ctx.socket(zmq::PULL).unwrap();
    pull.set_rcvhwm(0).unwrap();
    pull.bind("tcp://127.0.0.1:*").unwrap();
    let port = pull.get_last_endpoint().unwrap().unwrap();
    let port = port.rsplit(':').next().unwrap().to_owned();
    let mut children: Vec<Child> = (0..pushers)
        .map(|_| spawn_self(&["--raw-pusher".into(), port.clone(), per.to_string()]))
        .collect();
    let mut msg = zmq::Message::new();
    pull.recv(&mut msg, 0).unwrap();
    let t0 = Instant::now();
    for _ in 1..pushers * per {
        pull.recv(&mut msg, 0).unwrap();
    }
    let rate = (pushers * per - 1) as f64 / t0.elapsed().as_secs_f64();
    for c in &mut children {
        c.wait().unwrap();
    }
    rate
}

fn count(db: &std::path::Path) -> i64 {
    let Ok(conn) =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
    else {
        return 0;
    };
    conn.query_row("SELECT count(*) FROM result", [], |r| r.get(0))
        .unwrap_or(0)
}

/// With `--web`: what a dashboard and Prometheus do meanwhile — the event stream read as it
/// comes, `/metrics` fetched every second — until `stop` is set.
fn watch(
    url: String,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> Vec<std::thread::JoinHandle<()>> {
    use std::sync::atomic::Ordering;
    let events = {
        let (url, stop) = (url.clone(), stop.clone());
        std::thread::spawn(move || {
            let Ok(r) = ureq::get(&format!("{url}api/v1/events")).call() else {
                return;
            };
            for line in BufReader::new(r.into_reader()).lines() {
                if line.is_err() || stop.load(Ordering::SeqCst) {
                    return;
                }
            }
        })
    };
    let scrape = std::thread::spawn(move || {
        while !stop.load(Ordering::SeqCst) {
            let _ = ureq::get(&format!("{url}metrics"))
                .call()
                .map(|r| r.into_string());
            std::thread::park_timeout(Duration::from_secs(1));
        }
    });
    vec![events, scrape]
}

fn hq(
    pushers: usize,
    per: usize,
    sealed: bool,
    batch: usize,
    packed: bool,
    web: bool,
) -> (f64, String) {
    let dir = tempfile::tempdir().unwrap();
    let turrets: Vec<serde_json::Value> = (0..pushers)
        .map(|i| serde_json::json!({"name": format!("p{i}"), "cannons": 1, "script": "s.lua"}))
        .collect();
    let config = serde_json::json!({
        "run_time": 600, "results_ts_interval": 1, "testing": false, "progress_bar": false,
        "min_turrets": pushers, "publish_port": 0, "rc_port": 0, "external_publisher": 0,
        "turrets": turrets,
    });
    std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();
    let out = dir.path().join("out");
    let mut hq = Command::new(env!("CARGO_BIN_EXE_oct"))
        .args([
            "run",
            dir.path().to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "--no-results",
        ])
        .args(if web {
            &["--web=127.0.0.1:0", "--autostart"][..]
        } else {
            &[]
        })
        .env_remove("OCT_SECRET")
        .envs(sealed.then_some(("OCT_SECRET", SECRET)))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(hq.stderr.take().unwrap()).lines();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut watchers = Vec::new();
    if web {
        let line = err
            .by_ref()
            .map(Result::unwrap)
            .find(|l| l.starts_with("oct: dashboard: "))
            .unwrap();
        watchers = watch(
            line["oct: dashboard: ".len()..].trim().to_owned(),
            stop.clone(),
        );
    }
    let ports_line = err
        .by_ref()
        .map(Result::unwrap)
        .find(|l| l.contains("listening"))
        .unwrap();
    let nums: Vec<String> = ports_line
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    let mut children: Vec<Child> = (0..pushers)
        .map(|i| {
            spawn_self(&[
                "--turret-pusher".into(),
                nums[0].clone(),
                nums[1].clone(),
                format!("p{i}"),
                per.to_string(),
                if sealed { "1" } else { "0" }.into(),
                format!("{}{batch}", if packed { "p" } else { "" }),
            ])
        })
        .collect();
    err.by_ref()
        .map(Result::unwrap)
        .find(|l| l.contains("started"))
        .unwrap();
    let t0 = Instant::now();
    let db = out.join("results.sqlite");
    let want = (pushers * per.div_ceil(batch.max(1)) * batch.max(1)) as i64;
    let deadline = t0 + Duration::from_secs(300);
    while count(&db) < want && Instant::now() < deadline {
        std::thread::park_timeout(Duration::from_millis(20));
    }
    let elapsed = t0.elapsed().as_secs_f64();
    let stored = count(&db);
    // Ctrl-C: graceful stop, drain, summary (and with --web, once more to close the page).
    let interrupt = || {
        Command::new("kill")
            .args(["-INT", &hq.id().to_string()])
            .status()
            .unwrap()
    };
    interrupt();
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    if web {
        err.by_ref()
            .map(Result::unwrap)
            .find(|l| l.contains("the dashboard stays at"))
            .unwrap();
        interrupt();
    }
    let mut summary = String::new();
    std::io::Read::read_to_string(&mut hq.stdout.take().unwrap(), &mut summary).unwrap();
    hq.wait().unwrap();
    for w in watchers {
        let _ = w.join();
    }
    for c in &mut children {
        let _ = c.wait();
    }
    assert_eq!(stored, want, "stored {stored} of {want}\n{summary}");
    (stored as f64 / elapsed, summary)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().is_some_and(|a| a.ends_with("-pusher")) {
        return pusher(&args);
    }
    let pushers = env_usize("PUSHERS", 4);
    let per = env_usize("PER_PUSHER", 500_000);
    println!("hq_flood: {pushers} pusher processes × {per} results");
    let reference = reference(pushers, per);
    println!("reference (bare PULL drain): {reference:>10.0} results/s");
    let modes = std::env::var("MODES").unwrap_or_else(|_| "plain,sealed,plain64,sealed64".into());
    let mut plain_rate = std::collections::HashMap::new();
    for mode in modes.split(',') {
        let sealed = mode.starts_with("sealed");
        let packed = mode.starts_with("packed");
        let web = mode.ends_with("web");
        let batch: usize = mode
            .trim_start_matches(|c: char| c.is_alphabetic())
            .trim_end_matches("web")
            .parse()
            .unwrap_or(1);
        let (stored, summary) = hq(pushers, per, sealed, batch, packed, web);
        let versus = match plain_rate.get(&batch) {
            Some(p) if sealed => format!(" = {:.2}× plain", stored / p),
            Some(p) if web => format!(" = {:.2}× without --web", stored / p),
            Some(p) if packed => format!(" = {:.2}× JSON batches", stored / p),
            _ => String::new(),
        };
        if !sealed && !web && !packed {
            plain_rate.insert(batch, stored);
        }
        println!(
            "oct run {mode:<9} (decoded, stored): {stored:>10.0} results/s = {:.2}× the bare drain{versus}",
            stored / reference
        );
        for line in summary.lines().filter(|l| {
            l.starts_with("transactions") || l.starts_with("lost") || l.starts_with("rejected")
        }) {
            println!("  {line}");
        }
    }
}
