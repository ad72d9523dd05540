#!/usr/bin/env bash
# The side-by-side benchmark in one command (see src/main.rs):
#   bench/side-by-side/run.sh [--sessions 1000] [--duration 3] [--rounds 5]
#                             [--cases redis,postgres,sqlite,memory]
# Builds the apps and the driver (release), installs wrk, redis-server and
# PostgreSQL when missing, and prints a markdown table. About five minutes
# for all four cases at 1,000 sessions; at 100,000 the logins of the setup
# take most of the time (about eight minutes for --cases postgres,sqlite).
set -euo pipefail
cd "$(dirname "$0")"

have_postgres() {
    command -v initdb >/dev/null 2>&1 || [ -x /usr/local/bin/initdb ] ||
        ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1
}

missing=()
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
have_postgres || missing+=(postgresql)
if [ ${#missing[@]} -gt 0 ]; then
    echo "${missing[*]} not found: installing" >&2
    SUDO=""
    [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

cargo build --release -j2 -p side-by-side --bins
target="${CARGO_TARGET_DIR:-../../target}"
exec timeout 1200 "$target/release/side-by-side" "$@"
