#!/usr/bin/env bash
# A script in any language: three canons of a POSIX shell script speaking oct's JSON-lines
# protocol, run by `oct run --local`. Extra arguments go to `oct run` (e.g. -o DIR).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
oct=${OCT:-}
if [ -z "$oct" ]; then
  cargo build --release --quiet --manifest-path "$here/../../Cargo.toml"
  oct="$here/../../target/release/oct"
fi
"$oct" run "$here" --local "$@"
