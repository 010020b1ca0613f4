#!/usr/bin/env bash
# Many simulated turrets against one HQ (not a test): see bench/many_turrets.rs. The HQ's CPU
# and RSS for each count of COUNTS, so the cost of growth is a curve.
# Env: COUNTS (100,200,500,1000), RATE (20 results/s per turret), SECS (20), MODE (raw or
# aggregate: one HDR histogram delta a second per turret instead of a batch).
set -euo pipefail
cd "$(dirname "$0")/.."
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
cargo build --release --quiet --bin oct
cargo bench --bench many_turrets
