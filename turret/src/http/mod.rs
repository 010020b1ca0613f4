//! The `http` table of Lua scripts: `http.get(url [, opts])`, `http.post(url, body [, opts])`,
//! `http.put/patch`, `http.delete/head(url [, opts])`, `http.request(method, url [, opts])`.
//!
//! One [`Client`] per canon: its keep-alive connections (one per host) and its cookie jar
//! belong to that virtual user. The client is a small HTTP/1.1 client of its own, run inline
//! in the canon's future (as wrk does): the request is written in one `write`, the response
//! parsed with `httparse` from a buffer the connection keeps, with no connection task, channel
//! or header map per request — this path is the turret's hot loop. It speaks what load targets
//! answer: `Content-Length`, chunked and close-delimited bodies, `1xx` interim responses,
//! keep-alive by HTTP version and `Connection`. A connection error or timeout raises a Lua
//! error naming the method and URL; any HTTP status is a normal response.
//!
//! # Layout
//!
//! This file owns the [`Client`] (its idle connections, cookie jar, reused buffers) and one
//! request's exchange, retried once on a kept-alive connection the server had closed.
//! `target` parses a URL into where to connect and what to ask for; `conn` owns a connection —
//! its byte stream (plain TCP, or TLS with the bundled roots and `OCT_CA_FILE`), its read
//! buffer and the parsing of a response; `lua` owns the `http` table scripts see and
//! [`perform`], the driver's side of a request a script yielded. `test_server` is a real socket
//! server for the tests of this module and of the Lua engine.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::Poll;
use std::time::Duration;

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// A response head larger than this is refused rather than buffered without end.
const MAX_HEAD: usize = 1 << 20;
const MAX_HEADERS: usize = 100;
/// A response body larger than this is an error, not a turret out of memory.
const MAX_BODY: usize = 256 << 20;
const CLOSED_MID_BODY: &str = "reading body: connection closed mid-body";

/// One canon's HTTP client.
#[derive(Clone, Default)]
pub struct Client(Rc<RefCell<Inner>>);

#[derive(Default)]
struct Inner {
    /// Idle keep-alive connections by `scheme://host:port` (a canon talks to a few hosts: a
    /// list beats a map). A connection in use is taken out, so no borrow spans an await.
    idle: Vec<(Rc<str>, Conn)>,
    /// Cookies by host: name → value, in the order first set.
    cookies: Vec<(String, Vec<(String, String)>)>,
    /// The last URL parsed: a canon usually requests the same few URLs over and over.
    last: Option<(Box<[u8]>, Rc<Target>)>,
    /// Buffers of the last request and response, reused by the next.
    spare_wire: Vec<u8>,
    spare: Option<Response>,
    /// The requests' shared timeout timer (see [`Client::within`]).
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
}

/// Buffers above this size are not kept for the next request.
const KEEP_BUFFER: usize = 64 * 1024;

/// A response: status, the header block (`name: value\r\n` lines as received) and the body.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: String,
    pub body: Vec<u8>,
}

/// What a request carries besides its URL.
pub struct Request<'a> {
    pub method: &'a [u8],
    pub headers: &'a [(String, String)],
    pub body: &'a [u8],
    pub timeout: Duration,
}

fn is_token(s: &[u8]) -> bool {
    !s.is_empty()
        && s.iter()
            .all(|&b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

impl Client {
    fn target(&self, url: &[u8]) -> Result<Rc<Target>, String> {
        if let Some((last, t)) = &self.0.borrow().last {
            if **last == *url {
                return Ok(Rc::clone(t));
            }
        }
        let text = std::str::from_utf8(url).map_err(|_| "bad URL: not UTF-8".to_owned())?;
        let t = Rc::new(target(text)?);
        self.0.borrow_mut().last = Some((url.into(), Rc::clone(&t)));
        Ok(t)
    }

    pub async fn send(&self, url: &[u8], req: &Request<'_>) -> Result<Response, String> {
        let t = self.target(url)?;
        if !is_token(req.method) {
            return Err("bad method".into());
        }
        let mut wire = std::mem::take(&mut self.0.borrow_mut().spare_wire);
        wire.clear();
        self.encode(&t, req, &mut wire)?;
        let result = {
            // Pinned here, in this future, rather than moved into `within`'s: a request's future
            // is ~1 KB, and the copy showed in profiles.
            let work = std::pin::pin!(async {
                let reused = {
                    let mut inner = self.0.borrow_mut();
                    let i = inner.idle.iter().position(|(k, _)| *k == t.key);
                    i.map(|i| inner.idle.swap_remove(i).1)
                };
                let fresh = reused.is_none();
                let conn = match reused {
                    Some(c) => c,
                    None => Box::pin(connect(&t)).await?,
                };
                match self.exchange(conn, &t, req.method, &wire).await {
                    Ok(r) => Ok(r),
                    // A kept-alive connection the server closed meanwhile: once more on a new one.
                    Err(e) if e.stale && !fresh => {
                        let conn = Box::pin(connect(&t)).await?;
                        self.exchange(conn, &t, req.method, &wire)
                            .await
                            .map_err(|e| e.message)
                    }
                    Err(e) => Err(e.message),
                }
            });
            match self.within(req.timeout, work).await {
                Some(r) => r,
                None => Err(format!("timed out after {:?}", req.timeout)),
            }
        };
        if wire.capacity() <= KEEP_BUFFER {
            self.0.borrow_mut().spare_wire = wire;
        }
        result
    }

    /// `work`, or `None` once `timeout` has passed. A canon's requests share one timer, moved
    /// only when it goes off before the request's deadline (or the deadline is earlier): a
    /// timer entry made and dropped per request (`tokio::time::timeout`) cost ~1.5 % of the
    /// canon thread. The timer may go off after the request it was set for: one spurious poll
    /// of the canon per timeout period.
    async fn within<T>(
        &self,
        timeout: Duration,
        mut work: Pin<&mut impl Future<Output = T>>,
    ) -> Option<T> {
        let deadline = tokio::time::Instant::now() + timeout;
        std::future::poll_fn(|cx| {
            if let Poll::Ready(v) = work.as_mut().poll(cx) {
                return Poll::Ready(Some(v));
            }
            let mut inner = self.0.borrow_mut();
            let timer = inner
                .timer
                .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
            if timer.deadline() > deadline {
                timer.as_mut().reset(deadline);
            }
            while timer.as_mut().poll(cx).is_ready() {
                if tokio::time::Instant::now() >= deadline {
                    return Poll::Ready(None);
                }
                timer.as_mut().reset(deadline);
            }
            Poll::Pending
        })
        .await
    }

    /// Takes back a response's buffers once the script has its copy.
    pub fn recycle(&self, mut response: Response) {
        if response.body.capacity() <= KEEP_BUFFER && response.headers.capacity() <= KEEP_BUFFER {
            response.body.clear();
            response.headers.clear();
            self.0.borrow_mut().spare = Some(response);
        }
    }

    /// The request's bytes: request line, Host, the jar's cookies, the script's headers,
    /// Content-Length, body.
    fn encode(&self, t: &Target, req: &Request<'_>, out: &mut Vec<u8>) -> Result<(), String> {
        let has = |name: &str| {
            req.headers
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case(name))
        };
        out.extend_from_slice(req.method);
        out.push(b' ');
        out.extend_from_slice(t.path.as_bytes());
        out.extend_from_slice(b" HTTP/1.1\r\n");
        if !has("host") {
            out.extend_from_slice(b"Host: ");
            out.extend_from_slice(t.authority.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        if let Some((_, jar)) = self.0.borrow().cookies.iter().find(|(h, _)| *h == t.host) {
            if !jar.is_empty() {
                out.extend_from_slice(b"Cookie: ");
                for (i, (k, v)) in jar.iter().enumerate() {
                    if i > 0 {
                        out.extend_from_slice(b"; ");
                    }
                    out.extend_from_slice(k.as_bytes());
                    out.push(b'=');
                    out.extend_from_slice(v.as_bytes());
                }
                out.extend_from_slice(b"\r\n");
            }
        }
        for (k, v) in req.headers {
            if !is_token(k.as_bytes()) || v.bytes().any(|b| b == b'\r' || b == b'\n') {
                return Err(format!("bad header {k:?}"));
            }
            out.extend_from_slice(k.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(v.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        let body_method = matches!(req.method, b"POST" | b"PUT" | b"PATCH");
        if (body_method || !req.body.is_empty()) && !has("content-length") {
            out.extend_from_slice(b"Content-Length: ");
            out.extend_from_slice(req.body.len().to_string().as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(req.body);
        Ok(())
    }

    async fn exchange(
        &self,
        mut conn: Conn,
        t: &Target,
        method: &[u8],
        wire: &[u8],
    ) -> Result<Response, Failure> {
        conn.io.write_all(wire).await.map_err(|e| Failure {
            stale: true,
            message: e.to_string(),
        })?;
        let spare = self.0.borrow_mut().spare.take();
        let (mut headers, body) = match spare {
            Some(r) => (r.headers, r.body),
            None => (String::new(), Vec::new()),
        };
        let head = conn.head(method, &mut headers).await?;
        let body = conn.body(&head.body, body).await?;
        for c in &head.cookies {
            self.store_cookie(&t.host, c);
        }
        // Bytes beyond the response mean a confused server: do not reuse the connection.
        let reusable =
            head.keep_alive && !matches!(head.body, BodyKind::UntilClose) && conn.start == conn.end;
        if reusable {
            self.0.borrow_mut().idle.push((Rc::clone(&t.key), conn));
        }
        Ok(Response {
            status: head.status,
            headers,
            body,
        })
    }

    fn store_cookie(&self, host: &str, set_cookie: &str) {
        let pair = set_cookie.split(';').next().unwrap_or("");
        let Some((name, value)) = pair.split_once('=') else {
            return;
        };
        let (name, value) = (name.trim().to_owned(), value.trim().to_owned());
        // `Max-Age=0` (or below) is how a server deletes a cookie.
        let expired = set_cookie.split(';').skip(1).any(|attr| {
            attr.split_once('=').is_some_and(|(k, v)| {
                k.trim().eq_ignore_ascii_case("max-age")
                    && v.trim().parse::<i64>().is_ok_and(|n| n <= 0)
            })
        });
        let mut inner = self.0.borrow_mut();
        if expired {
            if let Some((_, jar)) = inner.cookies.iter_mut().find(|(h, _)| h == host) {
                jar.retain(|(k, _)| *k != name);
            }
            return;
        }
        let jar = match inner.cookies.iter().position(|(h, _)| h == host) {
            Some(i) => &mut inner.cookies[i].1,
            None => {
                inner.cookies.push((host.to_owned(), Vec::new()));
                &mut inner.cookies.last_mut().expect("just pushed").1
            }
        };
        match jar.iter_mut().find(|(k, _)| *k == name) {
            Some(slot) => slot.1 = value,
            None => jar.push((name, value)),
        }
    }
}

pub(crate) mod conn;
mod lua;
pub(crate) mod target;
#[cfg(test)]
pub(crate) mod test_server;
#[cfg(test)]
mod tests;

use conn::{connect, BodyKind, Conn, Failure};
pub use lua::{perform, send_plain, table};
use target::{target, Target};
