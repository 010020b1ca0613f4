#!/usr/bin/env bash
# What heartbeats cost a saturated turret (not a test): bench/turret-cpu.sh (nginx on core 0, HQ
# and a 50-canon turret on core 1) with heartbeats every second, then with heartbeats off (an
# interval of a day: one at start, none after), alternated ROUNDS times on the same binary.
# Compare transactions/s and the turret's µs of CPU per transaction between the two rows.
# Env: ROUNDS (4), SECS (5). Needs: apt-get install nginx.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
oct="$PWD/target/release/oct"
for r in $(seq 1 "${ROUNDS:-4}"); do
  echo "-- heartbeat every 1 s"
  EXTRA_CONFIG='"heartbeat_interval": 1,' ROUNDS=1 bash bench/turret-cpu.sh "$oct" | grep round
  echo "-- heartbeats off"
  EXTRA_CONFIG='"heartbeat_interval": 86400, "turret_timeout": 172800,' ROUNDS=1 bash bench/turret-cpu.sh "$oct" | grep round
done
# The same cost without the noise of a loaded VM: an idle turret (its HQ waits for a second
# turret that never comes, so no test starts) sending heartbeats every millisecond, against one
# sending none; the difference in CPU over the heartbeats sent is the cost of one heartbeat.
python3 - "$oct" <<'PY'
import json, os, subprocess, sys, tempfile, time
oct = sys.argv[1]
def idle_cpu(interval, secs=5.0):
    d = tempfile.mkdtemp()
    open(f"{d}/v.lua", "w").write("function run(t) end\n")
    cfg = {"run_time": 60, "results_ts_interval": 1, "testing": False, "progress_bar": False,
           "min_turrets": 2, "publish_port": 0, "rc_port": 0, "external_publisher": 0,
           "heartbeat_interval": interval, "turret_timeout": max(2 * interval, 10),
           "turrets": [{"name": "a", "cannons": 1, "script": "v.lua"}]}
    json.dump(cfg, open(f"{d}/config.json", "w"))
    hq = subprocess.Popen([oct, "run", d, "--no-results", "-o", f"{d}/out"],
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    line = next(l for l in hq.stderr if "listening" in l)
    pub, rc = [int(x) for x in line.replace(",", " ").split() if x.isdigit()][:2]
    json.dump({"name": "a", "cannons": 1, "script": "v.lua", "hq_address": "127.0.0.1",
               "hq_publisher": pub, "hq_rc": rc}, open(f"{d}/t.json", "w"))
    t = subprocess.Popen([oct, "turret", "--config-file", f"{d}/t.json"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)  # a benchmark's warm-up, not a test's synchronisation
    tick = os.sysconf("SC_CLK_TCK")
    cpu = lambda: sum(int(x) for x in open(f"/proc/{t.pid}/stat").read().rsplit(")", 1)[1].split()[11:13]) / tick
    c0, w0 = cpu(), time.time()
    time.sleep(secs)
    c1, w1 = cpu(), time.time()
    t.kill(); hq.kill(); t.wait(); hq.wait()
    return (c1 - c0) / (w1 - w0)
on, off = idle_cpu(0.001), idle_cpu(86400)
per_beat_us = (on - off) / 1000 * 1e6
print(f"idle turret: {on * 100:.1f} % of a core with 1,000 heartbeats/s, {off * 100:.1f} % with none "
      f"-> {per_beat_us:.1f} µs of CPU per heartbeat; at 1 heartbeat/s that is "
      f"{per_beat_us / 1e6 * 100:.4f} % of one saturated core")
PY
