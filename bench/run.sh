#!/usr/bin/env bash
# The benchmark command: builds the release `litefs` binary and the floor
# filesystem (crates/fuse/examples/floorfs.rs), installs fuse3 and sqlite3
# if missing, then runs bench/bench.py with the given arguments.
#   bash bench/run.sh [--rounds 3] [--seconds 2] [--mode passthrough|classic|both] [--quick]
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v fusermount3 >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fuse3 >/dev/null
fi
cargo build --release -p litefs --bin litefs
cargo build --release -p litefs-fuse --example floorfs
exec python3 bench/bench.py "$@"
