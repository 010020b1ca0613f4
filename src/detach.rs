//! Tests that outlive their terminal, as Mozilla Loads had them: `oct run --detach` leaves the HQ
//! running in the background, `oct attach` follows its console, `oct stop` stops it cleanly,
//! `oct status` lists what runs on this machine.
//!
//! A detached HQ is this binary again, in a process group of its own (so the terminal's Ctrl-C
//! does not reach it), its console written to `RESULTS_DIR/console.log`. It describes itself in
//! `RESULTS_DIR/hq.json` (pid, project, results folder, console, start) and registers that
//! file in the user's runtime folder (`$XDG_RUNTIME_DIR` or `~/.cache`, `oct/running/<pid>`),
//! which is how `status`, `attach` and `stop` find it; it removes its entry when it ends (and
//! an entry whose process is gone is dropped by the next `status`).

use std::io::{BufRead, Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

/// Set in the detached HQ's environment: it registers itself and does not linger.
pub const DETACHED_ENV: &str = "OCT_DETACHED";

fn registry() -> Result<PathBuf> {
    let base = std::env::var_os("XDG_RUNTIME_DIR")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .context("neither XDG_RUNTIME_DIR nor HOME is set: nowhere to register detached tests")?;
    Ok(base.join("oct").join("running"))
}

fn alive(pid: u32) -> bool {
    // Signal 0: is there such a process (of ours)?
    pid > 0 && unsafe { libc::kill(pid as i32, 0) } == 0
}

/// `oct run --detach`: starts the same `oct run` in the background with its console in
/// `results_dir/console.log`, waits until it has registered, and says how to follow it.
pub fn detach(mut args: Vec<std::ffi::OsString>, results_dir: &Path) -> Result<u8> {
    args.retain(|a| a != "--detach");
    std::fs::create_dir_all(results_dir)
        .with_context(|| format!("{}: creating the results folder", results_dir.display()))?;
    let console = results_dir.join("console.log");
    let log = std::fs::File::create(&console)
        .with_context(|| format!("{}: creating the console log", console.display()))?;
    let exe = std::env::current_exe().context("finding the oct binary")?;
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("run")
        .args(&args)
        .arg("-o")
        .arg(results_dir)
        .env(DETACHED_ENV, "1")
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let mut child = cmd.spawn().context("starting the detached HQ")?;
    let described = results_dir.join("hq.json");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if described.is_file() {
            break;
        }
        if let Some(status) = child.try_wait()? {
            let text = std::fs::read_to_string(&console).unwrap_or_default();
            eprint!("{text}");
            bail!("the detached HQ exited at once ({status}); its console is above");
        }
        if Instant::now() > deadline {
            bail!(
                "the detached HQ did not start within 30 s; see {}",
                console.display()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    eprintln!(
        "oct: detached: HQ pid {}, results in {}\noct: follow it with `oct attach`, end it with `oct stop` (PROJECT or that folder)",
        child.id(),
        results_dir.display()
    );
    Ok(0)
}

/// In the detached HQ: `hq.json` and its registry entry, removed when dropped.
pub struct Registration {
    entry: PathBuf,
}

impl Registration {
    pub fn new(project: &Path, results_dir: &Path) -> Result<Registration> {
        let pid = std::process::id();
        let me = json!({
            "pid": pid,
            "project": project.canonicalize().unwrap_or_else(|_| project.to_owned()),
            "results_dir": results_dir.canonicalize().unwrap_or_else(|_| results_dir.to_owned()),
            "console": results_dir.join("console.log"),
            "started": chrono::Local::now().to_rfc3339(),
        });
        let dir = registry()?;
        std::fs::create_dir_all(&dir).with_context(|| format!("{}", dir.display()))?;
        let entry = dir.join(pid.to_string());
        std::fs::write(&entry, me.to_string()).with_context(|| format!("{}", entry.display()))?;
        // Last: the parent waits for this file.
        std::fs::write(results_dir.join("hq.json"), me.to_string())?;
        Ok(Registration { entry })
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.entry);
    }
}

/// Every detached test still running here (entries of gone processes are removed).
fn running() -> Result<Vec<Value>> {
    let dir = registry()?;
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Ok(out);
    };
    for e in entries.flatten() {
        let v: Option<Value> = std::fs::read_to_string(e.path())
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok());
        match v {
            Some(v) if v["pid"].as_u64().is_some_and(|p| alive(p as u32)) => out.push(v),
            _ => {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    out.sort_by(|a, b| a["started"].as_str().cmp(&b["started"].as_str()));
    Ok(out)
}

/// The running test a PROJECT folder (or its results folder) names.
fn find(which: &Path) -> Result<Value> {
    let want = which
        .canonicalize()
        .with_context(|| format!("{}: no such folder", which.display()))?;
    let all = running()?;
    let mine: Vec<&Value> = all
        .iter()
        .filter(|v| {
            [&v["project"], &v["results_dir"]]
                .iter()
                .any(|p| p.as_str().is_some_and(|p| Path::new(p) == want))
        })
        .collect();
    match mine.as_slice() {
        [one] => Ok((*one).clone()),
        [] => bail!(
            "{}: no detached test of it is running here (see `oct status`)",
            which.display()
        ),
        many => bail!(
            "{}: {} detached tests of it are running; name one by its results folder: {}",
            which.display(),
            many.len(),
            many.iter()
                .filter_map(|v| v["results_dir"].as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// `oct status`.
pub fn status() -> Result<u8> {
    let all = running()?;
    if all.is_empty() {
        println!("no detached test is running here");
        return Ok(0);
    }
    println!("{:<8} {:<26} {:<40} results", "pid", "started", "project");
    for v in all {
        println!(
            "{:<8} {:<26} {:<40} {}",
            v["pid"],
            v["started"].as_str().unwrap_or("").get(..19).unwrap_or(""),
            v["project"].as_str().unwrap_or(""),
            v["results_dir"].as_str().unwrap_or("")
        );
    }
    Ok(0)
}

/// Copies what `file` gains to stdout from `from` on, until `pid` exits or `stop` says so;
/// returns where it got to.
fn follow(file: &Path, mut from: u64, pid: u32, stop: &dyn Fn() -> bool) -> Result<u64> {
    let mut f = std::fs::File::open(file).with_context(|| format!("{}", file.display()))?;
    let mut buf = Vec::new();
    loop {
        f.seek(std::io::SeekFrom::Start(from))?;
        buf.clear();
        f.read_to_end(&mut buf)?;
        if !buf.is_empty() {
            from += buf.len() as u64;
            let mut out = std::io::stdout().lock();
            out.write_all(&buf)?;
            out.flush()?;
        }
        if !alive(pid) || stop() {
            return Ok(from);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `oct attach PROJECT`: the detached test's console, live. Ctrl-C asks whether to stop the
/// test or detach again.
pub fn attach(which: &Path) -> Result<u8> {
    let me = find(which)?;
    let pid = me["pid"].as_u64().unwrap_or(0) as u32;
    let console = PathBuf::from(me["console"].as_str().unwrap_or_default());
    let presses = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let p = presses.clone();
    ctrlc::set_handler(move || {
        p.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    })
    .context("installing the Ctrl-C handler")?;
    let pressed = || presses.load(std::sync::atomic::Ordering::SeqCst) > 0;
    let mut at = follow(&console, 0, pid, &pressed)?;
    if !alive(pid) {
        return Ok(0);
    }
    eprint!("\noct: stop the test (s) or detach (d)? ");
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    if answer.trim().eq_ignore_ascii_case("s") {
        interrupt(pid)?;
        at = follow(&console, at, pid, &|| false)?;
        let _ = at;
    } else {
        eprintln!(
            "oct: detached; `oct attach {}` to come back",
            which.display()
        );
    }
    Ok(0)
}

fn interrupt(pid: u32) -> Result<()> {
    if unsafe { libc::kill(pid as i32, libc::SIGINT) } != 0 {
        bail!("pid {pid}: {}", std::io::Error::last_os_error());
    }
    Ok(())
}

/// `oct stop PROJECT`: a clean stop (as Ctrl-C: stop, drain, store, report), waited for.
pub fn stop(which: &Path) -> Result<u8> {
    let me = find(which)?;
    let pid = me["pid"].as_u64().unwrap_or(0) as u32;
    let console = PathBuf::from(me["console"].as_str().unwrap_or_default());
    let from = std::fs::metadata(&console).map(|m| m.len()).unwrap_or(0);
    interrupt(pid)?;
    eprintln!("oct: stopping the test of pid {pid}");
    let deadline = Instant::now() + Duration::from_secs(600);
    follow(&console, from, pid, &|| Instant::now() > deadline)?;
    if alive(pid) {
        bail!(
            "pid {pid} is still running after 10 minutes; see {}",
            console.display()
        );
    }
    Ok(0)
}
