//! `oct proxy` (issue: a chaos proxy compatible with Vaurien), against a real nginx: `dummy`
//! relays, `delay` adds its sleep, `error` answers 5xx at its percentage, `hang` ends at
//! `--timeout`, `blackout` closes; the real vaurienclient (PyPI) drives the control API.

mod util;

use std::time::{Duration, Instant};

use util::chaos::{call, get, median, proxy};
use util::nginx::Nginx;
use util::*;

const T: Duration = Duration::from_secs(30);

const LOCATIONS: &str = "    location / { return 200 \"backend\"; }\n";

#[test]
fn dummy_relays_and_the_real_vaurienclient_sets_a_delay_that_is_added() {
    let nginx = Nginx::start(LOCATIONS, &[]);
    let (_p, port, api) = proxy(nginx.port, &[]);
    let direct: Vec<Duration> = (0..20).map(|_| get(nginx.port, "/").unwrap().2).collect();
    for _ in 0..20 {
        let (status, body, _) = get(port, "/").unwrap();
        assert_eq!((status, body.as_str()), (200, "backend"));
    }
    // vaurienclient 1.1 is Python 2 code: its `Client` runs unchanged under Python 3 with a
    // one-line `urlparse` module, but its command-line `main()` (print statements) does not
    // even parse, so the test executes the module's source up to `def main():`.
    let python = vaurienclient_python();
    let shim = tempfile::tempdir().unwrap();
    std::fs::write(
        shim.path().join("urlparse.py"),
        "from urllib.parse import urlparse\n",
    )
    .unwrap();
    let script = format!(
        "import importlib.util, types\n\
         path = importlib.util.find_spec('vaurienclient').origin\n\
         source = open(path).read().split('\\ndef main():')[0]\n\
         module = types.ModuleType('vaurienclient')\n\
         exec(compile(source, path, 'exec'), module.__dict__)\n\
         Client = module.Client\n\
         c = Client('127.0.0.1', {api})\n\
         assert c.get_behavior() == 'dummy', c.get_behavior()\n\
         assert 'delay' in c.list_behaviors() and 'error' in c.list_behaviors()\n\
         try:\n    c.set_behavior('boom')\n    raise SystemExit('no error for an unknown behavior')\n\
         except ValueError as e:\n    print('refused:', e)\n\
         c.set_behavior('delay', sleep=0.3)\n\
         assert c.get_behavior() == 'delay', c.get_behavior()\n\
         print('ok')\n"
    );
    let out = std::process::Command::new(&python)
        .args(["-c", &script])
        .env("PYTHONPATH", shim.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("refused: unknown behavior \"boom\"; the behaviors are abort, bandwidth, blackout, delay, dummy, error, hang, latency"),
        "{text}"
    );
    // The option set through the API applies: 300 ms on top of the direct latency.
    let delayed: Vec<Duration> = (0..10).map(|_| get(port, "/").unwrap().2).collect();
    let added = median(delayed).saturating_sub(median(direct));
    assert!(
        added >= Duration::from_millis(295) && added <= Duration::from_millis(305),
        "added {added:?}"
    );
}

#[test]
fn error_answers_5xx_at_its_percentage_hang_ends_at_the_timeout_blackout_closes() {
    let nginx = Nginx::start(LOCATIONS, &[]);
    let (_p, port, api) = proxy(nginx.port, &["--behavior", "30:error", "--timeout", "1"]);
    let errors = (0..1000)
        .filter(|_| get(port, "/").unwrap().0 >= 500)
        .count();
    assert!(
        (250..=350).contains(&errors),
        "{errors} of 1000 errors at 30 %"
    );
    let put = |body: &str| call(api, "PUT", "/behavior", body);
    assert!(put("{\"name\": \"hang\"}").starts_with("HTTP/1.1 200"));
    let t0 = Instant::now();
    let hung = get(port, "/");
    let waited = t0.elapsed();
    assert!(hung.is_err(), "{hung:?}");
    assert!(
        waited >= Duration::from_millis(950) && waited < Duration::from_secs(3),
        "{waited:?}"
    );
    assert!(put("{\"name\": \"blackout\"}").starts_with("HTTP/1.1 200"));
    let t0 = Instant::now();
    assert!(get(port, "/").is_err());
    assert!(t0.elapsed() < Duration::from_millis(500));
    let bad = put("{\"name\": \"delay\", \"slep\": 1}");
    assert!(
        bad.starts_with("HTTP/1.1 400") && bad.contains("no option \\\"slep\\\""),
        "{bad}"
    );
}

#[test]
fn bad_flags_are_one_line_errors() {
    for (args, want) in [
        (
            vec!["--behavior", "60:error,50:delay"],
            "add up to 110, over 100",
        ),
        (vec!["--behavior", "5:boom"], "unknown behavior \"boom\""),
        (
            vec!["--behavior", "5:delay", "--behavior-delay-slep", "1"],
            "delay: no option \"slep\"",
        ),
        (
            vec!["--protocol", "ftp"],
            "--protocol ftp: unknown (tcp, http, redis",
        ),
        (vec!["--route", "GET /a"], "give MATCH=BEHAVIOR"),
        (
            vec!["--route", "from 10.0.0.300=error"],
            "\"10.0.0.300\" is not an IP address",
        ),
        (
            vec!["--behavior", "delay", "--behavior-error-warmup", "1"],
            "\"error\" is in neither --behavior",
        ),
        (
            vec!["--config", "/nonexistent.ini"],
            "--config /nonexistent.ini: No such file",
        ),
    ] {
        let mut all = vec![
            "proxy",
            "--backend",
            "127.0.0.1:9",
            "--proxy",
            "127.0.0.1:0",
        ];
        all.extend(args.iter());
        let out = oct(&all).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.contains(want), "{args:?}: {err}");
    }
}

#[test]
fn a_refusing_backend_closes_the_client_is_logged_and_the_proxy_goes_on() {
    let nginx = Nginx::start(LOCATIONS, &[]);
    let (mut p, port, api) = proxy(nginx.port, &["--timeout", "2"]);
    let [closed] = free_ports::<1>();
    let put = |body: String| call(api, "PUT", "/backend", &body);
    assert!(put(format!("{{\"backend\": \"127.0.0.1:{closed}\"}}")).starts_with("HTTP/1.1 200"));
    assert!(get(port, "/").is_err());
    p.wait_line(T, |l| l.contains(&format!("backend 127.0.0.1:{closed}")));
    assert!(
        put(format!("{{\"backend\": \"127.0.0.1:{}\"}}", nginx.port)).starts_with("HTTP/1.1 200")
    );
    assert_eq!(get(port, "/").unwrap().0, 200);
}

#[test]
fn over_tcp_every_chunk_is_a_call() {
    let nginx = Nginx::start(LOCATIONS, &[]);
    let [port] = free_ports::<1>();
    let mut p = Proc::spawn(oct(&[
        "proxy",
        "--proxy",
        &format!("127.0.0.1:{port}"),
        "--backend",
        &format!("127.0.0.1:{}", nginx.port),
        "--behavior",
        "delay",
        "--behavior-delay-sleep",
        "0.2",
    ]));
    p.wait_line(T, |l| l.contains("behavior delay"));
    let (status, body, took) = get(port, "/").unwrap();
    assert_eq!((status, body.as_str()), (200, "backend"));
    assert!(
        took >= Duration::from_millis(200) && took < Duration::from_secs(2),
        "{took:?}"
    );
}
