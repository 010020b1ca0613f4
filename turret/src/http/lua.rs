//! The `http` table of Lua scripts and the driver's side of a request a script yielded.

use std::time::Duration;

use mlua::{IntoLuaMulti, Lua, LuaSerdeExt, MultiValue, Table, Value as LuaValue};

use super::{Client, Request, Response, DEFAULT_TIMEOUT};

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
-- message of a connection error or timeout); `u` is the final URL when redirects were followed.
local function send(method, url, body, opts)
  local status, b, h, u = yield("oct:http", method, url, body, opts)
  if status == nil then error(b, 0) end
  return setmetatable({status = status, body = b, _raw_headers = h, url = u or url}, R)
end
local type, pairs, ipairs, sort = type, pairs, ipairs, table.sort
local http = {}
-- http.request(method, url [, opts]) or http.request{method = …, url = …, <opts>}.
function http.request(method, url, opts)
  if type(method) == "table" then
    local t = method
    if t.url == nil then error("http.request{…}: the table has no url", 2) end
    if t.method ~= nil and type(t.method) ~= "string" then
      error("http.request{…}: the method must be a string, not a " .. type(t.method), 2)
    end
    return send(upper(t.method or "GET"), t.url, nil, t)
  end
  if type(method) ~= "string" then
    error("http.request: the method must be a string (or pass one table), not a " .. type(method), 2)
  end
  return send(upper(method), url, nil, opts)
end
function http.get(url, opts) return send("GET", url, nil, opts) end
function http.head(url, opts) return send("HEAD", url, nil, opts) end
function http.delete(url, opts) return send("DELETE", url, nil, opts) end
function http.post(url, body, opts) return send("POST", url, body, opts) end
function http.put(url, body, opts) return send("PUT", url, body, opts) end
function http.patch(url, body, opts) return send("PATCH", url, body, opts) end
-- Submits a form from html.parse(…):form(): its fields (as the script left them in
-- form.fields), then `values` over them (false leaves a field out), in the page's order, then
-- new names sorted.
function http.submit(form, values, opts)
  if type(form) ~= "table" or type(form.fields) ~= "table" or form.action == nil then
    error("http.submit: the first argument must be a form from html.parse(…):form(), not a " .. type(form), 2)
  end
  if values ~= nil and type(values) ~= "table" then
    error("http.submit: the values must be a table, not a " .. type(values), 2)
  end
  values = values or {}
  local list, seen = {}, {}
  local function add(name, v)
    if type(v) == "table" then
      for _, one in ipairs(v) do list[#list + 1] = {name, one} end
    elseif v ~= nil and v ~= false then
      list[#list + 1] = {name, v}
    end
  end
  for _, name in ipairs(form.order or {}) do
    if not seen[name] then
      seen[name] = true
      local v = values[name]
      if v == nil then v = form.fields[name] end
      add(name, v)
    end
  end
  local extra = {}
  for name in pairs(form.fields) do if not seen[name] then extra[#extra + 1] = name end end
  for name in pairs(values) do if not seen[name] and form.fields[name] == nil then extra[#extra + 1] = name end end
  sort(extra)
  for _, name in ipairs(extra) do
    local v = values[name]
    if v == nil then v = form.fields[name] end
    add(name, v)
  end
  local o = {}
  for k, v in pairs(opts or {}) do o[k] = v end
  if upper(form.method or "GET") == "GET" then
    o.query = list
    return send("GET", (form.action:gsub("[?#].*$", "")), nil, o)
  end
  o.form = list
  return send(upper(form.method), form.action, nil, o)
end
return http
"#;

/// `query` or `form` values as name/value pairs: a map (sorted by name, a list value giving
/// the name once per item) or a list of `{name, value}` pairs (kept in order).
fn pairs(what: &str, t: &Table) -> mlua::Result<Vec<(String, String)>> {
    fn text(what: &str, name: &str, v: LuaValue) -> mlua::Result<String> {
        match v {
            LuaValue::String(s) => Ok(s.to_str()?.to_owned()),
            LuaValue::Integer(i) => Ok(i.to_string()),
            LuaValue::Number(n) => Ok(n.to_string()),
            LuaValue::Boolean(b) => Ok(b.to_string()),
            other => Err(rt(&format!(
                "http: {what} value {name:?} must be a string or a number, not a {}",
                crate::engine::lua::type_of(&other)
            ))),
        }
    }
    let mut out = Vec::new();
    if t.raw_len() > 0 {
        for pair in t.sequence_values::<LuaValue>() {
            let LuaValue::Table(pair) = pair? else {
                return Err(rt(&format!(
                    "http: a {what} list holds {{name, value}} pairs"
                )));
            };
            let name: String = pair.get(1)?;
            let value = text(what, &name, pair.get(2)?)?;
            out.push((name, value));
        }
        return Ok(out);
    }
    for pair in t.pairs::<String, LuaValue>() {
        let (name, value) = pair?;
        match value {
            LuaValue::Table(many) => {
                for v in many.sequence_values::<LuaValue>() {
                    out.push((name.clone(), text(what, &name, v?)?));
                }
            }
            v => {
                let v = text(what, &name, v)?;
                out.push((name, v));
            }
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

fn has_header(headers: &[(String, String)], name: &str) -> bool {
    headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(name))
}

/// A header's value in a response's header block.
fn header<'a>(block: &'a str, name: &str) -> Option<&'a str> {
    block.split("\r\n").find_map(|line| {
        let (k, v) = line.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// At most this many redirects are followed, whatever a script asks.
const MAX_REDIRECTS: i64 = 30;

/// Performs the request a canon's script yielded (`method, url, body, opts`), reading `opts`
/// between resumes. Returns what the script's `raw` gets back: `status, body, header block`
/// (and the final URL if redirects were followed), or `nil, message` for a connection error,
/// a timeout or too many redirects (raised as a Lua error there).
pub async fn perform(lua: &Lua, client: &Client, mut args: MultiValue) -> mlua::Result<MultiValue> {
    use std::borrow::Cow;
    let arg = |name: &str, v: Option<LuaValue>| -> mlua::Result<Option<mlua::String>> {
        match v {
            Some(LuaValue::String(s)) => Ok(Some(s)),
            None | Some(LuaValue::Nil) => Ok(None),
            Some(LuaValue::Integer(i)) => lua.create_string(i.to_string()).map(Some),
            Some(LuaValue::Number(n)) => lua.create_string(n.to_string()).map(Some),
            Some(LuaValue::Table(t)) if name == "the body" => lua
                .create_string(encode_query(&pairs("form", &t)?))
                .map(Some),
            Some(other) => Err(mlua::Error::RuntimeError(format!(
                "http: {name} must be a string, not a {}",
                crate::engine::lua::type_of(&other)
            ))),
        }
    };
    let method = arg("the method", args.pop_front())?.ok_or_else(|| rt("http: no method"))?;
    let url = arg("the URL", args.pop_front())?
        .ok_or_else(|| rt("http: the URL must be a string, not nil"))?;
    let table_body = matches!(args.front(), Some(LuaValue::Table(_)));
    let body = arg("the body", args.pop_front())?;
    let opts = match args.pop_front() {
        Some(LuaValue::Table(t)) => Some(t),
        None | Some(LuaValue::Nil) => None,
        Some(other) => {
            return Err(rt(&format!(
                "http: the options must be a table, not a {}",
                crate::engine::lua::type_of(&other)
            )))
        }
    };
    let method = method.as_bytes();
    let mut method: Cow<[u8]> = Cow::Borrowed(&method);
    let url_bytes = url.as_bytes();
    let mut url: Cow<[u8]> = Cow::Borrowed(&url_bytes);
    let mut body: Cow<[u8]> = match &body {
        Some(b) => Cow::Owned(b.as_bytes().to_vec()),
        None => Cow::Borrowed(b""),
    };
    let mut headers = Vec::new();
    let mut timeout = DEFAULT_TIMEOUT;
    let mut redirects = 0;
    let mut content_type = table_body.then_some("application/x-www-form-urlencoded");
    if let Some(opts) = &opts {
        if let Some(h) = opts.get::<Option<Table>>("headers")? {
            for pair in h.pairs::<String, String>() {
                headers.push(pair?);
            }
        }
        if let Some(q) = opts.get::<Option<Table>>("query")? {
            let pairs = pairs("query", &q)?;
            if !pairs.is_empty() {
                let mut u = url.to_vec();
                u.push(if u.contains(&b'?') { b'&' } else { b'?' });
                u.extend_from_slice(encode_query(&pairs).as_bytes());
                url = Cow::Owned(u);
            }
        }
        if let Some(secs) = opts.get::<Option<f64>>("timeout")? {
            if secs.is_finite() && secs > 0.0 {
                timeout = Duration::from_secs_f64(secs);
            }
        }
        match opts.get::<LuaValue>("redirects")? {
            LuaValue::Nil | LuaValue::Boolean(false) => {}
            LuaValue::Boolean(true) => redirects = 10,
            LuaValue::Integer(n) if (0..=MAX_REDIRECTS).contains(&n) => redirects = n,
            other => {
                return Err(rt(&format!(
                    "http: redirects must be true or a count from 0 to {MAX_REDIRECTS}, not {}",
                    match other {
                        LuaValue::Integer(n) => n.to_string(),
                        o => format!("a {}", crate::engine::lua::type_of(&o)),
                    }
                )))
            }
        }
        if let Some(b) = opts.get::<Option<mlua::String>>("body")? {
            body = Cow::Owned(b.as_bytes().to_vec());
        }
        if let Some(f) = opts.get::<Option<Table>>("form")? {
            body = Cow::Owned(encode_query(&pairs("form", &f)?).into_bytes());
            content_type = Some("application/x-www-form-urlencoded");
        }
        let json = opts.get::<LuaValue>("json")?;
        if !json.is_nil() {
            let v: serde_json::Value = lua.from_value(json)?;
            body = Cow::Owned(v.to_string().into_bytes());
            content_type = Some("application/json");
        }
    }
    if let Some(ct) = content_type {
        if !has_header(&headers, "content-type") {
            headers.push(("Content-Type".into(), ct.into()));
        }
    }
    let (mut left, mut followed) = (redirects, false);
    loop {
        let req = Request {
            method: &method,
            headers: &headers,
            body: &body,
            timeout,
        };
        let failed = |e: String| (LuaValue::Nil, failure(&method, &url, &e)).into_lua_multi(lua);
        let resp = match client.send(&url, &req).await {
            Ok(resp) => resp,
            Err(e) => return failed(e),
        };
        let location = (redirects > 0 && matches!(resp.status, 301 | 302 | 303 | 307 | 308))
            .then(|| header(&resp.headers, "location"))
            .flatten();
        if let Some(location) = location {
            if left == 0 {
                return failed(format!("more than {redirects} redirects"));
            }
            let here = std::str::from_utf8(&url)
                .ok()
                .and_then(|u| url::Url::parse(u).ok());
            let Some((here, next)) = here.and_then(|h| {
                let next = h.join(location).ok()?;
                Some((h, next))
            }) else {
                return failed(format!("bad redirect to {location:?}"));
            };
            let same_host = here.host_str() == next.host_str()
                && here.port_or_known_default() == next.port_or_known_default();
            // As browsers do: 303, and 301/302 after a POST, become a GET without a body.
            let to_get = (resp.status == 303 && &*method != b"HEAD")
                || (matches!(resp.status, 301 | 302) && &*method == b"POST");
            if to_get {
                method = Cow::Borrowed(b"GET");
                body = Cow::Borrowed(b"");
                headers.retain(|(k, _)| {
                    !k.eq_ignore_ascii_case("content-type")
                        && !k.eq_ignore_ascii_case("content-length")
                });
            }
            if !same_host {
                headers.retain(|(k, _)| {
                    !k.eq_ignore_ascii_case("authorization") && !k.eq_ignore_ascii_case("cookie")
                });
            }
            client.recycle(resp);
            url = Cow::Owned(String::from(next).into_bytes());
            left -= 1;
            followed = true;
            continue;
        }
        let out = if followed {
            (
                resp.status,
                lua.create_string(&resp.body)?,
                lua.create_string(&resp.headers)?,
                lua.create_string(&*url)?,
            )
                .into_lua_multi(lua)
        } else {
            (
                resp.status,
                lua.create_string(&resp.body)?,
                lua.create_string(&resp.headers)?,
            )
                .into_lua_multi(lua)
        };
        client.recycle(resp);
        return out;
    }
}

/// A request's error as the script sees it: the method and URL, then what went wrong.
fn failure(method: &[u8], url: &[u8], e: &str) -> String {
    format!(
        "{} {}: {e}",
        String::from_utf8_lossy(method),
        String::from_utf8_lossy(url)
    )
}

/// The common request — a method and URL, a string body or none, no options — sent with no
/// Lua value in between: the canon's driver reads these off its coroutine's stack
/// (`engine::lua::co`) and pushes the response's status, body and header block back. The
/// error names the method and URL, as [`perform`]'s does.
pub async fn send_plain(
    client: &Client,
    method: &[u8],
    url: &[u8],
    body: &[u8],
) -> Result<Response, String> {
    let req = Request {
        method,
        headers: &[],
        body,
        timeout: DEFAULT_TIMEOUT,
    };
    client
        .send(url, &req)
        .await
        .map_err(|e| failure(method, url, &e))
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
