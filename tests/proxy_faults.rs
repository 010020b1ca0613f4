//! `oct proxy`'s faults beyond Vaurien (toxiproxy's), targeting by route and client, and the
//! fault log (`/stats`, `/metrics`), each measured from the client against a real nginx.

mod util;

use std::io::{ErrorKind, Read, Write};
use std::time::{Duration, Instant};

use util::chaos::{call, connect_from, get, json, median, proxy, KeepAlive};
use util::nginx::Nginx;
use util::promtool_check;

const BIG: usize = 100_000;

fn nginx() -> Nginx {
    let big = "x".repeat(BIG);
    Nginx::start(
        "    location = / { return 200 \"backend\"; }\n    location /api { return 200 \"api\"; }\n",
        &[("big.bin", big.as_str())],
    )
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Sends a GET (Connection: close) and reads to the end: bytes got, when the first came, when
/// the connection ended, and how it ended.
fn raw_get(port: u16, path: &str) -> (Vec<u8>, Option<Duration>, Duration, std::io::Result<()>) {
    let t0 = Instant::now();
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let (mut got, mut first) = (Vec::new(), None);
    let mut buf = [0u8; 16384];
    let end = loop {
        match s.read(&mut buf) {
            Ok(0) => break Ok(()),
            Ok(n) => {
                first.get_or_insert(t0.elapsed());
                got.extend_from_slice(&buf[..n]);
            }
            Err(e) => break Err(e),
        }
    };
    (got, first, t0.elapsed(), end)
}

#[test]
fn latency_with_jitter_adds_its_milliseconds_to_each_response() {
    let nginx = nginx();
    let args = [
        "--behavior",
        "latency",
        "--behavior-latency-latency",
        "40",
        "--behavior-latency-jitter",
        "10",
    ];
    let (_p, port, _api) = proxy(nginx.port, &args);
    let mut direct = KeepAlive::new(nginx.port);
    let base = median((0..50).map(|_| direct.ask("GET", "/").unwrap().2).collect());
    let mut c = KeepAlive::new(port);
    let added: Vec<Duration> = (0..200)
        .map(|_| {
            let (status, body, took) = c.ask("GET", "/").unwrap();
            assert_eq!((status, body.as_slice()), (200, &b"backend"[..]));
            took.saturating_sub(base)
        })
        .collect();
    // The proxy never adds less than 30 ms; above, the 99th percentile bounds what it added
    // (one response in 200 may also wait for a busy CI machine's scheduler).
    let mut sorted = added.clone();
    sorted.sort();
    let (lo, hi) = (sorted[0], sorted[sorted.len() * 99 / 100 - 1]);
    assert!(
        lo >= ms(29) && hi <= ms(55),
        "added {lo:?}..{hi:?} (min..p99), want 30..50 ms"
    );
    assert!(hi - lo >= ms(12), "jitter ±10 ms spread only {:?}", hi - lo);
    let mid = median(added);
    assert!(
        mid >= ms(35) && mid <= ms(45),
        "median added {mid:?}, want 40 ms ± 5"
    );
}

#[test]
fn bandwidth_paces_a_body_and_limit_data_cuts_it() {
    let nginx = nginx();
    let (_p, port, api) = proxy(
        nginx.port,
        &[
            "--behavior",
            "bandwidth",
            "--behavior-bandwidth-rate",
            "200",
        ],
    );
    let (got, _, took, end) = raw_get(port, "/big.bin");
    end.unwrap();
    assert!(
        got.ends_with(&[b'x'; 100]) && got.len() > BIG,
        "{} bytes",
        got.len()
    );
    // 100 kB at 200 kB/s.
    assert!(
        took >= ms(480) && took <= ms(800),
        "{took:?} for 100 kB at 200 kB/s"
    );
    assert!(call(
        api,
        "PUT",
        "/behavior",
        r#"{"name": "limit_data", "bytes": 1000}"#
    )
    .starts_with("HTTP/1.1 200"));
    let (got, _, _, end) = raw_get(port, "/big.bin");
    end.unwrap();
    assert_eq!(
        got.len(),
        1000,
        "limit_data lets 1000 bytes through, then closes"
    );
    // Upstream: the request itself is cut, so no answer at all.
    assert!(call(
        api,
        "PUT",
        "/behavior",
        r#"{"name": "limit_data", "bytes": 10, "stream": "upstream"}"#
    )
    .starts_with("HTTP/1.1 200"));
    let (got, _, _, _) = raw_get(port, "/big.bin");
    assert!(got.is_empty(), "{} bytes", got.len());
}

#[test]
fn reset_peer_resets_slow_close_holds_the_close_timeout_and_abort_answer_nothing() {
    let nginx = nginx();
    let (_p, port, api) = proxy(nginx.port, &["--timeout", "2"]);
    let set = |body: &str| {
        assert!(
            call(api, "PUT", "/behavior", body).starts_with("HTTP/1.1 200"),
            "{body}"
        )
    };

    set(r#"{"name": "reset_peer", "timeout": 100}"#);
    let (got, _, took, end) = raw_get(port, "/");
    assert!(got.is_empty());
    assert_eq!(
        end.map_err(|e| e.kind()),
        Err(ErrorKind::ConnectionReset),
        "RST, not FIN"
    );
    assert!(took >= ms(95) && took < ms(1000), "{took:?}");

    set(r#"{"name": "slow_close", "delay": 300}"#);
    let (got, first, took, end) = raw_get(port, "/");
    end.unwrap();
    assert!(got.ends_with(b"backend"));
    assert!(
        first.unwrap() < ms(150),
        "the answer comes at once: {first:?}"
    );
    assert!(
        took >= ms(295) && took < ms(1500),
        "the close comes 300 ms later: {took:?}"
    );

    set(r#"{"name": "timeout", "timeout": 300}"#);
    let (got, _, took, end) = raw_get(port, "/");
    end.unwrap();
    assert!(got.is_empty());
    assert!(took >= ms(295) && took < ms(1500), "{took:?}");

    set(r#"{"name": "abort"}"#);
    let (got, _, took, _) = raw_get(port, "/");
    assert!(got.is_empty() && took < ms(500));

    set(r#"{"name": "transient", "agitate": 3}"#);
    let statuses: Vec<u16> = (0..6).map(|_| get(port, "/").unwrap().0).collect();
    assert!(
        statuses[..3].iter().all(|s| *s >= 500) && statuses[3..] == [200; 3],
        "{statuses:?}"
    );
}

#[test]
fn routes_target_method_path_and_client_and_stats_and_metrics_count_them() {
    let nginx = nginx();
    let routes = [
        "--route",
        "POST /api=error",
        "--route",
        "from 127.0.0.2=blackout",
    ];
    let (_p, port, api) = proxy(nginx.port, &routes);
    let mut c = KeepAlive::new(port);
    for _ in 0..10 {
        assert_eq!(c.ask("GET", "/api").unwrap().0, 200);
        assert!(c.ask("POST", "/api/x").unwrap().0 >= 500);
    }
    // 127.0.0.2 is blacked out; 127.0.0.1 is not.
    let mut other = connect_from("127.0.0.2", port).unwrap();
    write!(other, "GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut got = Vec::new();
    let _ = other.read_to_end(&mut got);
    assert!(got.is_empty(), "{}", String::from_utf8_lossy(&got));
    assert_eq!(get(port, "/").unwrap().0, 200);

    let stats = json(api, "/stats");
    assert_eq!(stats["routes"]["POST /api"]["error"], 10, "{stats}");
    assert_eq!(stats["routes"]["from 127.0.0.2"]["blackout"], 1, "{stats}");
    assert_eq!(stats["routes"]["*"]["dummy"], 11, "{stats}");
    assert_eq!(stats["behaviors"]["error"], 10, "{stats}");
    assert_eq!(stats["calls"], 22, "{stats}");
    let metrics = call(api, "GET", "/metrics", "");
    let text = metrics.split_once("\r\n\r\n").unwrap().1;
    promtool_check(text);
    assert!(
        text.contains(
            "oct_proxy_calls_total{proxy=\"default\",route=\"POST /api\",behavior=\"error\"} 10"
        ),
        "{text}"
    );
    assert!(
        text.contains("oct_proxy_events_total{proxy=\"default\",event=\"backend_refused\"} 0"),
        "{text}"
    );

    // Routes replaced through the API; their counts start from the new plan's calls.
    let put = call(
        api,
        "PUT",
        "/routes",
        r#"[{"path": "/api", "behavior": "delay", "options": {"delay": {"sleep": 0.1}}}]"#,
    );
    assert!(put.starts_with("HTTP/1.1 200"), "{put}");
    let (status, _, took) = c.ask("POST", "/api").unwrap();
    assert!(status == 200 && took >= ms(100), "{status} {took:?}");
    assert_eq!(json(api, "/routes")["routes"][0]["match"], "/api");
    let bad = call(
        api,
        "PUT",
        "/routes",
        r#"[{"path": "/", "behavior": "boom"}]"#,
    );
    assert!(
        bad.starts_with("HTTP/1.1 400") && bad.contains("the behaviors are abort"),
        "{bad}"
    );
}
