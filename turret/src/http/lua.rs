//! The `http` table of Lua scripts and the driver's side of a request a script yielded.

use std::time::Duration;

use mlua::{IntoLuaMulti, Lua, LuaSerdeExt, MultiValue, Table, Value as LuaValue};

use super::{Client, Request, DEFAULT_TIMEOUT};

pub(super) fn encode_query(pairs: &[(String, String)]) -> String {
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

pub(super) fn rt(message: &str) -> mlua::Error {
    mlua::Error::RuntimeError(message.to_owned())
}

/// Builds the `http` table for one canon's Lua state. Its functions yield the request to the
/// canon's driver (`engine::lua`), which performs it and resumes the script with the response:
/// a request costs one coroutine yield and resume, no future or userdata per call.
pub fn table(lua: &Lua) -> mlua::Result<Table> {
    lua.load(HTTP_LUA).set_name("@oct-http").call(())
}
