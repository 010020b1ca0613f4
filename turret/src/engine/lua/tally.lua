-- check() and oct.counter() of one canon: what they tally, the canon's loop sends with the
-- iteration's result and starts afresh.
local pcall, pairs, type, tostring, error = pcall, pairs, type, tostring, error
return function(env)
  -- `used`: whether anything was tallied since the loop last took the tally, so that an
  -- iteration that tallies nothing costs the loop one field read.
  local tally = {checks = {}, counters = {}, used = false}
  -- k6's check(value, {name = function(value) return … end, …}): each function that returns a
  -- true value passes, one that returns false, nil or raises fails; true when all passed.
  env.check = function(value, checks)
    if type(checks) ~= "table" then
      error("check(value, {name = function(value) ... end}): the checks must be a table, not a " .. type(checks), 2)
    end
    local all = true
    for name, fn in pairs(checks) do
      if type(fn) ~= "function" then
        error("check: `" .. tostring(name) .. "` must be a function, not a " .. type(fn), 2)
      end
      local ok, passed = pcall(fn, value)
      name = tostring(name)
      tally.used = true
      local c = tally.checks[name]
      if not c then c = {0, 0}; tally.checks[name] = c end
      if ok and passed then c[1] = c[1] + 1 else c[2] = c[2] + 1; all = false end
    end
    return all
  end
  -- Loads' incr_counter: oct.counter(name [, n]) adds n (default 1).
  env.oct.counter = function(name, n)
    if n == nil then n = 1 end
    if type(n) ~= "number" then
      error("oct.counter(name [, n]): n must be a number, not a " .. type(n), 2)
    end
    name = tostring(name)
    tally.used = true
    tally.counters[name] = (tally.counters[name] or 0) + n
  end
  return tally
end
