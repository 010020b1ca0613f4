#!/usr/bin/env bash
# Report benchmark: `oct rebuild-results` on a generated 10,000,000-row results.sqlite; prints
# time and peak RSS against a bare scan of the same file. Not a test.
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS=${ROWS:-10000000} cargo bench --bench report_10m
