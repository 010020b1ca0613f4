//! `oct pack-turrets PROJECT`: one `PROJECT/<turret name>.tar.gz` per turret.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use flate2::write::GzEncoder;
use flate2::Compression;
use hq::{Config, TurretEntry};

use crate::{path_error, ScaffoldError};

pub struct PackOptions {
    pub project: PathBuf,
    /// Default `PROJECT/config.json`.
    pub config_file: Option<PathBuf>,
    /// Add OCT's setup.py (for Python turrets).
    pub python: bool,
}

/// OCT's setup.py for a Python turret package.
fn setup_py(name: &str, requirements: &[String]) -> String {
    let mut reqs: Vec<String> = vec!["'oct-turrets'".into()];
    reqs.extend(requirements.iter().map(|r| format!("{r:?}")));
    format!(
        "from setuptools import setup\n\nsetup(\n    name={name:?},\n    version='0.1.0',\n    install_requires=[{}],\n)\n",
        reqs.join(", ")
    )
}

/// Packs every turret of the project; prints OCT's "Added …" / "Archive … created" lines to
/// `out` and OCT's warnings to `warn`. Returns the tarballs written.
pub fn pack_turrets(
    opts: &PackOptions,
    out: &mut dyn Write,
    warn: &mut dyn Write,
) -> Result<Vec<PathBuf>, ScaffoldError> {
    if !opts.project.is_dir() {
        return Err(path_error(&opts.project, "no such project folder"));
    }
    let config_path = opts
        .config_file
        .clone()
        .unwrap_or_else(|| opts.project.join("config.json"));
    let config = Config::load(&config_path)?;
    let base = config_path.parent().unwrap_or(Path::new(".")).to_owned();
    // Check everything before writing anything.
    for turret in &config.turrets {
        let script = base.join(&turret.script);
        if !script.is_file() {
            return Err(path_error(
                &script,
                format!("script of turret `{}` not found", turret.name),
            ));
        }
        for extra in &turret.extra_files {
            if !base.join(extra).exists() {
                return Err(path_error(
                    &base.join(extra),
                    format!("extra file of turret `{}` not found", turret.name),
                ));
            }
        }
    }
    for key in ["hq_address", "publish_port", "rc_port"] {
        if !config.raw.contains_key(key) {
            let _ = writeln!(
                warn,
                "WARNING: {key} configuration key not present, the value will be set to default value"
            );
        }
    }
    let mut written = Vec::new();
    for turret in &config.turrets {
        written.push(pack_one(&config, turret, &base, opts, out)?);
    }
    Ok(written)
}

fn pack_one(
    config: &Config,
    turret: &TurretEntry,
    base: &Path,
    opts: &PackOptions,
    out: &mut dyn Write,
) -> Result<PathBuf, ScaffoldError> {
    let target = opts.project.join(format!("{}.tar.gz", turret.name));
    // A private temp file renamed into place: concurrent packs never see each other's halves
    // (OCT writes fixed files in /tmp).
    let tmp = tempfile::Builder::new()
        .prefix(".oct-pack-")
        .tempfile_in(&opts.project)
        .map_err(|e| path_error(&opts.project, e))?;
    let mut tar = tar::Builder::new(GzEncoder::new(
        tmp.reopen().map_err(|e| path_error(tmp.path(), e))?,
        Compression::default(),
    ));
    tar.mode(tar::HeaderMode::Deterministic);
    let err = |e: std::io::Error| path_error(&target, e);
    let packed = turret.turret_config(config, config.publish_port, config.rc_port);
    let mut text = serde_json::to_string_pretty(&packed).unwrap_or_default();
    text.push('\n');
    let mut added = Vec::new();
    append_bytes(&mut tar, "config.json", text.as_bytes()).map_err(err)?;
    added.push("config.json".to_owned());
    if opts.python {
        let setup = setup_py(&turret.name, &config.turrets_requirements);
        append_bytes(&mut tar, "setup.py", setup.as_bytes()).map_err(err)?;
        added.push("setup.py".to_owned());
    }
    for extra in &turret.extra_files {
        let path = base.join(extra);
        if path.is_dir() {
            tar.append_dir_all(extra, &path).map_err(err)?;
        } else {
            let mut f = File::open(&path).map_err(|e| path_error(&path, e))?;
            tar.append_file(extra, &mut f).map_err(err)?;
        }
        added.push(extra.clone());
    }
    let script = base.join(&turret.script);
    let mut f = File::open(&script).map_err(|e| path_error(&script, e))?;
    tar.append_file(&turret.script, &mut f).map_err(err)?;
    added.push(turret.script.clone());
    tar.into_inner()
        .and_then(|gz| gz.finish())
        .and_then(|f| f.sync_all())
        .map_err(err)?;
    tmp.persist(&target)
        .map_err(|e| path_error(&target, e.error))?;
    for a in added {
        let _ = writeln!(out, "Added {a}");
    }
    let _ = writeln!(out, "Archive {} created", target.display());
    let _ = writeln!(out, "=========================================");
    Ok(target)
}

fn append_bytes<W: Write>(
    tar: &mut tar::Builder<W>,
    name: &str,
    bytes: &[u8],
) -> std::io::Result<()> {
    let mut header = tar::Header::new_gnu();
    header.set_size(bytes.len() as u64);
    header.set_mode(0o644);
    header.set_mtime(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    );
    header.set_cksum();
    tar.append_data(&mut header, name, bytes)
}
