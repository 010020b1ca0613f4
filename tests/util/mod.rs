//! Helpers for end-to-end tests: temp projects, the real `oct` binary as a child process with a
//! kill-on-drop guard, a raw-ZeroMQ test turret, and polling with deadlines (never sleeps).

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

pub mod chaos;
pub mod nginx;
pub mod servers;
pub mod site;

/// Polls `f` until it returns `Some` or `timeout` passes.
pub fn wait_until<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::yield_now();
        std::thread::park_timeout(Duration::from_millis(10));
    }
}

/// A project in a temp dir whose config uses OS-chosen ports.
pub struct Project {
    pub dir: tempfile::TempDir,
}

impl Project {
    pub fn new(config: Value) -> Project {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("config.json"),
            serde_json::to_string_pretty(&config).unwrap(),
        )
        .unwrap();
        Project { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn results_dir(&self) -> PathBuf {
        self.dir.path().join("out")
    }

    pub fn db(&self) -> PathBuf {
        self.results_dir().join("results.sqlite")
    }

    /// Writes `text` at `rel` inside the project, creating folders.
    pub fn write(&self, rel: &str, text: &str) {
        let path = self.path().join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    /// `oct rebuild-results` of the run's results with its config; returns its summary.json.
    pub fn rebuild(&self) -> Value {
        let (status, text) = Proc::spawn(oct(&[
            "rebuild-results",
            self.results_dir().to_str().unwrap(),
            self.path().join("config.json").to_str().unwrap(),
        ]))
        .wait_exit(Duration::from_secs(60));
        assert!(status.success(), "{text}");
        serde_json::from_str(
            &std::fs::read_to_string(self.results_dir().join("summary.json")).unwrap(),
        )
        .unwrap()
    }

    /// `oct run PROJECT --local --no-results -o RESULTS` to its end: exit status and output.
    pub fn run_local(&self) -> (ExitStatus, String) {
        let out = self.results_dir();
        Proc::spawn(oct_run(self.path(), &out, &["--local", "--no-results"]))
            .wait_exit(Duration::from_secs(90))
    }
}

/// Runs `cmd` to its end; it must succeed (else the test fails with its stderr): its output.
pub fn succeeds(cmd: &mut Command) -> std::process::Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Checks Prometheus text with the real `promtool`.
pub fn promtool_check(text: &str) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("metrics.txt");
    std::fs::write(&file, text).unwrap();
    let check = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("promtool check metrics < '{}'", file.display()))
        .output()
        .expect("sh");
    assert!(
        check.status.success(),
        "promtool (apt-get install prometheus; .ci/run installs it): {}{}\n{text}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
}

/// A config with OS-chosen ports and the given run time and turrets.
pub fn config(run_time: f64, min_turrets: u64, turrets: Value) -> Value {
    json!({
        "run_time": run_time,
        "results_ts_interval": 1,
        "testing": false,
        "progress_bar": true,
        "min_turrets": min_turrets,
        "publish_port": 0,
        "rc_port": 0,
        "external_publisher": 0,
        "drain_timeout": 5,
        "turrets": turrets,
    })
}

/// A child process of one of our binaries, killed when dropped; stderr lines are collected.
pub struct Proc {
    pub child: Child,
    lines: Receiver<String>,
    pub seen: Vec<String>,
    /// What the test calls it (empty unless set).
    pub label: String,
}

pub fn oct(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_oct"));
    c.args(args);
    c
}

/// `oct run PROJECT -o OUT` and `extra` (`--local`, `--no-results`, …), not yet started.
pub fn oct_run(project: &Path, out: &Path, extra: &[&str]) -> Command {
    let mut c = oct(&[
        "run",
        project.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    c.args(extra);
    c
}

impl Proc {
    pub fn spawn(mut cmd: Command) -> Proc {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let (tx, lines) = mpsc::channel();
        for stream in [
            Box::new(child.stderr.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stdout.take().unwrap()),
        ] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        Proc {
            child,
            lines,
            seen: Vec::new(),
            label: String::new(),
        }
    }

    /// Waits for an output line matching `pred` and returns it.
    pub fn wait_line(&mut self, timeout: Duration, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + timeout;
        if let Some(l) = self.seen.iter().find(|l| pred(l)) {
            return l.clone();
        }
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if pred(&line) {
                        return line;
                    }
                }
                Err(_) => panic!("timed out; output so far:\n{}", self.seen.join("\n")),
            }
        }
    }

    /// Waits for the process to exit and returns its status with all its output.
    pub fn wait_exit(&mut self, timeout: Duration) -> (ExitStatus, String) {
        let status = wait_until(timeout, "the process to exit", || {
            self.child.try_wait().unwrap()
        });
        while let Ok(line) = self.lines.recv_timeout(Duration::from_millis(200)) {
            self.seen.push(line);
        }
        (status, self.seen.join("\n"))
    }

    /// The ports the HQ printed: (publish, rc, external).
    pub fn hq_ports(&mut self) -> (u16, u16, u16) {
        let line = self.wait_line(Duration::from_secs(20), |l| {
            l.contains("listening: publish port")
        });
        let nums: Vec<u16> = line
            .split(|c: char| !c.is_ascii_digit())
            .filter_map(|s| s.parse().ok())
            .collect();
        (nums[0], nums[1], nums[2])
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A turret speaking raw OCT frames over real ZeroMQ sockets, like oct-turrets does.
pub struct TestTurret {
    pub name: String,
    pub uuid: String,
    pub sub: zmq::Socket,
    pub push: zmq::Socket,
    _ctx: zmq::Context,
}

impl TestTurret {
    pub fn connect(name: &str, uuid: &str, publish: u16, rc: u16) -> TestTurret {
        let ctx = zmq::Context::new();
        let sub = ctx.socket(zmq::SUB).unwrap();
        sub.connect(&format!("tcp://127.0.0.1:{publish}")).unwrap();
        sub.set_subscribe(b"").unwrap();
        let push = ctx.socket(zmq::PUSH).unwrap();
        push.set_linger(2000).unwrap();
        push.connect(&format!("tcp://127.0.0.1:{rc}")).unwrap();
        TestTurret {
            name: name.into(),
            uuid: uuid.into(),
            sub,
            push,
            _ctx: ctx,
        }
    }

    pub fn status(&self, status: &str) -> String {
        format!(
            r#"{{"turret": "{}", "status": "{status}", "uuid": "{}", "rampup": 0, "script": "test_scripts/v_user.py", "cannons": 2}}"#,
            self.name, self.uuid
        )
    }

    pub fn send(&self, frame: impl AsRef<[u8]>) {
        self.push.send(frame.as_ref(), 0).unwrap();
    }

    /// Receives one command within `timeout`, answering `status_request`s with `status` on the
    /// way; returns the command name, or `None` on timeout.
    pub fn next_command(&self, timeout: Duration, status: &str) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            if self
                .sub
                .poll(zmq::POLLIN, left.as_millis().max(1) as i64)
                .unwrap()
                == 0
            {
                continue;
            }
            let frame = self.sub.recv_string(0).unwrap().unwrap();
            // Channel (empty, or this turret's uuid), one space, JSON.
            let (_, json) = frame.split_once(' ').unwrap();
            let v: Value = serde_json::from_str(json).unwrap();
            let name = v["command"].as_str().unwrap().to_owned();
            if name == "status_request" {
                self.send(self.status(status));
                continue;
            }
            return Some(name);
        }
    }

    /// Waits for `want`, answering status requests with `status` meanwhile.
    pub fn expect(&self, want: &str, status: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next_command(left, status) {
                Some(c) if c == want => return,
                Some(_) => continue,
                None => panic!("turret {} never received `{want}`", self.name),
            }
        }
    }
}

/// A result frame as oct-turrets sends it, with `turret_name` as our turrets add it.
pub fn result_frame(i: usize, turret: Option<&str>) -> String {
    let error = if i % 7 == 0 {
        format!("failure #{i}")
    } else {
        String::new()
    };
    let name = turret
        .map(|t| format!(r#", "turret_name": "{t}""#))
        .unwrap_or_default();
    format!(
        r#"{{"elapsed": {}, "epoch": {}, "scriptrun_time": {}, "error": "{error}", "custom_timers": {{"login": {}, "db query": {}}}{name}}}"#,
        i as f64 * 0.01,
        1795305491.0 + i as f64 * 0.001,
        0.1 + i as f64 * 1e-6,
        0.05 + i as f64 * 1e-7,
        0.04,
    )
}

/// A Lua script whose every iteration GETs `url` (within `timeout` seconds), then sleeps
/// `sleep_secs`: a virtual user that a test target can count.
pub fn lua_get(url: &str, timeout: f64, sleep_secs: f64) -> String {
    format!(
        "function run(t) http.get('{url}', {{timeout = {timeout}}}) oct.sleep({sleep_secs}) end"
    )
}

/// The first column of every row `sql` returns, as text.
pub fn texts(db: &Path, sql: &str) -> Vec<String> {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    let mut stmt = conn.prepare(sql).unwrap();
    let rows = stmt
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    rows
}

pub fn count_rows(db: &Path, sql: &str) -> i64 {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    conn.query_row(sql, [], |r| r.get(0)).unwrap()
}

/// A real HTTP/1.1 server on 127.0.0.1 (keep-alive), counting the requests it served. `/fail`
/// answers 500, `/delay/MS` after MS milliseconds. Its threads end with the test process.
pub struct HttpServer {
    pub port: u16,
    pub served: std::sync::Arc<std::sync::atomic::AtomicU64>,
    /// When each connection was accepted.
    pub accepted: std::sync::Arc<std::sync::Mutex<Vec<Instant>>>,
    /// The path of every request served, in order.
    pub paths: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

/// Answers HTTP/1.1 requests on one connection (keep-alive) until it closes, counting them.
fn serve_http<S: std::io::Read + std::io::Write>(
    mut stream: S,
    counter: &std::sync::atomic::AtomicU64,
    paths: &std::sync::Mutex<Vec<String>>,
) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            buf.drain(..end + 4);
            if let Some(path) = head.split(' ').nth(1) {
                paths.lock().unwrap().push(path.to_owned());
            }
            // `/delay/MS` answers after MS milliseconds: a target as slow as a test needs.
            if let Some(ms) = head
                .strip_prefix("GET /delay/")
                .and_then(|rest| rest.split([' ', '?']).next())
                .and_then(|ms| ms.parse::<u64>().ok())
            {
                std::thread::sleep(Duration::from_millis(ms.min(10_000)));
            }
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let (code, body) = if head.starts_with("GET /fail") {
                ("500 Internal Server Error", "no")
            } else {
                ("200 OK", "ok")
            };
            let resp = format!(
                "HTTP/1.1 {code}\r\nContent-Length: {}\r\nContent-Type: text/plain\r\n\r\n{body}",
                body.len()
            );
            if stream
                .write_all(resp.as_bytes())
                .and_then(|_| stream.flush())
                .is_err()
            {
                return;
            }
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

impl HttpServer {
    pub fn start() -> HttpServer {
        Self::start_with(None)
    }

    /// The same server over TLS, with a self-signed certificate for 127.0.0.1 written (PEM) to
    /// `cert_pem`.
    pub fn start_tls(cert_pem: &Path) -> HttpServer {
        let ck = rcgen::generate_simple_self_signed(vec![
            "127.0.0.1".to_owned(),
            "localhost".to_owned(),
        ])
        .unwrap();
        std::fs::write(cert_pem, ck.cert.pem()).unwrap();
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(
            rustls::pki_types::PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der()),
        );
        let config = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![ck.cert.der().clone()], key)
        .unwrap();
        Self::start_with(Some(std::sync::Arc::new(config)))
    }

    fn start_with(tls: Option<std::sync::Arc<rustls::ServerConfig>>) -> HttpServer {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let served = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let accepted = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let paths = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let counter = served.clone();
        let accepts = accepted.clone();
        let seen = paths.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                accepts.lock().unwrap().push(Instant::now());
                let counter = counter.clone();
                let tls = tls.clone();
                let seen = seen.clone();
                std::thread::spawn(move || match tls {
                    None => serve_http(stream, &counter, &seen),
                    Some(config) => {
                        let Ok(conn) = rustls::ServerConnection::new(config) else {
                            return;
                        };
                        serve_http(rustls::StreamOwned::new(conn, stream), &counter, &seen);
                    }
                });
            }
        });
        HttpServer {
            port,
            served,
            accepted,
            paths,
        }
    }

    pub fn count(&self) -> u64 {
        self.served.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// Ports the OS hands out now (bound, then released), for configs that must name real ports
/// before the HQ starts (packed turrets).
pub fn free_ports<const N: usize>() -> [u16; N] {
    let listeners: Vec<std::net::TcpListener> = (0..N)
        .map(|_| std::net::TcpListener::bind("0.0.0.0:0").unwrap())
        .collect();
    std::array::from_fn(|i| listeners[i].local_addr().unwrap().port())
}

/// The names and contents of a .tar.gz, in archive order.
pub fn tar_listing(path: &Path) -> Vec<(String, String)> {
    use std::io::Read;
    let f = std::fs::File::open(path).unwrap();
    let mut a = tar::Archive::new(flate2::read::GzDecoder::new(f));
    a.entries()
        .unwrap()
        .map(|e| {
            let mut e = e.unwrap();
            let name = e.path().unwrap().display().to_string();
            let mut text = String::new();
            let _ = e.read_to_string(&mut text);
            (name, text)
        })
        .collect()
}

/// A virtualenv `name` in the target dir with `packages` pip-installed, made once: `ready`
/// says whether it is complete already. Returns its `bin/` folder.
fn venv_with(name: &str, packages: &[&str], ready: impl Fn(&Path) -> bool) -> PathBuf {
    let venv = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    let bin = venv.join("bin");
    if ready(&bin) {
        return bin;
    }
    // Tests of one binary run in parallel, and two may want the same venv: one builds it while
    // the other waits on the lock, then finds it ready.
    let lock = std::fs::File::create(venv.with_extension("lock")).unwrap();
    // SAFETY: flock on a descriptor this function owns; released when `lock` is dropped.
    let locked = unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&lock), libc::LOCK_EX) };
    assert_eq!(
        locked,
        0,
        "locking {}: {}",
        venv.display(),
        std::io::Error::last_os_error()
    );
    if ready(&bin) {
        return bin;
    }
    let ok = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .status()
        .unwrap()
        .success();
    assert!(
        ok,
        "python3 -m venv failed (Python 3.11 with venv is needed)"
    );
    let out = Command::new(bin.join("pip"))
        .arg("install")
        .arg("-q")
        .args(packages)
        .output()
        .unwrap();
    assert!(
        packages.is_empty() || out.status.success(),
        "pip install {} failed:\n{}",
        packages.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(ready(&bin), "{name}: incomplete after pip install");
    bin
}

/// A virtualenv holding the real oct-turrets 0.2.8 (PyPI) and pyzmq, made once per target dir.
/// Returns its `bin/` folder.
pub fn real_oct_turrets() -> PathBuf {
    venv_with(
        "oct-turrets-0.2.8-venv",
        &["oct-turrets==0.2.8", "pyzmq", "six"],
        |bin| bin.join("oct-turrets-start").is_file(),
    )
}

/// A virtualenv holding the real OCT 0.4.12 HQ (PyPI), made once per target dir. OCT (2017)
/// and its peewee 2.x import ABCs from `collections`, gone since Python 3.10: a
/// `sitecustomize.py` in the venv puts them back, and peewee is built with it in place.
/// Returns its `bin/` folder.
pub fn real_oct_hq() -> PathBuf {
    let venv = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("oct-0.4.12-venv");
    let bin = venv.join("bin");
    if bin.join("oct").is_file() && bin.join(".complete").is_file() {
        return bin;
    }
    let run = |cmd: &mut Command, what: &str| {
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{what} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    };
    run(
        Command::new("python3").args(["-m", "venv"]).arg(&venv),
        "python3 -m venv",
    );
    let site = run(
        Command::new(bin.join("python"))
            .args(["-c", "import site; print(site.getsitepackages()[0])"]),
        "finding site-packages",
    );
    let site = PathBuf::from(String::from_utf8(site.stdout).unwrap().trim());
    std::fs::write(
        site.join("sitecustomize.py"),
        "import collections, collections.abc\n\
         for _n in ('Callable', 'Mapping', 'MutableMapping', 'Sequence', 'Iterable', 'Hashable', 'Set'):\n\
         \x20   if not hasattr(collections, _n):\n\
         \x20       setattr(collections, _n, getattr(collections.abc, _n))\n",
    )
    .unwrap();
    let pip = bin.join("pip");
    run(
        Command::new(&pip).args(["install", "-q", "setuptools<60", "wheel"]),
        "pip install setuptools",
    );
    run(
        Command::new(&pip).args(["install", "-q", "--no-build-isolation", "peewee==2.10.2"]),
        "pip install peewee==2.10.2",
    );
    run(
        Command::new(&pip).args(["install", "-q", "oct==0.4.12", "oct-turrets==0.2.8", "pytz"]),
        "pip install oct==0.4.12",
    );
    std::fs::write(bin.join(".complete"), "").unwrap();
    bin
}

/// The python of a venv `name` with `packages` from PyPI, built once per target dir (complete
/// when `import` imports).
fn python_with(name: &str, packages: &[&str], import: &'static str) -> PathBuf {
    let imports = |bin: &Path| {
        Command::new(bin.join("python"))
            .args(["-c", import])
            .status()
            .is_ok_and(|s| s.success())
    };
    venv_with(name, packages, imports).join("python")
}

/// junitparser: a real JUnit XML parser of the kind CI servers use, to read what `--junit`
/// writes.
pub fn junitparser_python() -> PathBuf {
    python_with(
        "junitparser-venv",
        &["junitparser==3.2.0"],
        "import junitparser",
    )
}

/// What OCT's Browser needs: requests, lxml, cssselect.
pub fn browser_python() -> PathBuf {
    python_with(
        "browser-venv",
        &["requests==2.32.3", "lxml==5.3.0", "cssselect==1.2.0"],
        "import requests, lxml.html, cssselect",
    )
}

/// A venv with nothing installed in it: a Python where every third-party import fails.
pub fn bare_python() -> PathBuf {
    python_with("bare-venv", &[], "import sys")
}

/// Selenium, to drive Debian's chromium through its chromium-driver.
pub fn selenium_python() -> PathBuf {
    python_with("selenium-venv", &["selenium==4.27.1"], "import selenium")
}

/// kubernetes-validate: the Kubernetes OpenAPI schemas, offline (and PyYAML with it).
pub fn kubernetes_validate_python() -> PathBuf {
    python_with(
        "kubernetes-validate-venv",
        &["kubernetes-validate==1.37.0"],
        "import kubernetes_validate, yaml",
    )
}

/// aiosmtpd, a real SMTP server, for the proxy's smtp relay.
pub fn aiosmtpd_python() -> PathBuf {
    python_with(
        "aiosmtpd-venv",
        &["aiosmtpd==1.4.6"],
        "import aiosmtpd.controller",
    )
}

/// vaurienclient 1.1 (and requests), the client Vaurien's users drive it with. It is Python 2
/// code: found here, not imported (see tests/proxy.rs).
pub fn vaurienclient_python() -> PathBuf {
    python_with(
        "vaurienclient-venv",
        &["vaurienclient==1.1", "requests==2.32.3"],
        "import requests, importlib.util; assert importlib.util.find_spec('vaurienclient')",
    )
}
