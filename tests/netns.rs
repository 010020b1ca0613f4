//! Multi-host tests: the HQ, two turrets and the HTTP target each in a network namespace of its
//! own, joined by a bridge in a fifth — real links that a test can cut or slow down — and two
//! zones that only an `oct forwarder` joins. They need
//! root and `ip` (iproute2), as CI has; when namespaces cannot be made they fail saying why.
//!
//! Delay and loss use `tc netem` when the kernel has it; a kernel built without netem (as some
//! VMs are) gets the same impairment from a user-space link instead: the turret's side is a TAP
//! device whose frames this test relays to the bridge through a 100 ms queue that drops 1 %.

mod util;

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use util::*;

const T: Duration = Duration::from_secs(90);
static NEXT: AtomicU32 = AtomicU32::new(0);

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().unwrap_or_else(|e| {
        panic!("cannot run `ip` (iproute2 is needed for the multi-host tests): {e}")
    });
    assert!(
        out.status.success(),
        "`ip {}` failed (the multi-host tests need root and network namespaces): {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
}

/// Namespaces `<prefix>sw` (the bridge) and one per host, deleted on drop.
struct Net {
    prefix: String,
    /// t2's link is a user-space one (made by `impair_t2`).
    tap: bool,
    hosts: Vec<String>,
    procs: Vec<Proc>,
    stop: Arc<AtomicBool>,
}

const HOSTS: [&str; 4] = ["hq", "t1", "t2", "tg"];

impl Net {
    /// With `impaired`, t2's link will get delay and loss (see `impair_t2`).
    fn new(impaired: bool) -> Net {
        let prefix = format!(
            "oct{}x{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        );
        let mut net = Net {
            tap: impaired && !netem_available(),
            prefix,
            hosts: Vec::new(),
            procs: Vec::new(),
            stop: Arc::new(AtomicBool::new(false)),
        };
        let sw = net.ns("sw");
        ip(&["netns", "add", &sw]);
        net.hosts.push(sw.clone());
        ip(&["-n", &sw, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &sw, "link", "set", "br0", "up"]);
        for (i, h) in HOSTS.iter().enumerate() {
            let ns = net.ns(h);
            ip(&["netns", "add", &ns]);
            net.hosts.push(ns.clone());
            ip(&["-n", &ns, "link", "set", "lo", "up"]);
            if *h != "t2" || !net.tap {
                ip(&[
                    "-n",
                    &sw,
                    "link",
                    "add",
                    &format!("p{i}"),
                    "type",
                    "veth",
                    "peer",
                    "name",
                    "eth0",
                    "netns",
                    &ns,
                ]);
                ip(&["-n", &sw, "link", "set", &format!("p{i}"), "master", "br0"]);
                ip(&["-n", &sw, "link", "set", &format!("p{i}"), "up"]);
                net.address(h, i);
            }
        }
        net
    }

    /// Two zones: the HQ alone on one bridge (10.77.0.0/24); turrets t1 and t2 and the target
    /// tg on another (10.78.0.0/24); host fw on both, which does not route between them. The
    /// turrets can reach the HQ only through a forwarder on fw.
    fn zoned() -> Net {
        let mut net = Net {
            tap: false,
            prefix: format!(
                "oct{}z{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::SeqCst)
            ),
            hosts: Vec::new(),
            procs: Vec::new(),
            stop: Arc::new(AtomicBool::new(false)),
        };
        let sw = net.ns("sw");
        ip(&["netns", "add", &sw]);
        net.hosts.push(sw.clone());
        for br in ["br0", "br1"] {
            ip(&["-n", &sw, "link", "add", br, "type", "bridge"]);
            ip(&["-n", &sw, "link", "set", br, "up"]);
        }
        let layout: [(&str, &[(usize, &str)]); 5] = [
            ("hq", &[(0, "10.77.0.1")]),
            ("fw", &[(0, "10.77.0.2"), (1, "10.78.0.2")]),
            ("t1", &[(1, "10.78.0.11")]),
            ("t2", &[(1, "10.78.0.12")]),
            ("tg", &[(1, "10.78.0.4")]),
        ];
        for (i, (host, links)) in layout.iter().enumerate() {
            let ns = net.ns(host);
            ip(&["netns", "add", &ns]);
            net.hosts.push(ns.clone());
            ip(&["-n", &ns, "link", "set", "lo", "up"]);
            for (j, (br, addr)) in links.iter().enumerate() {
                let (port, dev) = (format!("z{i}{j}"), format!("eth{j}"));
                ip(&[
                    "-n", &sw, "link", "add", &port, "type", "veth", "peer", "name", &dev, "netns",
                    &ns,
                ]);
                ip(&[
                    "-n",
                    &sw,
                    "link",
                    "set",
                    &port,
                    "master",
                    &format!("br{br}"),
                ]);
                ip(&["-n", &sw, "link", "set", &port, "up"]);
                ip(&["-n", &ns, "addr", "add", &format!("{addr}/24"), "dev", &dev]);
                ip(&["-n", &ns, "link", "set", &dev, "up"]);
            }
        }
        net
    }

    fn ns(&self, host: &str) -> String {
        format!("{}{host}", self.prefix)
    }

    fn address(&self, host: &str, i: usize) {
        let ns = self.ns(host);
        ip(&[
            "-n",
            &ns,
            "addr",
            "add",
            &format!("10.77.0.{}/24", i + 1),
            "dev",
            "eth0",
        ]);
        ip(&["-n", &ns, "link", "set", "eth0", "up"]);
    }

    fn addr(host: &str) -> String {
        let i = HOSTS.iter().position(|h| *h == host).unwrap();
        format!("10.77.0.{}", i + 1)
    }

    fn exec(&mut self, host: &str, cmd: &Command) -> &mut Proc {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns(host)])
            .arg(cmd.get_program())
            .args(cmd.get_args());
        for (k, v) in cmd.get_envs() {
            if let Some(v) = v {
                c.env(k, v);
            }
        }
        let mut p = Proc::spawn(c);
        p.label = host.to_owned();
        self.procs.push(p);
        self.procs.last_mut().unwrap()
    }

    /// Sets host `i`'s port on the bridge up or down: its cable, pulled or plugged.
    fn link(&self, host: &str, up: bool) {
        let i = HOSTS.iter().position(|h| *h == host).unwrap();
        ip(&[
            "-n",
            &self.ns("sw"),
            "link",
            "set",
            &format!("p{i}"),
            if up { "up" } else { "down" },
        ]);
    }

    /// 100 ms of delay and 1 % loss on t2's link, both ways.
    fn impair_t2(&mut self) -> &'static str {
        if !self.tap {
            for (ns, dev) in [
                (self.ns("t2"), "eth0".to_owned()),
                (self.ns("sw"), "p2".to_owned()),
            ] {
                ip(&["-n", &ns, "link", "set", &dev, "up"]);
                let ok = Command::new("ip")
                    .args([
                        "netns", "exec", &ns, "tc", "qdisc", "add", "dev", &dev, "root", "netem",
                        "delay", "100ms", "loss", "1%",
                    ])
                    .status()
                    .unwrap()
                    .success();
                assert!(ok, "tc netem failed");
            }
            return "tc netem";
        }
        let inner = tap_in(&self.ns("t2"), "eth0");
        let outer = tap_in(&self.ns("sw"), "p2");
        ip(&["-n", &self.ns("sw"), "link", "set", "p2", "master", "br0"]);
        ip(&["-n", &self.ns("sw"), "link", "set", "p2", "up"]);
        self.address("t2", 2);
        let stop = self.stop.clone();
        std::thread::spawn(move || impaired_link(inner, outer, stop));
        "a user-space TAP link (this kernel has no netem)"
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.procs.clear();
        for ns in &self.hosts {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

fn netem_available() -> bool {
    let probe = format!("octnetem{}", std::process::id());
    ip(&["netns", "add", &probe]);
    let ok = Command::new("ip")
        .args([
            "netns", "exec", &probe, "tc", "qdisc", "add", "dev", "lo", "root", "netem", "delay",
            "1ms",
        ])
        .output()
        .is_ok_and(|o| o.status.success());
    let _ = Command::new("ip").args(["netns", "del", &probe]).status();
    ok
}

/// A TAP device named `name` made inside namespace `ns` (by a thread that enters it), and the
/// file descriptor that carries its frames.
fn tap_in(ns: &str, name: &str) -> OwnedFd {
    let ns_path = format!("/var/run/netns/{ns}");
    let name = name.to_owned();
    std::thread::spawn(move || {
        let nsf = std::fs::File::open(&ns_path).unwrap();
        // SAFETY: plain syscalls on descriptors this thread owns; setns moves only this thread.
        unsafe {
            assert_eq!(
                libc::setns(nsf.as_raw_fd(), libc::CLONE_NEWNET),
                0,
                "setns {ns_path}"
            );
            let fd = libc::open(c"/dev/net/tun".as_ptr(), libc::O_RDWR);
            assert!(fd >= 0, "/dev/net/tun: {}", std::io::Error::last_os_error());
            let mut req = [0u8; 40];
            req[..name.len()].copy_from_slice(name.as_bytes());
            let flags = (libc::IFF_TAP | libc::IFF_NO_PI) as u16;
            req[16..18].copy_from_slice(&flags.to_ne_bytes());
            const TUNSETIFF: libc::c_ulong = 0x400454ca;
            assert_eq!(
                libc::ioctl(fd, TUNSETIFF, req.as_mut_ptr()),
                0,
                "TUNSETIFF: {}",
                std::io::Error::last_os_error()
            );
            OwnedFd::from_raw_fd(fd)
        }
    })
    .join()
    .unwrap()
}

/// Relays Ethernet frames between two TAP devices, each after 100 ms, dropping 1 % of them.
fn impaired_link(a: OwnedFd, b: OwnedFd, stop: Arc<AtomicBool>) {
    let mut queue: std::collections::VecDeque<(Instant, bool, Vec<u8>)> = Default::default();
    let mut rng: u64 = 0x9e3779b97f4a7c15;
    let mut buf = vec![0u8; 65536];
    while !stop.load(Ordering::Relaxed) {
        let mut fds = [
            libc::pollfd {
                fd: a.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: b.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        let wait = queue.front().map_or(20, |(at, _, _)| {
            at.saturating_duration_since(Instant::now())
                .as_millis()
                .min(20) as i32
        });
        // SAFETY: two valid pollfds; read into a buffer we own.
        unsafe { libc::poll(fds.as_mut_ptr(), 2, wait) };
        for (i, f) in fds.iter().enumerate() {
            if f.revents & libc::POLLIN != 0 {
                let n = unsafe { libc::read(f.fd, buf.as_mut_ptr().cast(), buf.len()) };
                if n > 0 {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    if rng % 100 != 0 {
                        queue.push_back((
                            Instant::now() + Duration::from_millis(100),
                            i == 0,
                            buf[..n as usize].to_vec(),
                        ));
                    }
                }
            }
        }
        while queue
            .front()
            .is_some_and(|(at, _, _)| *at <= Instant::now())
        {
            let (_, from_a, frame) = queue.pop_front().unwrap();
            let to = if from_a { b.as_raw_fd() } else { a.as_raw_fd() };
            unsafe { libc::write(to, frame.as_ptr().cast(), frame.len()) };
        }
    }
}

/// A project with turrets t1 and t2, for an HQ at 10.77.0.1, loading the target at 10.77.0.4.
fn project(run_time: f64) -> Project {
    let turrets = json!([
        {"name": "t1", "cannons": 2, "rampup": 0, "script": "v.lua"},
        {"name": "t2", "cannons": 2, "rampup": 0, "script": "v.lua"},
    ]);
    let mut c = config(run_time, 2, turrets);
    for (k, v) in [
        ("publish_port", 5000),
        ("rc_port", 5001),
        ("external_publisher", 5002),
    ] {
        c[k] = json!(v);
    }
    c["heartbeat_interval"] = json!(0.2);
    c["turret_timeout"] = json!(2);
    c["hq_timeout"] = json!(3);
    c["drain_timeout"] = json!(10);
    let p = Project::new(c);
    p.write(
        "v.lua",
        &lua_get(&format!("http://{}:8080/", Net::addr("tg")), 5.0, 0.05),
    );
    p
}

fn start(net: &mut Net, project: &Project) -> usize {
    let mut target = Command::new("python3");
    target
        .args([
            "-m",
            "http.server",
            "8080",
            "--bind",
            &Net::addr("tg"),
            "--directory",
        ])
        .arg(project.path());
    net.exec("tg", &target);
    for t in ["t1", "t2"] {
        let path = project.path().join(format!("{t}.json"));
        let cfg = json!({"name": t, "cannons": 2, "rampup": 0, "script": "v.lua",
            "hq_address": Net::addr("hq"), "hq_publisher": 5000, "hq_rc": 5001});
        std::fs::write(&path, cfg.to_string()).unwrap();
        net.exec(
            t,
            &oct(&["turret", "--config-file", path.to_str().unwrap()]),
        );
    }
    net.exec(
        "hq",
        &oct_run(project.path(), &project.results_dir(), &["--no-results"]),
    );
    net.procs.len() - 1
}

fn turret_line<'a>(out: &'a str, name: &str) -> &'a str {
    out.lines()
        .find(|l| l.starts_with(&format!("turret {name}:")))
        .unwrap_or_else(|| panic!("no summary line for {name}:\n{out}"))
}

fn counts(line: &str) -> (u64, u64) {
    let n = |key: &str| -> u64 {
        let at = line.find(key).unwrap() + key.len();
        line[at..]
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    (n("sent "), n("received "))
}

#[test]
fn a_cut_link_is_lost_in_time_recovered_when_back_and_the_other_turret_loses_nothing() {
    let mut net = Net::new(false);
    let project = project(14.0);
    let hq = start(&mut net, &project);
    net.procs[hq].wait_line(T, |l| l.contains("started 2 turret(s)"));
    let db = project.db();
    wait_until(T, "results of both turrets", || {
        (count_rows(&db, "SELECT count(DISTINCT turret_name) FROM result") == 2).then_some(())
    });
    net.link("t1", false);
    let cut = Instant::now();
    net.procs[hq].wait_line(T, |l| l.contains("turret t1 is lost"));
    assert!(
        cut.elapsed() < Duration::from_secs(4),
        "lost after {:?}",
        cut.elapsed()
    );
    // Cut for longer than its hq_timeout (3 s): t1 stops firing on its own, its results wait.
    let t1 = net.procs.iter_mut().find(|p| p.label == "t1").unwrap();
    t1.wait_line(T, |l| l.contains("no word from the HQ"));
    net.link("t1", true);
    net.procs[hq].wait_line(T, |l| l.contains("turret t1 recovered"));
    // Back, with what it kept: the HQ starts it again.
    net.procs[hq].wait_line(T, |l| {
        l.contains("turret t1 is back and ready: starting it again")
    });
    let started = Instant::now();
    let (status, out) = net.procs[hq].wait_exit(T);
    assert!(status.success(), "{out}");
    assert!(started.elapsed() < Duration::from_secs(14 + 10), "{out}");
    let (sent, received) = counts(turret_line(&out, "t2"));
    assert!(sent > 0 && sent == received, "t2 lost results:\n{out}");
    let t1 = turret_line(&out, "t1");
    assert!(t1.contains("recovered"), "{out}");
    assert!(t1.contains("lost "), "{out}");
    // Everything t1 sent, before, during and after the cut, was stored.
    let (sent, received) = counts(t1);
    assert!(sent > 0 && sent == received, "t1 lost results:\n{out}");
    assert!(out.contains("lost: 0"), "{out}");
}

#[test]
fn a_link_with_100_ms_delay_and_1_percent_loss_loses_no_result() {
    let mut net = Net::new(true);
    let how = net.impair_t2();
    eprintln!("impairment: {how}");
    let project = project(8.0);
    let hq = start(&mut net, &project);
    let (status, out) = net.procs[hq].wait_exit(T);
    assert!(status.success(), "{out}");
    assert!(out.contains("lost: 0"), "{how}:\n{out}");
    for t in ["t1", "t2"] {
        let (sent, received) = counts(turret_line(&out, t));
        assert!(sent > 0 && sent == received, "{t} over {how}:\n{out}");
    }
    // The impairment is real: t2's transactions (a connection and a request, each a round
    // trip of 200 ms, then 50 ms of sleep) are slow, t1's are not.
    let avg = |t: &str| -> f64 {
        let conn = rusqlite::Connection::open(project.db()).unwrap();
        conn.query_row(
            &format!(
                "SELECT avg(scriptrun_time) FROM result WHERE turret_name = '{t}' AND error = ''"
            ),
            [],
            |r| r.get(0),
        )
        .unwrap()
    };
    let (fast, slow) = (avg("t1"), avg("t2"));
    eprintln!("{out}\nt1 avg {fast:.3} s, t2 avg {slow:.3} s over {how}");
    assert!(slow > 0.35 && fast < 0.2, "t1 {fast} s, t2 {slow} s");
}

#[test]
fn turrets_in_another_zone_reach_the_hq_only_through_a_forwarder_and_lose_nothing() {
    let mut net = Net::zoned();
    // The zones really are apart: from a turret's host the HQ cannot be reached.
    let direct = Command::new("ip")
        .args(["netns", "exec", &net.ns("t1"), "python3", "-c"])
        .arg("import socket; socket.create_connection(('10.77.0.1', 5001), timeout=2)")
        .output()
        .unwrap();
    assert!(
        !direct.status.success(),
        "t1 reached the HQ's zone without the forwarder"
    );
    let turrets = json!([
        {"name": "t1", "cannons": 2, "rampup": 0, "script": "v.lua"},
        {"name": "t2", "cannons": 2, "rampup": 0, "script": "v.lua"},
    ]);
    let mut c = config(4.0, 2, turrets);
    for (k, v) in [
        ("publish_port", 5000),
        ("rc_port", 5001),
        ("external_publisher", 5002),
    ] {
        c[k] = json!(v);
    }
    c["heartbeat_interval"] = json!(0.2);
    c["results"] = json!("aggregate");
    let project = Project::new(c);
    project.write("v.lua", &lua_get("http://10.78.0.4:8080/", 5.0, 0.02));
    let mut target = Command::new("python3");
    target
        .args([
            "-m",
            "http.server",
            "8080",
            "--bind",
            "10.78.0.4",
            "--directory",
        ])
        .arg(project.path());
    net.exec("tg", &target);
    let hq = {
        net.exec(
            "hq",
            &oct_run(project.path(), &project.results_dir(), &["--no-results"]),
        );
        net.procs.len() - 1
    };
    net.exec(
        "fw",
        &oct(&[
            "forwarder",
            "--pull",
            "10.78.0.2:6001",
            "--push",
            "10.77.0.1:5001",
            "--sub",
            "10.77.0.1:5000",
            "--pub",
            "10.78.0.2:6000",
        ]),
    );
    for t in ["t1", "t2"] {
        let path = project.path().join(format!("{t}.json"));
        let cfg = json!({"name": t, "cannons": 2, "rampup": 0, "script": "v.lua",
            "hq_address": "10.78.0.2", "hq_publisher": 6000, "hq_rc": 6001});
        std::fs::write(&path, cfg.to_string()).unwrap();
        net.exec(
            t,
            &oct(&["turret", "--config-file", path.to_str().unwrap()]),
        );
    }
    let (status, out) = net.procs[hq].wait_exit(T);
    assert!(status.success(), "{out}");
    assert!(
        out.contains("lost: 0") && out.contains("lost intervals: 0"),
        "{out}"
    );
    for t in ["t1", "t2"] {
        let line = turret_line(&out, t);
        let (sent, received) = counts(line);
        assert!(sent > 20 && sent == received, "{t}:\n{out}");
        assert!(line.contains("intervals sent"), "{line}");
    }
}
