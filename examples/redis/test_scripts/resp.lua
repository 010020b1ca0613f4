-- A virtual user speaking RESP, Redis's protocol, over a raw TCP connection (`tcp.connect`):
-- any line- or length-framed protocol can be load-tested the same way. OCT_REDIS (host:port)
-- says where the server is; run.sh starts one.
local host, port = (os.getenv("OCT_REDIS") or "127.0.0.1:6379"):match("^([^:]+):(%d+)$")
local conn

-- One command as a RESP array of bulk strings; returns the reply (a string, a number or nil).
local function command(...)
  local args = table.pack(...)
  local parts = {"*" .. args.n .. "\r\n"}
  for i = 1, args.n do
    local a = tostring(args[i])
    parts[#parts + 1] = "$" .. #a .. "\r\n" .. a .. "\r\n"
  end
  conn:send(table.concat(parts))
  local line = conn:receive_until("\r\n")
  local kind, rest = line:sub(1, 1), line:sub(2)
  if kind == "-" then error("redis: " .. rest) end
  if kind == ":" then return tonumber(rest) end
  if kind == "$" then
    local n = tonumber(rest)
    if n < 0 then return nil end
    local value = conn:receive(n)
    conn:receive(2) -- the CRLF after a bulk string
    return value
  end
  return rest -- a simple string: "+OK"
end

function run(t)
  -- One connection per canon, kept for its life (as a client pool would).
  if not conn then conn = tcp.connect(host, tonumber(port), {timeout = 5}) end
  local key = "user:" .. oct.canon
  t:timer("set", function()
    local ok = command("SET", key, "seen at " .. oct.now())
    if ok ~= "OK" then error("SET answered " .. tostring(ok)) end
  end)
  t:timer("get", function()
    if not command("GET", key) then error("GET found nothing") end
  end)
  command("INCR", "oct:iterations")
end
