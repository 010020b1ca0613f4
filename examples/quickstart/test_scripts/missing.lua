-- Asks for a page that does not exist: every transaction is an error, and the report shows it.
local base = os.getenv("OCT_TARGET") or "http://127.0.0.1:8000"

function run(t)
  local r = t:timer("missing", function() return http.get(base .. "/no-such-page") end)
  if r.status ~= 200 then error("missing page returned " .. r.status) end
end
