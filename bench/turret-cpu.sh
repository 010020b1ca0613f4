#!/usr/bin/env bash
# CPU per transaction of the turret and of the HQ (not a test), less noisy on a shared VM than
# requests/s: nginx (Debian package) pinned to core 0; an HQ (`oct run`) and one turret
# (`oct turret`, 50 canons doing one GET per transaction, `workers: 1`) both on core 1; SECS
# seconds per run. Prints, per run, transactions/s, the µs of CPU (user + system) each
# process spent per transaction stored (the turret's user-space part too: what its own code
# costs, steadier than the kernel's part on a shared VM), and how often nginx's worker went to sleep per
# transaction (each sleep is a wake-up the turret pays for in its next send).
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
. bench/nginx-target.sh
start_nginx
read -r pub rc < <(python3 -c 'import socket
s=[socket.socket() for _ in range(2)]
[x.bind(("127.0.0.1",0)) for x in s]; print(*[x.getsockname()[1] for x in s])')
project "$work/p" "$CANONS" "$SECS" "$pub" "$rc"
cat >"$work/turret.json" <<JSON
{"name": "bench", "cannons": $CANONS, "rampup": 0, "script": "$work/p/test_scripts/get.lua",
 "workers": 1, "hq_address": "127.0.0.1", "hq_publisher": $pub, "hq_rc": $rc}
JSON
worker=$(pgrep -P "$nginx_pid" | head -n1)
echo "nginx on core 0; HQ and turret on core 1; $CANONS canons, ${SECS}s per run"
for r in $(seq 1 "$ROUNDS"); do
  for oct in "$@"; do
    python3 - "$oct" "$work" "$SECS" "$r" "$worker" <<'PY'
import os, subprocess, sys
oct, work, secs, r, worker = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4], sys.argv[5]
def sleeps():
    return next(int(l.split()[1]) for l in open(f"/proc/{worker}/status") if l.startswith("voluntary_ctxt_switches"))
sleeps0 = sleeps()
out = f"{work}/out-{r}-{abs(hash(oct))}"
hq = subprocess.Popen(["taskset", "-c", "1", oct, "run", f"{work}/p", "--no-results", "-o", out],
                      stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
turret = subprocess.Popen(["taskset", "-c", "1", oct, "turret", "--config-file", f"{work}/turret.json"],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
text = hq.stdout.read()
_, status, usage = os.wait4(hq.pid, 0)
nginx_sleeps = sleeps() - sleeps0
tick = os.sysconf("SC_CLK_TCK")
fields = open(f"/proc/{turret.pid}/stat").read().rsplit(")", 1)[1].split()
turret_user = int(fields[11]) / tick
turret_cpu = turret_user + int(fields[12]) / tick
turret.kill(); turret.wait()
n = next(int(l.split()[1]) for l in text.splitlines() if l.startswith("transactions:"))
lost = next(l.split(maxsplit=1)[1] for l in text.splitlines() if l.startswith("lost:"))
hq_cpu = usage.ru_utime + usage.ru_stime
print(f"round {r} {oct}: {n / secs:,.0f} transactions/s (lost {lost}) | "
      f"turret {turret_cpu * 1e6 / n:.2f} µs/transaction ({turret_user * 1e6 / n:.2f} user), HQ {hq_cpu * 1e6 / n:.2f} µs/transaction | "
      f"nginx slept {nginx_sleeps / n:.3f} times a transaction")
PY
  done
done
