//! Reading turret and template tarballs safely.

use std::fs::File;
use std::path::{Component, Path, PathBuf};

use crate::{path_error, ScaffoldError};

/// A turret tarball unpacked into a private folder, removed when this is dropped.
pub struct Unpacked {
    dir: tempfile::TempDir,
}

impl Unpacked {
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn config(&self) -> PathBuf {
        self.dir.path().join("config.json")
    }
}

/// Unpacks a turret tarball (`oct pack-turrets` output) into a private temp folder; it must hold
/// `config.json` at its top.
pub fn unpack_turret(tarball: &Path) -> Result<Unpacked, ScaffoldError> {
    let dir = tempfile::Builder::new()
        .prefix("oct-turret-")
        .tempdir()
        .map_err(|e| path_error(tarball, format!("creating a temp folder: {e}")))?;
    unpack_into(tarball, dir.path())?;
    if !dir.path().join("config.json").is_file() {
        return Err(path_error(
            tarball,
            "no config.json at the top of the tarball",
        ));
    }
    Ok(Unpacked { dir })
}

/// Unpacks `tarball` (gzip'd tar) into `dir`, refusing absolute, `..` and link entries.
pub(crate) fn unpack_into(tarball: &Path, dir: &Path) -> Result<(), ScaffoldError> {
    let file = File::open(tarball).map_err(|e| path_error(tarball, e))?;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let entries = archive
        .entries()
        .map_err(|e| path_error(tarball, format!("not a tar.gz archive: {e}")))?;
    for entry in entries {
        let mut entry =
            entry.map_err(|e| path_error(tarball, format!("not a tar.gz archive: {e}")))?;
        let path = entry
            .path()
            .map_err(|e| path_error(tarball, format!("bad entry name: {e}")))?
            .into_owned();
        let safe = path
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
        if !safe {
            return Err(path_error(
                tarball,
                format!(
                    "refusing entry `{}`: absolute or parent (..) path",
                    path.display()
                ),
            ));
        }
        let kind = entry.header().entry_type();
        if !(kind.is_file() || kind.is_dir()) {
            return Err(path_error(
                tarball,
                format!(
                    "refusing entry `{}`: only files and folders are allowed",
                    path.display()
                ),
            ));
        }
        entry
            .unpack_in(dir)
            .map_err(|e| path_error(tarball, format!("unpacking `{}`: {e}", path.display())))?;
    }
    Ok(())
}
