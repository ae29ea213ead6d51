#!/usr/bin/env bash
# SQLite's TCL test files and the crash tests on the mount, on both FUSE I/O
# paths, optionally several times and under a competing CPU load: the
# longer run behind docs/compatibility.md ("SQLite's test suite").
#
#   scripts/conformance.sh [--files all|ci|name,...] [--runs N] [--load K]
#
#   --files  which TCL files (fuse-tests/tcl-files.txt; default all)
#   --runs   how many times the whole set runs (default 1)
#   --load   K busy processes compete for the CPU meanwhile (default 0)
#
# Tables and logs go to target/conformance/. Exits non-zero if any run had
# more errors on the mount than in a plain directory, or a crash test failed.
set -euo pipefail
cd "$(dirname "$0")/.."

files=all runs=1 load=0
while [ $# -gt 0 ]; do
    case "$1" in
        --files) files=$2; shift 2 ;;
        --runs) runs=$2; shift 2 ;;
        --load) load=$2; shift 2 ;;
        *) echo "unknown argument: $1 (see the head of $0)" >&2; exit 2 ;;
    esac
done

bash scripts/install-test-deps.sh
DEPS="${LITEFS_DEPS_DIR:-$PWD/.deps}"
# shellcheck source=/dev/null
. "$DEPS/env"
export LITESTREAM_BIN CONSUL_BIN TESTFIXTURE_BIN LITEFS_PEER_BIN LTX_GO_BIN
export LITEFS_REQUIRE_DEPS=1
cargo build --release --bin litefs 2>&1
export LITEFS_BIN="${CARGO_TARGET_DIR:-$PWD/target}/release/litefs"
cargo test -p litefs-fuse-tests --test sqlite_tcl --test mount_crash --no-run 2>&1

out="$PWD/target/conformance"
mkdir -p "$out"
busy=()
stop_load() {
    for p in ${busy[@]+"${busy[@]}"}; do kill "$p" 2>/dev/null || true; done
}
trap stop_load EXIT
for _ in $(seq 1 "$load"); do
    sh -c 'while :; do :; done' &
    busy+=($!)
done

failed=()
for run in $(seq 1 "$runs"); do
    for io in passthrough classic; do
        tag="run$run-$io"
        echo "== $tag: TCL files ($files), load $load"
        if ! LITEFS_TEST_IO=$io LITEFS_TCL=$files LITEFS_TCL_OUT="$out/$tag-tcl.txt" \
            cargo test -p litefs-fuse-tests --test sqlite_tcl -- --nocapture \
            >"$out/$tag-tcl.log" 2>&1; then
            failed+=("$tag TCL (see $out/$tag-tcl.log)")
        fi
        tail -n 1 "$out/$tag-tcl.txt" 2>/dev/null || tail -n 20 "$out/$tag-tcl.log"
        echo "== $tag: crash tests"
        if ! LITEFS_TEST_IO=$io cargo test -p litefs-fuse-tests --test mount_crash \
            >"$out/$tag-crash.log" 2>&1; then
            failed+=("$tag crash (see $out/$tag-crash.log)")
        fi
        grep -h "^test result" "$out/$tag-crash.log" || true
    done
done

if [ ${#failed[@]} -gt 0 ]; then
    printf 'FAILED: %s\n' "${failed[@]}"
    exit 1
fi
echo "all $runs run(s) passed on both I/O paths (load $load)"
