#!/usr/bin/env bash
# Runs every check and test of the project, the way CI does:
#
#   1. installs what the tests need beside Rust (scripts/install-deps.sh);
#   2. checks formatting and lints (cargo fmt --check, cargo clippy -D warnings);
#   3. runs every test: unit tests, the services' integration tests and the end-to-end
#      tests, which start their own nats-server and development IdP on free loopback ports.
#
# Usage: scripts/test.sh [extra arguments for cargo test]

set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

say() { printf '==> %s\n' "$*"; }

"$ROOT/scripts/install-deps.sh"

say "cargo fmt --all --check"
cargo fmt --all --check

say "cargo clippy --workspace --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

say "cargo test --workspace"
cargo test --workspace --no-fail-fast "$@"
