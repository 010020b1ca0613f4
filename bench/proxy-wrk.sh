#!/usr/bin/env bash
# `oct proxy` in `dummy` mode against wrk straight to the same nginx (not a test): nginx on
# core 0, wrk on core 1, the proxy (2 worker threads) beside nginx on core 0; 50 connections,
# SECS seconds each, alternated ROUNDS times. Then the accuracy of `delay`: the median added
# latency of 200 sequential requests with `--behavior delay --behavior-delay-sleep 0.05`.
# Env: ROUNDS (3), SECS (8). Needs: apt-get install nginx wrk.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}; SECS=${SECS:-8}
command -v nginx >/dev/null && command -v wrk >/dev/null || { echo "needs nginx and wrk (apt-get install nginx wrk)" >&2; exit 2; }
cargo build --release --quiet
OCT=$PWD/target/release/oct
. bench/nginx-target.sh
start_nginx
free() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
pport=$(free)
taskset -c 0 "$OCT" proxy --proxy "127.0.0.1:$pport" --backend "127.0.0.1:$port" --protocol http 2>"$work/proxy.log" &
proxy_pid=$!
trap 'kill $proxy_pid 2>/dev/null; kill $nginx_pid 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 1 100); do curl -s "http://127.0.0.1:$pport/" >/dev/null 2>&1 && break; python3 -c 'import time; time.sleep(0.05)'; done
ratios=()
for r in $(seq 1 "$ROUNDS"); do
  direct=$(taskset -c 1 wrk -t1 -c50 -d"${SECS}s" "http://127.0.0.1:$port/" | awk '/Requests\/sec/ {print $2}')
  proxied=$(taskset -c 1 wrk -t1 -c50 -d"${SECS}s" "http://127.0.0.1:$pport/" | awk '/Requests\/sec/ {print $2}')
  ratio=$(python3 -c "print(f'{$proxied/$direct:.3f}')")
  ratios+=("$ratio")
  echo "round $r: wrk → nginx $direct req/s | wrk → oct proxy → nginx $proxied req/s | ratio ${ratio}x"
done
python3 -c "import statistics,sys; r=[float(x) for x in sys.argv[1:]]; print(f'median ratio proxied/direct: {statistics.median(r):.3f}x (min {min(r):.3f}, max {max(r):.3f})')" "${ratios[@]}"
kill $proxy_pid; wait $proxy_pid 2>/dev/null || true
dport=$(free)
"$OCT" proxy --proxy "127.0.0.1:$dport" --backend "127.0.0.1:$port" --protocol http --behavior delay --behavior-delay-sleep 0.05 2>>"$work/proxy.log" &
proxy_pid=$!
for _ in $(seq 1 100); do curl -s "http://127.0.0.1:$dport/" >/dev/null 2>&1 && break; python3 -c 'import time; time.sleep(0.05)'; done
python3 - "$port" "$dport" <<'PY'
import http.client, statistics, sys, time
def times(port, n):
    c = http.client.HTTPConnection("127.0.0.1", int(port))
    out = []
    for _ in range(n):
        t0 = time.perf_counter(); c.request("GET", "/"); c.getresponse().read(); out.append(time.perf_counter() - t0)
    return out
direct, delayed = times(sys.argv[1], 200), times(sys.argv[2], 200)
added = statistics.median(delayed) - statistics.median(direct)
print(f"delay sleep=50 ms: median added {added*1000:.2f} ms (error {abs(added-0.05)*1000:.2f} ms)")
PY
