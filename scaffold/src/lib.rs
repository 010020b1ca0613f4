//! What a user does first and what they ship: `oct new-project` and `oct pack-turrets`, and the
//! unpacking of a turret tarball for `oct-turrets-start --tar`.
//!
//! # Layout
//!
//! `project` owns new-project: the files a project starts with (embedded from the repository's
//! `test_scripts/` and `templates/`) or a template tarball. `pack` owns pack-turrets: one
//! tarball per turret with the merged turret config, the script and the extra files at their
//! relative paths, written atomically. `unpack` owns reading a turret tarball safely (no
//! absolute or `..` entries) into a private folder. None of them starts a process or a socket.

mod pack;
mod project;
mod unpack;

pub use pack::{pack_turrets, PackOptions};
pub use project::new_project;
pub use unpack::{unpack_turret, Unpacked};

/// Errors of this crate; each names the file, entry or key at fault.
#[derive(Debug, thiserror::Error)]
pub enum ScaffoldError {
    #[error("{path}: {message}")]
    Path { path: String, message: String },
    #[error(transparent)]
    Config(#[from] hq::ConfigError),
}

pub(crate) fn path_error(path: &std::path::Path, message: impl std::fmt::Display) -> ScaffoldError {
    ScaffoldError::Path {
        path: path.display().to_string(),
        message: message.to_string(),
    }
}
