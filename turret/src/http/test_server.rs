//! A real socket server for the client's tests and the Lua engine's.

/// A real socket server answering each request with the next of `replies` (raw bytes; a
/// reply ending in `CLOSE` closes the connection after it). Keeps every request it read
/// and counts the connections it accepted.
pub struct Server {
    pub port: u16,
    requests: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    accepted: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

pub const CLOSE: &str = "<close>";

impl Server {
    pub fn start(replies: Vec<String>) -> Server {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (reqs, acc) = (requests.clone(), accepted.clone());
        std::thread::spawn(move || {
            let mut replies = replies.into_iter();
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                acc.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let mut buf = Vec::new();
                loop {
                    // One request: head, then Content-Length bytes of body.
                    let mut chunk = [0u8; 4096];
                    let complete = |buf: &[u8]| {
                        let end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
                        let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
                        let len = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length: "))
                            .map_or(0, |v| v.trim().parse::<usize>().unwrap());
                        (buf.len() >= end + len).then_some(end + len)
                    };
                    let n = loop {
                        if let Some(n) = complete(&buf) {
                            break n;
                        }
                        match stream.read(&mut chunk) {
                            Ok(0) | Err(_) => break 0,
                            Ok(r) => buf.extend_from_slice(&chunk[..r]),
                        }
                    };
                    if n == 0 {
                        break;
                    }
                    reqs.lock()
                        .unwrap()
                        .push(String::from_utf8_lossy(&buf[..n]).into_owned());
                    buf.drain(..n);
                    let Some(reply) = replies.next() else { return };
                    let (reply, close) = match reply.strip_suffix(CLOSE) {
                        Some(r) => (r.to_owned(), true),
                        None => (reply, false),
                    };
                    let _ = stream.write_all(reply.as_bytes());
                    if close {
                        break;
                    }
                }
            }
        });
        Server {
            port,
            requests,
            accepted,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }

    pub fn accepted(&self) -> usize {
        self.accepted.load(std::sync::atomic::Ordering::SeqCst)
    }
}
