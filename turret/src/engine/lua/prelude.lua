local clock, state_of = ...
local co_yield = coroutine.yield
local pcall, setmetatable, type, next = pcall, setmetatable, type, next

-- A script's own coroutines may call http.* and oct.sleep too: what they yield for the turret
-- ("oct:…") is passed up to the canon's driver, and its answer handed back down, so the
-- script's coroutine.resume only ever sees the script's own yields.
local co_resume, co_status, co_create, co_close = coroutine.resume, coroutine.status, coroutine.create, coroutine.close
local OURS = {["oct:http"] = true, ["oct:tcp"] = true, ["oct:ws"] = true, ["oct:sleep"] = true}
local function pass(co, ok, tag, ...)
  if ok and OURS[tag] and co_status(co) == "suspended" then
    return pass(co, co_resume(co, co_yield(tag, ...)))
  end
  return ok, tag, ...
end
function coroutine.resume(co, ...)
  return pass(co, co_resume(co, ...))
end
local resume, error = coroutine.resume, error
local function unwrap(co, ok, ...)
  if not ok then
    co_close(co)
    error((...), 0)
  end
  return ...
end
function coroutine.wrap(f)
  local co = co_create(f)
  return function(...) return unwrap(co, resume(co, ...)) end
end

local T = {}
T.__index = T
function T:timer(name, fn, ...)
  local t0 = clock()
  local r = table.pack(fn(...))
  self.custom_timers[name] = clock() - t0
  return table.unpack(r, 1, r.n)
end
return function(setup, run, tear_down, go, paced, tally)
  -- Tells the driver which lua_State this coroutine is: it resumes it through the C API.
  co_yield("oct:state", state_of())
  -- One `t` for the canon's life, its timers table replaced only once used: an iteration
  -- that times nothing leaves nothing for the collector.
  local t = setmetatable({custom_timers = {}}, T)
  while go do
    -- The open model: wait for this canon's next iteration to be due (false: the test is over).
    if paced then
      go = co_yield("oct:pace")
      if not go then break end
    end
    local err, phase = nil, nil
    local elapsed = 0
    if setup then
      local ok, e = pcall(setup)
      if not ok then err, phase = e, "setup" end
    end
    if err == nil then
      local t0 = clock()
      local ok, e = pcall(run, t)
      elapsed = clock() - t0
      if not ok then err = e end
    end
    if tear_down then
      local ok, e = pcall(tear_down)
      if not ok and err == nil then err, phase = e, "tear_down" end
    end
    local timers = t.custom_timers
    -- Checked here so the report sees nil in the common case (no timers): handing a table to
    -- the Rust side costs an mlua value and an iterator for nothing. `fresh`: t needs a new
    -- table for the next iteration.
    local timed, fresh = nil, false
    if type(timers) ~= "table" then
      if err == nil then err = "t.custom_timers must be a table" end
      fresh = true
    elseif next(timers) ~= nil then
      timed, fresh = timers, true
    end
    -- What check() and oct.counter() tallied in this iteration, if anything.
    local checks, counters = nil, nil
    if tally.used then
      tally.used = false
      checks, counters = tally.checks, tally.counters
      if next(checks) ~= nil then tally.checks = {} else checks = nil end
      if next(counters) ~= nil then tally.counters = {} else counters = nil end
    end
    -- The driver sends the result and, unless paced, lets the canons beside this one take
    -- their turn before this one starts its next iteration; the answer says whether to go on.
    go = co_yield("oct:report", elapsed, err, phase, timed, checks, counters)
    if fresh then t.custom_timers = {} end
  end
end
