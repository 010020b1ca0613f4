//! The `http` table of Lua scripts: `http.get(url [, opts])`, `http.post(url, body [, opts])`,
//! `http.request(method, url [, opts])` and friends. One agent per canon: its keep-alive
//! connections and cookie jar belong to that virtual user. A connection error or timeout raises
//! a Lua error naming the method and URL; any HTTP status is a normal response.

use std::io::Read;
use std::time::Duration;

use mlua::{Lua, LuaSerdeExt, Table, Value as LuaValue};

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Bodies larger than this are cut; a load test rarely wants more in memory per response.
const MAX_BODY_BYTES: u64 = 64 << 20;

/// Builds the `http` table for one canon's Lua state.
pub fn table(lua: &Lua) -> mlua::Result<Table> {
    let agent = ureq::AgentBuilder::new()
        .timeout(DEFAULT_TIMEOUT)
        .redirects(5)
        .build();
    let http = lua.create_table()?;
    let a = agent.clone();
    http.set(
        "request",
        lua.create_function(
            move |lua, (method, url, opts): (String, String, Option<Table>)| {
                request(lua, &a, &method.to_ascii_uppercase(), &url, None, opts)
            },
        )?,
    )?;
    for method in ["GET", "HEAD", "DELETE"] {
        let a = agent.clone();
        http.set(
            method.to_ascii_lowercase(),
            lua.create_function(move |lua, (url, opts): (String, Option<Table>)| {
                request(lua, &a, method, &url, None, opts)
            })?,
        )?;
    }
    for method in ["POST", "PUT", "PATCH"] {
        let a = agent.clone();
        http.set(
            method.to_ascii_lowercase(),
            lua.create_function(
                move |lua, (url, body, opts): (String, Option<mlua::String>, Option<Table>)| {
                    let body = body.map(|b| b.as_bytes().to_vec());
                    request(lua, &a, method, &url, body, opts)
                },
            )?,
        )?;
    }
    Ok(http)
}

fn request(
    lua: &Lua,
    agent: &ureq::Agent,
    method: &str,
    url: &str,
    mut body: Option<Vec<u8>>,
    opts: Option<Table>,
) -> mlua::Result<Table> {
    let mut req = agent.request(method, url);
    if let Some(opts) = &opts {
        if let Some(headers) = opts.get::<Option<Table>>("headers")? {
            for pair in headers.pairs::<String, String>() {
                let (k, v) = pair?;
                req = req.set(&k, &v);
            }
        }
        if let Some(query) = opts.get::<Option<Table>>("query")? {
            for pair in query.pairs::<String, String>() {
                let (k, v) = pair?;
                req = req.query(&k, &v);
            }
        }
        if let Some(secs) = opts.get::<Option<f64>>("timeout")? {
            if secs.is_finite() && secs > 0.0 {
                req = req.timeout(Duration::from_secs_f64(secs));
            }
        }
        if let Some(b) = opts.get::<Option<mlua::String>>("body")? {
            body = Some(b.as_bytes().to_vec());
        }
        let json = opts.get::<LuaValue>("json")?;
        if !json.is_nil() {
            let v: serde_json::Value = lua.from_value(json)?;
            body = Some(v.to_string().into_bytes());
            if req.header("content-type").is_none() {
                req = req.set("Content-Type", "application/json");
            }
        }
    }
    let outcome = match body {
        Some(b) => req.send_bytes(&b),
        None => req.call(),
    };
    let resp = match outcome {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(ureq::Error::Transport(t)) => {
            return Err(mlua::Error::RuntimeError(format!("{method} {url}: {t}")));
        }
    };
    let out = lua.create_table()?;
    out.set("status", resp.status())?;
    let headers = lua.create_table()?;
    for name in resp.headers_names() {
        if let Some(v) = resp.header(&name) {
            headers.set(name.to_ascii_lowercase(), v)?;
        }
    }
    out.set("headers", headers)?;
    let mut bytes = Vec::new();
    resp.into_reader()
        .take(MAX_BODY_BYTES)
        .read_to_end(&mut bytes)
        .map_err(|e| mlua::Error::RuntimeError(format!("{method} {url}: reading body: {e}")))?;
    out.set("body", lua.create_string(&bytes)?)?;
    Ok(out)
}
