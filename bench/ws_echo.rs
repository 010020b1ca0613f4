//! WebSocket scripting speed (not a test): a tungstenite echo server (a thread per connection)
//! pinned to core 0; on core 1, in turn, CONNS native Rust clients (tungstenite, a thread each,
//! send-then-receive one message at a time) and then `oct run` + one turret (`workers: 1`) of
//! CONNS canons looping the same exchange in Lua (`conn:send(m):receive()`), SECS seconds
//! each. Prints both message rates and their ratio, ROUNDS times.
//!
//! `cargo bench --bench ws_echo` (or `bash bench/ws-echo.sh`). Env: ROUNDS (3), SECS (5),
//! CONNS (50).

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn pin(core: usize) {
    // SAFETY: a zeroed cpu_set_t is valid; CPU_SET writes within it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(core, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

fn echo_server() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        pin(0);
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let _ = stream.set_nodelay(true);
            std::thread::spawn(move || {
                pin(0);
                let Ok(mut ws) = tungstenite::accept(stream) else {
                    return;
                };
                while let Ok(m) = ws.read() {
                    if (m.is_text() || m.is_binary()) && ws.send(m).is_err() {
                        return;
                    }
                }
            });
        }
    });
    port
}

fn native(port: u16, conns: u64, secs: u64) -> f64 {
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let threads: Vec<_> = (0..conns)
        .map(|i| {
            let (stop, count) = (stop.clone(), count.clone());
            std::thread::spawn(move || {
                pin(1);
                let stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
                stream.set_nodelay(true).unwrap();
                let (mut ws, _) =
                    tungstenite::client(format!("ws://127.0.0.1:{port}/"), stream).unwrap();
                let message = format!("hello {i}");
                while !stop.load(Ordering::Relaxed) {
                    ws.send(tungstenite::Message::text(message.clone()))
                        .unwrap();
                    let _ = ws.read().unwrap();
                    count.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    let t = Instant::now();
    std::thread::sleep(Duration::from_secs(secs)); // a benchmark's measuring window
    stop.store(true, Ordering::Relaxed);
    let n = count.load(Ordering::Relaxed);
    let took = t.elapsed().as_secs_f64();
    for th in threads {
        let _ = th.join();
    }
    n as f64 / took
}

fn oct(port: u16, conns: u64, secs: u64, dir: &std::path::Path) -> f64 {
    let ports: Vec<u16> = (0..2)
        .map(|_| {
            std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port()
        })
        .collect();
    std::fs::write(
        dir.join("w.lua"),
        format!(
            "local conn\nfunction run(t)\n  if not conn then conn = ws.connect('ws://127.0.0.1:{port}/') end\n  conn:send('hello ' .. oct.canon):receive()\nend\n"
        ),
    )
    .unwrap();
    let turret = serde_json::json!({"name": "ws", "cannons": conns, "rampup": 0, "script": "w.lua", "workers": 1});
    std::fs::write(
        dir.join("config.json"),
        serde_json::json!({"run_time": secs, "results_ts_interval": 1, "testing": false,
            "progress_bar": false, "publish_port": ports[0], "rc_port": ports[1],
            "external_publisher": 0, "drain_timeout": 30, "turrets": [turret]})
        .to_string(),
    )
    .unwrap();
    let mut t = turret.clone();
    t["hq_address"] = "127.0.0.1".into();
    t["hq_publisher"] = ports[0].into();
    t["hq_rc"] = ports[1].into();
    std::fs::write(dir.join("turret.json"), t.to_string()).unwrap();
    let out = dir.join(format!("out-{}", Instant::now().elapsed().as_nanos()));
    let bin = env!("CARGO_BIN_EXE_oct");
    let hq = Command::new("taskset")
        .args(["-c", "1", bin, "run"])
        .arg(dir)
        .args(["--no-results", "-o"])
        .arg(&out)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut turret = Command::new("taskset")
        .args(["-c", "1", bin, "turret", "--config-file"])
        .arg(dir.join("turret.json"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let text = String::from_utf8(hq.wait_with_output().unwrap().stdout).unwrap();
    let _ = turret.kill();
    let _ = turret.wait();
    let n: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("transactions: "))
        .and_then(|n| n.trim().parse().ok())
        .expect("the HQ printed its transactions");
    std::fs::remove_dir_all(&out).ok();
    n / secs as f64
}

fn main() {
    let (rounds, secs, conns) = (env("ROUNDS", 3), env("SECS", 5), env("CONNS", 50));
    let port = echo_server();
    let dir = tempfile::tempdir().unwrap();
    println!("echo server on core 0; clients on core 1; {conns} connections, {secs} s each");
    for r in 1..=rounds {
        let reference = native(port, conns, secs);
        let ours = oct(port, conns, secs, dir.path());
        println!(
            "round {r}: native tungstenite clients {reference:.0} msg/s | oct Lua ws {ours:.0} msg/s (stored results) = {:.2}x",
            ours / reference
        );
    }
}
