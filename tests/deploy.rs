//! deploy/kubernetes (issue: scale-out, Kubernetes): the manifests pass the real
//! kubernetes-validate (PyPI: the Kubernetes OpenAPI schemas, strict), agree with each other
//! (turrets = `min_turrets`, ports = the Service's, one Secret), and what they run works: the
//! ConfigMap's config and script, the HQ Job's arguments and the turret Job's shell, as real
//! processes on loopback.

mod util;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};
use util::*;

const T: Duration = Duration::from_secs(60);

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every manifest of deploy/kubernetes, as JSON: `[(file, kind, name, object)]`.
fn manifests(python: &Path) -> Vec<(String, String, String, Value)> {
    let out = succeeds(std::process::Command::new(python).current_dir(repo()).args([
        "-c",
        "import glob, json, yaml\n\
         print(json.dumps([[f, d] for f in sorted(glob.glob('deploy/kubernetes/*.yaml')) for d in yaml.safe_load_all(open(f)) if d]))",
    ]));
    let docs: Vec<(String, Value)> = serde_json::from_slice(&out.stdout).unwrap();
    docs.into_iter()
        .map(|(f, d)| {
            let kind = d["kind"].as_str().unwrap().to_owned();
            let name = d["metadata"]["name"].as_str().unwrap().to_owned();
            (f, kind, name, d)
        })
        .collect()
}

fn find<'a>(all: &'a [(String, String, String, Value)], kind: &str, name: &str) -> &'a Value {
    &all.iter()
        .find(|m| m.1 == kind && m.2 == name)
        .unwrap_or_else(|| panic!("no {kind} {name} in deploy/kubernetes"))
        .3
}

#[test]
fn the_manifests_pass_kubernetes_validate_and_a_broken_one_does_not() {
    let python = kubernetes_validate_python();
    let validate = python.parent().unwrap().join("kubernetes-validate");
    let files: Vec<PathBuf> = std::fs::read_dir(repo().join("deploy/kubernetes"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    assert!(files.len() >= 3, "{files:?}");
    let out = std::process::Command::new(&validate)
        .arg("--strict")
        .args(&files)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    for kind in [
        "job/oct-hq",
        "job/oct-turrets",
        "service/oct-hq",
        "configmap/oct-project",
    ] {
        assert!(
            text.contains(&format!("passed for resource {kind}")),
            "{kind}: {text}"
        );
    }
    // The validator does reject what Kubernetes would: a misspelt field.
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("turrets.yaml");
    let good = std::fs::read_to_string(repo().join("deploy/kubernetes/turrets.yaml")).unwrap();
    std::fs::write(
        &broken,
        good.replace("completionMode: Indexed", "completionMod: Indexed"),
    )
    .unwrap();
    let out = std::process::Command::new(&validate)
        .arg("--strict")
        .arg(&broken)
        .output()
        .unwrap();
    assert!(!out.status.success(), "a misspelt field passed");
}

#[test]
fn the_manifests_agree_and_what_they_run_works() {
    let python = kubernetes_validate_python();
    let all = manifests(&python);
    let project = find(&all, "ConfigMap", "oct-project");
    let config: Value =
        serde_json::from_str(project["data"]["config.json"].as_str().unwrap()).unwrap();
    let script = project["data"]["v_user.lua"].as_str().unwrap();
    let service = find(&all, "Service", "oct-hq");
    let ports: Vec<u64> = service["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["port"].as_u64().unwrap())
        .collect();
    assert_eq!(
        ports,
        [
            config["publish_port"].as_u64().unwrap(),
            config["rc_port"].as_u64().unwrap()
        ]
    );
    let hq = &find(&all, "Job", "oct-hq")["spec"]["template"]["spec"];
    let turrets_job = find(&all, "Job", "oct-turrets");
    let spec = &turrets_job["spec"];
    assert_eq!(spec["completionMode"], "Indexed");
    assert_eq!(
        spec["parallelism"], config["min_turrets"],
        "one pod per turret the HQ waits for"
    );
    assert_eq!(spec["completions"], config["min_turrets"]);
    let pod = &spec["template"]["spec"];
    let selector = &service["spec"]["selector"]["app.kubernetes.io/name"];
    assert_eq!(
        &hq["containers"][0].clone()["image"],
        &pod["containers"][0]["image"]
    );
    assert_eq!(
        &find(&all, "Job", "oct-hq")["spec"]["template"]["metadata"]["labels"]
            ["app.kubernetes.io/name"],
        selector
    );
    for p in [hq, pod] {
        let env = p["containers"][0]["env"].as_array().unwrap();
        let secret = env
            .iter()
            .find(|e| e["name"] == "OCT_SECRET")
            .expect("OCT_SECRET");
        assert_eq!(secret["valueFrom"]["secretKeyRef"]["name"], "oct-secret");
        assert_eq!(p["securityContext"]["runAsNonRoot"], true);
    }
    let shell = pod["containers"][0]["args"][0].as_str().unwrap();
    assert!(
        shell.contains("${OCT_HQ:-oct-hq}")
            && shell.contains("${OCT_HQ_PUBLISHER:-5501}")
            && shell.contains("${OCT_HQ_RC:-5502}"),
        "{shell}"
    );
    let hq_args: Vec<&str> = hq["containers"][0]["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(hq_args[..2], ["run", "/project"]);

    // What they run, run here: the ConfigMap as the project (shorter, two turrets, loopback),
    // the HQ Job's arguments, the turret Job's shell with what Kubernetes would set.
    let target = HttpServer::start();
    let mut c = config.clone();
    for (k, v) in [
        ("run_time", json!(3)),
        ("min_turrets", json!(2)),
        ("publish_port", json!(0)),
        ("rc_port", json!(0)),
        ("external_publisher", json!(0)),
        ("results_ts_interval", json!(1)),
        ("drain_timeout", json!(5)),
        ("bind_address", json!("127.0.0.1")),
    ] {
        c[k] = v;
    }
    let p = Project::new(c);
    p.write("test_scripts/v_user.lua", script);
    let out = p.results_dir();
    let args: Vec<String> = hq_args
        .iter()
        .map(|a| match *a {
            "/project" => p.path().display().to_string(),
            a if a.starts_with("/results") => out.display().to_string(),
            a => a.to_owned(),
        })
        .collect();
    let secret = "a secret from the oct-secret Secret, 32+ bytes";
    let mut run = oct(&args.iter().map(String::as_str).collect::<Vec<_>>());
    run.env("OCT_SECRET", secret);
    let mut hq_proc = Proc::spawn(run);
    let (publish, rc, _) = hq_proc.hq_ports();
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_oct"));
    let path = format!(
        "{}:{}",
        bin.parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let tmps: Vec<tempfile::TempDir> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut turrets: Vec<Proc> = tmps
        .iter()
        .enumerate()
        .map(|(i, tmp)| {
            let mut sh = std::process::Command::new("sh");
            sh.args(["-c", shell])
                .env("JOB_COMPLETION_INDEX", i.to_string())
                .env("OCT_HQ", "127.0.0.1")
                .env("OCT_HQ_PUBLISHER", publish.to_string())
                .env("OCT_HQ_RC", rc.to_string())
                .env("OCT_PROJECT", p.path())
                .env("OCT_TARGET", format!("http://127.0.0.1:{}/", target.port))
                .env("OCT_CANONS", "2")
                .env("OCT_SECRET", secret)
                .env("TMPDIR", tmp.path())
                .env("PATH", &path);
            Proc::spawn(sh)
        })
        .collect();
    let (status, text) = hq_proc.wait_exit(T);
    assert!(status.success(), "{text}");
    // `--once`: the pods complete by themselves when the test is over.
    for t in &mut turrets {
        let (status, text) = t.wait_exit(T);
        assert!(status.success(), "{text}");
    }
    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["lost"], 0, "{summary}");
    assert_eq!(summary["results"], "aggregate", "{summary}");
    assert_eq!(summary["lost_intervals"], 0, "{summary}");
    assert_eq!(summary["errors"], 0, "{summary}");
    assert!(summary["transactions"].as_u64().unwrap() > 20, "{summary}");
    for t in summary["turrets"].as_array().unwrap() {
        assert_eq!(
            t["status"], "ready",
            "a --once turret ends as a finished one: {t}"
        );
    }
    let mut names: Vec<&str> = summary["turrets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["turret-0", "turret-1"]);
}
