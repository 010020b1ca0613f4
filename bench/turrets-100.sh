#!/usr/bin/env bash
# TURRETS real turret processes (CANONS canons each, one worker thread) against one HQ on this
# machine for SECS seconds (not a test): every transaction a GET of a local nginx and a PACE
# second sleep, every result stored (raw). Samples the HQ's CPU (from /proc, user + system,
# percent of one core) and RSS once a second; prints results stored per second and lost.
# RESULTS=aggregate runs the test with "results": "aggregate" (one HDR histogram delta per turret
# and second instead of a row per transaction) and counts the transactions the aggregates hold.
# Env: TURRETS (100), CANONS (2), SECS (60), PACE (0.01), RESULTS (raw). Needs: apt-get install nginx.
set -euo pipefail
cd "$(dirname "$0")/.."
TURRETS=${TURRETS:-100}; CANONS=${CANONS:-2}; SECS=${SECS:-60}; PACE=${PACE:-0.01}
RESULTS=${RESULTS:-raw}
command -v nginx >/dev/null || { echo "needs nginx (apt-get install nginx)" >&2; exit 2; }
cargo build --release --quiet
OCT=$PWD/target/release/oct
. bench/nginx-target.sh
start_nginx
free() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
pub=$(free); rc=$(free)
proj=$work/project
mkdir -p "$proj/test_scripts"
cat >"$proj/test_scripts/get.lua" <<LUA
local url = "http://127.0.0.1:$port/"
function run(t)
  local r = http.get(url)
  if r.status ~= 200 then error("status " .. r.status) end
  oct.sleep($PACE)
end
LUA
cat >"$proj/config.json" <<JSON
{"run_time": $SECS, "results_ts_interval": 1, "testing": false, "progress_bar": false,
 "min_turrets": $TURRETS, "publish_port": $pub, "rc_port": $rc, "external_publisher": 0,
 "bind_address": "127.0.0.1", "drain_timeout": 60, "results": "$RESULTS",
 "turrets": [{"name": "t", "cannons": $CANONS, "rampup": 0, "script": "test_scripts/get.lua"}]}
JSON
"$OCT" run "$proj" -o "$work/out" --no-results >"$work/hq.log" 2>&1 &
hq=$!
pids=()
for i in $(seq 1 "$TURRETS"); do
  printf '{"name": "t%s", "cannons": %s, "rampup": 0, "script": "test_scripts/get.lua", "workers": 1, "hq_address": "127.0.0.1", "hq_publisher": %s, "hq_rc": %s}' \
    "$i" "$CANONS" "$pub" "$rc" >"$proj/t$i.json"
  "$OCT" turret --once --config-file "$proj/t$i.json" >/dev/null 2>&1 &
  pids+=($!)
done
trap 'kill $hq ${pids[*]} $nginx_pid 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT
tick=$(getconf CLK_TCK)
python3 - "$hq" "$tick" "$work/hq.log" <<'PY'
import os, sys, time
pid, tick, log = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
def cpu():
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / tick
def rss():
    for l in open(f"/proc/{pid}/status"):
        if l.startswith("VmRSS:"):
            return int(l.split()[1]) / 1024
while "started" not in open(log).read():
    if not os.path.exists(f"/proc/{pid}"):
        sys.exit("the HQ ended before starting: " + open(log).read())
    time.sleep(0.2)
t0, c0, samples = time.time(), cpu(), []
last = (t0, c0)
while os.path.exists(f"/proc/{pid}") and "stop sent" not in open(log).read():
    time.sleep(1)
    try:
        now, c = time.time(), cpu()
        samples.append(((c - last[1]) / (now - last[0]) * 100, rss()))
        last = (now, c)
    except (FileNotFoundError, ProcessLookupError):
        break
if samples:
    cpus = sorted(s[0] for s in samples)
    print(f"HQ CPU over the run: mean {sum(cpus)/len(cpus):.1f} %, p90 {cpus[int(len(cpus)*0.9)]:.1f} %, max {cpus[-1]:.1f} % of one core; RSS max {max(s[1] for s in samples):.1f} MiB")
PY
wait "$hq" || true
grep -E "transactions|lost|stored|received" "$work/hq.log" | tail -6
python3 - "$work/out/results.sqlite" "$SECS" <<'PY'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
n, turrets = db.execute("SELECT count(*), count(DISTINCT turret_name) FROM result").fetchone()
an, aturrets, rows = db.execute("SELECT coalesce(sum(count), 0), count(DISTINCT turret_name), count(*) FROM oct_agg WHERE kind = 'transaction'").fetchone()
lost = db.execute("SELECT value FROM oct_run WHERE key = 'lost'").fetchone()
li = db.execute("SELECT value FROM oct_run WHERE key = 'lost_intervals'").fetchone()
if rows:
    print(f"{an} transactions in {rows} aggregates from {aturrets} turrets: {an/float(sys.argv[2]):.0f} transactions/s; lost {lost[0] if lost else 'unknown'}, lost intervals {li[0] if li else 'unknown'}")
else:
    print(f"{n} results stored from {turrets} turrets: {n/float(sys.argv[2]):.0f} results/s; lost {lost[0] if lost else 'unknown'}")
PY
