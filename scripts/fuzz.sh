#!/usr/bin/env bash
# Runs every fuzz target (fuzz/fuzz_targets) for a bounded time each:
#   scripts/fuzz.sh [seconds per target, default 60]
# Needs the nightly toolchain; installs cargo-fuzz when missing.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
SECONDS_EACH="${1:-60}"

if ! rustup toolchain list | grep -q '^nightly'; then
    echo "the fuzz targets need the nightly toolchain: rustup toolchain install nightly" >&2
    exit 2
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "cargo-fuzz not found: installing it" >&2
    cargo +nightly install cargo-fuzz --locked
fi
for target in $(cargo +nightly fuzz list); do
    echo "== $target: ${SECONDS_EACH} s" >&2
    cargo +nightly fuzz run "$target" -- -max_total_time="$SECONDS_EACH" -max_len=4096
done
