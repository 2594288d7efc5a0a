#!/usr/bin/env bash
# Makes a PostgreSQL server available to the tests on 127.0.0.1 and prints the line
#
#   export STEPUP_TEST_POSTGRES_URL=postgres://postgres[:PASSWORD]@127.0.0.1:PORT/postgres
#
# on stdout, for `eval "$(scripts/test-postgres.sh)"`. Progress goes to stderr.
#
#   1. STEPUP_TEST_POSTGRES_URL already set: printed as it is.
#   2. No Debian cluster installed: installs Debian's `postgresql` package (needs root or
#      sudo), which creates the cluster `main`.
#   3. The cluster is down: starts it with pg_ctlcluster, which also works without systemd.
#   4. The `postgres` user cannot log in over TCP without a password (Debian's default is
#      scram-sha-256 on 127.0.0.1): gives it the password `stepup-test`, which is only a
#      test credential on a loopback-only server.
#
# The tests create a database of their own per test and drop it after.

set -euo pipefail

say() { printf '==> %s\n' "$*" >&2; }
fail() { printf 'error: %s\n' "$*" >&2; exit 1; }

TEST_PASSWORD="stepup-test"

as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        fail "'$*' needs root: run it as root, or set STEPUP_TEST_POSTGRES_URL to a server of your own"
    fi
}

as_postgres() {
    if [ "$(id -u)" -eq 0 ]; then
        runuser -u postgres -- "$@"
    else
        sudo -u postgres "$@"
    fi
}

install_postgres() {
    say "PostgreSQL is not installed: apt-get install postgresql"
    as_root apt-get update -q >&2
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends postgresql >&2
}

# Prints "VERSION PORT STATUS" of the first cluster named main, or nothing.
main_cluster() {
    pg_lsclusters --no-header 2>/dev/null | awk '$2 == "main" { print $1, $3, $4; exit }'
}

can_connect() {
    psql -w "$1" -Atqc 'SELECT 1' >/dev/null 2>&1
}

main() {
    if [ -n "${STEPUP_TEST_POSTGRES_URL:-}" ]; then
        say "using the PostgreSQL server in STEPUP_TEST_POSTGRES_URL"
        printf 'export STEPUP_TEST_POSTGRES_URL=%q\n' "$STEPUP_TEST_POSTGRES_URL"
        return
    fi

    command -v pg_lsclusters >/dev/null 2>&1 || install_postgres
    if [ -z "$(main_cluster)" ]; then
        local newest
        newest="$(ls /usr/lib/postgresql 2>/dev/null | sort -n | tail -1)"
        [ -n "$newest" ] || fail "no PostgreSQL server version found under /usr/lib/postgresql"
        say "creating PostgreSQL cluster $newest/main"
        as_root pg_createcluster "$newest" main >&2
    fi

    local version port status
    read -r version port status <<<"$(main_cluster)"
    if [ "$status" != "online" ]; then
        say "starting PostgreSQL $version/main"
        as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start >&2
    fi

    local url="postgres://postgres@127.0.0.1:$port/postgres"
    local ready=0
    for _ in $(seq 1 30); do
        if pg_isready -q -h 127.0.0.1 -p "$port"; then
            ready=1
            break
        fi
        sleep 1
    done
    [ "$ready" -eq 1 ] || fail "PostgreSQL $version/main did not accept connections on 127.0.0.1:$port within 30 s"

    if ! can_connect "$url"; then
        say "setting a test password for the postgres user"
        as_postgres psql -p "$port" -Atqc "ALTER ROLE postgres PASSWORD '$TEST_PASSWORD'" >&2
        url="postgres://postgres:$TEST_PASSWORD@127.0.0.1:$port/postgres"
        can_connect "$url" || fail "cannot log in to PostgreSQL at 127.0.0.1:$port as postgres; set STEPUP_TEST_POSTGRES_URL"
    fi

    say "PostgreSQL $version ready on 127.0.0.1:$port"
    printf 'export STEPUP_TEST_POSTGRES_URL=%q\n' "$url"
}

main "$@"
