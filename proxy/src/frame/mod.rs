//! Where one call ends, per protocol: pure parsers over the bytes read so far, so each is tested
//! without a socket and the relay reads until one says `Done`.
//!
//! The request–reply protocols (`http`, `redis`, `memcache`) frame both ways: a call is one
//! request and its one reply. The streaming ones (`tcp`, `mysql`, `smtp`) frame the client's side
//! only (a chunk, a packet, a command line) and relay the backend as it comes, as Vaurien did.

pub mod http;
pub mod memcache;
pub mod redis;

/// A protocol `--protocol` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Tcp,
    Http,
    Redis,
    Memcache,
    Mysql,
    Smtp,
}

impl Protocol {
    pub const NAMES: &'static str = "tcp, http, redis, memcache, mysql, smtp";

    pub fn parse(s: &str) -> Option<Protocol> {
        Some(match s {
            "tcp" => Protocol::Tcp,
            "http" => Protocol::Http,
            "redis" => Protocol::Redis,
            "memcache" | "memcached" => Protocol::Memcache,
            "mysql" => Protocol::Mysql,
            "smtp" => Protocol::Smtp,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Http => "http",
            Protocol::Redis => "redis",
            Protocol::Memcache => "memcache",
            Protocol::Mysql => "mysql",
            Protocol::Smtp => "smtp",
        }
    }

    /// Whether calls are request and reply (else the backend is streamed back).
    pub fn framed(self) -> bool {
        matches!(self, Protocol::Http | Protocol::Redis | Protocol::Memcache)
    }
}

/// What a parser says of the bytes so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The message is the first `n` bytes.
    Done(usize),
    /// Not all there: read more (at least up to this total length, when known, else 0).
    More(usize),
    /// An HTTP response without a length: it runs until the backend closes.
    UntilClose,
}

/// A bad message: the connection cannot be relayed on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bad(pub String);

/// What the relay needs to know of one request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Request {
    pub len: usize,
    /// HTTP method, Redis or memcached command (upper case): for routes and stats.
    pub method: String,
    /// HTTP path (no query); empty for the other protocols.
    pub path: String,
    /// The reply to expect.
    pub reply: Reply,
    /// The client ends the exchange after this (HTTP `Connection: close`, memcached `quit`).
    pub last: bool,
}

/// The reply a request is answered with.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Reply {
    /// One HTTP response (`head`: to a HEAD request, no body).
    Http { head: bool },
    /// One RESP value.
    #[default]
    Resp,
    /// memcached: one line.
    Line,
    /// memcached: `VALUE` blocks up to `END` (or an error line).
    Values,
    /// memcached: lines up to `END` (`stats`).
    Stats,
    /// None at all (memcached `noreply`, `quit`).
    Nothing,
}

/// One request at the start of `buf`.
pub fn request(p: Protocol, buf: &[u8]) -> Result<Option<Request>, Bad> {
    match p {
        Protocol::Http => http::request(buf),
        Protocol::Redis => redis::request(buf),
        Protocol::Memcache => memcache::request(buf),
        _ => unreachable!("streamed protocols frame with `chunk`"),
    }
}

/// One reply at the start of `buf`.
pub fn reply(r: Reply, buf: &[u8]) -> Result<Step, Bad> {
    match r {
        Reply::Http { head } => http::response(buf, head),
        Reply::Resp => redis::value(buf, 0),
        Reply::Line | Reply::Values | Reply::Stats => memcache::reply(r, buf),
        Reply::Nothing => Ok(Step::Done(0)),
    }
}

/// Client-side framing of the streamed protocols; `data` is SMTP's state (inside DATA).
pub fn chunk(p: Protocol, buf: &[u8], data: &mut bool) -> Result<Step, Bad> {
    match p {
        Protocol::Mysql => {
            // A packet: 3-byte little-endian length, sequence id, payload.
            if buf.len() < 4 {
                return Ok(Step::More(4));
            }
            let n = 4 + (buf[0] as usize | (buf[1] as usize) << 8 | (buf[2] as usize) << 16);
            Ok(if buf.len() >= n {
                Step::Done(n)
            } else {
                Step::More(n)
            })
        }
        Protocol::Smtp if !*data => match memchr::memchr(b'\n', buf) {
            Some(i) => {
                let line = &buf[..i];
                let word = line
                    .split(|b| *b == b' ' || *b == b'\r')
                    .next()
                    .unwrap_or(b"");
                *data = word.eq_ignore_ascii_case(b"DATA");
                Ok(Step::Done(i + 1))
            }
            None => Ok(Step::More(0)),
        },
        // Raw TCP, and SMTP's message body: what came (the body ends at `.` alone on a line).
        _ => {
            if *data && (buf.ends_with(b"\r\n.\r\n") || buf == b".\r\n") {
                *data = false;
            }
            Ok(if buf.is_empty() {
                Step::More(0)
            } else {
                Step::Done(buf.len())
            })
        }
    }
}

/// The line at the start of `buf` (without its `\r\n`) and the length with it.
fn line(buf: &[u8]) -> Option<(&[u8], usize)> {
    let i = memchr::memchr(b'\n', buf)?;
    let end = if i > 0 && buf[i - 1] == b'\r' {
        i - 1
    } else {
        i
    };
    Some((&buf[..end], i + 1))
}

fn number(text: &[u8], what: &str) -> Result<i64, Bad> {
    std::str::from_utf8(text)
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .ok_or_else(|| Bad(format!("bad {what} {:?}", String::from_utf8_lossy(text))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mysql_packets_and_smtp_lines_and_bodies() {
        let mut d = false;
        assert_eq!(
            chunk(Protocol::Mysql, b"\x01\x00", &mut d),
            Ok(Step::More(4))
        );
        assert_eq!(
            chunk(Protocol::Mysql, b"\x05\x00\x00\x00\x03SEL", &mut d),
            Ok(Step::More(9))
        );
        assert_eq!(
            chunk(Protocol::Mysql, b"\x01\x00\x00\x00\x0eNEXT", &mut d),
            Ok(Step::Done(5))
        );
        assert_eq!(chunk(Protocol::Smtp, b"EHLO x", &mut d), Ok(Step::More(0)));
        assert_eq!(
            chunk(Protocol::Smtp, b"EHLO x\r\nMAIL", &mut d),
            Ok(Step::Done(8))
        );
        assert!(!d);
        assert_eq!(
            chunk(Protocol::Smtp, b"data\r\n", &mut d),
            Ok(Step::Done(6))
        );
        assert!(d);
        assert_eq!(
            chunk(Protocol::Smtp, b"Subject: x\r\n\r\nhi\r\n", &mut d),
            Ok(Step::Done(18))
        );
        assert!(d);
        assert_eq!(
            chunk(Protocol::Smtp, b"bye\r\n.\r\n", &mut d),
            Ok(Step::Done(8))
        );
        assert!(!d);
        assert_eq!(chunk(Protocol::Tcp, b"abc", &mut d), Ok(Step::Done(3)));
    }
}
