#!/usr/bin/env bash
# Turret throughput against wrk, on the same nginx (not a test).
#   nginx (Debian package) pinned to core 0; wrk, then `oct run --local` (HQ + one turret of 50
#   canons doing one GET per transaction, every result sent to and stored by the HQ), then wrk
#   again, pinned to core 1; 10 s each, 3 rounds. Prints turret RPS / wrk RPS, wrk's being the
#   mean of the runs just before and just after: this VM's speed drifts by ±20 % within
#   minutes, and a reference on both sides of the turret's run cancels a steady drift.
# Then the turret's peak RSS with 1,000 and 10,000 canons.
# Usage: bench/turret-vs-wrk.sh [OCT_BINARY ...]   (default: target/release/oct, built here)
#   With several binaries each round runs wrk, then each binary in turn, then wrk: builds
#   compared in the same run, each against the wrk of its round (the RSS runs use the first).
# Env: ROUNDS (3), SECS (10), CANONS (50), NORSS=1 skips the RSS runs. Needs: apt-get install nginx wrk.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}; SECS=${SECS:-10}; CANONS=${CANONS:-50}
command -v nginx >/dev/null && command -v wrk >/dev/null || { echo "needs nginx and wrk (apt-get install nginx wrk)" >&2; exit 2; }
if [ $# -eq 0 ]; then
  cargo build --release --quiet
  set -- "$PWD/target/release/oct"
fi
OCT=$1
. bench/nginx-target.sh
start_nginx

project "$work/p" "$CANONS" "$SECS"
echo "nginx on core 0, load on core 1; $CANONS connections/canons, ${SECS}s each, $ROUNDS rounds"
declare -A ratios
wrk_run() { taskset -c 1 wrk -t1 -c"$CANONS" -d"${SECS}s" "http://127.0.0.1:$port/" | awk '/Requests\/sec/ {print $2}'; }
after=""
for r in $(seq 1 "$ROUNDS"); do
  # The previous round's closing wrk run opens this one.
  before=${after:-$(wrk_run)}
  results=()
  i=0
  for oct in "$@"; do
    i=$((i + 1))
    if ! out=$(taskset -c 1 "$oct" run "$work/p" --local --no-results -o "$work/out$r-$i" 2>"$work/err"); then
      echo "round $r: $oct run failed:" >&2; tail -n 20 "$work/err" >&2; echo "$out" | tail -n 20 >&2; exit 1
    fi
    n=$(echo "$out" | awk '/^transactions:/ {print $2}')
    lost=$(echo "$out" | awk '/^lost:/ {print $2}')
    errors=$(echo "$out" | awk '/^errors:/ {print $2}')
    results+=("$oct $n $errors $lost")
  done
  after=$(wrk_run)
  wrk_rps=$(python3 -c "print(f'{($before + $after) / 2:.0f}')")
  for line in "${results[@]}"; do
    read -r oct n errors lost <<<"$line"
    oct_rps=$(python3 -c "print(f'{$n/$SECS:.0f}')")
    ratio=$(python3 -c "print(f'{$n/$SECS/$wrk_rps:.3f}')")
    ratios[$oct]="${ratios[$oct]:-} $ratio"
    label=""; [ $# -eq 1 ] || label=" $oct"
    echo "round $r: wrk $before / $after req/s (mean $wrk_rps) | oct turret$label $oct_rps req/s ($n stored, errors $errors, lost $lost) | ratio ${ratio}x"
  done
done
for oct in "$@"; do
  label=""; [ $# -eq 1 ] || label=" ($oct)"
  python3 -c "import statistics,sys; r=[float(x) for x in sys.argv[2:]]; print(f'median ratio turret/wrk{sys.argv[1]}: {statistics.median(r):.3f}x (min {min(r):.3f}, max {max(r):.3f})')" "$label" ${ratios[$oct]}
done

rss() { # $1 canons: peak RSS of the turret process while its canons run
  project "$work/m$1" "$1" 5
  taskset -c 1 "$OCT" run "$work/m$1" --local --no-results -o "$work/mout$1" >"$work/m$1.out" 2>&1 &
  hq=$!
  peak=0
  while kill -0 $hq 2>/dev/null; do
    pid=$(pgrep -f "turret --config-file $work/mout$1/" | head -n1 || true)
    if [ -n "$pid" ]; then
      v=$(awk '/VmHWM/ {print $2}' /proc/$pid/status 2>/dev/null || echo 0)
      [ "${v:-0}" -gt "$peak" ] && peak=$v
    fi
    python3 -c 'import time; time.sleep(0.2)'
  done
  wait $hq || true
  n=$(awk '/^transactions:/ {print $2}' "$work/m$1.out")
  echo "RSS with $1 canons: peak $((peak / 1024)) MB ($n transactions in 5 s)"
}
[ -n "${NORSS:-}" ] || rss 1000
[ -n "${NORSS:-}" ] || rss 10000
