#!/usr/bin/env bash
# `oct proxy` in `dummy` mode (not a test): wrk (-t1 -c50, SECS seconds) straight to nginx, then
# through `oct proxy --protocol http`, then through a reference proxy measured in the same run —
# nginx itself as a reverse proxy (one worker, upstream keepalive) and, when installed (apt-get
# install haproxy), HAProxy (one thread, `http-reuse always`) — alternated ROUNDS times.
# The target nginx is on core 0 and wrk on core 1; PLACE says where both proxies run:
# `wrk` (core 1, beside the client: a sidecar; the default), `nginx` (core 0) or `free`
# (unpinned). Then the accuracy of `delay`: the median added latency of 200 sequential
# keep-alive requests with `--behavior delay --behavior-delay-sleep 0.05`.
# Env: ROUNDS (3), SECS (8), PLACE (wrk). Needs: apt-get install nginx wrk.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}; SECS=${SECS:-8}; PLACE=${PLACE:-wrk}
command -v nginx >/dev/null && command -v wrk >/dev/null || { echo "needs nginx and wrk (apt-get install nginx wrk)" >&2; exit 2; }
case $PLACE in
  wrk) pin=(taskset -c 1) ;;
  nginx) pin=(taskset -c 0) ;;
  free) pin=() ;;
  *) echo "PLACE=$PLACE: wrk, nginx or free" >&2; exit 2 ;;
esac
cargo build --release --quiet
OCT=$PWD/target/release/oct
. bench/nginx-target.sh
start_nginx
free() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_up() { for _ in $(seq 1 100); do curl -s "http://127.0.0.1:$1/" >/dev/null 2>&1 && return; python3 -c 'import time; time.sleep(0.05)'; done; echo "nothing on port $1" >&2; exit 1; }
pport=$(free); rport=$(free)
"${pin[@]}" "$OCT" proxy --proxy "127.0.0.1:$pport" --backend "127.0.0.1:$port" --protocol http 2>"$work/proxy.log" &
proxy_pid=$!
mkdir -p "$work/ref/logs"
cat >"$work/ref/nginx.conf" <<CONF
worker_processes 1;
daemon off;
error_log $work/ref/logs/error.log warn;
pid $work/ref/nginx.pid;
events { worker_connections 10000; }
http {
  access_log off;
  keepalive_requests 100000000;
  upstream target { server 127.0.0.1:$port; keepalive 64; keepalive_requests 100000000; }
  server {
    listen 127.0.0.1:$rport;
    location / { proxy_pass http://target; proxy_http_version 1.1; proxy_set_header Connection ""; proxy_buffering off; }
  }
}
CONF
"${pin[@]}" nginx -p "$work/ref" -c "$work/ref/nginx.conf" &
ref_pid=$!
hap_pid=""; hport=""
if command -v haproxy >/dev/null; then
  hport=$(free)
  cat >"$work/haproxy.cfg" <<CONF
global
  nbthread 1
  maxconn 5000
defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s
  http-reuse always
frontend f
  bind 127.0.0.1:$hport
  default_backend b
backend b
  server s 127.0.0.1:$port
CONF
  "${pin[@]}" haproxy -f "$work/haproxy.cfg" -db 2>"$work/haproxy.log" &
  hap_pid=$!
fi
trap 'kill $proxy_pid $ref_pid $hap_pid $nginx_pid 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT
wait_up "$pport"; wait_up "$rport"; [ -z "$hport" ] || wait_up "$hport"
rate() { taskset -c 1 wrk -t1 -c50 -d"${SECS}s" "http://127.0.0.1:$1/" | awk '/Requests\/sec/ {print $2}'; }
ours=(); refs=(); vs=(); haps=()
for r in $(seq 1 "$ROUNDS"); do
  direct=$(rate "$port"); proxied=$(rate "$pport"); reference=$(rate "$rport")
  ours+=("$(python3 -c "print($proxied/$direct)")"); refs+=("$(python3 -c "print($reference/$direct)")")
  vs+=("$(python3 -c "print($proxied/$reference)")")
  line="round $r: wrk → nginx $direct req/s | → oct proxy → nginx $proxied | → nginx proxy → nginx $reference"
  if [ -n "$hport" ]; then
    hap=$(rate "$hport"); haps+=("$(python3 -c "print($hap/$direct)")"); line="$line | → haproxy → nginx $hap"
  fi
  echo "$line"
done
python3 - "${ours[*]}" "${refs[*]}" "${vs[*]}" "${haps[*]:-}" <<'PY'
import statistics, sys
for name, xs in zip(["oct proxy / direct", "nginx proxy / direct", "oct proxy / nginx proxy", "haproxy / direct"], sys.argv[1:]):
    r = [float(x) for x in xs.split()]
    if r:
        print(f"{name}: median {statistics.median(r):.3f}x (min {min(r):.3f}, max {max(r):.3f})")
PY
kill $proxy_pid; wait $proxy_pid 2>/dev/null || true
dport=$(free)
"$OCT" proxy --proxy "127.0.0.1:$dport" --backend "127.0.0.1:$port" --protocol http --behavior delay --behavior-delay-sleep 0.05 2>>"$work/proxy.log" &
proxy_pid=$!
wait_up "$dport"
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
