//! The `ws` table of Lua scripts: WebSocket clients. `ws.connect(url [, {timeout = s, headers =
//! {…}}])` (`ws://` or `wss://`, TLS verified as HTTPS is) returns a connection with
//! `send(data [, {binary = true}])`, `receive()` (the next text or binary message; pings are
//! answered, pongs skipped) and `close()`. Time an exchange with `t:timer`.
//!
//! tokio-tungstenite over the same byte stream as `http` and `tcp`, driven by the canon's own
//! runtime: each call yields to the canon's driver (`oct:ws`); the socket lives in a userdata
//! the script holds, taken out for the duration of a call. Every failure is a Lua error naming
//! the URL and the call.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use mlua::{IntoLuaMulti, Lua, MultiValue, Table, UserData, Value as LuaValue};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::http::conn::{open, Io};
use crate::tcp::fail;

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

struct Socket {
    ws: Option<WebSocketStream<Io>>,
    url: String,
    timeout: Duration,
}

impl UserData for Socket {}

const WS_LUA: &str = r#"
local yield, error, setmetatable = coroutine.yield, error, setmetatable
local W = {}
W.__index = W
local function call(op, ...)
  local r, e = yield("oct:ws", op, ...)
  if r == nil then error(e, 0) end
  return r
end
function W:send(data, opts) call("send", self._s, data, opts) return self end
function W:receive() return call("receive", self._s) end
function W:close() call("close", self._s) end
local ws = {}
function ws.connect(url, opts) return setmetatable({_s = call("connect", url, opts)}, W) end
return ws
"#;

pub fn table(lua: &Lua) -> mlua::Result<Table> {
    lua.load(WS_LUA).set_name("@oct-ws").call(())
}

/// Performs the call a script yielded: `op, socket-or-url, …`.
pub async fn perform(lua: &Lua, mut args: MultiValue) -> mlua::Result<MultiValue> {
    let op = match args.pop_front() {
        Some(LuaValue::String(s)) => s.to_string_lossy(),
        _ => return fail(lua, "ws: no operation".into()),
    };
    if op == "connect" {
        return connect(lua, args).await;
    }
    let Some(LuaValue::UserData(ud)) = args.pop_front() else {
        return fail(
            lua,
            format!("ws: {op} needs a connection (call it as conn:{op}(…))"),
        );
    };
    let (ws, url, timeout) = {
        let mut s = ud.borrow_mut::<Socket>()?;
        (s.ws.take(), s.url.clone(), s.timeout)
    };
    let Some(mut ws) = ws else {
        return fail(lua, format!("ws {url}: {op} on a closed connection"));
    };
    let outcome = tokio::time::timeout(timeout, exchange(&op, &mut ws, args)).await;
    let result = match outcome {
        Err(_) => Err(format!("timed out after {timeout:?}")),
        Ok(r) => r,
    };
    match result {
        Ok(None) => true.into_lua_multi(lua),
        Ok(Some(Message::Close(_))) => true.into_lua_multi(lua),
        Ok(Some(message)) => {
            ud.borrow_mut::<Socket>()?.ws = Some(ws);
            match message {
                Message::Text(t) => lua.create_string(t.as_bytes())?.into_lua_multi(lua),
                Message::Binary(b) => lua.create_string(&b[..])?.into_lua_multi(lua),
                // `send` answers with an empty Pong as "sent".
                _ => true.into_lua_multi(lua),
            }
        }
        // A failed call leaves the connection closed.
        Err(e) => fail(lua, format!("ws {url}: {op}: {e}")),
    }
}

/// `Ok(Some(message))`: received (or, for `send`, a stand-in that keeps the socket open);
/// `Ok(None)`: closed.
async fn exchange(
    op: &str,
    ws: &mut WebSocketStream<Io>,
    mut args: MultiValue,
) -> Result<Option<Message>, String> {
    match op {
        "send" => {
            let data = match args.pop_front() {
                Some(LuaValue::String(s)) => s.as_bytes().to_vec(),
                other => {
                    return Err(format!(
                        "the data must be a string, not {}",
                        other
                            .as_ref()
                            .map_or("nothing", crate::engine::lua::type_of)
                    ));
                }
            };
            let binary = match args.pop_front() {
                Some(LuaValue::Table(opts)) => opts
                    .get::<Option<bool>>("binary")
                    .map_err(|e| e.to_string())?
                    .unwrap_or(false),
                _ => false,
            };
            let message = if binary {
                Message::binary(data)
            } else {
                Message::text(String::from_utf8(data).map_err(|_| {
                    "a text message must be UTF-8 (send it with {binary = true})".to_owned()
                })?)
            };
            ws.send(message).await.map_err(|e| e.to_string())?;
            Ok(Some(Message::Pong(Default::default())))
        }
        "receive" => loop {
            match ws.next().await {
                None => return Err("the connection is closed".into()),
                Some(Err(e)) => return Err(e.to_string()),
                Some(Ok(m @ (Message::Text(_) | Message::Binary(_)))) => return Ok(Some(m)),
                Some(Ok(Message::Close(frame))) => {
                    return Err(match frame {
                        Some(f) => format!("closed by the server ({} {})", f.code, f.reason),
                        None => "closed by the server".into(),
                    })
                }
                // Pings are answered by tungstenite itself; pongs and raw frames are not ours.
                Some(Ok(_)) => continue,
            }
        },
        "close" => {
            let _ = ws.close(None).await;
            Ok(None)
        }
        other => Err(format!("unknown operation `{other}`")),
    }
}

async fn connect(lua: &Lua, mut args: MultiValue) -> mlua::Result<MultiValue> {
    let url = match args.pop_front() {
        Some(LuaValue::String(s)) => s.to_string_lossy(),
        other => {
            return fail(
                lua,
                format!(
                    "ws.connect: the URL must be a string, not {}",
                    other
                        .as_ref()
                        .map_or("nothing", crate::engine::lua::type_of)
                ),
            )
        }
    };
    let mut timeout = DEFAULT_TIMEOUT;
    let mut headers: Vec<(String, String)> = Vec::new();
    if let Some(LuaValue::Table(opts)) = args.pop_front() {
        if let Some(secs) = opts.get::<Option<f64>>("timeout")? {
            if secs.is_finite() && secs > 0.0 {
                timeout = Duration::from_secs_f64(secs.min(3600.0));
            }
        }
        if let Some(h) = opts.get::<Option<Table>>("headers")? {
            for pair in h.pairs::<String, String>() {
                headers.push(pair?);
            }
        }
    }
    match tokio::time::timeout(timeout, handshake(&url, &headers)).await {
        Ok(Ok(ws)) => lua
            .create_userdata(Socket {
                ws: Some(ws),
                url,
                timeout,
            })?
            .into_lua_multi(lua),
        Ok(Err(e)) => fail(lua, format!("ws.connect {url}: {e}")),
        Err(_) => fail(
            lua,
            format!("ws.connect {url}: timed out after {timeout:?}"),
        ),
    }
}

async fn handshake(url: &str, headers: &[(String, String)]) -> Result<WebSocketStream<Io>, String> {
    let mut request = url.into_client_request().map_err(|e| e.to_string())?;
    let uri = request.uri().clone();
    let tls = match uri.scheme_str() {
        Some("ws") => false,
        Some("wss") => true,
        _ => return Err("the URL must start with ws:// or wss://".into()),
    };
    let (host, port) = crate::http::target::endpoint(&uri, tls)?;
    for (name, value) in headers {
        let name: tokio_tungstenite::tungstenite::http::HeaderName = name
            .parse()
            .map_err(|_| format!("bad header name {name:?}"))?;
        let value = value
            .parse()
            .map_err(|_| format!("bad value for header {name}"))?;
        request.headers_mut().insert(name, value);
    }
    let io = open(&host, port, tls).await?;
    let (ws, _) = tokio_tungstenite::client_async(request, io)
        .await
        .map_err(|e| e.to_string())?;
    Ok(ws)
}
