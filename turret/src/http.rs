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

use std::borrow::Cow;
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use http::Uri;
use mlua::{IntoLuaMulti, Lua, LuaSerdeExt, MultiValue, Table, Value as LuaValue};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

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

#[derive(Debug)]
struct Target {
    /// `scheme://host:port`: what a kept-alive connection is reused for.
    key: Rc<str>,
    /// `host[:port]` for the Host header.
    authority: String,
    host: String,
    port: u16,
    tls: bool,
    path: String,
}

fn target(url: &str) -> Result<Target, String> {
    let uri: Uri = url.parse().map_err(|e| format!("bad URL: {e}"))?;
    let tls = match uri.scheme_str() {
        Some("http") => false,
        Some("https") => true,
        _ => return Err("the URL must start with http:// or https://".into()),
    };
    let host = uri.host().ok_or("the URL has no host")?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
        .to_owned();
    let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
    let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    // The Host header never carries `user:password@`.
    let authority = uri
        .authority()
        .map(|a| a.as_str().rsplit('@').next().unwrap_or_default().to_owned())
        .unwrap_or_else(|| host.clone());
    Ok(Target {
        key: format!("{}://{host}:{port}", if tls { "https" } else { "http" }).into(),
        authority,
        host,
        port,
        tls,
        path: if path.is_empty() {
            "/".into()
        } else {
            path.to_owned()
        },
    })
}

/// The TLS client configuration, built once per process: Mozilla's root certificates (bundled,
/// no system store needed) plus the PEM certificates of `$OCT_CA_FILE` when set (an internal
/// CA, or a test server's self-signed certificate).
fn tls_config() -> Result<Arc<rustls::ClientConfig>, String> {
    static CONFIG: OnceLock<Result<Arc<rustls::ClientConfig>, String>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let mut roots = rustls::RootCertStore::empty();
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            if let Some(file) = std::env::var_os("OCT_CA_FILE") {
                use rustls::pki_types::pem::PemObject;
                use rustls::pki_types::CertificateDer;
                let path = std::path::PathBuf::from(file);
                let bad =
                    |e: &dyn std::fmt::Display| format!("OCT_CA_FILE {}: {e}", path.display());
                for cert in CertificateDer::pem_file_iter(&path).map_err(|e| bad(&e))? {
                    roots.add(cert.map_err(|e| bad(&e))?).map_err(|e| bad(&e))?;
                }
            }
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|e| e.to_string())?
                .with_root_certificates(roots)
                .with_no_client_auth();
            Ok(Arc::new(config))
        })
        .clone()
}

/// A connection's byte stream. TLS is boxed: its state is large, and an inline one would grow
/// every request's future (and so every canon) by it.
enum Io {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl Io {
    async fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Io::Plain(s) => s.write_all(bytes).await,
            Io::Tls(s) => {
                s.write_all(bytes).await?;
                s.flush().await
            }
        }
    }

    async fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Io::Plain(s) => s.read(buf).await,
            Io::Tls(s) => match s.read(buf).await {
                // A server that closes without close_notify has still sent everything it meant to.
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(0),
                other => other,
            },
        }
    }
}

/// A kept-alive connection with its read buffer (`buf[start..end]` is received, unparsed).
struct Conn {
    io: Io,
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

/// Why an exchange failed, and whether a retry on a new connection is safe.
struct Failure {
    message: String,
    /// Nothing of a response arrived: a kept-alive connection the server had closed.
    stale: bool,
}

impl Failure {
    fn new(message: impl Into<String>) -> Self {
        Failure {
            message: message.into(),
            stale: false,
        }
    }
}

/// What the head of a response says about its body.
struct Head {
    status: u16,
    len: usize,
    body: BodyKind,
    keep_alive: bool,
    /// `Set-Cookie` values, for the jar.
    cookies: Vec<String>,
}

enum BodyKind {
    None,
    Length(usize),
    Chunked,
    UntilClose,
}

impl Conn {
    fn new(io: Io) -> Conn {
        Conn {
            io,
            buf: vec![0; 8192],
            start: 0,
            end: 0,
        }
    }

    /// Reads more bytes into the buffer; `Ok(0)` at end of stream.
    async fn fill(&mut self) -> std::io::Result<usize> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
        if self.end == self.buf.len() {
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            } else {
                self.buf.resize(self.buf.len() * 2, 0);
            }
        }
        let n = self.io.read(&mut self.buf[self.end..]).await?;
        self.end += n;
        Ok(n)
    }

    fn pending(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    /// Reads and parses one response head, interim (`1xx`) responses skipped; appends the
    /// header lines to `headers`.
    async fn head(&mut self, method: &[u8], headers: &mut String) -> Result<Head, Failure> {
        let mut got_any = false;
        loop {
            let parsed = {
                let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
                let mut resp = httparse::Response::new(&mut slots);
                match resp.parse(&self.buf[self.start..self.end]) {
                    Ok(httparse::Status::Complete(n)) => {
                        let status = resp.code.unwrap_or(0);
                        let mut head = Head {
                            status,
                            len: n,
                            body: BodyKind::UntilClose,
                            keep_alive: resp.version == Some(1),
                            cookies: Vec::new(),
                        };
                        let mut chunked = false;
                        let mut length = None;
                        headers.clear();
                        for h in resp.headers.iter() {
                            let value = match std::str::from_utf8(h.value) {
                                Ok(v) => Cow::Borrowed(v),
                                Err(_) => String::from_utf8_lossy(h.value),
                            };
                            let is = |name: &str| {
                                h.name.len() == name.len() && h.name.eq_ignore_ascii_case(name)
                            };
                            // Only four headers matter here; most names differ in length.
                            if is("content-length") {
                                length = Some(value.trim().parse::<usize>().map_err(|_| {
                                    Failure::new(format!("bad Content-Length: {value}"))
                                })?);
                            } else if is("transfer-encoding") {
                                chunked = value
                                    .rsplit(',')
                                    .next()
                                    .is_some_and(|v| v.trim().eq_ignore_ascii_case("chunked"));
                            } else if is("set-cookie") {
                                head.cookies.push(value.clone().into_owned());
                            } else if is("connection") {
                                for token in value.split(',') {
                                    let token = token.trim();
                                    if token.eq_ignore_ascii_case("close") {
                                        head.keep_alive = false;
                                    } else if token.eq_ignore_ascii_case("keep-alive") {
                                        head.keep_alive = true;
                                    }
                                }
                            }
                            headers.push_str(h.name);
                            headers.push_str(": ");
                            headers.push_str(&value);
                            headers.push_str("\r\n");
                        }
                        head.body = if method == b"HEAD"
                            || (100..200).contains(&status)
                            || status == 204
                            || status == 304
                        {
                            BodyKind::None
                        } else if chunked {
                            BodyKind::Chunked
                        } else if let Some(n) = length {
                            BodyKind::Length(n)
                        } else {
                            BodyKind::UntilClose
                        };
                        Some(Ok(head))
                    }
                    Ok(httparse::Status::Partial) => None,
                    Err(e) => Some(Err(Failure::new(format!("bad response: {e}")))),
                }
            };
            match parsed {
                Some(Ok(head)) if (100..200).contains(&head.status) && head.status != 101 => {
                    self.start += head.len;
                }
                Some(Ok(head)) => {
                    self.start += head.len;
                    return Ok(head);
                }
                Some(Err(e)) => return Err(e),
                None if self.end - self.start > MAX_HEAD => {
                    return Err(Failure::new("response head larger than 1 MiB"))
                }
                None => {
                    let n = self.fill().await.map_err(|e| Failure {
                        stale: !got_any,
                        message: e.to_string(),
                    })?;
                    if n == 0 {
                        return Err(Failure {
                            stale: !got_any,
                            message: "connection closed before a complete response".into(),
                        });
                    }
                    got_any = true;
                }
            }
        }
    }

    /// Reads the body the head announced.
    async fn body(&mut self, kind: &BodyKind, mut body: Vec<u8>) -> Result<Vec<u8>, Failure> {
        body.clear();
        let broken = |e: std::io::Error| Failure::new(format!("reading body: {e}"));
        let too_large = || Failure::new("reading body: larger than 256 MiB");
        match *kind {
            BodyKind::None => Ok(body),
            BodyKind::Length(n) => {
                if n > MAX_BODY {
                    return Err(too_large());
                }
                let have = (self.end - self.start).min(n);
                body.extend_from_slice(&self.buf[self.start..self.start + have]);
                self.start += have;
                if have < n {
                    // Grown as bytes arrive, not reserved from what the server claims.
                    let mut got = have;
                    while got < n {
                        let room = (n - got).min(64 * 1024);
                        body.resize(got + room, 0);
                        let r = self.io.read(&mut body[got..]).await.map_err(broken)?;
                        if r == 0 {
                            return Err(Failure::new(CLOSED_MID_BODY));
                        }
                        got += r;
                        body.truncate(got);
                    }
                }
                Ok(body)
            }
            BodyKind::UntilClose => {
                body.extend_from_slice(self.pending());
                self.start = self.end;
                let mut chunk = [0u8; 16384];
                loop {
                    let r = self.io.read(&mut chunk).await.map_err(broken)?;
                    if r == 0 {
                        return Ok(body);
                    }
                    if body.len() + r > MAX_BODY {
                        return Err(too_large());
                    }
                    body.extend_from_slice(&chunk[..r]);
                }
            }
            BodyKind::Chunked => {
                loop {
                    let line = self.line().await?;
                    let size = line.split(|&b| b == b';').next().unwrap_or(b"");
                    let size = std::str::from_utf8(size)
                        .ok()
                        .and_then(|s| usize::from_str_radix(s.trim(), 16).ok())
                        .ok_or_else(|| Failure::new("reading body: bad chunk size"))?;
                    if size > MAX_BODY - body.len() {
                        return Err(too_large());
                    }
                    if size == 0 {
                        // Trailers, up to the empty line.
                        while !self.line().await?.is_empty() {}
                        return Ok(body);
                    }
                    while self.end - self.start < size + 2 {
                        self.fill_body().await?;
                    }
                    body.extend_from_slice(&self.buf[self.start..self.start + size]);
                    self.start += size + 2;
                }
            }
        }
    }

    /// One CRLF-terminated line of a chunked body, without its CRLF.
    async fn line(&mut self) -> Result<Vec<u8>, Failure> {
        loop {
            if let Some(i) = self.pending().windows(2).position(|w| w == b"\r\n") {
                let line = self.buf[self.start..self.start + i].to_vec();
                self.start += i + 2;
                return Ok(line);
            }
            if self.end - self.start > MAX_HEAD {
                return Err(Failure::new("reading body: chunk line too long"));
            }
            self.fill_body().await?;
        }
    }

    /// Reads more of a body into the buffer; the end of the stream is an error there.
    async fn fill_body(&mut self) -> Result<(), Failure> {
        match self.fill().await {
            Ok(0) => Err(Failure::new(CLOSED_MID_BODY)),
            Ok(_) => Ok(()),
            Err(e) => Err(Failure::new(format!("reading body: {e}"))),
        }
    }
}

async fn connect(t: &Target) -> Result<Conn, String> {
    let fail = |e: &dyn std::fmt::Display| format!("connecting to {}:{}: {e}", t.host, t.port);
    let stream = TcpStream::connect((t.host.as_str(), t.port))
        .await
        .map_err(|e| fail(&e))?;
    let _ = stream.set_nodelay(true);
    if t.tls {
        let name = rustls::pki_types::ServerName::try_from(t.host.clone()).map_err(|e| fail(&e))?;
        let tls = tokio_rustls::TlsConnector::from(tls_config()?)
            .connect(name, stream)
            .await
            .map_err(|e| fail(&format!("TLS: {e}")))?;
        Ok(Conn::new(Io::Tls(Box::new(tls))))
    } else {
        Ok(Conn::new(Io::Plain(stream)))
    }
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
        let work = async {
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
        };
        let result = match tokio::time::timeout(req.timeout, work).await {
            Ok(r) => r,
            Err(_) => Err(format!("timed out after {:?}", req.timeout)),
        };
        if wire.capacity() <= KEEP_BUFFER {
            self.0.borrow_mut().spare_wire = wire;
        }
        result
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
        let mut inner = self.0.borrow_mut();
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

fn encode_query(pairs: &[(String, String)]) -> String {
    fn enc(s: &str, out: &mut String) {
        for b in s.bytes() {
            match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    out.push(b as char)
                }
                _ => out.push_str(&format!("%{b:02X}")),
            }
        }
    }
    let mut out = String::new();
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        enc(k, &mut out);
        out.push('=');
        enc(v, &mut out);
    }
    out
}

/// The `http` table, in Lua: each function yields its request straight to the canon's driver
/// (one call and one yield per request); building the response table in Lua uses its
/// pre-interned constant keys, and the headers are parsed only if a script reads them
/// (`r.headers`), so a transaction that only checks `r.status` pays for neither.
const HTTP_LUA: &str = r#"
local yield, error, setmetatable, rawget, rawset = coroutine.yield, error, setmetatable, rawget, rawset
local lower, upper, gmatch = string.lower, string.upper, string.gmatch
local R = {}
R.__index = function(r, k)
  if k ~= "headers" then return nil end
  local h = {}
  for name, value in gmatch(rawget(r, "_raw_headers") or "", "([^:\r\n]+): ([^\r\n]*)\r\n") do
    h[lower(name)] = value
  end
  rawset(r, "headers", h)
  return h
end
-- Yields the request to the canon's driver, which resumes with the response (or nil and the
-- message of a connection error or timeout).
local function send(method, url, body, opts)
  local status, b, h = yield("oct:http", method, url, body, opts)
  if status == nil then error(b, 0) end
  return setmetatable({status = status, body = b, _raw_headers = h}, R)
end
local http = {}
function http.request(method, url, opts) return send(upper(method), url, nil, opts) end
function http.get(url, opts) return send("GET", url, nil, opts) end
function http.head(url, opts) return send("HEAD", url, nil, opts) end
function http.delete(url, opts) return send("DELETE", url, nil, opts) end
function http.post(url, body, opts) return send("POST", url, body, opts) end
function http.put(url, body, opts) return send("PUT", url, body, opts) end
function http.patch(url, body, opts) return send("PATCH", url, body, opts) end
return http
"#;

/// Performs the request a canon's script yielded (`method, url, body, opts`), reading `opts`
/// between resumes. Returns what the script's `raw` gets back: `status, body, header block`, or
/// `nil, message` for a connection error or timeout (raised as a Lua error there).
pub async fn perform(lua: &Lua, client: &Client, mut args: MultiValue) -> mlua::Result<MultiValue> {
    let mut arg = |name: &str| -> mlua::Result<Option<mlua::String>> {
        match args.pop_front() {
            Some(LuaValue::String(s)) => Ok(Some(s)),
            None | Some(LuaValue::Nil) => Ok(None),
            Some(LuaValue::Integer(i)) => lua.create_string(i.to_string()).map(Some),
            Some(LuaValue::Number(n)) => lua.create_string(n.to_string()).map(Some),
            Some(other) => Err(mlua::Error::RuntimeError(format!(
                "http: {name} must be a string, not a {}",
                other.type_name()
            ))),
        }
    };
    let method = arg("the method")?.ok_or_else(|| rt("http: no method"))?;
    let url = arg("the URL")?.ok_or_else(|| rt("http: the URL must be a string, not nil"))?;
    let body = arg("the body")?;
    let opts = match args.pop_front() {
        Some(LuaValue::Table(t)) => Some(t),
        None | Some(LuaValue::Nil) => None,
        Some(other) => {
            return Err(rt(&format!(
                "http: the options must be a table, not a {}",
                other.type_name()
            )))
        }
    };
    let method = method.as_bytes();
    let url_bytes = url.as_bytes();
    let mut url: std::borrow::Cow<[u8]> = std::borrow::Cow::Borrowed(&url_bytes);
    let mut body: std::borrow::Cow<[u8]> = match &body {
        Some(b) => std::borrow::Cow::Owned(b.as_bytes().to_vec()),
        None => std::borrow::Cow::Borrowed(b""),
    };
    let mut headers = Vec::new();
    let mut timeout = DEFAULT_TIMEOUT;
    if let Some(opts) = &opts {
        if let Some(h) = opts.get::<Option<Table>>("headers")? {
            for pair in h.pairs::<String, String>() {
                headers.push(pair?);
            }
        }
        if let Some(q) = opts.get::<Option<Table>>("query")? {
            let mut pairs = Vec::new();
            for pair in q.pairs::<String, String>() {
                pairs.push(pair?);
            }
            pairs.sort();
            if !pairs.is_empty() {
                let mut u = url.to_vec();
                u.push(if u.contains(&b'?') { b'&' } else { b'?' });
                u.extend_from_slice(encode_query(&pairs).as_bytes());
                url = std::borrow::Cow::Owned(u);
            }
        }
        if let Some(secs) = opts.get::<Option<f64>>("timeout")? {
            if secs.is_finite() && secs > 0.0 {
                timeout = Duration::from_secs_f64(secs);
            }
        }
        if let Some(b) = opts.get::<Option<mlua::String>>("body")? {
            body = std::borrow::Cow::Owned(b.as_bytes().to_vec());
        }
        let json = opts.get::<LuaValue>("json")?;
        if !json.is_nil() {
            let v: serde_json::Value = lua.from_value(json)?;
            body = std::borrow::Cow::Owned(v.to_string().into_bytes());
            if !headers
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
            {
                headers.push(("Content-Type".into(), "application/json".into()));
            }
        }
    }
    let req = Request {
        method: &method,
        headers: &headers,
        body: &body,
        timeout,
    };
    match client.send(&url, &req).await {
        Ok(resp) => {
            let out = (
                resp.status,
                lua.create_string(&resp.body)?,
                lua.create_string(&resp.headers)?,
            )
                .into_lua_multi(lua);
            client.recycle(resp);
            out
        }
        Err(e) => (
            LuaValue::Nil,
            format!(
                "{} {}: {e}",
                String::from_utf8_lossy(&method),
                String::from_utf8_lossy(&url)
            ),
        )
            .into_lua_multi(lua),
    }
}

fn rt(message: &str) -> mlua::Error {
    mlua::Error::RuntimeError(message.to_owned())
}

/// Builds the `http` table for one canon's Lua state. Its functions yield the request to the
/// canon's driver (`engine::lua`), which performs it and resumes the script with the response:
/// a request costs one coroutine yield and resume, no future or userdata per call.
pub fn table(lua: &Lua) -> mlua::Result<Table> {
    lua.load(HTTP_LUA).set_name("@oct-http").call(())
}

/// A real socket server for the client's tests and the Lua engine's.
#[cfg(test)]
pub(crate) mod test_server {
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
}

#[cfg(test)]
mod tests {
    use super::test_server::{Server, CLOSE};
    use super::*;

    #[test]
    fn urls_and_queries() {
        let t = target("http://127.0.0.1:8080/a/b?x=1").unwrap();
        assert_eq!(
            (&*t.key, t.path.as_str(), t.authority.as_str()),
            ("http://127.0.0.1:8080", "/a/b?x=1", "127.0.0.1:8080")
        );
        assert_eq!(target("http://h").unwrap().path, "/");
        let v6 = target("http://user:pw@[::1]:8080/").unwrap();
        assert_eq!(
            (v6.host.as_str(), v6.port, v6.authority.as_str()),
            ("::1", 8080, "[::1]:8080")
        );
        let s = target("https://example.test/x").unwrap();
        assert_eq!(
            (&*s.key, s.port, s.tls, s.authority.as_str()),
            ("https://example.test:443", 443, true, "example.test")
        );
        assert_eq!(
            target("ftp://h/").err().unwrap(),
            "the URL must start with http:// or https://"
        );
        assert_eq!(
            encode_query(&[("q".into(), "a b&c".into()), ("n".into(), "é".into())]),
            "q=a%20b%26c&n=%C3%A9"
        );
    }

    fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(f)
    }

    fn get(method: &str) -> Request<'static> {
        Request {
            method: if method == "HEAD" { b"HEAD" } else { b"GET" },
            headers: &[],
            body: b"",
            timeout: Duration::from_secs(5),
        }
    }

    #[test]
    fn bodies_by_length_chunks_and_close_on_one_kept_alive_connection() {
        let big = "x".repeat(100_000);
        let server =
            Server::start(vec![
            "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nX-A: 1\r\n\r\nabc".into(),
            format!("HTTP/1.1 201 Created\r\nContent-Length: {}\r\n\r\n{big}", big.len()),
            "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
             4\r\nWiki\r\n6;ext=1\r\npedia \r\nE\r\nin \r\n\r\nchunks.\r\n0\r\nT: v\r\n\r\n"
                .into(),
            "HTTP/1.1 204 No Content\r\n\r\n".into(),
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n".into(),
            "HTTP/1.1 500 Oops\r\nConnection: close\r\n\r\nuntil close".to_owned() + CLOSE,
        ]);
        let client = Client::default();
        let url = server.url("/p?q=1");
        block_on(async {
            let r = client.send(url.as_bytes(), &get("GET")).await.unwrap();
            assert_eq!((r.status, &r.body[..]), (200, &b"abc"[..]));
            assert_eq!(r.headers, "Content-Length: 3\r\nX-A: 1\r\n");
            // Buffers go back to the client and must not leak into the next response.
            client.recycle(r);
            let r = client.send(url.as_bytes(), &get("GET")).await.unwrap();
            assert_eq!((r.status, r.body.len()), (201, big.len()));
            let r = client.send(url.as_bytes(), &get("GET")).await.unwrap();
            assert_eq!(
                (r.status, String::from_utf8_lossy(&r.body).as_ref()),
                (200, "Wikipedia in \r\n\r\nchunks.")
            );
            client.recycle(r);
            let r = client.send(url.as_bytes(), &get("GET")).await.unwrap();
            assert_eq!((r.status, r.body.len(), r.headers.as_str()), (204, 0, ""));
            client.recycle(r);
            let r = client.send(url.as_bytes(), &get("HEAD")).await.unwrap();
            assert_eq!((r.status, r.body.len()), (200, 0), "HEAD has no body");
            let r = client.send(url.as_bytes(), &get("GET")).await.unwrap();
            assert_eq!((r.status, &r.body[..]), (500, &b"until close"[..]));
        });
        assert_eq!(
            server.accepted(),
            1,
            "one kept-alive connection for all six"
        );
        let requests = server.requests();
        assert_eq!(requests.len(), 6);
        assert_eq!(
            requests[0],
            format!(
                "GET /p?q=1 HTTP/1.1\r\nHost: 127.0.0.1:{}\r\n\r\n",
                server.port
            )
        );
        assert!(requests[4].starts_with("HEAD /p?q=1 HTTP/1.1\r\n"));
        // The server closed the last one: no connection is kept for it.
        assert!(client.0.borrow().idle.is_empty());
    }

    #[test]
    fn a_closed_kept_alive_connection_is_retried_once_on_a_new_one() {
        let server = Server::start(vec![
            "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na".to_owned() + CLOSE,
            "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nb".into(),
        ]);
        let client = Client::default();
        let url = server.url("/");
        block_on(async {
            let a = client.send(url.as_bytes(), &get("GET")).await.unwrap();
            // The server closed without saying so: the client still holds the connection.
            assert_eq!(client.0.borrow().idle.len(), 1);
            let b = client.send(url.as_bytes(), &get("GET")).await.unwrap();
            assert_eq!((&a.body[..], &b.body[..]), (&b"a"[..], &b"b"[..]));
        });
        assert_eq!(server.accepted(), 2);
    }

    #[test]
    fn cookies_headers_and_bodies_are_sent() {
        let server = Server::start(vec![
            "HTTP/1.1 200 OK\r\nSet-Cookie: sid=abc; Path=/\r\nset-cookie: lang=fr\r\n\
             Content-Length: 0\r\n\r\n"
                .into(),
            "HTTP/1.1 200 OK\r\nSet-Cookie: sid=xyz\r\nContent-Length: 0\r\n\r\n".into(),
            "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n".into(),
        ]);
        let client = Client::default();
        let url = server.url("/a");
        let headers = [("X-Token".to_owned(), "t1".to_owned())];
        block_on(async {
            client.send(url.as_bytes(), &get("GET")).await.unwrap();
            let post = Request {
                method: b"POST",
                headers: &headers,
                body: b"{\"k\":1}",
                timeout: Duration::from_secs(5),
            };
            client.send(url.as_bytes(), &post).await.unwrap();
            client.send(url.as_bytes(), &get("GET")).await.unwrap();
        });
        let r = server.requests();
        let host = format!("Host: 127.0.0.1:{}\r\n", server.port);
        assert_eq!(
            r[1],
            format!(
                "POST /a HTTP/1.1\r\n{host}Cookie: sid=abc; lang=fr\r\nX-Token: t1\r\n\
                 Content-Length: 7\r\n\r\n{{\"k\":1}}"
            )
        );
        assert_eq!(
            r[2],
            format!("GET /a HTTP/1.1\r\n{host}Cookie: sid=xyz; lang=fr\r\n\r\n")
        );
    }

    #[test]
    fn bad_input_and_broken_servers_are_clear_errors() {
        let client = Client::default();
        let server = Server::start(vec![
            "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort".to_owned() + CLOSE,
            "garbage\r\n\r\n".into(),
        ]);
        let url = server.url("/");
        block_on(async {
            let bad_header = [("X-A".to_owned(), "a\r\nInjected: 1".to_owned())];
            let req = Request {
                headers: &bad_header,
                ..get("GET")
            };
            assert_eq!(
                client.send(url.as_bytes(), &req).await.unwrap_err(),
                "bad header \"X-A\""
            );
            let req = Request {
                method: b"GE T",
                ..get("GET")
            };
            assert_eq!(
                client.send(url.as_bytes(), &req).await.unwrap_err(),
                "bad method"
            );
            assert_eq!(
                client.send(url.as_bytes(), &get("GET")).await.unwrap_err(),
                "reading body: connection closed mid-body"
            );
            let e = client.send(url.as_bytes(), &get("GET")).await.unwrap_err();
            assert!(e.starts_with("bad response:"), "{e}");
        });
    }

    #[test]
    fn bodies_over_the_limit_are_errors_whatever_the_server_claims() {
        let server = Server::start(vec![
            "HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999\r\n\r\nx".to_owned() + CLOSE,
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\nx".to_owned()
                + CLOSE,
            "HTTP/1.1 200 OK\r\nContent-Length: 300000\r\n\r\nshort".to_owned() + CLOSE,
        ]);
        let client = Client::default();
        let url = server.url("/");
        block_on(async {
            for _ in 0..2 {
                assert_eq!(
                    client.send(url.as_bytes(), &get("GET")).await.unwrap_err(),
                    "reading body: larger than 256 MiB"
                );
            }
            assert_eq!(
                client.send(url.as_bytes(), &get("GET")).await.unwrap_err(),
                "reading body: connection closed mid-body"
            );
        });
    }

    #[test]
    fn a_silent_server_times_out() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        let client = Client::default();
        let req = Request {
            timeout: Duration::from_millis(200),
            ..get("GET")
        };
        let e = block_on(client.send(url.as_bytes(), &req)).unwrap_err();
        assert_eq!(e, "timed out after 200ms");
        drop(listener);
    }
}
