#!/usr/bin/env bash
# Runs every test of the crate, installing what the tests need when missing.
# The Redis tests start their own private redis-server processes on free
# loopback ports (or use REDIS_URL), so only the binary is needed.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v redis-server >/dev/null 2>&1; then
    echo "redis-server not found: installing it" >&2
    SUDO=""
    [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq redis-server >/dev/null
fi

cargo test --all-features --all-targets "$@"
cargo test --all-features --doc "$@"
