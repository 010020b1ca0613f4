//! Many simulated turrets against one `oct run` (not a test): one process plays N turrets, each
//! with its own SUB and PUSH sockets as a real turret has, answering status requests, and after
//! `start` sending every second a heartbeat and one batch of RATE results (the `batch`
//! extension), then at `stop` a last heartbeat and `ready` with its count. For each N of COUNTS
//! it prints the HQ's CPU (percent of one core, from /proc) and RSS while the turrets run, the
//! results stored, and lost (the HQ's own accounting, checked against the rows).
//!
//! With MODE=aggregate the test has `"results": "aggregate"` and each simulated turret sends,
//! every second, one aggregate (extension `aggregate`: an HDR histogram delta of RATE
//! transactions, built with `protocol::Aggregator` as a real turret builds it) instead of the
//! batch, and `intervals_sent` in its heartbeats and `ready`.
//!
//! `cargo bench --bench many_turrets` (or `bash bench/many-turrets.sh`). Env: COUNTS
//! (`100,200,500,1000`), RATE (results per turret per second, 20), SECS (20), MODE (`raw`).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn env(key: &str, default: &str) -> String {
    std::env::var(key).unwrap_or_else(|_| default.to_owned())
}

fn result(i: usize, turret: &str) -> String {
    format!(
        r#"{{"elapsed": {}, "epoch": {}, "scriptrun_time": {}, "error": "{}", "custom_timers": {{}}, "turret_name": "{turret}"}}"#,
        i as f64 * 1e-4,
        1795305491.0 + i as f64 * 1e-4,
        0.0109171009 + (i % 1000) as f64 * 1e-6,
        if i % 50 == 0 { "simulated failure" } else { "" },
    )
}

struct Turret {
    name: String,
    sub: zmq::Socket,
    push: zmq::Socket,
    running: bool,
    done: bool,
    sent: u64,
    beats: u64,
    batch: Vec<u8>,
    /// MODE=aggregate: one second's aggregate of RATE transactions, re-dated each time.
    aggregate: Option<protocol::Aggregate>,
    intervals: u64,
}

impl Turret {
    fn status(&self, s: &str, count: bool) -> String {
        let mut sent = if count {
            format!(r#", "results_sent": {}"#, self.sent)
        } else {
            String::new()
        };
        if count && self.aggregate.is_some() {
            sent.push_str(&format!(r#", "intervals_sent": {}"#, self.intervals));
        }
        format!(
            r#"{{"turret": "{n}", "status": "{s}", "uuid": "{n}-uuid", "rampup": 0, "script": "s.lua", "cannons": 1{sent}}}"#,
            n = self.name
        )
    }
    /// This second's aggregate: the template, numbered and dated now.
    fn send_aggregate(&mut self, rate: u64) {
        let Some(a) = &mut self.aggregate else { return };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let shift = now - a.start;
        a.start = now;
        self.intervals += 1;
        a.aggregate = self.intervals;
        a.results_sent = self.sent + rate;
        for s in &mut a.series {
            s.first += shift as f64;
            s.last += shift as f64;
            s.seconds.iter_mut().for_each(|(sec, _)| *sec += shift);
            s.sample.iter_mut().for_each(|(e, _)| *e += shift as f64);
        }
        self.push.send(a.encode(), 0).unwrap();
    }

    fn heartbeat(&mut self) {
        self.beats += 1;
        let intervals = if self.aggregate.is_some() {
            format!(r#", "intervals_sent": {}"#, self.intervals)
        } else {
            String::new()
        };
        let hb = format!(
            r#"{{"heartbeat": {}, "turret": "{n}", "uuid": "{n}-uuid", "results_sent": {}, "cannons_active": 1, "cpu": 1.0{intervals}}}"#,
            self.beats,
            self.sent,
            n = self.name
        );
        self.push.send(hb.as_bytes(), 0).unwrap();
    }
}

/// `/proc/PID`: CPU seconds (user + system) and RSS in MiB.
fn sample(pid: u32) -> Option<(f64, f64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let f: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let tick = 100.0; // USER_HZ on Linux
    let cpu = (f[11].parse::<f64>().ok()? + f[12].parse::<f64>().ok()?) / tick;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse::<f64>()
        .ok()?
        / 1024.0;
    Some((cpu, rss))
}

/// One second of RATE transactions of turret `name`, aggregated as a turret does.
fn aggregate_of(name: &str, rate: usize) -> protocol::Aggregate {
    let mut agg = protocol::Aggregator::new(1, name, &format!("{name}-uuid"));
    for i in 0..rate {
        agg.add(&protocol::TestResult {
            elapsed: 0.0,
            epoch: 1795305491.0 + i as f64 / rate as f64,
            scriptrun_time: 0.0109171009 + (i % 1000) as f64 * 1e-6,
            error: if i % 50 == 0 {
                "simulated failure".into()
            } else {
                String::new()
            },
            custom_timers: Vec::new(),
            turret_name: Some(name.to_owned()),
            seq: None,
            turret_uuid: None,
            lag: None,
            checks: Vec::new(),
            counters: Vec::new(),
        });
    }
    agg.drain().remove(0)
}

fn run(n: usize, rate: usize, secs: u64, aggregate: bool) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("s.lua"), "function run(t) end\n").unwrap();
    let config = serde_json::json!({"run_time": secs, "results_ts_interval": 1, "testing": false,
        "progress_bar": false, "min_turrets": n, "publish_port": 0, "rc_port": 0,
        "external_publisher": 0, "bind_address": "127.0.0.1", "drain_timeout": 30,
        "heartbeat_interval": 1, "turret_timeout": 10,
        "results": if aggregate { "aggregate" } else { "raw" },
        "turrets": [{"name": "t", "cannons": 1, "rampup": 0, "script": "s.lua"}]});
    std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();
    let out = dir.path().join("out");
    let exe = std::env::current_exe().unwrap();
    let oct = exe.ancestors().nth(3).unwrap().join("release/oct");
    let mut hq = Command::new(&oct)
        .arg("run")
        .arg(dir.path())
        .arg("-o")
        .arg(&out)
        .arg("--no-results")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{}: {e} (cargo build --release first)", oct.display()));
    let mut lines = BufReader::new(hq.stderr.take().unwrap()).lines();
    let ports: Vec<u16> = loop {
        let l = lines.next().expect("the HQ said nothing").unwrap();
        if l.contains("listening: publish port") {
            break l
                .split(|c: char| !c.is_ascii_digit())
                .filter_map(|s| s.parse().ok())
                .collect();
        }
    };
    let console = std::thread::spawn(move || lines.map_while(Result::ok).collect::<Vec<String>>());
    // A context holds at most 1,024 sockets (libzmq's default, which the zmq crate cannot
    // raise): one context per 256 turrets.
    let contexts: Vec<zmq::Context> = (0..n.div_ceil(256)).map(|_| zmq::Context::new()).collect();
    let mut turrets: Vec<Turret> = (0..n)
        .map(|i| {
            let name = format!("sim{i}");
            let ctx = &contexts[i / 256];
            let sub = ctx.socket(zmq::SUB).unwrap();
            sub.connect(&format!("tcp://127.0.0.1:{}", ports[0]))
                .unwrap();
            sub.set_subscribe(b"").unwrap();
            let push = ctx.socket(zmq::PUSH).unwrap();
            push.set_sndhwm(0).unwrap();
            push.set_linger(-1).unwrap();
            push.connect(&format!("tcp://127.0.0.1:{}", ports[1]))
                .unwrap();
            let parts: Vec<String> = (0..rate).map(|k| result(i * rate + k, &name)).collect();
            let name_for_agg = name.clone();
            let batch = format!("[{}]", parts.join(", ")).into_bytes();
            Turret {
                name,
                sub,
                push,
                running: false,
                done: false,
                sent: 0,
                beats: 0,
                batch,
                aggregate: aggregate.then(|| aggregate_of(&name_for_agg, rate)),
                intervals: 0,
            }
        })
        .collect();
    let mut next_tick = Instant::now() + Duration::from_secs(1);
    let mut samples: Vec<(f64, f64)> = Vec::new();
    let mut last = None;
    while !turrets.iter().all(|t| t.done) {
        let mut items: Vec<zmq::PollItem> = turrets
            .iter()
            .map(|t| t.sub.as_poll_item(zmq::POLLIN))
            .collect();
        let wait = next_tick
            .saturating_duration_since(Instant::now())
            .as_millis() as i64;
        zmq::poll(&mut items, wait.max(1)).unwrap();
        let ready: Vec<bool> = items.iter().map(|i| i.is_readable()).collect();
        drop(items);
        for (t, r) in turrets.iter_mut().zip(ready) {
            if !r {
                continue;
            }
            while let Ok(raw) = t.sub.recv_bytes(zmq::DONTWAIT) {
                let cmd = String::from_utf8_lossy(&raw);
                if cmd.contains("\"status_request\"") && !t.done {
                    let s = t.status(if t.running { "Running" } else { "ready" }, false);
                    t.push.send(s.as_bytes(), 0).unwrap();
                } else if cmd.contains("\"start\"") && !t.running && !t.done {
                    t.running = true;
                    t.push
                        .send(t.status("Running", false).as_bytes(), 0)
                        .unwrap();
                } else if cmd.contains("\"stop\"") && t.running {
                    t.running = false;
                    t.done = true;
                    t.heartbeat();
                    t.push.send(t.status("ready", true).as_bytes(), 0).unwrap();
                }
            }
        }
        if Instant::now() >= next_tick {
            next_tick += Duration::from_secs(1);
            let mut any = false;
            for t in turrets.iter_mut().filter(|t| t.running) {
                if t.aggregate.is_some() {
                    t.send_aggregate(rate as u64);
                } else {
                    t.push.send(&t.batch[..], 0).unwrap();
                }
                t.sent += rate as u64;
                t.heartbeat();
                any = true;
            }
            if let Some((cpu, rss)) = sample(hq.id()) {
                if any {
                    if let Some((at, c)) = last {
                        let dt = Instant::now().duration_since(at).as_secs_f64();
                        samples.push(((cpu - c) / dt * 100.0, rss));
                    }
                    last = Some((Instant::now(), cpu));
                }
            }
        }
    }
    let status = hq.wait().unwrap();
    let console = console.join().unwrap();
    assert!(status.success(), "{}", console.join("\n"));
    let db = rusqlite::Connection::open(out.join("results.sqlite")).unwrap();
    let rows: i64 = db
        .query_row(
            if aggregate {
                "SELECT coalesce(sum(count), 0) FROM oct_agg WHERE kind = 'transaction'"
            } else {
                "SELECT count(*) FROM result"
            },
            [],
            |r| r.get(0),
        )
        .unwrap();
    let lost_intervals: String = db
        .query_row(
            "SELECT value FROM oct_run WHERE key = 'lost_intervals'",
            [],
            |r| r.get(0),
        )
        .unwrap_or_else(|_| "-".into());
    let lost: String = db
        .query_row("SELECT value FROM oct_run WHERE key = 'lost'", [], |r| {
            r.get(0)
        })
        .unwrap_or_else(|_| "unknown".into());
    let sent: u64 = turrets.iter().map(|t| t.sent).sum();
    assert_eq!(rows as u64, sent, "stored {rows} of {sent}");
    let cpus: Vec<f64> = samples.iter().map(|s| s.0).collect();
    let mean = cpus.iter().sum::<f64>() / cpus.len().max(1) as f64;
    let rss = samples.iter().map(|s| s.1).fold(0.0, f64::max);
    println!(
        "{n:>5} turrets: HQ CPU {mean:5.1} % of one core ({:.2} % per 100 turrets), RSS max {rss:6.1} MiB; {rows} {} ({:.0}/s), lost {lost}, lost intervals {lost_intervals}",
        mean / n as f64 * 100.0,
        if aggregate { "transactions in aggregates" } else { "results stored" },
        sent as f64 / secs as f64
    );
}

fn main() {
    let counts: Vec<usize> = env("COUNTS", "100,200,500,1000")
        .split(',')
        .map(|c| c.trim().parse().unwrap())
        .collect();
    let rate: usize = env("RATE", "20").parse().unwrap();
    let secs: u64 = env("SECS", "20").parse().unwrap();
    let aggregate = match env("MODE", "raw").as_str() {
        "raw" => false,
        "aggregate" => true,
        other => panic!("MODE must be raw or aggregate, got {other:?}"),
    };
    println!(
        "{rate} results a second per simulated turret ({}), a heartbeat a second, {secs} s each",
        if aggregate {
            "one aggregate a second"
        } else {
            "one batch a second"
        }
    );
    for n in counts {
        run(n, rate, secs, aggregate);
    }
}
