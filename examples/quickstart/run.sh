#!/usr/bin/env bash
# The quickstart, end to end: a local HTTP target (python3's http.server on 127.0.0.1, a port the
# OS picks), `oct run --local` with two Lua turrets against it, then the target is stopped.
# Extra arguments go to `oct run` (e.g. -o DIR). OCT=path/to/oct uses a built binary.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
oct=${OCT:-}
if [ -z "$oct" ]; then
  echo "building oct (release, with link-time optimisation: ~5 minutes on 2 cores the first time)" >&2
  cargo build --release --quiet --manifest-path "$here/../../Cargo.toml"
  oct="$here/../../target/release/oct"
fi
log=$(mktemp)
python3 -u -m http.server --bind 127.0.0.1 --directory "$here" 0 >"$log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; rm -f "$log"' EXIT
port=""
for _ in $(seq 1 100); do
  port=$(sed -n 's/.*port \([0-9]*\).*/\1/p' "$log" | head -n1)
  [ -n "$port" ] && break
  kill -0 $server 2>/dev/null || { cat "$log" >&2; exit 2; }
  python3 -c 'import time; time.sleep(0.05)'
done
[ -n "$port" ] || { echo "quickstart: the HTTP target did not start" >&2; exit 2; }
echo "quickstart: target http://127.0.0.1:$port/" >&2
OCT_TARGET="http://127.0.0.1:$port" "$oct" run "$here" --local "$@"
