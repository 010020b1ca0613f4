#!/usr/bin/env bash
# Raw TCP scripting speed (not a test): redis-server (Debian's package) pinned to core 0; on core
# 1, first redis-benchmark's PING (inline, one request in flight per connection) with CONNS
# connections, then `oct run` + one turret (`workers: 1`) of CONNS canons each looping a Lua
# `tcp.connect` PING (send "PING\r\n", receive_until "\r\n") for SECS seconds. Prints both rates
# and their ratio, ROUNDS times. Env: ROUNDS (3), SECS (5), CONNS (50).
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}; SECS=${SECS:-5}; CONNS=${CONNS:-50}
command -v redis-server >/dev/null || { echo "needs redis-server (apt-get install redis-server)" >&2; exit 2; }
cargo build --release --quiet
oct="$PWD/target/release/oct"
work=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
taskset -c 0 redis-server --bind 127.0.0.1 --port "$port" --save "" --appendonly no --dir "$work" >"$work/redis.log" 2>&1 &
redis=$!
trap 'kill $redis 2>/dev/null; wait $redis 2>/dev/null; rm -rf "$work"' EXIT
until redis-cli -p "$port" ping >/dev/null 2>&1; do python3 -c 'import time; time.sleep(0.05)'; done
read -r pub rc < <(python3 -c 'import socket
s=[socket.socket() for _ in range(2)]
[x.bind(("127.0.0.1",0)) for x in s]; print(*[x.getsockname()[1] for x in s])')
mkdir -p "$work/p"
cat >"$work/p/ping.lua" <<LUA
local conn
function run(t)
  if not conn then conn = tcp.connect("127.0.0.1", $port) end
  conn:send("PING\r\n")
  if conn:receive_until("\r\n") ~= "+PONG" then error("no PONG") end
end
LUA
cat >"$work/p/config.json" <<JSON
{"run_time": $SECS, "results_ts_interval": 1, "testing": false, "progress_bar": false,
 "publish_port": $pub, "rc_port": $rc, "external_publisher": 0, "drain_timeout": 30,
 "turrets": [{"name": "ping", "cannons": $CONNS, "rampup": 0, "script": "ping.lua", "workers": 1}]}
JSON
cat >"$work/turret.json" <<JSON
{"name": "ping", "cannons": $CONNS, "rampup": 0, "script": "$work/p/ping.lua", "workers": 1,
 "hq_address": "127.0.0.1", "hq_publisher": $pub, "hq_rc": $rc}
JSON
echo "redis-server on core 0; clients on core 1; $CONNS connections"
for r in $(seq 1 "$ROUNDS"); do
  ref=$(taskset -c 1 redis-benchmark -p "$port" -c "$CONNS" -n $((CONNS * 4000)) -t ping -q --csv \
        | awk -F'"' '/PING_INLINE/ {print $4}')
  python3 - "$oct" "$work" "$SECS" "$r" "$ref" <<'PY'
import subprocess, sys
oct, work, secs, r, ref = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4], float(sys.argv[5])
hq = subprocess.Popen(["taskset", "-c", "1", oct, "run", f"{work}/p", "--no-results", "-o", f"{work}/out-{r}"],
                      stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
turret = subprocess.Popen(["taskset", "-c", "1", oct, "turret", "--config-file", f"{work}/turret.json"],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
text = hq.stdout.read(); hq.wait(); turret.kill(); turret.wait()
n = next(int(l.split()[1]) for l in text.splitlines() if l.startswith("transactions:"))
errors = next(int(l.split()[1]) for l in text.splitlines() if l.startswith("errors:"))
ours = n / secs
print(f"round {r}: redis-benchmark PING_INLINE {ref:,.0f}/s | oct Lua tcp PING {ours:,.0f}/s "
      f"(errors {errors}) = {ours / ref:.2f}x")
PY
done
