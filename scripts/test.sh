#!/usr/bin/env bash
# The project's one test command: installs the external test dependencies
# (fuse3, sqlite3, litestream, consul) and runs the whole workspace test suite.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-test-deps.sh

DEPS="${LITEFS_DEPS_DIR:-$PWD/.deps}"
# shellcheck source=/dev/null
. "$DEPS/env"
export LITESTREAM_BIN CONSUL_BIN TESTFIXTURE_BIN LITEFS_PEER_BIN LTX_GO_BIN

# In CI, tests that need external programs fail instead of skipping.
if [ "${CI:-}" = "true" ]; then
    export LITEFS_REQUIRE_DEPS=1
fi

# Every step has a time limit: a hung test must fail the run with its
# output, not eat CI's whole budget. `timeout -k` kills what ignores TERM.
limit() {
    local secs=$1
    shift
    timeout -k 30 "$secs" "$@"
}

locked=()
if [ -f Cargo.lock ]; then
    locked=(--locked)
fi

# The integration tests run the real (release) binary as separate processes.
cargo build --release --bin litefs ${locked[@]+"${locked[@]}"} 2>&1
export LITEFS_BIN="${CARGO_TARGET_DIR:-$PWD/target}/release/litefs"

# Build the tests first: the limits below are for hung tests, and a cold
# build on a busy 2-core machine alone took over 30 minutes once.
cargo test --workspace --all-targets --no-run ${locked[@]+"${locked[@]}"} 2>&1
limit 1800 cargo test --workspace --all-targets ${locked[@]+"${locked[@]}"} 2>&1
# The mount tests again on the classic FUSE I/O path (the run above used
# passthrough, where the kernel has it): both paths stay tested.
LITEFS_TEST_IO=classic limit 1200 cargo test -p litefs-fuse-tests ${locked[@]+"${locked[@]}"} \
    --test mount_capture --test mount_crash --test mount_more --test mount_restart \
    --test sqlite_tcl --test replication --test mount_permissions --test mount_recreate 2>&1
limit 600 cargo test --workspace --doc ${locked[@]+"${locked[@]}"} 2>&1
# The benchmark must keep working (it measures, it asserts no speed): every
# workload once, briefly, on both I/O paths and the floor filesystem.
cargo build --release -p litefs-fuse --example floorfs ${locked[@]+"${locked[@]}"} 2>&1
limit 900 python3 bench/bench.py --smoke --mode both --litefs "$LITEFS_BIN" \
    --floorfs "${CARGO_TARGET_DIR:-$PWD/target}/release/examples/floorfs" --out target/bench-smoke
# Replication lag: 1 primary + 2 replicas, paced and unpaced writers; fails
# if the replicas do not converge (or a daemon stops answering), never on speed.
limit 600 python3 bench/lag.py --smoke --litefs "$LITEFS_BIN" --out target/lag-smoke
