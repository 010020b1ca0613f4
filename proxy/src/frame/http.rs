//! HTTP/1.1 messages: a head (httparse), then a body by `Content-Length` or chunked; a response
//! with neither runs until the backend closes. Interim 1xx responses go with the final one.

use std::mem::MaybeUninit;

use super::{Bad, Reply, Request, Step};

const MAX_HEADERS: usize = 100;

fn header<'a>(headers: &'a [httparse::Header<'a>], name: &str) -> Option<&'a [u8]> {
    headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case(name))
        .map(|h| h.value)
}

fn has_token(value: &[u8], token: &str) -> bool {
    value
        .split(|b| *b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}

/// Whether the message ends its connection: `Connection: close`, or HTTP/1.0 without
/// `keep-alive`.
fn closes(version: Option<u8>, headers: &[httparse::Header]) -> bool {
    match header(headers, "connection") {
        Some(c) if has_token(c, "close") => true,
        Some(c) if has_token(c, "keep-alive") => false,
        _ => version == Some(0),
    }
}

/// The body after a head of `head` bytes: its end, or more to read.
fn body(
    buf: &[u8],
    head: usize,
    headers: &[httparse::Header],
    response: bool,
) -> Result<Step, Bad> {
    if header(headers, "transfer-encoding").is_some_and(|t| has_token(t, "chunked")) {
        return chunked(buf, head);
    }
    match header(headers, "content-length") {
        Some(v) => {
            let n = super::number(v, "Content-Length")?;
            let end =
                head + usize::try_from(n).map_err(|_| Bad(format!("bad Content-Length {n}")))?;
            Ok(if buf.len() >= end {
                Step::Done(end)
            } else {
                Step::More(end)
            })
        }
        None if response => Ok(Step::UntilClose),
        None => Ok(Step::Done(head)),
    }
}

/// Chunks from `at` up to the zero-size one and the blank line after the (ignored) trailers.
fn chunked(buf: &[u8], mut at: usize) -> Result<Step, Bad> {
    loop {
        let Some((size_line, n)) = super::line(&buf[at..]) else {
            return Ok(Step::More(0));
        };
        let text = size_line.split(|b| *b == b';').next().unwrap_or(b"");
        let size = std::str::from_utf8(text)
            .ok()
            .and_then(|t| usize::from_str_radix(t.trim(), 16).ok())
            .ok_or_else(|| {
                Bad(format!(
                    "bad chunk size {:?}",
                    String::from_utf8_lossy(size_line)
                ))
            })?;
        at += n;
        if size == 0 {
            // Trailer lines up to an empty one.
            loop {
                let Some((l, n)) = super::line(&buf[at..]) else {
                    return Ok(Step::More(0));
                };
                at += n;
                if l.is_empty() {
                    return Ok(Step::Done(at));
                }
            }
        }
        at += size + 2;
        if buf.len() < at {
            return Ok(Step::More(at));
        }
    }
}

/// Header slots left uninitialised: httparse writes only those it fills (an initialised array
/// of 100 is 3.2 KB zeroed per parse, which showed in profiles).
type Slots<'b> = [MaybeUninit<httparse::Header<'b>>; MAX_HEADERS];

/// A response head parsed into `slots`.
fn parse_response<'h, 'b>(
    buf: &'b [u8],
    slots: &'h mut Slots<'b>,
) -> (httparse::Response<'h, 'b>, httparse::Result<usize>) {
    let mut resp = httparse::Response::new(&mut []);
    let r =
        httparse::ParserConfig::default().parse_response_with_uninit_headers(&mut resp, buf, slots);
    (resp, r)
}

pub fn request(buf: &[u8]) -> Result<Option<Request>, Bad> {
    let mut slots: Slots = [const { MaybeUninit::uninit() }; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    let head = match httparse::ParserConfig::default()
        .parse_request_with_uninit_headers(&mut req, buf, &mut slots)
    {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(Bad(format!("bad HTTP request: {e}"))),
    };
    match body(buf, head, req.headers, false)? {
        Step::Done(len) => {
            let method = req.method.unwrap_or("").to_owned();
            let target = req.path.unwrap_or("");
            let path = target.split(['?', '#']).next().unwrap_or("").to_owned();
            Ok(Some(Request {
                len,
                reply: Reply::Http {
                    head: method == "HEAD",
                },
                last: closes(req.version, req.headers),
                method,
                path,
            }))
        }
        _ => Ok(None),
    }
}

/// One response (with any interim 1xx before it); `to_head`: it answers a HEAD (no body).
pub fn response(buf: &[u8], to_head: bool) -> Result<Step, Bad> {
    let mut slots: Slots = [const { MaybeUninit::uninit() }; MAX_HEADERS];
    let (resp, parsed) = parse_response(buf, &mut slots);
    let head = match parsed {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(Step::More(0)),
        Err(e) => return Err(Bad(format!("bad HTTP response: {e}"))),
    };
    match resp.code.unwrap_or(0) {
        101 => Ok(Step::UntilClose),
        100..=199 => Ok(match response(&buf[head..], to_head)? {
            Step::Done(n) => Step::Done(head + n),
            Step::More(n) => Step::More(if n == 0 { 0 } else { head + n }),
            Step::UntilClose => Step::UntilClose,
        }),
        204 | 304 => Ok(Step::Done(head)),
        _ if to_head => Ok(Step::Done(head)),
        _ => body(buf, head, resp.headers, true),
    }
}

/// Whether a whole response ends its connection (`Connection: close`, HTTP/1.0, or no length).
pub fn response_closes(buf: &[u8]) -> bool {
    let mut slots: Slots = [const { MaybeUninit::uninit() }; MAX_HEADERS];
    match parse_response(buf, &mut slots) {
        (resp, Ok(httparse::Status::Complete(_))) => closes(resp.version, resp.headers),
        _ => true,
    }
}

/// An error page as Vaurien's `error` answers over HTTP (the request not forwarded).
pub fn error_page(draw: u8) -> Vec<u8> {
    let (code, reason) = [
        (500, "Internal Server Error"),
        (502, "Bad Gateway"),
        (503, "Service Unavailable"),
    ][(draw % 3) as usize];
    let body =
        format!("<html><body><h1>{code} {reason}</h1><p>injected by oct proxy</p></body></html>");
    format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: text/html\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_with_and_without_bodies_and_what_routes_see() {
        assert_eq!(request(b"GET / HTTP/1.1\r\nHost: x\r\n"), Ok(None));
        let r = request(b"GET /a/b?x=1 HTTP/1.1\r\nHost: x\r\n\r\nGET")
            .unwrap()
            .unwrap();
        assert_eq!(
            (r.len, r.method.as_str(), r.path.as_str(), r.last),
            (34, "GET", "/a/b", false)
        );
        let post = b"POST /f HTTP/1.1\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc";
        assert_eq!(request(&post[..post.len() - 1]), Ok(None));
        let r = request(post).unwrap().unwrap();
        assert_eq!((r.len, r.last), (post.len(), true));
        assert!(request(b"HTTP/1.0 /x\r\n\r\n").is_err());
        let old = request(b"GET / HTTP/1.0\r\n\r\n").unwrap().unwrap();
        assert!(old.last);
        assert_eq!(
            request(b"HEAD / HTTP/1.1\r\n\r\n").unwrap().unwrap().reply,
            Reply::Http { head: true }
        );
    }

    #[test]
    fn chunked_bodies_end_at_the_zero_chunk_and_trailers() {
        let m = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n10;x=y\r\n0123456789abcdef\r\n0\r\nT: 1\r\n\r\nNEXT";
        assert_eq!(response(m, false), Ok(Step::Done(m.len() - 4)));
        for cut in [50, 60, 80, m.len() - 6] {
            assert!(
                matches!(response(&m[..cut], false), Ok(Step::More(_))),
                "{cut}"
            );
        }
        assert!(response(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            false
        )
        .is_err());
    }

    #[test]
    fn responses_by_length_until_close_interim_and_to_head() {
        let m = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi";
        assert_eq!(response(m, false), Ok(Step::Done(m.len())));
        assert_eq!(response(&m[..m.len() - 1], false), Ok(Step::More(m.len())));
        assert_eq!(
            response(&m[..m.len() - 2], true),
            Ok(Step::Done(m.len() - 2))
        );
        assert_eq!(
            response(b"HTTP/1.0 200 OK\r\n\r\nall", false),
            Ok(Step::UntilClose)
        );
        assert_eq!(
            response(b"HTTP/1.1 304 Not Modified\r\n\r\n", false),
            Ok(Step::Done(29))
        );
        let interim = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(response(interim, false), Ok(Step::Done(interim.len())));
        assert!(response_closes(
            b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n"
        ));
        assert!(!response_closes(
            b"HTTP/1.1 200 OK\r\nConnection: Keep-Alive\r\n\r\n"
        ));
        assert!(response_closes(b"HTTP/1.0 200 OK\r\n\r\n"));
    }
}
