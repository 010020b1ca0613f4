//! A canon's coroutine, resumed through Lua's C API rather than mlua's `Thread::resume`.
//!
//! Every transaction crosses between the canon's Lua code and its driver twice: a request
//! yielded (`oct:http`, method, URL) and a result yielded (`oct:report`, elapsed, …). Through
//! mlua each crossing turned every yielded value into a `Value` (a string being a reference
//! moved to mlua's reference thread, released again on drop) and pushed the answer back the
//! same way: about 5 % of the canon thread's time (bench/RESULTS.md, "The Lua crossing"). Here
//! the driver reads what it needs straight from the coroutine's stack — a request's method and
//! URL as byte slices, a result's elapsed time and error — and pushes its answer there; the
//! yields it has no fast path for (options tables, tcp, ws, custom timers, checks) still go
//! through mlua values, moved between the coroutine's stack and mlua's in one `lua_xmove`.
//!
//! The coroutine's `lua_State` comes from the prelude's first yield (`oct:state`): the light
//! userdata a C function pushes of the state that called it. The [`mlua::Thread`] is kept so
//! that the coroutine lives as long as its driver.

use std::ffi::c_int;

use mlua::ffi;
use mlua::{LightUserData, Lua, MultiValue, Thread, Value as LuaValue};

/// What a canon's coroutine yielded for, by its first value.
#[derive(Clone, Copy)]
pub(super) enum Tag {
    Report,
    Http,
    Pace,
    Sleep,
    Tcp,
    Ws,
    /// Anything else: the script yielded its canon's own coroutine.
    Other,
}

/// Pushes the light userdata of the state that calls it: how the prelude tells the driver
/// which `lua_State` its coroutine is.
///
/// # Safety
/// A `lua_CFunction`: Lua calls it with a valid state that has room for one push.
pub(super) unsafe extern "C-unwind" fn state_of(state: *mut ffi::lua_State) -> c_int {
    ffi::lua_pushlightuserdata(state, state.cast());
    1
}

pub(super) struct Co {
    /// Keeps the coroutine alive; everything else goes through `state`.
    _thread: Thread,
    state: *mut ffi::lua_State,
    /// How many values the last resume left on top of the stack (its yield's).
    yielded: c_int,
    /// The stack index of the first of them.
    base: c_int,
}

impl Co {
    /// Resumes `thread` (the prelude's loop) with `args` up to its `oct:state` handshake.
    pub(super) fn start(thread: Thread, args: MultiValue) -> mlua::Result<Co> {
        let (tag, state): (mlua::String, LightUserData) = thread.resume(args)?;
        if tag.as_bytes().as_ref() != b"oct:state" {
            return Err(mlua::Error::RuntimeError(
                "the canon's loop did not start with oct:state".into(),
            ));
        }
        Ok(Co {
            _thread: thread,
            state: state.0.cast(),
            yielded: 0,
            base: 1,
        })
    }

    /// Resumes the coroutine with the `nargs` values pushed since the last [`Co::pop`]. `None`:
    /// the loop ended; else what it yielded for, its values left on the stack.
    pub(super) fn resume(&mut self, lua: &Lua, nargs: c_int) -> mlua::Result<Option<Tag>> {
        let mut n: c_int = 0;
        // SAFETY: `state` is the suspended coroutine (kept alive by `_thread`), with the
        // answer's `nargs` values on top of a stack holding nothing else of ours.
        let status = unsafe { ffi::lua_resume(self.state, std::ptr::null_mut(), nargs, &mut n) };
        match status {
            ffi::LUA_YIELD => {
                self.took(n);
                Ok(Some(self.tag()))
            }
            ffi::LUA_OK => {
                self.took(n);
                self.pop();
                Ok(None)
            }
            _ => {
                // The error object is on top: a message, or mlua's wrapped Rust error.
                self.took(1);
                let e = self.value(lua, 0)?;
                self.pop();
                Err(match e {
                    LuaValue::Error(e) => *e,
                    other => mlua::Error::RuntimeError(super::error_text(&other)),
                })
            }
        }
    }

    /// Notes that the last resume left `n` values on top of the stack.
    fn took(&mut self, n: c_int) {
        self.yielded = n;
        // SAFETY: `state` is valid; reading its top has no effect.
        self.base = unsafe { ffi::lua_gettop(self.state) } - n + 1;
    }

    /// The stack index of the `i`-th yielded value (0 = the tag).
    fn index(&self, i: c_int) -> c_int {
        self.base + i
    }

    fn tag(&self) -> Tag {
        match self.bytes(0) {
            Some(b"oct:report") => Tag::Report,
            Some(b"oct:http") => Tag::Http,
            Some(b"oct:pace") => Tag::Pace,
            Some(b"oct:sleep") => Tag::Sleep,
            Some(b"oct:tcp") => Tag::Tcp,
            Some(b"oct:ws") => Tag::Ws,
            _ => Tag::Other,
        }
    }

    /// The Lua type of the `i`-th yielded value (`ffi::LUA_TNONE` past the last).
    pub(super) fn kind(&self, i: c_int) -> c_int {
        if i >= self.yielded {
            return ffi::LUA_TNONE;
        }
        // SAFETY: an index within the stack.
        unsafe { ffi::lua_type(self.state, self.index(i)) }
    }

    /// The `i`-th yielded value if it is a string (not a number: no conversion in place).
    /// Valid while the value stays on the stack, i.e. until [`Co::pop`].
    pub(super) fn bytes(&self, i: c_int) -> Option<&[u8]> {
        if self.kind(i) != ffi::LUA_TSTRING {
            return None;
        }
        let mut len = 0;
        // SAFETY: a string at a valid index; Lua strings do not move, and this one stays
        // referenced from the suspended coroutine's stack until `pop`, which takes `&mut self`.
        unsafe {
            let p = ffi::lua_tolstring(self.state, self.index(i), &mut len);
            Some(std::slice::from_raw_parts(p.cast(), len))
        }
    }

    /// The `i`-th yielded value if it is a number.
    pub(super) fn number(&self, i: c_int) -> Option<f64> {
        if self.kind(i) != ffi::LUA_TNUMBER {
            return None;
        }
        // SAFETY: a number at a valid index.
        Some(unsafe { ffi::lua_tonumberx(self.state, self.index(i), std::ptr::null_mut()) })
    }

    /// The `i`-th yielded value as an mlua value (nil past the last).
    pub(super) fn value(&self, lua: &Lua, i: c_int) -> mlua::Result<LuaValue> {
        if i >= self.yielded {
            return Ok(LuaValue::Nil);
        }
        self.room(1)?;
        let (co, index) = (self.state, self.index(i));
        // SAFETY: copies a valid index to the coroutine's top (room checked), then moves it to
        // the stack mlua reads its result from: two threads of one state, as xmove requires.
        unsafe {
            lua.exec_raw((), |state| {
                ffi::lua_pushvalue(co, index);
                ffi::lua_xmove(co, state, 1);
            })
        }
    }

    /// Takes the values after the tag off the stack, as mlua values (then as [`Co::pop`]).
    pub(super) fn take_values(&mut self, lua: &Lua) -> mlua::Result<MultiValue> {
        let (co, n) = (self.state, self.yielded - 1);
        // SAFETY: moves the top `n` values (those after the tag) to the stack mlua reads its
        // result from, in one call.
        let values = unsafe { lua.exec_raw((), |state| ffi::lua_xmove(co, state, n)) };
        self.yielded = 1;
        self.pop();
        values
    }

    /// Takes the yielded values off the stack; the answer is pushed after.
    pub(super) fn pop(&mut self) {
        // SAFETY: removes exactly the values the last resume left.
        unsafe { ffi::lua_settop(self.state, -self.yielded - 1) };
        self.yielded = 0;
    }

    fn room(&self, n: c_int) -> mlua::Result<()> {
        // SAFETY: grows the stack if needed; false only when it cannot.
        if unsafe { ffi::lua_checkstack(self.state, n) } == 0 {
            return Err(mlua::Error::StackError);
        }
        Ok(())
    }

    pub(super) fn push_bool(&mut self, b: bool) -> mlua::Result<c_int> {
        self.room(1)?;
        // SAFETY: room checked.
        unsafe { ffi::lua_pushboolean(self.state, b as c_int) };
        Ok(1)
    }

    pub(super) fn push_nil(&mut self) -> mlua::Result<c_int> {
        self.room(1)?;
        // SAFETY: room checked.
        unsafe { ffi::lua_pushnil(self.state) };
        Ok(1)
    }

    pub(super) fn push_int(&mut self, n: i64) -> mlua::Result<c_int> {
        self.room(1)?;
        // SAFETY: room checked.
        unsafe { ffi::lua_pushinteger(self.state, n) };
        Ok(1)
    }

    /// Pushes a string. As mlua does when no memory limit is set, unprotected: Lua failing to
    /// allocate it is the process out of memory.
    pub(super) fn push_bytes(&mut self, b: &[u8]) -> mlua::Result<c_int> {
        self.room(1)?;
        // SAFETY: room checked; Lua copies the bytes.
        unsafe { ffi::lua_pushlstring(self.state, b.as_ptr().cast(), b.len()) };
        Ok(1)
    }

    /// Pushes mlua values; returns how many.
    pub(super) fn push_values(&mut self, lua: &Lua, values: MultiValue) -> mlua::Result<c_int> {
        let n = c_int::try_from(values.len()).map_err(|_| mlua::Error::StackError)?;
        self.room(n)?;
        let co = self.state;
        // SAFETY: mlua pushes the values as the arguments of a protected call, which moves all
        // of them to the coroutine (room checked) in one call.
        unsafe {
            lua.exec_raw::<()>(values, |state| {
                ffi::lua_xmove(state, co, ffi::lua_gettop(state));
            })?;
        }
        Ok(n)
    }
}
