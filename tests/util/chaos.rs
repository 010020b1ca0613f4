//! Helpers for the `oct proxy` tests: start one in front of a backend, talk HTTP and the
//! control API over plain sockets.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use super::{free_ports, oct, Proc};

/// `oct proxy --protocol http` in front of `backend_port` with `extra` flags; returns it with
/// its port and the control API's.
pub fn proxy(backend_port: u16, extra: &[&str]) -> (Proc, u16, u16) {
    let [port, api] = free_ports::<2>();
    let mut args = vec![
        "proxy".to_owned(),
        "--proxy".into(),
        format!("127.0.0.1:{port}"),
        "--backend".into(),
        format!("127.0.0.1:{backend_port}"),
        "--protocol".into(),
        "http".into(),
        "--http".into(),
        "--http-host".into(),
        "127.0.0.1".into(),
        "--http-port".into(),
        api.to_string(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut p = Proc::spawn(oct(&refs));
    p.wait_line(Duration::from_secs(30), |l| l.contains("control API on"));
    (p, port, api)
}

/// One GET over a new connection: status, body, how long it took.
pub fn get(port: u16, path: &str) -> std::io::Result<(u16, String, Duration)> {
    let t0 = Instant::now();
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("no status in {text:?}")))?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((status, body, t0.elapsed()))
}

pub fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// `METHOD path` on the control API with `body`: the whole response text.
pub fn call(api: u16, method: &str, path: &str, body: &str) -> String {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", api)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    text
}

/// The JSON body of `GET path` on the control API.
pub fn json(api: u16, path: &str) -> serde_json::Value {
    let text = call(api, "GET", path, "");
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{path}: {e}: {text}"))
}

/// An HTTP/1.1 client on one kept-alive connection (responses read by Content-Length).
pub struct KeepAlive {
    s: std::io::BufReader<std::net::TcpStream>,
}

impl KeepAlive {
    pub fn new(port: u16) -> KeepAlive {
        let s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.set_nodelay(true).unwrap();
        KeepAlive {
            s: std::io::BufReader::new(s),
        }
    }

    /// `METHOD path`: the status, the body and how long it took.
    pub fn ask(&mut self, method: &str, path: &str) -> std::io::Result<(u16, Vec<u8>, Duration)> {
        use std::io::BufRead;
        let t0 = Instant::now();
        write!(
            self.s.get_mut(),
            "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"
        )?;
        let mut line = String::new();
        let mut status = 0;
        let mut len = 0;
        loop {
            line.clear();
            if self.s.read_line(&mut line)? == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "closed before the response",
                ));
            }
            let l = line.trim_end();
            if status == 0 {
                status = l
                    .split(' ')
                    .nth(1)
                    .and_then(|c| c.parse().ok())
                    .unwrap_or(0);
            } else if l.is_empty() {
                break;
            } else if let Some((k, v)) = l.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut body = vec![0u8; len];
        self.s.read_exact(&mut body)?;
        Ok((status, body, t0.elapsed()))
    }
}

/// A connection to `port` from the local address `from` (another loopback address).
pub fn connect_from(from: &str, port: u16) -> std::io::Result<std::net::TcpStream> {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    let local: std::net::SocketAddr = format!("{from}:0").parse().unwrap();
    s.bind(&local.into())?;
    let to: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    s.connect_timeout(&to.into(), Duration::from_secs(5))?;
    let s: std::net::TcpStream = s.into();
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    Ok(s)
}
