#!/usr/bin/env bash
# WebSocket scripting benchmark (not a test): Lua `ws.connect` echo loops against native Rust
# clients on the same echo server and core. See bench/ws_echo.rs. Env: ROUNDS, SECS, CONNS.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo bench --bench ws_echo
