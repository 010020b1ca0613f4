# Sourced by the turret benchmarks (not run on its own).
# start_nginx: nginx (Debian package) serving `ok` on a free port of 127.0.0.1, pinned to
#   core 0; sets `work` (a temp folder, removed at exit with nginx stopped), `port`, `nginx_pid`.
# project DIR CANONS RUN_TIME [PUBLISH_PORT RC_PORT]: an oct project of one turret, `bench`,
#   of CANONS canons (`workers: 1`) doing one GET of that nginx per transaction. EXTRA_CONFIG
#   (e.g. `"heartbeat_interval": 5,`) goes into its config.json as written.

start_nginx() {
  work=$(mktemp -d)
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  mkdir -p "$work/nginx/logs"
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
  for _ in $(seq 1 100); do
    curl -s "http://127.0.0.1:$port/" >/dev/null 2>&1 && break
    python3 -c 'import time; time.sleep(0.05)'
  done
}

project() {
  mkdir -p "$1/test_scripts"
  cat >"$1/test_scripts/get.lua" <<LUA
local url = "http://127.0.0.1:$port/"
function run(t)
  local r = http.get(url)
  if r.status ~= 200 then error("status " .. r.status) end
end
LUA
  cat >"$1/config.json" <<JSON
{"run_time": $3, ${EXTRA_CONFIG:-} "results_ts_interval": 1, "testing": false, "progress_bar": false,
 "publish_port": ${4:-0}, "rc_port": ${5:-0}, "external_publisher": 0, "drain_timeout": 30,
 "turrets": [{"name": "bench", "cannons": $2, "rampup": 0, "script": "test_scripts/get.lua", "workers": 1}]}
JSON
}
