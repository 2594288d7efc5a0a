#!/usr/bin/env bash
# Runs every check and test of the project, the way CI does:
#
#   1. installs what the tests need beside Rust (scripts/install-deps.sh) and makes a
#      PostgreSQL server available on 127.0.0.1 (scripts/test-postgres.sh, which installs
#      and starts Debian's package when needed and exports STEPUP_TEST_POSTGRES_URL);
#   2. checks formatting and lints (cargo fmt --check, cargo clippy -D warnings);
#   3. builds the service binaries, which the fault, replica, permission and shutdown
#      tests run as child processes;
#   4. runs every test: unit tests, the services' integration tests and the end-to-end
#      tests, which start their own nats-server and development IdP on free loopback ports.
#      The stores' tests run on SQLite and PostgreSQL in this pass;
#   5. runs the end-to-end flow tests again with every service on PostgreSQL
#      (STEPUP_E2E_DATABASE=postgres).
#
# Set STEPUP_TEST_POSTGRES_URL to an admin URL of your own server to skip step 1's
# PostgreSQL set-up.
#
# Usage: scripts/test.sh [extra arguments for cargo test]

set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

say() { printf '==> %s\n' "$*"; }

"$ROOT/scripts/install-deps.sh"
eval "$("$ROOT/scripts/test-postgres.sh")"
export STEPUP_TEST_POSTGRES_URL

say "cargo fmt --all --check"
cargo fmt --all --check

say "cargo clippy --workspace --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

say "cargo build of the service binaries"
cargo build -p stepup-challenge -p stepup-callback -p stepup-verifier -p stepup-audit --bins

say "cargo test --workspace (stores on SQLite and PostgreSQL)"
cargo test --workspace --no-fail-fast "$@"

say "cargo test -p stepup-e2e --test flow on PostgreSQL"
STEPUP_E2E_DATABASE=postgres cargo test -p stepup-e2e --test flow --no-fail-fast "$@"
