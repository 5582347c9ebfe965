#!/usr/bin/env bash
# The shippable `tally`: one fat-LTO build (the `dist` profile of Cargo.toml), identical code
# folded and relative relocations packed at the link, then split in two files beside each other:
#
#   <target>/dist/ship/tally        the binary, no symbols or debug info
#   <target>/dist/ship/tally.debug  its symbols and line tables (found through .gnu_debuglink)
#
# A panic's backtrace names functions and Tally's lines when tally.debug is next to tally (or
# under /usr/lib/debug); without it, frames are unnamed. Expect 60–85 minutes on 2 cores from
# cold, and a few minutes of link after a change. README.md, "The release binary and its symbols".
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
command -v objcopy >/dev/null || { echo "dist: objcopy is missing (apt-get install binutils)" >&2; exit 1; }
target="${CARGO_TARGET_DIR:-target}"
# Packed relative relocations (DT_RELR) need glibc 2.36 or later where the binary runs.
cargo rustc --locked --profile dist -p tally-server --bin tally -- \
  -C link-arg=-Wl,--icf=all -C link-arg=-Wl,-z,pack-relative-relocs
ship="$target/dist/ship"
mkdir -p "$ship"
objcopy --only-keep-debug "$target/dist/tally" "$ship/tally.debug"
objcopy --strip-all --add-gnu-debuglink="$ship/tally.debug" "$target/dist/tally" "$ship/tally"
ls -l "$ship/tally" "$ship/tally.debug" >&2
