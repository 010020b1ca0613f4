-- A virtual user for oct, in Lua 5.4 (docs/scripting.md has the whole API).
--
-- Each canon (virtual user) runs this file once, then loops until the HQ says stop:
--   setup()       -- optional, not timed
--   run(t)        -- timed: its duration is the transaction time ("scriptrun_time")
--   tear_down()   -- optional, not timed
-- An error raised in run(t) is recorded as the transaction's error; the canon goes on.

-- The target of the test. http.get/post/put/patch/delete/head and http.request are built in;
-- each canon keeps its own keep-alive connections and cookies.
local base = os.getenv("OCT_TARGET")

function setup()
  -- e.g. log in, or pick a random user; oct.canon is this canon's index, oct.turret the turret
end

function run(t)
  -- t:timer(name, fn) times fn and records it as the custom timer `name` (seconds)
  t:timer("example_timer", function()
    oct.sleep(0.01 + math.random() * 0.04)
  end)
  if base then
    local r = t:timer("home", function() return http.get(base .. "/") end)
    if r.status ~= 200 then error("home returned " .. r.status) end
  end
  -- or set a timer directly: t.custom_timers["name"] = seconds
end

function tear_down()
end
