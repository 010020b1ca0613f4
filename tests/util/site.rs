//! The shop site of tests/sites/shop.py (python3's http.server): links, forms, cookies and
//! redirects for the scripting tests.

use std::time::Duration;

use super::Proc;

/// The shop site on 127.0.0.1, killed when dropped.
pub struct Shop {
    pub port: u16,
    _proc: Proc,
}

impl Shop {
    pub fn start() -> Shop {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sites/shop.py");
        let mut cmd = std::process::Command::new("python3");
        cmd.arg("-u").arg(script);
        let mut proc = Proc::spawn(cmd);
        let line = proc.wait_line(Duration::from_secs(20), |l| l.starts_with("PORT "));
        let port = line[5..].trim().parse().expect("the shop's port");
        Shop { port, _proc: proc }
    }

    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// How many times each `METHOD /path` was asked so far.
    pub fn stats(&self) -> serde_json::Map<String, serde_json::Value> {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(b"GET /stats HTTP/1.1\r\nHost: shop\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        let body = text.split_once("\r\n\r\n").expect("an HTTP response").1;
        serde_json::from_str(body).unwrap()
    }

    /// The count of one `METHOD /path` in [`Shop::stats`].
    pub fn asked(&self, key: &str) -> i64 {
        self.stats().get(key).and_then(|v| v.as_i64()).unwrap_or(0)
    }
}
