#!/usr/bin/env bash
# Runs every test of the crate, installing what the tests need when missing.
# The Redis tests start their own private redis-server processes and a
# Redis Cluster (made with redis-cli) on free loopback ports, or use
# REDIS_URL / REDIS_CLUSTER_URLS, so only the binaries are needed.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
    echo "redis-server or redis-cli not found: installing them" >&2
    SUDO=""
    [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq redis-server redis-tools >/dev/null
fi

# The demo test starts the demo's binary as separate processes.
cargo build --all-features --example demo
cargo test --all-features --all-targets "$@"
cargo test --all-features --doc "$@"
