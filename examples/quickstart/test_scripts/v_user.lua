-- A virtual user: each canon runs this file once, then calls run(t) in a loop until the HQ says stop.
-- OCT_TARGET is set by run.sh to the local HTTP server it starts.
local base = os.getenv("OCT_TARGET") or "http://127.0.0.1:8000"

function setup()
  -- called before every run(t); not timed
end

function run(t)
  -- t:timer records how long the function took as the custom timer "home"
  local r = t:timer("home", function() return http.get(base .. "/") end)
  if r.status ~= 200 then error("home returned " .. r.status) end
  t:timer("think", function() oct.sleep(0.01) end)
end

function tear_down()
  -- called after every run(t); not timed
end
