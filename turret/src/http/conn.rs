//! One connection: its byte stream (plain or TLS), its read buffer, and the parsing of a
//! response (head with httparse, then a `Content-Length`, chunked or close-delimited body).

use std::borrow::Cow;
use std::mem::MaybeUninit;
use std::sync::{Arc, OnceLock};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use super::{Target, CLOSED_MID_BODY, MAX_BODY, MAX_HEAD, MAX_HEADERS};

/// The TLS client configuration, built once per process: Mozilla's root certificates (bundled,
/// no system store needed) plus the PEM certificates of `$OCT_CA_FILE` when set (an internal
/// CA, or a test server's self-signed certificate).
pub(super) fn tls_config() -> Result<Arc<rustls::ClientConfig>, String> {
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
pub(crate) enum Io {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl Io {
    pub(crate) async fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Io::Plain(s) => s.write_all(bytes).await,
            Io::Tls(s) => {
                s.write_all(bytes).await?;
                s.flush().await
            }
        }
    }

    pub(crate) async fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
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

// The byte stream as tokio's traits, so that protocols built on them (WebSocket) run over it,
// plain or TLS alike.
impl tokio::io::AsyncRead for Io {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => std::pin::Pin::new(s).poll_read(cx, buf),
            Io::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl tokio::io::AsyncWrite for Io {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Io::Plain(s) => std::pin::Pin::new(s).poll_write(cx, buf),
            Io::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => std::pin::Pin::new(s).poll_flush(cx),
            Io::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => std::pin::Pin::new(s).poll_shutdown(cx),
            Io::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// A kept-alive connection with its read buffer (`buf[start..end]` is received, unparsed).
pub(super) struct Conn {
    pub(super) io: Io,
    pub(super) buf: Vec<u8>,
    pub(super) start: usize,
    pub(super) end: usize,
}

/// Why an exchange failed, and whether a retry on a new connection is safe.
pub(super) struct Failure {
    pub(super) message: String,
    /// Nothing of a response arrived: a kept-alive connection the server had closed.
    pub(super) stale: bool,
}

impl Failure {
    pub(super) fn new(message: impl Into<String>) -> Self {
        Failure {
            message: message.into(),
            stale: false,
        }
    }
}

/// What the head of a response says about its body.
pub(super) struct Head {
    pub(super) status: u16,
    pub(super) len: usize,
    pub(super) body: BodyKind,
    pub(super) keep_alive: bool,
    /// `Set-Cookie` values, for the jar.
    pub(super) cookies: Vec<String>,
}

pub(super) enum BodyKind {
    None,
    Length(usize),
    Chunked,
    UntilClose,
}

impl Conn {
    pub(super) fn new(io: Io) -> Conn {
        Conn {
            io,
            buf: vec![0; 8192],
            start: 0,
            end: 0,
        }
    }

    /// Reads more bytes into the buffer; `Ok(0)` at end of stream.
    pub(super) async fn fill(&mut self) -> std::io::Result<usize> {
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

    pub(super) fn pending(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    /// Reads and parses one response head, interim (`1xx`) responses skipped; appends the
    /// header lines to `headers`.
    pub(super) async fn head(
        &mut self,
        method: &[u8],
        headers: &mut String,
    ) -> Result<Head, Failure> {
        let mut got_any = false;
        loop {
            let parsed = {
                // Uninitialised: httparse writes the slots it fills (an initialised array of
                // 100 headers is 3.2 KB zeroed per response, 1.5 % of the canon thread).
                let mut slots = [const { MaybeUninit::<httparse::Header>::uninit() }; MAX_HEADERS];
                let mut resp = httparse::Response::new(&mut []);
                match httparse::ParserConfig::default().parse_response_with_uninit_headers(
                    &mut resp,
                    &self.buf[self.start..self.end],
                    &mut slots,
                ) {
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
    pub(super) async fn body(
        &mut self,
        kind: &BodyKind,
        mut body: Vec<u8>,
    ) -> Result<Vec<u8>, Failure> {
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
                // Through the connection's buffer: a chunk array here would sit in every
                // request's future (16 KB copied each time a request's future is moved).
                loop {
                    if body.len() + (self.end - self.start) > MAX_BODY {
                        return Err(too_large());
                    }
                    body.extend_from_slice(self.pending());
                    self.start = self.end;
                    if self.fill().await.map_err(broken)? == 0 {
                        return Ok(body);
                    }
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
    pub(super) async fn line(&mut self) -> Result<Vec<u8>, Failure> {
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
    pub(super) async fn fill_body(&mut self) -> Result<(), Failure> {
        match self.fill().await {
            Ok(0) => Err(Failure::new(CLOSED_MID_BODY)),
            Ok(_) => Ok(()),
            Err(e) => Err(Failure::new(format!("reading body: {e}"))),
        }
    }
}

pub(super) async fn connect(t: &Target) -> Result<Conn, String> {
    open(&t.host, t.port, t.tls).await.map(Conn::new)
}

/// A byte stream to `host:port`, TLS when asked (the bundled roots and `OCT_CA_FILE`): what
/// HTTP connections and the raw `tcp` module of scripts both run on.
pub(crate) async fn open(host: &str, port: u16, tls: bool) -> Result<Io, String> {
    let fail = |e: &dyn std::fmt::Display| format!("connecting to {host}:{port}: {e}");
    let stream = TcpStream::connect((host, port))
        .await
        .map_err(|e| fail(&e))?;
    let _ = stream.set_nodelay(true);
    if tls {
        let name =
            rustls::pki_types::ServerName::try_from(host.to_owned()).map_err(|e| fail(&e))?;
        let tls = tokio_rustls::TlsConnector::from(tls_config()?)
            .connect(name, stream)
            .await
            .map_err(|e| fail(&format!("TLS: {e}")))?;
        Ok(Io::Tls(Box::new(tls)))
    } else {
        Ok(Io::Plain(stream))
    }
}
