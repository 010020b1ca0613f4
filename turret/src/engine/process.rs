//! Scripts in their own processes, driven over stdin/stdout with JSON lines
//! (docs/process-protocol.md): OCT's Python scripts through an embedded adapter, and any other
//! executable that speaks the protocol. One worker process per canon, so canons run in parallel
//! whatever the language (OCT's Python canons share one GIL).

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};

use super::{Canon, CanonInfo, Engine, Iteration, LocalFuture, Script, ScriptError};

/// The adapter and the `oct_turrets` and `oct` (OCT's Browser) stand-in packages, written to a
/// private folder at start.
const PYTHON_FILES: &[(&str, &str)] = &[
    ("oct_worker.py", include_str!("../../python/oct_worker.py")),
    (
        "oct_turrets/__init__.py",
        include_str!("../../python/oct_turrets/__init__.py"),
    ),
    (
        "oct_turrets/base.py",
        include_str!("../../python/oct_turrets/base.py"),
    ),
    (
        "oct_turrets/tools.py",
        include_str!("../../python/oct_turrets/tools.py"),
    ),
    (
        "oct_turrets/data.py",
        include_str!("../../python/oct_turrets/data.py"),
    ),
    (
        "oct/__init__.py",
        include_str!("../../python/oct/__init__.py"),
    ),
    (
        "oct/core/__init__.py",
        include_str!("../../python/oct/core/__init__.py"),
    ),
    (
        "oct/core/browser.py",
        include_str!("../../python/oct/core/browser.py"),
    ),
    (
        "oct/core/exceptions.py",
        include_str!("../../python/oct/core/exceptions.py"),
    ),
];

/// A worker that dies this many times in a row without completing an iteration aborts its canon.
const MAX_RESTARTS: u32 = 3;
/// How long a worker may take to answer `check` or `init` (imports can be slow).
const START_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Clone)]
struct Launch {
    program: OsString,
    args: Vec<OsString>,
    env: Vec<(String, OsString)>,
    /// The script, for messages.
    script: PathBuf,
}

pub struct ProcessEngine {
    launch: Launch,
    /// Keeps the adapter's folder alive as long as the engine, when it is a temporary one.
    _support: Option<Arc<tempfile::TempDir>>,
}

impl ProcessEngine {
    /// An OCT Python script, run by `python3` (or `$OCT_PYTHON`) through the adapter.
    pub fn python(script: &Path) -> Result<Self, ScriptError> {
        let (dir, temp) = match cached_adapter() {
            Some(dir) => (dir, None),
            None => {
                let temp = tempfile::Builder::new()
                    .prefix("oct-python-")
                    .tempdir()
                    .map_err(|e| ScriptError(format!("creating the Python adapter folder: {e}")))?;
                write_adapter(temp.path())
                    .map_err(|e| ScriptError(format!("writing the Python adapter: {e}")))?;
                (temp.path().to_owned(), Some(Arc::new(temp)))
            }
        };
        let mut pythonpath = OsString::from(&dir);
        if let Some(old) = std::env::var_os("PYTHONPATH") {
            pythonpath.push(":");
            pythonpath.push(old);
        }
        let program = std::env::var_os("OCT_PYTHON").unwrap_or_else(|| "python3".into());
        Ok(ProcessEngine {
            launch: Launch {
                program,
                args: vec![dir.join("oct_worker.py").into(), script.into()],
                env: vec![
                    ("PYTHONPATH".into(), pythonpath),
                    ("PYTHONUNBUFFERED".into(), "1".into()),
                ],
                script: script.to_owned(),
            },
            _support: temp,
        })
    }

    /// Any executable speaking the JSON-lines protocol.
    pub fn executable(script: &Path) -> Result<Self, ScriptError> {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(script)
            .map_err(|e| ScriptError(format!("{}: {e}", script.display())))?;
        if meta.permissions().mode() & 0o111 == 0 {
            return Err(ScriptError(format!(
                "{}: not executable (chmod +x it, or use a .lua or .py script)",
                script.display()
            )));
        }
        Ok(ProcessEngine {
            launch: Launch {
                program: script.into(),
                args: Vec::new(),
                env: Vec::new(),
                script: script.to_owned(),
            },
            _support: None,
        })
    }
}

fn write_adapter(dir: &Path) -> std::io::Result<()> {
    for (rel, text) in PYTHON_FILES {
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, text)?;
    }
    Ok(())
}

/// The adapter in the user's cache (`$XDG_CACHE_HOME` or `~/.cache`, `oct/python-<hash of its
/// files>`), written once and checked at each start: a turret that is killed (as local
/// turrets are at the end of a run) leaves nothing behind, where a temporary folder per start
/// would pile up. `None` if there is no cache folder to write in (a temporary folder then).
fn cached_adapter() -> Option<PathBuf> {
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    // FNV-1a over names and contents: stable across builds, unlike std's hasher.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for (rel, text) in PYTHON_FILES {
        for b in rel.bytes().chain([0]).chain(text.bytes()).chain([0]) {
            hash = (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    let root = cache.join("oct");
    let dir = root.join(format!("python-{hash:016x}"));
    let intact = |dir: &Path| {
        PYTHON_FILES
            .iter()
            .all(|(rel, text)| std::fs::read(dir.join(rel)).is_ok_and(|got| got == text.as_bytes()))
    };
    if intact(&dir) {
        return Some(dir);
    }
    std::fs::create_dir_all(&root).ok()?;
    // Written aside, then renamed into place: turrets starting together never see half a copy.
    let fresh = tempfile::Builder::new()
        .prefix(".python-")
        .tempdir_in(&root)
        .ok()?;
    write_adapter(fresh.path()).ok()?;
    if std::fs::rename(fresh.path(), &dir).is_err() {
        if intact(&dir) {
            // Another turret put it there meanwhile.
            return Some(dir);
        }
        // A damaged copy: moved aside (one rename), removed, and ours put in its place.
        let stale = root.join(format!(".stale-{}", std::process::id()));
        if std::fs::rename(&dir, &stale).is_ok() {
            let _ = std::fs::remove_dir_all(&stale);
        }
        if std::fs::rename(fresh.path(), &dir).is_err() {
            return intact(&dir).then_some(dir);
        }
    }
    let _ = fresh.keep();
    Some(dir)
}

fn parse_reply(line: &str, script: &Path) -> Result<Value, ScriptError> {
    serde_json::from_str(line).map_err(|e| {
        ScriptError(format!(
            "{}: the worker answered something that is not JSON ({e}): {}",
            script.display(),
            line.chars().take(200).collect::<String>()
        ))
    })
}

fn check_ok(reply: &Value) -> Result<(), ScriptError> {
    if reply.get("ok").and_then(Value::as_bool) == Some(true) {
        Ok(())
    } else {
        let e = reply
            .get("error")
            .and_then(Value::as_str)
            .unwrap_or("the worker refused");
        Err(ScriptError(e.to_owned()))
    }
}

impl Engine for ProcessEngine {
    fn check(&self) -> Result<(), ScriptError> {
        let l = &self.launch;
        let mut child = std::process::Command::new(&l.program)
            .args(&l.args)
            .envs(l.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| ScriptError(format!("starting {}: {e}", l.program.to_string_lossy())))?;
        let mut stdin = child.stdin.take();
        if let Some(s) = stdin.as_mut() {
            let _ = s.write_all(b"{\"op\": \"check\"}\n");
        }
        let stdout = child.stdout.take();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            if let Some(out) = stdout {
                let _ = BufReader::new(out).read_line(&mut line);
            }
            let _ = tx.send(line);
        });
        let line = rx.recv_timeout(START_TIMEOUT).unwrap_or_default();
        drop(stdin);
        let _ = child.kill();
        let status = child.wait().ok();
        if line.trim().is_empty() {
            return Err(ScriptError(format!(
                "{}: the worker exited without answering ({})",
                l.script.display(),
                status.map(|s| s.to_string()).unwrap_or_default()
            )));
        }
        check_ok(&parse_reply(&line, &l.script)?)
    }

    fn load(&self, canon: &CanonInfo) -> Result<Box<dyn Script>, ScriptError> {
        Ok(Box::new(ProcessScript {
            launch: self.launch.clone(),
            info: canon.clone(),
        }))
    }
}

struct ProcessScript {
    launch: Launch,
    info: CanonInfo,
}

struct Worker {
    _child: tokio::process::Child,
    stdin: tokio::process::ChildStdin,
    lines: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
    script: PathBuf,
    /// The test's feeders: each iteration line carries one row of each.
    data: std::sync::Arc<crate::data::Feeders>,
}

impl Worker {
    async fn start(l: &Launch, info: &CanonInfo) -> Result<Worker, ScriptError> {
        let mut child = tokio::process::Command::new(&l.program)
            .args(&l.args)
            .envs(l.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| ScriptError(format!("starting {}: {e}", l.program.to_string_lossy())))?;
        let stdin = child
            .stdin
            .take()
            .ok_or_else(|| ScriptError("no stdin".into()))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| ScriptError("no stdout".into()))?;
        let mut w = Worker {
            _child: child,
            stdin,
            lines: tokio::io::BufReader::new(stdout).lines(),
            script: l.script.clone(),
            data: std::sync::Arc::clone(&info.data),
        };
        let init = json!({
            "op": "init",
            "config": info.config,
            "context": info.context,
            "canon": info.index,
            "turret": info.turret,
        });
        let reply = tokio::time::timeout(START_TIMEOUT, w.ask(&init))
            .await
            .map_err(|_| {
                ScriptError(format!(
                    "{}: the worker did not start in {START_TIMEOUT:?}",
                    l.script.display()
                ))
            })??;
        check_ok(&reply)?;
        Ok(w)
    }

    async fn ask(&mut self, msg: &Value) -> Result<Value, ScriptError> {
        let mut line = msg.to_string();
        line.push('\n');
        let gone = |e: std::io::Error| ScriptError(format!("the worker is gone: {e}"));
        self.stdin.write_all(line.as_bytes()).await.map_err(gone)?;
        self.stdin.flush().await.map_err(gone)?;
        match self.lines.next_line().await.map_err(gone)? {
            Some(line) => parse_reply(&line, &self.script),
            None => Err(ScriptError("the worker exited".into())),
        }
    }

    async fn iteration(&mut self) -> Result<Iteration, ScriptError> {
        let mut ask = json!({"op": "iteration"});
        if self.data.iter().next().is_some() {
            // One row of each feeder, taken for this iteration (null once a `stop` one ran out).
            let rows: serde_json::Map<String, Value> = self
                .data
                .iter()
                .map(|f| {
                    let row = f.next().map(|r| {
                        Value::Object(
                            f.fields()
                                .iter()
                                .zip(r)
                                .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                                .collect(),
                        )
                    });
                    (f.name().to_owned(), row.unwrap_or(Value::Null))
                })
                .collect();
            ask["data"] = Value::Object(rows);
        }
        let reply = self.ask(&ask).await?;
        let scriptrun_time = reply
            .get("scriptrun_time")
            .and_then(Value::as_f64)
            .unwrap_or(0.0);
        let error = match reply.get("error") {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Null) | None => String::new(),
            Some(other) => other.to_string(),
        };
        let numbers = |key: &str| {
            let mut list: Vec<(String, f64)> = reply
                .get(key)
                .and_then(Value::as_object)
                .map(|m| {
                    m.iter()
                        .filter_map(|(k, v)| v.as_f64().map(|x| (k.clone(), x)))
                        .collect()
                })
                .unwrap_or_default();
            list.sort_by(|a, b| a.0.cmp(&b.0));
            list
        };
        // `"checks": {"name": true | false | {"passed": n, "failed": n}}`.
        let mut checks: Vec<(String, u64, u64)> = reply
            .get("checks")
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .map(|(k, v)| match v {
                        Value::Bool(true) => (k.clone(), 1, 0),
                        Value::Object(o) => {
                            let n = |f| o.get(f).and_then(Value::as_u64).unwrap_or(0);
                            (k.clone(), n("passed"), n("failed"))
                        }
                        _ => (k.clone(), 0, 1),
                    })
                    .collect()
            })
            .unwrap_or_default();
        checks.sort();
        Ok(Iteration {
            scriptrun_time,
            error,
            timers: numbers("custom_timers"),
            checks,
            counters: numbers("counters"),
        })
    }
}

impl Script for ProcessScript {
    fn run_loop(
        self: Box<Self>,
        canon: Rc<dyn Canon>,
    ) -> LocalFuture<'static, Result<(), ScriptError>> {
        Box::pin(async move {
            let mut failures = 0u32;
            'workers: while canon.keep_going() {
                let mut worker = Worker::start(&self.launch, &self.info).await?;
                while canon.keep_going() {
                    if canon.paced() && !canon.pace().await {
                        return Ok(());
                    }
                    match worker.iteration().await {
                        Ok(it) => {
                            failures = 0;
                            canon.report(it);
                        }
                        Err(e) => {
                            // The iteration in flight is lost with its worker: say so as data.
                            canon.report(Iteration {
                                error: format!("worker died: {}", e.0),
                                ..Default::default()
                            });
                            failures += 1;
                            if failures >= MAX_RESTARTS {
                                return Err(ScriptError(format!(
                                    "{}: the worker died {failures} times in a row: {}",
                                    self.launch.script.display(),
                                    e.0
                                )));
                            }
                            continue 'workers;
                        }
                    }
                }
            }
            Ok(())
        })
    }
}
