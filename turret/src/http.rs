//! The `http` table of Lua scripts: `http.get(url [, opts])`, `http.post(url, body [, opts])`,
//! `http.put/patch`, `http.delete/head(url [, opts])`, `http.request(method, url [, opts])`.
//!
//! One [`Client`] per canon: its keep-alive connections (one per host, hyper's per-connection
//! `http1` API, which skips the pooled client's bookkeeping) and its cookie jar belong to that
//! virtual user. A connection error or timeout raises a Lua error naming the method and URL;
//! any HTTP status is a normal response.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Request, Uri};
use hyper_util::rt::TokioIo;
use mlua::{FromLuaMulti, IntoLuaMulti, Lua, LuaSerdeExt, MultiValue, Table, Value as LuaValue};

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// One canon's HTTP client.
#[derive(Clone, Default)]
pub struct Client(Rc<RefCell<Inner>>);

#[derive(Default)]
struct Inner {
    /// Idle keep-alive connections by `host:port`. A connection in use is taken out, so a
    /// RefCell borrow never spans an await.
    idle: HashMap<String, SendRequest<Full<Bytes>>>,
    /// Cookies by host: name → value, in the order first set.
    cookies: HashMap<String, Vec<(String, String)>>,
}

pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

struct Target {
    /// `scheme://host:port`: what a kept-alive connection is reused for.
    key: String,
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
    let host = uri.host().ok_or("the URL has no host")?.to_owned();
    let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
    let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let authority = uri
        .authority()
        .map(|a| a.as_str().to_owned())
        .unwrap_or_else(|| host.clone());
    Ok(Target {
        key: format!("{}://{host}:{port}", if tls { "https" } else { "http" }),
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

async fn connect(t: &Target) -> Result<SendRequest<Full<Bytes>>, String> {
    let fail = |e: &dyn std::fmt::Display| format!("connecting to {}:{}: {e}", t.host, t.port);
    let stream = tokio::net::TcpStream::connect((t.host.as_str(), t.port))
        .await
        .map_err(|e| fail(&e))?;
    let _ = stream.set_nodelay(true);
    if t.tls {
        let name = rustls::pki_types::ServerName::try_from(t.host.clone()).map_err(|e| fail(&e))?;
        let tls = tokio_rustls::TlsConnector::from(tls_config()?)
            .connect(name, stream)
            .await
            .map_err(|e| fail(&format!("TLS: {e}")))?;
        handshake(TokioIo::new(tls), t).await
    } else {
        handshake(TokioIo::new(stream), t).await
    }
}

async fn handshake<I>(io: I, t: &Target) -> Result<SendRequest<Full<Bytes>>, String>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + 'static,
{
    let (sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| format!("connecting to {}:{}: {e}", t.host, t.port))?;
    tokio::task::spawn_local(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

impl Client {
    pub async fn send(
        &self,
        method: &str,
        url: &str,
        headers: &[(String, String)],
        body: Bytes,
        timeout: Duration,
    ) -> Result<Response, String> {
        let t = target(url)?;
        let method = Method::from_bytes(method.as_bytes()).map_err(|_| "bad method".to_owned())?;
        let work = async {
            let reused = self.0.borrow_mut().idle.remove(&t.key);
            let fresh = reused.is_none();
            let sender = match reused {
                Some(s) => s,
                None => Box::pin(connect(&t)).await?,
            };
            match self
                .exchange(sender, &t, &method, headers, body.clone())
                .await
            {
                Ok(r) => Ok(r),
                // A kept-alive connection the server closed meanwhile: once more on a new one.
                Err(_) if !fresh => {
                    let sender = Box::pin(connect(&t)).await?;
                    self.exchange(sender, &t, &method, headers, body).await
                }
                Err(e) => Err(e),
            }
        };
        match tokio::time::timeout(timeout, work).await {
            Ok(r) => r,
            Err(_) => Err(format!("timed out after {timeout:?}")),
        }
    }

    async fn exchange(
        &self,
        mut sender: SendRequest<Full<Bytes>>,
        t: &Target,
        method: &Method,
        headers: &[(String, String)],
        body: Bytes,
    ) -> Result<Response, String> {
        sender.ready().await.map_err(|e| e.to_string())?;
        let mut req = Request::builder()
            .method(method.clone())
            .uri(t.path.as_str())
            .header(hyper::header::HOST, t.authority.as_str());
        let cookie = self.cookie_header(&t.host);
        if let Some(c) = cookie {
            req = req.header(hyper::header::COOKIE, c);
        }
        for (k, v) in headers {
            req = req.header(k.as_str(), v.as_str());
        }
        let req = req.body(Full::new(body)).map_err(|e| e.to_string())?;
        let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let mut out_headers = Vec::with_capacity(resp.headers().len());
        let mut close = false;
        for (k, v) in resp.headers() {
            let v = String::from_utf8_lossy(v.as_bytes()).into_owned();
            if k == hyper::header::SET_COOKIE {
                self.store_cookie(&t.host, &v);
            }
            if k == hyper::header::CONNECTION && v.eq_ignore_ascii_case("close") {
                close = true;
            }
            out_headers.push((k.as_str().to_owned(), v));
        }
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("reading body: {e}"))?
            .to_bytes();
        if !close {
            self.0.borrow_mut().idle.insert(t.key.clone(), sender);
        }
        Ok(Response {
            status,
            headers: out_headers,
            body,
        })
    }

    fn cookie_header(&self, host: &str) -> Option<String> {
        let inner = self.0.borrow();
        let jar = inner.cookies.get(host).filter(|j| !j.is_empty())?;
        Some(
            jar.iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("; "),
        )
    }

    fn store_cookie(&self, host: &str, set_cookie: &str) {
        let pair = set_cookie.split(';').next().unwrap_or("");
        let Some((name, value)) = pair.split_once('=') else {
            return;
        };
        let (name, value) = (name.trim().to_owned(), value.trim().to_owned());
        let mut inner = self.0.borrow_mut();
        let jar = inner.cookies.entry(host.to_owned()).or_default();
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

/// The `http` table, in Lua over one raw Rust function: building the response table in Lua
/// uses its pre-interned constant keys, and the headers are parsed only if a script reads them
/// (`r.headers`), so a transaction that only checks `r.status` pays for neither.
const HTTP_LUA: &str = r#"
local raw = ...
local setmetatable, rawget, rawset, lower = setmetatable, rawget, rawset, string.lower
local R = {}
R.__index = function(r, k)
  if k ~= "headers" then return nil end
  local h = {}
  for name, value in string.gmatch(rawget(r, "_raw_headers") or "", "([^:\r\n]+): ([^\r\n]*)\r\n") do
    h[lower(name)] = value
  end
  rawset(r, "headers", h)
  return h
end
local function response(status, body, headers)
  return setmetatable({status = status, body = body, _raw_headers = headers}, R)
end
local http = {}
function http.request(method, url, opts) return response(raw(string.upper(method), url, nil, opts)) end
function http.get(url, opts) return response(raw("GET", url, nil, opts)) end
function http.head(url, opts) return response(raw("HEAD", url, nil, opts)) end
function http.delete(url, opts) return response(raw("DELETE", url, nil, opts)) end
function http.post(url, body, opts) return response(raw("POST", url, body, opts)) end
function http.put(url, body, opts) return response(raw("PUT", url, body, opts)) end
function http.patch(url, body, opts) return response(raw("PATCH", url, body, opts)) end
return http
"#;

/// Performs the request a canon's script yielded (`method, url, body, opts`), reading `opts`
/// between resumes. Returns what the script's `raw` gets back: `status, body, header block`, or
/// `nil, message` for a connection error or timeout (raised as a Lua error there).
pub async fn perform(lua: &Lua, client: &Client, args: MultiValue) -> mlua::Result<MultiValue> {
    let (method, mut url, body, opts): (String, String, Option<mlua::String>, Option<Table>) =
        FromLuaMulti::from_lua_multi(args, lua)?;
    let mut body = body.map(|b| b.as_bytes().to_vec());
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
                url.push(if url.contains('?') { '&' } else { '?' });
                url.push_str(&encode_query(&pairs));
            }
        }
        if let Some(secs) = opts.get::<Option<f64>>("timeout")? {
            if secs.is_finite() && secs > 0.0 {
                timeout = Duration::from_secs_f64(secs);
            }
        }
        if let Some(b) = opts.get::<Option<mlua::String>>("body")? {
            body = Some(b.as_bytes().to_vec());
        }
        let json = opts.get::<LuaValue>("json")?;
        if !json.is_nil() {
            let v: serde_json::Value = lua.from_value(json)?;
            body = Some(v.to_string().into_bytes());
            if !headers
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
            {
                headers.push(("Content-Type".into(), "application/json".into()));
            }
        }
    }
    let body = Bytes::from(body.unwrap_or_default());
    match client.send(&method, &url, &headers, body, timeout).await {
        Ok(resp) => {
            let mut block = String::with_capacity(resp.headers.len() * 32);
            for (k, v) in &resp.headers {
                block.push_str(k);
                block.push_str(": ");
                block.push_str(v);
                block.push_str("\r\n");
            }
            (
                resp.status,
                lua.create_string(&resp.body)?,
                lua.create_string(&block)?,
            )
                .into_lua_multi(lua)
        }
        Err(e) => (LuaValue::Nil, format!("{method} {url}: {e}")).into_lua_multi(lua),
    }
}

/// Builds the `http` table for one canon's Lua state. Its functions yield the request to the
/// canon's driver (`engine::lua`), which performs it and resumes the script with the response:
/// a request costs one coroutine yield and resume, no future or userdata per call.
pub fn table(lua: &Lua) -> mlua::Result<Table> {
    let raw: mlua::Function = lua
        .load(
            r#"
            local yield, error = coroutine.yield, error
            return function(method, url, body, opts)
              local status, b, h = yield("oct:http", method, url, body, opts)
              if status == nil then error(b, 0) end
              return status, b, h
            end
            "#,
        )
        .set_name("@oct-http-raw")
        .eval()?;
    lua.load(HTTP_LUA).set_name("@oct-http").call(raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_queries() {
        let t = target("http://127.0.0.1:8080/a/b?x=1").unwrap();
        assert_eq!(
            (t.key.as_str(), t.path.as_str(), t.authority.as_str()),
            ("http://127.0.0.1:8080", "/a/b?x=1", "127.0.0.1:8080")
        );
        assert_eq!(target("http://h").unwrap().path, "/");
        let s = target("https://example.test/x").unwrap();
        assert_eq!(
            (s.key.as_str(), s.port, s.tls, s.authority.as_str()),
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
}
