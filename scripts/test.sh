#!/usr/bin/env bash
# Runs Tally's whole test suite (unit, end-to-end, doc tests, examples), after setup.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# The embedding example must keep running as documented.
cargo run --locked -q -p tally-engine --example embed >/dev/null
cargo test --workspace --locked "$@"
