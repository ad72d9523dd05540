#!/usr/bin/env bash
# Runs every test of the crate, installing what the tests need when missing.
# The Redis tests start their own private redis-server processes and a
# Redis Cluster (made with redis-cli) on free loopback ports, or use
# REDIS_URL / REDIS_CLUSTER_URLS; the PostgreSQL tests start their own
# private server (initdb + postgres, as the `postgres` user when run as
# root) on a free loopback port, or use DATABASE_URL. So only the binaries
# are needed. SQLite is compiled into the tests. The browser test
# (tests/browser.rs) starts headless Chromium (`chromium`, or $CHROMIUM)
# and leaves screenshots of the demo page in target/screenshots/.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
APT_UPDATED=""
apt_install() {
    if [ -z "$APT_UPDATED" ]; then
        $SUDO apt-get update -qq
        APT_UPDATED=1
    fi
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$@" >/dev/null
}

if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
    echo "redis-server or redis-cli not found: installing them" >&2
    apt_install redis-server redis-tools
fi

# Where tests/support/postgres.rs looks for initdb and postgres.
has_postgres() {
    local dir
    for dir in $(echo "$PATH" | tr ':' ' ') /usr/local/bin /usr/lib/postgresql/*/bin; do
        [ -x "$dir/initdb" ] && [ -x "$dir/postgres" ] && return 0
    done
    return 1
}
if [ -z "${DATABASE_URL:-}" ] && ! has_postgres; then
    echo "initdb or postgres not found: installing postgresql" >&2
    apt_install postgresql
fi

# The browser test drives the demo page in headless Chromium.
if [ -z "${CHROMIUM:-}" ] && ! command -v chromium >/dev/null 2>&1; then
    echo "chromium not found: installing it" >&2
    apt_install chromium
fi

# The demo test starts the demo's binary as separate processes.
cargo build --all-features --example demo
cargo test --all-features --all-targets "$@"
cargo test --all-features --doc "$@"
