#!/usr/bin/env bash
# Raw TCP scripting, end to end: a real redis-server on 127.0.0.1 (a free port; Debian's
# `redis-server` package), `oct run --local` with a Lua turret speaking RESP to it through
# `tcp.connect`, then the server is stopped. Extra arguments go to `oct run` (e.g. -o DIR).
# OCT=path/to/oct uses a built binary.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
command -v redis-server >/dev/null || { echo "redis example: needs redis-server (apt-get install redis-server)" >&2; exit 2; }
oct=${OCT:-}
if [ -z "$oct" ]; then
  cargo build --release --quiet --manifest-path "$here/../../Cargo.toml"
  oct="$here/../../target/release/oct"
fi
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
data=$(mktemp -d)
redis-server --bind 127.0.0.1 --port "$port" --save "" --appendonly no --dir "$data" --daemonize no >"$data/log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null; rm -rf "$data"' EXIT
for _ in $(seq 1 100); do
  python3 -c "import socket,sys; s=socket.create_connection(('127.0.0.1',$port),0.2); s.sendall(b'PING\r\n'); sys.exit(0 if s.recv(7)==b'+PONG\r\n' else 1)" 2>/dev/null && break
  kill -0 $server 2>/dev/null || { cat "$data/log" >&2; exit 2; }
  python3 -c 'import time; time.sleep(0.05)'
done
echo "redis example: redis-server on 127.0.0.1:$port" >&2
OCT_REDIS="127.0.0.1:$port" "$oct" run "$here" --local "$@"
