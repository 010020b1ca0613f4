#!/usr/bin/env bash
# HQ ingest benchmark: several pusher processes flood `oct run`; prints results/s stored (0 lost)
# against a bare ZeroMQ PULL drain measured in the same run. Not a test.
# MODES (default plain,sealed,plain64,sealed64): plain/sealed (secure mode), a batch size, and
# `packed` (batches as packed binary frames, extension `packed`, as our turrets send them), and
# `web` (`--web`, with the event stream read and /metrics scraped every second), e.g.
# MODES=plain64,plain64web,plain64,plain64web.
set -euo pipefail
cd "$(dirname "$0")/.."
PUSHERS=${PUSHERS:-4} PER_PUSHER=${PER_PUSHER:-500000} cargo bench --bench hq_flood
