//! The `tcp` table of Lua scripts: raw connections for any line- or length-framed protocol
//! (RESP, memcached's text protocol, SMTP…). `tcp.connect(host, port [, {tls = true, timeout =
//! s}])` returns a connection with `send(data)`, `receive(n)` (exactly `n` bytes),
//! `receive_until(delimiter)` (the bytes before it; the delimiter is consumed) and `close()`.
//!
//! Like `http`, each call yields to the canon's driver (`oct:tcp`), which does the I/O on the
//! canon's own runtime — no thread or task per socket. The socket lives in a userdata the
//! script holds: taken out of it for the duration of an operation, so no borrow spans an
//! await. Every failure (refused, timed out, closed by the peer, used after `close`) is a Lua
//! error naming the peer: an error result of the iteration, never a crash.

use std::time::Duration;

use mlua::{IntoLuaMulti, Lua, MultiValue, Table, UserData, Value as LuaValue};

use crate::http::conn::{open, Io};

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// `receive_until` gives up rather than buffer without end.
const MAX_FRAME: usize = 16 << 20;

/// One connection of a script.
struct Socket {
    io: Option<Io>,
    /// Received and not yet handed to the script.
    buf: Vec<u8>,
    peer: String,
    timeout: Duration,
    closed: bool,
}

impl UserData for Socket {}

const TCP_LUA: &str = r#"
local yield, error, setmetatable = coroutine.yield, error, setmetatable
local C = {}
C.__index = C
local function call(op, ...)
  local r, e = yield("oct:tcp", op, ...)
  if r == nil then error(e, 0) end
  return r
end
function C:send(data) call("send", self._s, data) return self end
function C:receive(n) return call("receive", self._s, n) end
function C:receive_until(delimiter) return call("receive_until", self._s, delimiter) end
function C:close() call("close", self._s) end
local tcp = {}
function tcp.connect(host, port, opts)
  return setmetatable({_s = call("connect", host, port, opts)}, C)
end
return tcp
"#;

pub fn table(lua: &Lua) -> mlua::Result<Table> {
    lua.load(TCP_LUA).set_name("@oct-tcp").call(())
}

/// `nil, message`: what the Lua side of `tcp` and `ws` raises.
pub(crate) fn fail(lua: &Lua, message: String) -> mlua::Result<MultiValue> {
    (LuaValue::Nil, message).into_lua_multi(lua)
}

/// Performs the operation a script yielded: `op, socket-or-host, …`.
pub async fn perform(lua: &Lua, mut args: MultiValue) -> mlua::Result<MultiValue> {
    let op = match args.pop_front() {
        Some(LuaValue::String(s)) => s.to_string_lossy(),
        _ => return fail(lua, "tcp: no operation".into()),
    };
    if op == "connect" {
        return connect(lua, args).await;
    }
    let Some(LuaValue::UserData(ud)) = args.pop_front() else {
        return fail(
            lua,
            format!("tcp: {op} needs a connection (call it as conn:{op}(…))"),
        );
    };
    // Take the socket out for the operation; it goes back before the script resumes.
    let (mut io, mut buf, peer, timeout) = {
        let mut s = ud.borrow_mut::<Socket>()?;
        if s.closed || s.io.is_none() {
            return fail(lua, format!("tcp {}: {op} on a closed connection", s.peer));
        }
        (
            s.io.take(),
            std::mem::take(&mut s.buf),
            s.peer.clone(),
            s.timeout,
        )
    };
    let conn = io.as_mut().expect("checked above");
    let outcome = tokio::time::timeout(timeout, exchange(&op, conn, &mut buf, args)).await;
    let mut s = ud.borrow_mut::<Socket>()?;
    s.buf = buf;
    let result = match outcome {
        Err(_) => Err(format!("timed out after {timeout:?}")),
        Ok(r) => r,
    };
    match result {
        Ok(Reply::Closed) => {
            s.closed = true;
            true.into_lua_multi(lua)
        }
        Ok(reply) => {
            s.io = io;
            match reply {
                Reply::Sent => true.into_lua_multi(lua),
                Reply::Bytes(b) => lua.create_string(&b)?.into_lua_multi(lua),
                Reply::Closed => unreachable!(),
            }
        }
        Err(e) => {
            // A failed exchange leaves the stream in an unknown state: it is closed.
            s.closed = true;
            fail(lua, format!("tcp {peer}: {op}: {e}"))
        }
    }
}

enum Reply {
    Sent,
    Bytes(Vec<u8>),
    Closed,
}

async fn exchange(
    op: &str,
    io: &mut Io,
    buf: &mut Vec<u8>,
    mut args: MultiValue,
) -> Result<Reply, String> {
    let string_arg = |v: Option<LuaValue>, what: &str| -> Result<Vec<u8>, String> {
        match v {
            Some(LuaValue::String(s)) => Ok(s.as_bytes().to_vec()),
            Some(LuaValue::Integer(i)) => Ok(i.to_string().into_bytes()),
            Some(LuaValue::Number(n)) => Ok(n.to_string().into_bytes()),
            other => Err(format!(
                "{what} must be a string, not {}",
                other
                    .as_ref()
                    .map_or("nothing", crate::engine::lua::type_of)
            )),
        }
    };
    match op {
        "send" => {
            let data = string_arg(args.pop_front(), "the data")?;
            io.write_all(&data).await.map_err(|e| e.to_string())?;
            Ok(Reply::Sent)
        }
        "receive" => {
            let n = match args.pop_front() {
                Some(LuaValue::Integer(n)) if n >= 0 => n as usize,
                Some(LuaValue::Number(n)) if n >= 0.0 && n.fract() == 0.0 => n as usize,
                other => {
                    return Err(format!(
                        "the byte count must be a whole number ≥ 0, not {}",
                        describe(other.as_ref())
                    ))
                }
            };
            if n > MAX_FRAME {
                return Err(format!(
                    "{n} bytes is more than the {MAX_FRAME} one call takes"
                ));
            }
            while buf.len() < n {
                if fill(io, buf).await? == 0 {
                    return Err(format!(
                        "connection closed by the peer after {} of {n} bytes",
                        buf.len()
                    ));
                }
            }
            Ok(Reply::Bytes(buf.drain(..n).collect()))
        }
        "receive_until" => {
            let delimiter = string_arg(args.pop_front(), "the delimiter")?;
            if delimiter.is_empty() {
                return Err("the delimiter must not be empty".into());
            }
            let mut searched: usize = 0;
            loop {
                let from = searched.saturating_sub(delimiter.len() - 1);
                if let Some(i) = buf[from..]
                    .windows(delimiter.len())
                    .position(|w| w == delimiter.as_slice())
                {
                    let at = from + i;
                    let data = buf[..at].to_vec();
                    buf.drain(..at + delimiter.len());
                    return Ok(Reply::Bytes(data));
                }
                searched = buf.len();
                if buf.len() > MAX_FRAME {
                    return Err(format!("no delimiter in the first {MAX_FRAME} bytes"));
                }
                if fill(io, buf).await? == 0 {
                    return Err(format!(
                        "connection closed by the peer before the delimiter ({} bytes unread)",
                        buf.len()
                    ));
                }
            }
        }
        "close" => Ok(Reply::Closed),
        other => Err(format!("unknown operation `{other}`")),
    }
}

/// A script's argument as an error message shows it: `-1`, `"x"`, `a table`, `nothing`.
fn describe(v: Option<&LuaValue>) -> String {
    match v {
        None | Some(LuaValue::Nil) => "nothing".into(),
        Some(LuaValue::Integer(i)) => i.to_string(),
        Some(LuaValue::Number(n)) => n.to_string(),
        Some(LuaValue::String(s)) => format!("{:?}", s.to_string_lossy()),
        Some(other) => format!("a {}", crate::engine::lua::type_of(other)),
    }
}

async fn fill(io: &mut Io, buf: &mut Vec<u8>) -> Result<usize, String> {
    let mut chunk = [0u8; 16 << 10];
    let n = io.read(&mut chunk).await.map_err(|e| e.to_string())?;
    buf.extend_from_slice(&chunk[..n]);
    Ok(n)
}

async fn connect(lua: &Lua, mut args: MultiValue) -> mlua::Result<MultiValue> {
    let host = match args.pop_front() {
        Some(LuaValue::String(s)) => s.to_string_lossy(),
        other => {
            return fail(
                lua,
                format!(
                    "tcp.connect: the host must be a string, not {}",
                    other
                        .as_ref()
                        .map_or("nothing", crate::engine::lua::type_of)
                ),
            )
        }
    };
    let port = match args.pop_front() {
        Some(LuaValue::Integer(p)) if (1..=65535).contains(&p) => p as u16,
        other => {
            return fail(
                lua,
                format!(
                    "tcp.connect: the port must be a number from 1 to 65535, not {}",
                    describe(other.as_ref())
                ),
            )
        }
    };
    let (mut tls, mut timeout) = (false, DEFAULT_TIMEOUT);
    if let Some(LuaValue::Table(opts)) = args.pop_front() {
        tls = opts.get::<Option<bool>>("tls")?.unwrap_or(false);
        if let Some(secs) = opts.get::<Option<f64>>("timeout")? {
            if secs.is_finite() && secs > 0.0 {
                timeout = Duration::from_secs_f64(secs.min(3600.0));
            }
        }
    }
    let peer = format!("{host}:{port}");
    let io = match tokio::time::timeout(timeout, open(&host, port, tls)).await {
        Ok(Ok(io)) => io,
        Ok(Err(e)) => return fail(lua, format!("tcp.connect: {e}")),
        Err(_) => {
            return fail(
                lua,
                format!("tcp.connect: connecting to {peer}: timed out after {timeout:?}"),
            )
        }
    };
    let socket = lua.create_userdata(Socket {
        io: Some(io),
        buf: Vec::new(),
        peer,
        timeout,
        closed: false,
    })?;
    socket.into_lua_multi(lua)
}
