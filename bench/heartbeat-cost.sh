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
