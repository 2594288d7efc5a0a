#!/usr/bin/env bash
# Starts the whole system on this machine and walks through one step-up approval:
#
#   1. installs what is missing (scripts/install-deps.sh: nats-server, the IdP's packages);
#   2. builds the stepup binary;
#   3. starts nats-server with JetStream, the development IdP and every service, on free
#      loopback ports, with their data in .stepup/quickstart;
#   4. publishes a demo approval and prints the step-up link and the demo user's
#      credentials, then waits for the outcome.
#
# Everything it started stops on Ctrl-C (or when the script exits). Each run starts from an
# empty .stepup/quickstart directory, so the previous run's data and logs are removed.
#
# Usage: scripts/quickstart.sh [--no-wait]
#   --no-wait   exit (stopping everything) right after the step-up link is printed

set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WORK="$ROOT/.stepup/quickstart"
NATS_SERVER="$ROOT/.stepup/tools/bin/nats-server"
WAIT_FOR_OUTCOME=1
[ "${1:-}" = "--no-wait" ] && WAIT_FOR_OUTCOME=0

say() { printf '==> %s\n' "$*"; }
fail() { printf 'error: %s\n' "$*" >&2; exit 1; }

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

wait_for_http() {
    local url=$1 name=$2
    for _ in $(seq 1 100); do
        if curl -fsS -o /dev/null "$url" 2>/dev/null; then
            return 0
        fi
        sleep 0.2
    done
    fail "$name did not become ready at $url; see the logs in $WORK"
}

PIDS=()
cleanup() {
    [ "${#PIDS[@]}" -gt 0 ] && say "stopping nats-server, the IdP and the services"
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    wait 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# 1. Tools.
"$ROOT/scripts/install-deps.sh"
command -v curl >/dev/null || fail "curl is missing: apt-get install curl"

# 2. The binary.
say "building stepup (cargo build -p stepup; the first build takes a few minutes)"
cargo build -p stepup --manifest-path "$ROOT/Cargo.toml"
STEPUP="$ROOT/target/debug/stepup"

# 3. A fresh working directory and free ports.
rm -rf "$WORK"
mkdir -p "$WORK/nats"
NATS_PORT=$(free_port)
CALLBACK_PORT=$(free_port)
CHALLENGE_PORT=$(free_port)
VERIFIER_PORT=$(free_port)
AUDIT_PORT=$(free_port)
CLIENT_SECRET=$(python3 -c 'import secrets; print(secrets.token_urlsafe(24))')
ADMIN_TOKEN=$(python3 -c 'import secrets; print(secrets.token_urlsafe(24))')

say "starting nats-server with JetStream on 127.0.0.1:$NATS_PORT"
"$NATS_SERVER" -a 127.0.0.1 -p "$NATS_PORT" -js -sd "$WORK/nats" >"$WORK/nats.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 50); do
    (exec 3<>"/dev/tcp/127.0.0.1/$NATS_PORT") 2>/dev/null && break
    sleep 0.1
done

say "starting the development IdP (tests/idp, oidc-provider)"
cp "$ROOT/config/dev-users.json" "$WORK/users.json"
cat >"$WORK/idp.json" <<JSON
{
  "port": 0,
  "host": "127.0.0.1",
  "profile": "okta",
  "users_file": "$WORK/users.json",
  "clients": [{
    "client_id": "stepup-quickstart",
    "client_secret": "$CLIENT_SECRET",
    "redirect_uris": ["http://127.0.0.1:$CALLBACK_PORT/auth/callback"],
    "token_endpoint_auth_method": "client_secret_basic"
  }]
}
JSON
mkfifo "$WORK/idp.ready"
node "$ROOT/tests/idp/server.mjs" --config "$WORK/idp.json" >"$WORK/idp.ready" 2>"$WORK/idp.log" &
PIDS+=($!)
read -r -t 20 READY_LINE <"$WORK/idp.ready" || fail "the IdP did not start; see $WORK/idp.log"
rm -f "$WORK/idp.ready"
ISSUER=$(python3 -c 'import json, sys; print(json.loads(sys.argv[1])["issuer"])' "$READY_LINE")
say "IdP issuer: $ISSUER"

say "writing $WORK/stepup.toml"
printf '%s\n' "$ADMIN_TOKEN" >"$WORK/admin-token"
chmod 600 "$WORK/admin-token"
export STEPUP_QUICKSTART_CLIENT_SECRET="$CLIENT_SECRET"
cat >"$WORK/stepup.toml" <<TOML
public_url = "http://127.0.0.1:$CALLBACK_PORT"

[nats]
url = "nats://127.0.0.1:$NATS_PORT"

[challenge]
database_url = "sqlite://$WORK/challenge.db?mode=rwc"
listen = "127.0.0.1:$CHALLENGE_PORT"
admin_token = "file:$WORK/admin-token"

[callback]
listen = "127.0.0.1:$CALLBACK_PORT"

[verifier]
listen = "127.0.0.1:$VERIFIER_PORT"

[audit]
database_url = "sqlite://$WORK/audit.db?mode=rwc"
listen = "127.0.0.1:$AUDIT_PORT"

[[providers]]
name = "dev-idp"
kind = "oauth2"
issuer = "$ISSUER"
client_id = "stepup-quickstart"
client_secret = "env:STEPUP_QUICKSTART_CLIENT_SECRET"
acr_values = ["urn:okta:loa:2fa:any"]

[[policies]]
policy_id = "production-access"
step_id = "security-approval"
provider = "dev-idp"

[[policies]]
policy_id = "production-access"
step_id = "manager-approval"
step_up = false
TOML

say "starting every service (stepup run all)"
"$STEPUP" --config "$WORK/stepup.toml" run all >"$WORK/stepup.log" 2>&1 &
PIDS+=($!)
wait_for_http "http://127.0.0.1:$CHALLENGE_PORT/readyz" "the challenge service"
wait_for_http "http://127.0.0.1:$CALLBACK_PORT/readyz" "the callback service"
wait_for_http "http://127.0.0.1:$VERIFIER_PORT/readyz" "the verifier"
wait_for_http "http://127.0.0.1:$AUDIT_PORT/readyz" "the audit service"

# 4. The demo approval.
APPROVAL_ID="demo-$(date +%s)"
say "publishing a demo approval ($APPROVAL_ID) that requires step-up"
"$STEPUP" --config "$WORK/stepup.toml" approval request \
    --approval-id "$APPROVAL_ID" \
    --policy-id production-access --step-id security-approval \
    --approver-id alice --approver-email alice@example.com \
    --resource "role:prod-admin:Production administrator"

cat <<TEXT

Open the step-up link above in a browser on this machine and sign in as the approver:
    login:          alice@example.com
    password:       alice-password
    one-time code:  123456   (leave it empty to see the step-up fail: acr_not_satisfied)

Logs: $WORK/*.log    Audit trail: http://127.0.0.1:$AUDIT_PORT/audit/approvals/$APPROVAL_ID

More approvals, from another terminal while this one runs (the command waits for the
outcome and exits non-zero unless the approval completed):
    $STEPUP --config $WORK/stepup.toml approval request \\
        --policy-id production-access --step-id security-approval \\
        --approver-id alice --approver-email alice@example.com --wait-secs 600

The admin API (providers and policies) of this run:
    $STEPUP provider list --admin-url http://127.0.0.1:$CHALLENGE_PORT --admin-token-file $WORK/admin-token
TEXT

if [ "$WAIT_FOR_OUTCOME" -eq 0 ]; then
    exit 0
fi

say "waiting for the outcome (up to 10 minutes; Ctrl-C stops everything)"
# In the background, so a SIGTERM to this script runs its clean-up at once: bash delays a
# trap until a foreground command ends, and `wait` returns when a signal arrives.
"$STEPUP" --config "$WORK/stepup.toml" approval watch --approval-id "$APPROVAL_ID" --wait-secs 600 &
WATCH_PID=$!
PIDS+=("$WATCH_PID")
wait "$WATCH_PID" || true
say "the services keep running; press Ctrl-C to stop them"
wait || true
