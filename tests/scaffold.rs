//! `oct new-project`, `oct pack-turrets` and `oct-turrets-start --tar`, end to end.

mod util;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};
use util::*;

const T: Duration = Duration::from_secs(60);

fn run_ok(cmd: &mut Command) -> (String, String) {
    let out = cmd.output().unwrap();
    let (o, e) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(out.status.success(), "{cmd:?}\n{o}\n{e}");
    (o, e)
}

/// The one-line error of a failing command, which must exit 2.
fn fails(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{cmd:?}\n{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.starts_with("oct: "), "{err}");
    err
}

/// `tar czf OUT -C DIR WHAT`, as a user would make a template or a hostile tarball.
fn tar_czf(out: &Path, dir: &Path, what: &str) {
    run_ok(
        Command::new("tar")
            .arg("czf")
            .arg(out)
            .arg("-C")
            .arg(dir)
            .arg(what),
    );
}

fn listing(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(base, &p, out);
            } else {
                out.push(p.strip_prefix(base).unwrap().display().to_string());
            }
        }
    }
    walk(dir, dir, &mut out);
    out.sort();
    out
}

#[test]
fn new_project_matches_its_snapshot_and_runs_with_both_turrets() {
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join("demo");
    run_ok(oct(&["new-project", p.to_str().unwrap()]).current_dir(tmp.path()));
    insta::assert_snapshot!("new_project_files", listing(&p).join("\n"));
    insta::assert_snapshot!(
        "new_project_config",
        std::fs::read_to_string(p.join("config.json")).unwrap()
    );
    // A second time is refused, naming the folder.
    let err = fails(&mut oct(&["new", p.to_str().unwrap()]));
    assert!(err.contains("demo: already exists"), "{err}");

    // Run it as is, but on OS-chosen ports and for 2 seconds.
    let mut config: Value =
        serde_json::from_str(&std::fs::read_to_string(p.join("config.json")).unwrap()).unwrap();
    for key in ["publish_port", "rc_port", "external_publisher"] {
        config[key] = json!(0);
    }
    config["run_time"] = json!(2);
    std::fs::write(p.join("config.json"), config.to_string()).unwrap();
    let out = tmp.path().join("out");
    let mut hq = Proc::spawn(oct_run(&p, &out, &["--local", "--no-results"]));
    let (status, text) = hq.wait_exit(T);
    assert!(status.success(), "{text}");
    let db = out.join("results.sqlite");
    for turret in ["navigation", "python-navigation"] {
        let n = count_rows(&db, &format!("SELECT count(*) FROM result WHERE turret_name = '{turret}' AND error = '' AND custom_timers LIKE '%example_timer%'"));
        assert!(n > 0, "no results from {turret}\n{text}");
    }
    assert!(text.contains("lost: 0"), "{text}");
}

#[test]
fn new_project_from_a_template_tarball() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    run_ok(&mut oct(&["new-project", src.to_str().unwrap()]));
    std::fs::write(src.join("test_scripts/extra.lua"), "function run(t) end").unwrap();
    let tpl = tmp.path().join("tpl.tar.gz");
    tar_czf(&tpl, &src, ".");
    let dst = tmp.path().join("dst");
    run_ok(&mut oct(&[
        "new-project",
        dst.to_str().unwrap(),
        "-t",
        tpl.to_str().unwrap(),
    ]));
    assert_eq!(listing(&dst), listing(&src));

    // A template without templates/ is refused, and leaves nothing behind.
    std::fs::remove_dir_all(src.join("templates")).unwrap();
    tar_czf(&tpl, &src, ".");
    let bad = tmp.path().join("bad");
    let err = fails(&mut oct(&[
        "new-project",
        bad.to_str().unwrap(),
        "-t",
        tpl.to_str().unwrap(),
    ]));
    assert!(
        err.contains("tpl.tar.gz: the template has no templates"),
        "{err}"
    );
    assert!(!bad.exists());
}

/// The real OCT config of the fixtures, with the scripts and extra folder it names.
fn oct_fixture_project(dir: &Path) {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/oct");
    std::fs::create_dir_all(dir.join("test_scripts")).unwrap();
    std::fs::create_dir_all(dir.join("templates/css")).unwrap();
    std::fs::copy(
        fixture.join("real-oct-config.json"),
        dir.join("config.json"),
    )
    .unwrap();
    std::fs::copy(
        fixture.join("oct_style_user.py"),
        dir.join("test_scripts/v_user.py"),
    )
    .unwrap();
    std::fs::copy(
        fixture.join("oct_style_user.py"),
        dir.join("test_scripts/peer_user.py"),
    )
    .unwrap();
    std::fs::write(dir.join("templates/css/style.css"), "body {}\n").unwrap();
}

#[test]
fn packed_tarballs_have_octs_shape_and_config() {
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join("project");
    oct_fixture_project(&p);
    let (out, err) = run_ok(&mut oct(&["pack-turrets", p.to_str().unwrap()]));
    assert_eq!(err, "WARNING: hq_address configuration key not present, the value will be set to default value\n");
    assert!(out.contains(&format!("Added config.json\nAdded test_scripts/v_user.py\nArchive {}/navigation.tar.gz created\n=========================================\n", p.display())), "{out}");
    let nav = tar_listing(&p.join("navigation.tar.gz"));
    let names: Vec<&str> = nav.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["config.json", "test_scripts/v_user.py"]);
    // Byte for byte what OCT 0.4.12 packed (fixtures/oct/pack_and_config.txt).
    assert_eq!(
        nav[0].1,
        "{\n  \"name\": \"navigation\",\n  \"cannons\": 2,\n  \"rampup\": 0,\n  \"script\": \"test_scripts/v_user.py\",\n  \"hq_address\": \"127.0.0.1\",\n  \"hq_publisher\": 5000,\n  \"hq_rc\": 5011\n}\n"
    );
    // Extra files keep their relative paths (OCT flattens them); unknown keys pass through.
    let adv = tar_listing(&p.join("advanced-turret.tar.gz"));
    let names: Vec<&str> = adv.iter().map(|(n, _)| n.as_str()).collect();
    assert!(names.contains(&"templates/css/style.css"), "{names:?}");
    assert!(
        adv[0]
            .1
            .contains("\"specific_turret_config\": \"my_value\""),
        "{}",
        adv[0].1
    );
    // --python adds OCT's setup.py.
    let (out, _) = run_ok(&mut oct(&["pack", p.to_str().unwrap(), "--python"]));
    assert!(out.contains("Added setup.py"), "{out}");
    assert!(tar_listing(&p.join("random.tar.gz"))
        .iter()
        .any(|(n, t)| n == "setup.py" && t.contains("oct-turrets")));
}

#[test]
fn a_packed_turret_copied_elsewhere_completes_a_test() {
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join("project");
    let [publish, rc, ext] = free_ports::<3>();
    std::fs::create_dir_all(p.join("test_scripts")).unwrap();
    std::fs::write(
        p.join("test_scripts/u.lua"),
        "function run(t) t:timer('w', function() oct.sleep(0.01) end) end",
    )
    .unwrap();
    let config = json!({
        "run_time": 1, "results_ts_interval": 1, "testing": false, "progress_bar": false,
        "publish_port": publish, "rc_port": rc, "external_publisher": ext,
        "turrets": [{"name": "far", "cannons": 2, "rampup": 0, "script": "test_scripts/u.lua"}]
    });
    std::fs::write(p.join("config.json"), config.to_string()).unwrap();
    run_ok(&mut oct(&["pack-turrets", p.to_str().unwrap()]));
    let elsewhere = tmp.path().join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    std::fs::copy(p.join("far.tar.gz"), elsewhere.join("far.tar.gz")).unwrap();
    std::fs::remove_dir_all(p.join("test_scripts")).unwrap();

    let out = tmp.path().join("out");
    let mut hq = Proc::spawn(oct_run(&p, &out, &["--no-results"]));
    hq.hq_ports();
    let mut turret = Command::new(env!("CARGO_BIN_EXE_oct-turrets-start"));
    turret.args(["--tar", "far.tar.gz"]).current_dir(&elsewhere);
    let _turret = Proc::spawn(turret);
    let (status, text) = hq.wait_exit(T);
    assert!(status.success(), "{text}");
    let n = count_rows(
        &out.join("results.sqlite"),
        "SELECT count(*) FROM result WHERE turret_name = 'far'",
    );
    assert!(n > 10, "{n} results\n{text}");
}

#[test]
fn malformed_input_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join("project");
    oct_fixture_project(&p);
    let pack = |p: &Path| fails(&mut oct(&["pack-turrets", p.to_str().unwrap()]));

    std::fs::remove_file(p.join("test_scripts/peer_user.py")).unwrap();
    let err = pack(&p);
    assert!(
        err.contains("peer_user.py: script of turret `random` not found"),
        "{err}"
    );
    oct_fixture_project(&p);

    std::fs::remove_dir_all(p.join("templates")).unwrap();
    let err = pack(&p);
    assert!(
        err.contains("templates: extra file of turret `advanced-turret` not found"),
        "{err}"
    );
    oct_fixture_project(&p);

    let mut c: Value =
        serde_json::from_str(&std::fs::read_to_string(p.join("config.json")).unwrap()).unwrap();
    c["turrets"][1]["name"] = json!("navigation");
    std::fs::write(p.join("config.json"), c.to_string()).unwrap();
    let err = pack(&p);
    assert!(
        err.contains("`turrets[1].name` `navigation` names two turrets"),
        "{err}"
    );

    std::fs::write(p.join("config.json"), "{\"run_time\": 10,,}").unwrap();
    let err = pack(&p);
    assert!(
        err.contains("config.json: invalid JSON at line 1 column 17"),
        "{err}"
    );

    // Tarballs: no config.json, and a ../ entry.
    let empty = tmp.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    std::fs::write(empty.join("readme"), "x").unwrap();
    let no_config = tmp.path().join("noconfig.tar.gz");
    tar_czf(&no_config, &empty, "readme");
    let err = fails(&mut oct(&["turret", "--tar", no_config.to_str().unwrap()]));
    assert!(
        err.contains("noconfig.tar.gz: no config.json at the top of the tarball"),
        "{err}"
    );

    let evil = tmp.path().join("evil.tar.gz");
    {
        let f = std::fs::File::create(&evil).unwrap();
        let mut b = tar::Builder::new(flate2::write::GzEncoder::new(
            f,
            flate2::Compression::default(),
        ));
        let data = b"pwned";
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        // set_path refuses "..", so write the raw name as a hostile archive would.
        h.as_old_mut().name[..8].copy_from_slice(b"../evil\0");
        h.set_cksum();
        b.append(&h, &data[..]).unwrap();
        b.into_inner().unwrap().finish().unwrap();
    }
    let err = fails(&mut oct(&["turret", "--tar", evil.to_str().unwrap()]));
    assert!(
        err.contains("evil.tar.gz: refusing entry `../evil`"),
        "{err}"
    );
    assert!(!tmp.path().join("evil").exists());
}
