#!/usr/bin/env bash
# Builds Tally (release) and serves ./tally-data over the Postgres wire protocol on
# 127.0.0.1:5433, after setup. Extra arguments go to `tally serve` (see `--help`).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec cargo run --release --locked -q -p tally-server --bin tally -- serve --data "${TALLY_DATA:-./tally-data}" "$@"
