#!/usr/bin/env bash
# CPU per transaction of the turret and of the HQ (not a test), less noisy on a shared VM than
# requests/s: nginx (Debian package) pinned to core 0; an HQ (`oct run`) and one turret
# (`oct turret`, 50 canons doing one GET per transaction, `workers: 1`) both on core 1; SECS
# seconds per run. Prints, per run, transactions/s and the µs of CPU (user + system) each
# process spent per transaction stored.
# Usage: bench/turret-cpu.sh [OCT_BINARY ...]   (default: target/release/oct, built here)
#   Several binaries are run in turn, ROUNDS times, to compare builds on the same nginx.
# Env: ROUNDS (3), SECS (5), CANONS (50). Needs: apt-get install nginx.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}; SECS=${SECS:-5}; CANONS=${CANONS:-50}
command -v nginx >/dev/null || { echo "needs nginx (apt-get install nginx)" >&2; exit 2; }
if [ $# -eq 0 ]; then
  cargo build --release --quiet
  set -- "$PWD/target/release/oct"
fi
work=$(mktemp -d)
read -r port pub rc < <(python3 -c 'import socket
s=[socket.socket() for _ in range(3)]
[x.bind(("127.0.0.1",0)) for x in s]; print(*[x.getsockname()[1] for x in s])')
mkdir -p "$work/nginx/logs" "$work/p/test_scripts"
cat >"$work/nginx/nginx.conf" <<CONF
worker_processes 1;
worker_rlimit_nofile 40000;
daemon off;
error_log $work/nginx/logs/error.log warn;
pid $work/nginx/nginx.pid;
events { worker_connections 30000; }
http {
  access_log off;
  keepalive_requests 100000000;
  server { listen 127.0.0.1:$port; location / { return 200 "ok\n"; } }
}
CONF
taskset -c 0 nginx -p "$work/nginx" -c "$work/nginx/nginx.conf" &
nginx_pid=$!
trap 'kill $nginx_pid 2>/dev/null; wait $nginx_pid 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 1 100); do curl -s "http://127.0.0.1:$port/" >/dev/null 2>&1 && break; python3 -c 'import time; time.sleep(0.05)'; done
cat >"$work/p/test_scripts/get.lua" <<LUA
local url = "http://127.0.0.1:$port/"
function run(t)
  local r = http.get(url)
  if r.status ~= 200 then error("status " .. r.status) end
end
LUA
cat >"$work/p/config.json" <<JSON
{"run_time": $SECS, "results_ts_interval": 1, "testing": false, "progress_bar": false,
 "publish_port": $pub, "rc_port": $rc, "external_publisher": 0, "drain_timeout": 30,
 "turrets": [{"name": "bench", "cannons": $CANONS, "rampup": 0, "script": "test_scripts/get.lua", "workers": 1}]}
JSON
cat >"$work/turret.json" <<JSON
{"name": "bench", "cannons": $CANONS, "rampup": 0, "script": "$work/p/test_scripts/get.lua",
 "workers": 1, "hq_address": "127.0.0.1", "hq_publisher": $pub, "hq_rc": $rc}
JSON
echo "nginx on core 0; HQ and turret on core 1; $CANONS canons, ${SECS}s per run"
for r in $(seq 1 "$ROUNDS"); do
  for oct in "$@"; do
    python3 - "$oct" "$work" "$SECS" "$r" <<'PY'
import os, subprocess, sys
oct, work, secs, r = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]
out = f"{work}/out-{r}-{abs(hash(oct))}"
hq = subprocess.Popen(["taskset", "-c", "1", oct, "run", f"{work}/p", "--no-results", "-o", out],
                      stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
turret = subprocess.Popen(["taskset", "-c", "1", oct, "turret", "--config-file", f"{work}/turret.json"],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
text = hq.stdout.read()
_, status, usage = os.wait4(hq.pid, 0)
tick = os.sysconf("SC_CLK_TCK")
fields = open(f"/proc/{turret.pid}/stat").read().rsplit(")", 1)[1].split()
turret_cpu = (int(fields[11]) + int(fields[12])) / tick
turret.kill(); turret.wait()
n = next(int(l.split()[1]) for l in text.splitlines() if l.startswith("transactions:"))
lost = next(l.split(maxsplit=1)[1] for l in text.splitlines() if l.startswith("lost:"))
hq_cpu = usage.ru_utime + usage.ru_stime
print(f"round {r} {oct}: {n / secs:,.0f} transactions/s (lost {lost}) | "
      f"turret {turret_cpu * 1e6 / n:.2f} µs/transaction, HQ {hq_cpu * 1e6 / n:.2f} µs/transaction")
PY
  done
done
