//! `oct run --local`: each turret of the config as a child process of this machine, with its
//! packed config written to `RESULTS_DIR/turrets/NAME.json` and its output in `NAME.log`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use serde_json::Value;

use crate::config::Config;
use crate::transport::Ports;

/// The children; dropping this kills and reaps every one of them.
pub struct LocalTurrets {
    children: Vec<(String, Child)>,
    log_dir: PathBuf,
}

impl LocalTurrets {
    /// Starts `program turret --config-file …` once per turret entry.
    pub fn spawn(
        program: &Path,
        config: &Config,
        ports: Ports,
        dir: &Path,
    ) -> Result<Self, String> {
        let turrets_dir = dir.join("turrets");
        std::fs::create_dir_all(&turrets_dir)
            .map_err(|e| format!("{}: {e}", turrets_dir.display()))?;
        let project = config.path.parent().unwrap_or(Path::new("."));
        let project = std::fs::canonicalize(project).unwrap_or_else(|_| project.to_owned());
        let mut local = LocalTurrets {
            children: Vec::new(),
            log_dir: turrets_dir.clone(),
        };
        for entry in &config.turrets {
            let mut turret = entry.turret_config(config, ports.publish, ports.rc);
            // The turret resolves `script` against its config file's folder; ours lives in the
            // results dir, so hand it the project's path.
            let script = project.join(&entry.script);
            turret["script"] = Value::String(script.display().to_string());
            turret["hq_address"] = Value::String("127.0.0.1".into());
            // Test data: the project's files, where they are.
            if let Some(Value::Object(feeders)) = turret.get_mut("data") {
                for spec in feeders.values_mut() {
                    if let Some(Value::String(file)) = spec.get("file").cloned() {
                        spec["file"] = Value::String(project.join(file).display().to_string());
                    }
                }
            }
            // Secure mode: the same secret file as the HQ's (OCT_SECRET is inherited anyway).
            if let Some(Value::String(file)) = config.raw.get("secret_file") {
                turret["secret_file"] = Value::String(project.join(file).display().to_string());
            }
            let safe = crate::file_safe(&entry.name);
            let config_path = turrets_dir.join(format!("{safe}.json"));
            let log_path = turrets_dir.join(format!("{safe}.log"));
            let text = serde_json::to_string_pretty(&turret).unwrap_or_default();
            std::fs::write(&config_path, text)
                .map_err(|e| format!("{}: {e}", config_path.display()))?;
            let log = std::fs::File::create(&log_path)
                .map_err(|e| format!("{}: {e}", log_path.display()))?;
            let log2 = log
                .try_clone()
                .map_err(|e| format!("{}: {e}", log_path.display()))?;
            let mut cmd = Command::new(program);
            cmd.arg("turret")
                .arg("--config-file")
                .arg(&config_path)
                .stdin(Stdio::null())
                .stdout(log)
                .stderr(log2);
            // An HQ that dies without its Drop (SIGKILL, a crash) takes its local turrets
            // along: the kernel kills each when the HQ is gone, instead of leaving it waiting
            // for the next HQ.
            // SAFETY: only prctl, async-signal-safe, between fork and exec.
            unsafe {
                std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                    Ok(())
                });
            }
            let child = cmd.spawn().map_err(|e| {
                format!(
                    "starting local turret {}: {}: {e}",
                    entry.name,
                    program.display()
                )
            })?;
            local.children.push((entry.name.clone(), child));
        }
        Ok(local)
    }

    /// A local turret that has exited, with its exit status and log file: it will never
    /// answer, so waiting for it is pointless.
    pub fn exited(&mut self) -> Option<String> {
        for (name, child) in &mut self.children {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(format!(
                    "local turret {name} exited ({status}); see {}",
                    self.log_dir
                        .join(format!("{}.log", crate::file_safe(name)))
                        .display()
                ));
            }
        }
        None
    }
}

impl Drop for LocalTurrets {
    fn drop(&mut self) {
        for (_, child) in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
