#!/usr/bin/env bash
# Property-based API testing with schemathesis against a throwaway instance, driven by the
# OpenAPI document the instance serves at /openapi.json. Checks: no 5xx (not_a_server_error),
# status codes, content types and response bodies as documented (status_code_conformance,
# content_type_conformance, response_schema_conformance).
#
#   scripts/schemathesis.sh          set up target/schemathesis/venv, start an instance through
#                                    scripts/with-service.sh (rate limits off) and test it
#
# Every request carries an admin's access token, so protected operations are exercised past
# authentication. Operations that can end that token or strip the admin's rights when fed with
# ids the API itself returned (revoking the current session, logout, logout-all, deleting or
# renaming the admin role, removing a role, deleting a user) run after the main pass, in small
# passes of their own, each with a freshly issued token and only producers of harmless ids
# (roles and users that pass creates). Bounded and reproducible: SCHEMATHESIS_MAX_EXAMPLES per
# operation (default 100) and a fixed SCHEMATHESIS_SEED. Reports (JUnit, NDJSON) go to
# target/schemathesis/report/<pass>/. SCHEMATHESIS_CHECKS replaces the list of checks (e.g.
# `all`). Exits non-zero when schemathesis reports a failure.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${BIN:-target/debug/auth-service}
WORK=$PWD/target/schemathesis
VENV=$WORK/venv
SEED=${SCHEMATHESIS_SEED:-20251128}
MAX_EXAMPLES=${SCHEMATHESIS_MAX_EXAMPLES:-100}
CHECKS=${SCHEMATHESIS_CHECKS:-not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance}

if [ "${1:-}" != "--inner" ]; then
  mkdir -p "$WORK"
  if ! "$VENV/bin/schemathesis" --version 2>/dev/null | grep -q 'version 4\.'; then
    python3 -m venv "$VENV"
    # The options below are schemathesis 4's (3.x names checks, filters and phases differently).
    "$VENV/bin/pip" install --quiet --disable-pip-version-check 'schemathesis>=4,<5'
  fi
  "$VENV/bin/schemathesis" --version
  [ -x "$BIN" ] || cargo build -j 2 --bin auth-service
  export RATE_LIMIT_ENABLED=false
  # At http://localhost (a domain name, as a WebAuthn relying party needs), so that the passkey
  # routes are on and tested like the rest.
  SERVICE_HOST=localhost exec scripts/with-service.sh "$0" --inner
fi

# From here on, inside scripts/with-service.sh: the instance runs at $AUTH_URL.
start=$SECONDS
REPORT=$WORK/report
rm -rf "$REPORT"
mkdir -p "$REPORT"

# An admin, created the way an operator would (the password only ever in the environment and
# on stdin, never in argv).
SUPERUSER_USERNAME=schemathesis_admin
SUPERUSER_EMAIL=schemathesis_admin@example.com
SUPERUSER_PASSWORD=$(python3 -c 'import secrets; print(secrets.token_urlsafe(24))')
export SUPERUSER_USERNAME SUPERUSER_EMAIL SUPERUSER_PASSWORD
"$BIN" create-superuser >/dev/null
# Log in by email: the main pass may rename the admin (PATCH /api/v1/users/auth/update), but
# nothing in the API changes an email.
login_body=$(python3 -c 'import json, os; print(json.dumps({"username": os.environ["SUPERUSER_EMAIL"], "password": os.environ["SUPERUSER_PASSWORD"]}))')
unset SUPERUSER_PASSWORD

# A fresh access token for the admin, exported for the config file below.
login() {
  if ! SCHEMATHESIS_TOKEN=$(printf '%s' "$login_body" |
    curl -fsS -H 'content-type: application/json' --data-binary @- "$AUTH_URL/api/v1/auth/login-json" |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["access_token"])'); then
    echo "schemathesis: the admin could not log in" >&2
    exit 1
  fi
  export SCHEMATHESIS_TOKEN
}

# The token reaches schemathesis through the environment, not its command line, and as the
# document's `bearerAuth` scheme rather than a global header: schemathesis seeds path ids from
# the claims of a global Bearer JWT, and the first DELETE /api/v1/users/{user_id} would then
# delete the admin itself.
CONFIG=$WORK/schemathesis.toml
printf '%s\n' '[auth.openapi.bearerAuth]' 'bearer = "${SCHEMATHESIS_TOKEN}"' >"$CONFIG"

status=0
# run_pass NAME [schemathesis filter options...]: one schemathesis run with a fresh token. It
# runs in $WORK so that schemathesis keeps its cache directory there.
run_pass() {
  local name=$1
  shift
  echo
  echo "schemathesis: pass $name (at most $MAX_EXAMPLES examples per operation, seed $SEED)"
  login
  (cd "$WORK" && "$VENV/bin/schemathesis" --config-file "$CONFIG" run "$AUTH_URL/openapi.json" \
    --checks "$CHECKS" \
    --max-examples "$MAX_EXAMPLES" --seed "$SEED" --workers 1 \
    --request-timeout 10 --no-color --suppress-health-check too_slow,filter_too_much \
    --generation-database none --report junit,ndjson --report-dir "$REPORT/$name" "$@") || status=1
}

# only OP...: options selecting exactly these operation ids.
only() {
  local op
  for op in "$@"; do printf -- '--include-operation-id\n%s\n' "$op"; done
}

# The main pass: every operation but those that could end the token or the admin's rights.
FINAL=(revokeSession logout logoutAll deleteUser updateRole deleteRole removeRole)
mapfile -t opts < <(for op in "${FINAL[@]}"; do printf -- '--exclude-operation-id\n%s\n' "$op"; done)
run_pass main "${opts[@]}"
# Roles: ids come only from roles (and users) this pass creates, never from the role list.
mapfile -t opts < <(only createRole updateRole deleteRole signup assignRole removeRole)
run_pass roles "${opts[@]}"
# Sessions: the session list feeds the revocation, which ends this pass's own token.
mapfile -t opts < <(only listSessions revokeSession)
run_pass sessions "${opts[@]}"
# User deletion, fed with the users this pass signs up.
mapfile -t opts < <(only signup deleteUser)
run_pass delete-user "${opts[@]}"
mapfile -t opts < <(only logout)
run_pass logout "${opts[@]}"
mapfile -t opts < <(only logoutAll)
run_pass logout-all "${opts[@]}"

echo
echo "schemathesis: finished in $((SECONDS - start))s; reports in ${REPORT#"$PWD"/}"
if [ "$status" -ne 0 ]; then
  echo "schemathesis: FAILED (see the failures above; each comes with a curl command that reproduces it)" >&2
fi
exit "$status"
