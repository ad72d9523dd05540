#!/usr/bin/env bash
# The side-by-side benchmark in one command (see src/main.rs):
#   bench/side-by-side/run.sh [--sessions 1000] [--duration 3] [--rounds 3]
# Builds the apps and the driver (release), installs wrk when missing, and
# prints a markdown table. About two minutes at 1,000 sessions, three at
# 100,000 (the logins of the setup).
set -euo pipefail
cd "$(dirname "$0")"

if ! command -v wrk >/dev/null 2>&1 || ! command -v redis-server >/dev/null 2>&1; then
    echo "wrk or redis-server not found: installing them" >&2
    SUDO=""
    [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq wrk redis-server >/dev/null
fi

cargo build --release -j2 -p side-by-side --bins
target="${CARGO_TARGET_DIR:-../../target}"
exec timeout 600 "$target/release/side-by-side" "$@"
