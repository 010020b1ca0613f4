#!/usr/bin/env bash
# Arrival-rate precision (not a test): one turret (`workers: 1`) alone on core 1 runs an open-model
# test of RATE iterations/s (default 20,000), each a GET of nginx; nginx and the HQ share core 0.
# Prints, per round: iterations scheduled over the turret's run (started + dropped), started, the
# ratio started/scheduled, started against RATE × run_time, and the schedule lag (p50, p99, max)
# from oct_lag, and the turret's CPU over the run as a share of its core: the same run is its own
# reference.
# Env: ROUNDS (3), SECS (10), RATE (20000), POOL (200). Needs: apt-get install nginx.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}; SECS=${SECS:-10}; RATE=${RATE:-20000}; POOL=${POOL:-200}
command -v nginx >/dev/null || { echo "needs nginx (apt-get install nginx)" >&2; exit 2; }
cargo build --release --quiet
oct="$PWD/target/release/oct"
. bench/nginx-target.sh
start_nginx
read -r pub rc < <(python3 -c 'import socket
s=[socket.socket() for _ in range(2)]
[x.bind(("127.0.0.1",0)) for x in s]; print(*[x.getsockname()[1] for x in s])')
project "$work/p" 1 "$SECS" "$pub" "$rc"
python3 - "$work" "$RATE" "$POOL" <<'PY'
import json, sys
work, rate, pool = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
path = f"{work}/p/config.json"
c = json.load(open(path))
c["heartbeat_interval"] = 0.5
t = c["turrets"][0]
del t["cannons"]
t["arrival_rate"] = {"rate": rate, "max_cannons": pool}
json.dump(c, open(path, "w"))
PY
cat >"$work/turret.json" <<JSON
{"name": "bench", "arrival_rate": {"rate": $RATE, "max_cannons": $POOL}, "script": "$work/p/test_scripts/get.lua",
 "workers": 1, "hq_address": "127.0.0.1", "hq_publisher": $pub, "hq_rc": $rc}
JSON
echo "nginx and HQ on core 0; turret alone on core 1; $RATE iterations/s, pool of $POOL, ${SECS}s per run"
for r in $(seq 1 "$ROUNDS"); do
  python3 - "$oct" "$work" "$SECS" "$RATE" "$r" <<'PY'
import os, sqlite3, subprocess, sys
oct, work, secs, rate, r = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
out = f"{work}/out-{r}"
hq = subprocess.Popen(["taskset", "-c", "0", oct, "run", f"{work}/p", "--no-results", "-o", out],
                      stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
turret = subprocess.Popen(["taskset", "-c", "1", oct, "turret", "--config-file", f"{work}/turret.json"],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
text = hq.stdout.read()
hq.wait()
tick = os.sysconf("SC_CLK_TCK")
fields = open(f"/proc/{turret.pid}/stat").read().rsplit(")", 1)[1].split()
turret_cpu = (int(fields[11]) + int(fields[12])) / tick
turret.kill(); turret.wait()
line = next(l for l in text.splitlines() if l.startswith("iterations started:"))
started, dropped = [int(x.strip(",")) for x in line.split() if x.strip(",").isdigit()]
lost = next(l.split(maxsplit=1)[1] for l in text.splitlines() if l.startswith("lost:"))
db = sqlite3.connect(f"{out}/results.sqlite")
lags = [x for (x,) in db.execute("SELECT lag FROM oct_lag ORDER BY lag")]
q = lambda p: lags[min(len(lags) - 1, int(p * len(lags)))] * 1000
scheduled = started + dropped
print(f"round {r}: scheduled {scheduled:,} | started {started:,} = {started / scheduled * 100:.2f} % "
      f"(dropped {dropped:,}) | started / (rate × run_time) = {started / (rate * secs) * 100:.2f} % | "
      f"lag p50 {q(0.5):.2f} ms, p99 {q(0.99):.2f} ms, max {lags[-1] * 1000:.1f} ms | "
      f"turret CPU {turret_cpu / secs * 100:.0f} % of its core | lost {lost}")
PY
done
