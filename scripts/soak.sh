#!/usr/bin/env bash
# Soak: the demo under a bounded mixed load (logins, reads, writes,
# rotations, revocations, WebSockets), its RSS (and on Redis the server's
# memory and key count) sampled every 10 s; fails if they grow once warm.
#   scripts/soak.sh [--duration 10m] [--every 10s] [--redis]
# Default: 10 minutes on the memory store. `cargo test --test soak` runs
# the same program for 40 s (what CI runs).
set -euo pipefail
cd "$(dirname "$0")/.."
args=("$@")
case " ${args[*]-} " in
    *" --duration "*) ;;
    *) args+=(--duration 10m) ;;
esac
cargo build --all-features --example demo
cargo test --all-features --test soak -- "${args[@]}"
