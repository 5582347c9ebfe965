#!/usr/bin/env bash
# Builds Tally (release) and opens its SQL shell on ./tally-data, after setup.
# Extra arguments go to `tally sql`, e.g. scripts/run.sh -c "SELECT 1".
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec cargo run --release --locked -q -p tally-server --bin tally -- sql --data "${TALLY_DATA:-./tally-data}" "$@"
