//! Every project under examples/ runs end to end through its run.sh, against our binary.

mod util;

use std::time::Duration;

use util::*;

#[test]
fn every_example_project_runs_end_to_end() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut ran = 0;
    for entry in std::fs::read_dir(&root).unwrap() {
        let dir = entry.unwrap().path();
        let script = dir.join("run.sh");
        if !script.is_file() {
            continue;
        }
        let out = tempfile::tempdir().unwrap();
        let mut cmd = std::process::Command::new("bash");
        cmd.arg(&script)
            .arg("-o")
            .arg(out.path())
            .env("OCT", env!("CARGO_BIN_EXE_oct"));
        let mut p = Proc::spawn(cmd);
        let (status, text) = p.wait_exit(Duration::from_secs(90));
        assert!(status.success(), "{}:\n{text}", dir.display());
        assert!(text.contains("lost: 0"), "{}:\n{text}", dir.display());
        let rows = count_rows(
            &out.path().join("results.sqlite"),
            "SELECT count(*) FROM result",
        );
        assert!(rows > 0, "{}: no results", dir.display());
        ran += 1;
    }
    assert!(ran >= 1, "no example projects found");
}
