//! Secure mode (OCT_SECRET): a stranger on the network — unsealed results, a replayed and a
//! tampered copy of captured frames, a `kill` of its own and a replayed command — changes
//! nothing: none of its results are stored, each is counted by kind, the turret keeps running.

mod util;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::json;
use util::*;

const T: Duration = Duration::from_secs(60);
const SECRET: &str = "a shared secret for the secure-mode test";

/// Sits between the HQ and its turret as someone on the path could: relays commands and
/// results both ways and keeps a copy of each frame. A stranger's publisher can connect to
/// `inject_port` and reach the turret as if it were the HQ.
struct Relay {
    commands_port: u16,
    inject_port: u16,
    results_port: u16,
    commands: Arc<Mutex<Vec<Vec<u8>>>>,
    results: Arc<Mutex<Vec<Vec<u8>>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

fn bound_port(s: &zmq::Socket) -> u16 {
    let e = s.get_last_endpoint().unwrap().unwrap();
    e.rsplit(':').next().unwrap().parse().unwrap()
}

impl Relay {
    fn start(hq_publish: u16, hq_rc: u16) -> Relay {
        let ctx = zmq::Context::new();
        let xsub = ctx.socket(zmq::XSUB).unwrap();
        xsub.connect(&format!("tcp://127.0.0.1:{hq_publish}"))
            .unwrap();
        xsub.bind("tcp://127.0.0.1:*").unwrap();
        let xpub = ctx.socket(zmq::XPUB).unwrap();
        xpub.bind("tcp://127.0.0.1:*").unwrap();
        let pull = ctx.socket(zmq::PULL).unwrap();
        pull.bind("tcp://127.0.0.1:*").unwrap();
        let push = ctx.socket(zmq::PUSH).unwrap();
        push.connect(&format!("tcp://127.0.0.1:{hq_rc}")).unwrap();
        // Frames still queued when the relay stops are dropped: the turret goes on sending
        // heartbeats after its HQ has exited, and a context with an infinite linger would wait
        // for that HQ for ever.
        for s in [&xsub, &xpub, &pull, &push] {
            s.set_linger(0).unwrap();
        }
        let (commands_port, inject_port, results_port) =
            (bound_port(&xpub), bound_port(&xsub), bound_port(&pull));
        let commands = Arc::new(Mutex::new(Vec::new()));
        let results = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (c, r, s) = (commands.clone(), results.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let _ctx = ctx;
            while !s.load(Ordering::Relaxed) {
                let mut items = [
                    xsub.as_poll_item(zmq::POLLIN),
                    xpub.as_poll_item(zmq::POLLIN),
                    pull.as_poll_item(zmq::POLLIN),
                ];
                zmq::poll(&mut items, 50).unwrap();
                let ready: Vec<bool> = items.iter().map(|i| i.is_readable()).collect();
                if ready[0] {
                    let f = xsub.recv_bytes(0).unwrap();
                    c.lock().unwrap().push(f.clone());
                    xpub.send(f, 0).unwrap();
                }
                if ready[1] {
                    xsub.send(xpub.recv_bytes(0).unwrap(), 0).unwrap();
                }
                if ready[2] {
                    let f = pull.recv_bytes(0).unwrap();
                    r.lock().unwrap().push(f.clone());
                    push.send(f, 0).unwrap();
                }
            }
        });
        Relay {
            commands_port,
            inject_port,
            results_port,
            commands,
            results,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[test]
fn a_stranger_without_the_secret_is_refused_and_cannot_kill_a_turret() {
    let target = HttpServer::start();
    let mut c = config(
        6.0,
        1,
        json!([{"name": "guarded", "cannons": 1, "rampup": 0, "script": "v.lua"}]),
    );
    c["heartbeat_interval"] = json!(0.2);
    let project = Project::new(c);
    project.write(
        "v.lua",
        &lua_get(&format!("http://127.0.0.1:{}/", target.port), 30.0, 0.01),
    );
    let mut run = oct_run(project.path(), &project.results_dir(), &["--no-results"]);
    run.env("OCT_SECRET", SECRET);
    let mut hq = Proc::spawn(run);
    let (publish, rc, _) = hq.hq_ports();
    let relay = Relay::start(publish, rc);
    let cfg = project.path().join("turret.json");
    std::fs::write(
        &cfg,
        json!({"name": "guarded", "cannons": 1, "rampup": 0, "script": "v.lua",
            "hq_address": "127.0.0.1", "hq_publisher": relay.commands_port,
            "hq_rc": relay.results_port})
        .to_string(),
    )
    .unwrap();
    let mut turret = oct(&["turret", "--config-file", cfg.to_str().unwrap()]);
    turret.env("OCT_SECRET", SECRET);
    let mut turret = Proc::spawn(turret);
    hq.wait_line(T, |l| l.contains("started 1 turret(s)"));
    let db = project.db();
    wait_until(T, "results through the relay", || {
        (count_rows(&db, "SELECT count(*) FROM result") > 10).then_some(())
    });
    let captured_result = relay.results.lock().unwrap()[0].clone();
    let captured_command = relay.commands.lock().unwrap()[0].clone();
    assert!(
        !String::from_utf8_lossy(&captured_result).contains("\"turret\""),
        "what crosses the network is sealed"
    );

    // The stranger pushes to the HQ's result port, which anyone can reach.
    let ctx = zmq::Context::new();
    let push = ctx.socket(zmq::PUSH).unwrap();
    push.set_linger(2000).unwrap();
    push.connect(&format!("tcp://127.0.0.1:{rc}")).unwrap();
    for i in 0..100 {
        push.send(result_frame(i, Some("stranger")).as_bytes(), 0)
            .unwrap();
    }
    push.send(&captured_result[..], 0).unwrap();
    let mut flipped = captured_result.clone();
    let mid = flipped.len() - 20;
    flipped[mid] ^= 1;
    push.send(&flipped[..], 0).unwrap();

    // And publishes to the turret, as if it were the HQ: its own kill, then a replay.
    let publisher = ctx.socket(zmq::XPUB).unwrap();
    publisher.set_linger(0).unwrap();
    publisher
        .connect(&format!("tcp://127.0.0.1:{}", relay.inject_port))
        .unwrap();
    publisher.set_rcvtimeo(20_000).unwrap();
    publisher.recv_bytes(0).expect("the relay subscribes");
    publisher
        .send(&br#" {"command":"kill","msg":null}"#[..], 0)
        .unwrap();
    publisher.send(&captured_command[..], 0).unwrap();
    turret.wait_line(T, |l| l.contains("ignored a command: not sealed"));
    turret.wait_line(T, |l| {
        l.contains("ignored a command: sealed frame replayed")
    });

    let (status, out) = hq.wait_exit(T);
    assert!(status.success(), "{out}");
    assert!(
        turret.child.try_wait().unwrap().is_none(),
        "the stranger's kill killed the turret"
    );
    assert!(out.contains("lost: 0"), "{out}");
    assert_eq!(
        count_rows(
            &db,
            "SELECT count(*) FROM result WHERE turret_name = 'stranger'"
        ),
        0
    );
    let kind = |k: &str| {
        count_rows(
            &db,
            &format!("SELECT coalesce(sum(count), 0) FROM oct_rejected WHERE kind = '{k}'"),
        )
    };
    assert_eq!(kind("unsealed"), 100, "{out}");
    assert_eq!(kind("replayed"), 1, "{out}");
    assert_eq!(kind("tampered"), 1, "{out}");
    let stored = count_rows(&db, "SELECT count(*) FROM result");
    assert!(stored > 10);
}

#[test]
fn a_short_or_missing_secret_is_a_one_line_error() {
    let project = Project::new(config(1.0, 1, json!([])));
    let mut c = oct_run(project.path(), &project.results_dir(), &["--no-results"]);
    c.env("OCT_SECRET", "short");
    let (status, out) = Proc::spawn(c).wait_exit(T);
    assert_eq!(status.code(), Some(2), "{out}");
    assert!(
        out.contains("OCT_SECRET: the secret is 5 bytes long; secure mode needs at least 16"),
        "{out}"
    );
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(project.path().join("config.json")).unwrap())
            .unwrap();
    v["secret_file"] = json!("missing-secret.txt");
    std::fs::write(project.path().join("config.json"), v.to_string()).unwrap();
    let (status, out) =
        Proc::spawn(oct_run(project.path(), &project.results_dir(), &[])).wait_exit(T);
    assert_eq!(status.code(), Some(2), "{out}");
    assert!(out.contains("`secret_file`: "), "{out}");
    assert!(out.contains("missing-secret.txt"), "{out}");
}
