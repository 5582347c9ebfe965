#!/usr/bin/env bash
# Runs Tally's whole test suite (unit, end-to-end, doc tests, examples), after setup.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# Every build command must share one set of compiled dependencies (see workspace-hack/).
python3 scripts/check-shared-build.py
# The embedding example must keep running as documented. It is built with the whole workspace
# (`cargo run -p tally-engine` would resolve features for the engine alone and build RocksDB a
# second time), then run from the target directory.
cargo build --workspace --examples --locked -q
"${CARGO_TARGET_DIR:-target}/debug/examples/embed" >/dev/null
cargo test --workspace --locked "$@"
