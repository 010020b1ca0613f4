//! `oct new-project NAME [-t TEMPLATE.tar.gz]`.

use std::path::Path;

use crate::{path_error, unpack, ScaffoldError};

const CONFIG: &str = r#"{
    "run_time": 30,
    "results_ts_interval": 10,
    "progress_bar": true,
    "console_logging": false,
    "testing": false,
    "publish_port": 5000,
    "rc_port": 5001,
    "min_turrets": 2,
    "turrets": [
        {
            "name": "navigation",
            "cannons": 2,
            "rampup": 0,
            "script": "test_scripts/v_user.lua"
        },
        {
            "name": "python-navigation",
            "cannons": 2,
            "rampup": 0,
            "script": "test_scripts/v_user.py"
        }
    ],
    "turrets_requirements": [],
    "extra_turret_config": {}
}
"#;

/// The files of a new project, relative to its folder.
pub const FILES: &[(&str, &str)] = &[
    ("config.json", CONFIG),
    (
        "test_scripts/v_user.lua",
        include_str!("../../test_scripts/v_user.lua"),
    ),
    (
        "test_scripts/v_user.py",
        include_str!("../../test_scripts/v_user.py"),
    ),
    (
        "templates/report.css",
        include_str!("../../templates/report.css"),
    ),
];

/// Creates the project folder `name`, from the built-in files or from a template tarball.
pub fn new_project(name: &Path, template: Option<&Path>) -> Result<(), ScaffoldError> {
    if name.exists() {
        return Err(path_error(
            name,
            "already exists; choose another project name",
        ));
    }
    if let Some(template) = template {
        // Unpack beside the target first, so a bad template leaves nothing behind.
        let parent = name
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let staging = tempfile::Builder::new()
            .prefix(".oct-new-")
            .tempdir_in(parent)
            .map_err(|e| path_error(parent, e))?;
        unpack::unpack_into(template, staging.path())?;
        for required in ["config.json", "test_scripts", "templates"] {
            if !staging.path().join(required).exists() {
                return Err(path_error(
                    template,
                    format!("the template has no {required}"),
                ));
            }
        }
        let staged = staging.keep();
        return std::fs::rename(&staged, name).map_err(|e| {
            let _ = std::fs::remove_dir_all(&staged);
            path_error(name, e)
        });
    }
    for (rel, text) in FILES {
        let path = name.join(rel);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| path_error(dir, e))?;
        }
        std::fs::write(&path, text).map_err(|e| path_error(&path, e))?;
    }
    Ok(())
}
