#!/usr/bin/env bash
# A guided tour of auth-service against an instance that is already running: signup, login,
# refresh-token rotation and reuse detection, logout, roles, and offline verification of an
# access token from the published JWKS. Prints one numbered line per step and exits non-zero
# as soon as a step answers with the wrong status or lacks a field it should have.
#
# Usage: scripts/demo.sh
#
# Environment:
#   AUTH_URL            base URL of the service (default http://127.0.0.1:8080)
#   JWT_AUDIENCE        the service's audience, for the signature check (default auth-service)
#   DEMO_REUSE_WAIT     seconds to wait before replaying a rotated refresh token; must exceed the
#                       service's REFRESH_REUSE_GRACE (default 11, the grace defaults to 10s)
#   SUPERUSER_USERNAME, SUPERUSER_PASSWORD
#                       an existing admin to use. When either is unset, a fresh admin is made with
#                       `$BIN create-superuser`, which reads DATABASE_URL etc. from the environment
#                       and config/ exactly like the server: run this script with the server's
#                       environment.
#   BIN                 the auth-service binary (default target/debug/auth-service)
#
# Needs curl and python3. Passwords and tokens never appear in the output (tokens at most as a
# 12-character prefix). They reach curl through files in a private temporary directory that is
# removed on exit, never as arguments; only the PyJWT check (tests/interop/verify.py) takes the
# demo user's access token as an argument.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=${BIN:-target/debug/auth-service}
case $BIN in
  /*) ;;
  *) if [ -e "$BIN" ]; then BIN="$PWD/$BIN"; else BIN="$ROOT/$BIN"; fi ;;
esac
cd "$ROOT"

AUTH_URL=${AUTH_URL:-http://127.0.0.1:8080}
AUTH_URL=${AUTH_URL%/}
JWT_AUDIENCE=${JWT_AUDIENCE:-auth-service}
DEMO_REUSE_WAIT=${DEMO_REUSE_WAIT:-11}
VENV_PYTHON="$ROOT/target/interop/venv/bin/python"

for tool in curl python3; do
  command -v "$tool" >/dev/null || { echo "demo: $tool is required" >&2; exit 2; }
done
case $DEMO_REUSE_WAIT in
  '' | *[!0-9.]*) echo "demo: DEMO_REUSE_WAIT must be a number of seconds" >&2; exit 2 ;;
esac

if [ -z "${SUPERUSER_USERNAME:-}" ] || [ -z "${SUPERUSER_PASSWORD:-}" ]; then
  [ -x "$BIN" ] || {
    echo "demo: no admin: set SUPERUSER_USERNAME and SUPERUSER_PASSWORD, or build $BIN (or set BIN)" >&2
    exit 2
  }
fi

TMP=$(mktemp -d "${TMPDIR:-/tmp}/auth-demo.XXXXXX")
chmod 700 "$TMP"
trap 'rm -rf "$TMP"' EXIT

TOTAL=17
STEP=0
STATUS=000
LAST=""

step() {
  STEP=$((STEP + 1))
  printf '[%d/%d] %s ... ' "$STEP" "$TOTAL" "$1"
}

ok() {
  printf 'ok (%s)\n' "$STATUS"
}

note() {
  printf '        %s\n' "$*"
}

# Prints the reason and, for an error answer, its JSON body (never a token), then exits.
fail() {
  printf 'FAILED: %s\n' "$*"
  if [ -n "$LAST" ] && [ -s "$TMP/$LAST.body" ] && [ "${STATUS:0:1}" != 2 ]; then
    note "response: $(head -c 500 "$TMP/$LAST.body")"
  fi
  exit 1
}

expect() {
  [ "$STATUS" = "$1" ] || fail "expected HTTP $1, got $STATUS"
}

# The first 12 characters of a secret, for display.
prefix() {
  printf '%s...' "${1:0:12}"
}

# Writes a header file for curl's `-H @file`, so that tokens and cookies stay off the
# command line. Usage: headers NAME 'Header: value' ...
headers() {
  local name=$1
  shift
  printf '%s\n' "$@" >"$TMP/$name.hdr"
}

# call NAME METHOD PATH [curl options...]: the body goes to $TMP/NAME.body, the response
# headers to $TMP/NAME.headers, the status to $STATUS.
call() {
  local name=$1 method=$2 path=$3
  shift 3
  LAST=$name
  STATUS=$(curl -sS -X "$method" -o "$TMP/$name.body" -D "$TMP/$name.headers" -w '%{http_code}' \
    "$@" "$AUTH_URL$path") || STATUS=000
}

# json NAME KEY...: prints a field of $TMP/NAME.body (exit status 1 if it is absent or null).
json() {
  python3 - "$TMP/$1.body" "${@:2}" <<'PY'
import json, sys
try:
    value = json.load(open(sys.argv[1]))
    for key in sys.argv[2:]:
        value = value[int(key)] if isinstance(value, list) else value[key]
except (ValueError, KeyError, IndexError, TypeError):
    sys.exit(1)
if value is None:
    sys.exit(1)
print(json.dumps(value) if isinstance(value, (dict, list, bool)) else value)
PY
}

# The value of the refresh_token cookie set by response NAME (empty when it is cleared);
# exit status 1 when the response sets no such cookie.
set_cookie() {
  python3 - "$TMP/$1.headers" <<'PY'
import sys
for line in open(sys.argv[1], encoding="latin-1"):
    name, _, value = line.partition(":")
    if name.strip().lower() == "set-cookie" and value.strip().startswith("refresh_token="):
        print(value.strip().split(";", 1)[0][len("refresh_token="):])
        sys.exit(0)
sys.exit(1)
PY
}

# The decoded payload of the JWT in file $1, or one claim of it ($2).
jwt_claims() {
  python3 - "$@" <<'PY'
import base64, json, sys
token = open(sys.argv[1]).read().strip()
payload = token.split(".")[1]
claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
print(json.dumps(claims[sys.argv[2]]) if len(sys.argv) > 2 else json.dumps(claims))
PY
}

# A random secret of letters and digits.
secret() {
  python3 -c 'import secrets; print(secrets.token_urlsafe(18).replace("-", "x").replace("_", "y"))'
}

# form NAME KEY ENVVAR...: an x-www-form-urlencoded body from environment variables.
form() {
  local name=$1
  shift
  python3 - "$@" >"$TMP/$name.form" <<'PY'
import os, sys, urllib.parse
args = sys.argv[1:]
print(urllib.parse.urlencode([(args[i], os.environ[args[i + 1]]) for i in range(0, len(args), 2)]), end="")
PY
}

# login NAME USERNAME_VAR PASSWORD_VAR: form login; leaves the access token in $TMP/NAME.token.
login() {
  local name=$1
  form "$name" username "$2" password "$3"
  call "$name" POST /api/v1/auth/login -H 'Content-Type: application/x-www-form-urlencoded' \
    --data-binary "@$TMP/$name.form"
  expect 200
  json "$name" access_token >"$TMP/$name.token" || fail "no access_token in the answer"
  [ "$(json "$name" token_type)" = bearer ] || fail "token_type is not bearer"
}

# ready NAME: readyz answers 200 with the status ready.
ready() {
  call "$1" GET /api/v1/readyz
  expect 200
  [ "$(json "$1" status)" = ready ] || fail "status is not ready"
  ok
}

echo "auth-service demo against $AUTH_URL"

# 1 ----------------------------------------------------------------------------------------
step "readiness (GET /api/v1/readyz)"
ready ready1

# 2 ----------------------------------------------------------------------------------------
step "signup a new user (POST /api/v1/users/signup)"
DEMO_USER="demo_user_$(python3 -c 'import secrets; print(secrets.token_hex(5))')"
DEMO_EMAIL="$DEMO_USER@example.com"
DEMO_PASSWORD=$(secret)
export DEMO_USER DEMO_EMAIL DEMO_PASSWORD
python3 -c 'import json, os; print(json.dumps({"username": os.environ["DEMO_USER"], "email": os.environ["DEMO_EMAIL"], "password": os.environ["DEMO_PASSWORD"]}))' \
  >"$TMP/signup.json"
call signup POST /api/v1/users/signup -H 'Content-Type: application/json' --data-binary "@$TMP/signup.json"
expect 201
USER_ID=$(json signup user_id) || fail "no user_id in the answer"
[ "$(json signup username)" = "$DEMO_USER" ] || fail "the answer names another user"
ok
note "user $DEMO_USER, id $USER_ID"

# 3 ----------------------------------------------------------------------------------------
step "login with a form (POST /api/v1/auth/login)"
login login1 DEMO_USER DEMO_PASSWORD
set_cookie login1 >"$TMP/refresh1" || fail "no refresh_token cookie"
[ -s "$TMP/refresh1" ] || fail "the refresh_token cookie is empty"
ACCESS1=$(cat "$TMP/login1.token")
ok
note "access token $(prefix "$ACCESS1") (expires in $(json login1 expires_in)s), refresh cookie $(prefix "$(cat "$TMP/refresh1")")"

# 4 ----------------------------------------------------------------------------------------
step "who am I (GET /api/v1/user_roles/me)"
headers me1 "Authorization: Bearer $ACCESS1"
call me1 GET /api/v1/user_roles/me -H "@$TMP/me1.hdr"
expect 200
[ "$(json me1 username)" = "$DEMO_USER" ] || fail "the principal is not $DEMO_USER"
[ "$(json me1 id)" = "$USER_ID" ] || fail "the principal's id is not $USER_ID"
ok
note "username $(json me1 username), roles $(json me1 roles)"

# 5 ----------------------------------------------------------------------------------------
step "refresh with the cookie (POST /api/v1/auth/refresh)"
headers refresh1 "Cookie: refresh_token=$(cat "$TMP/refresh1")"
call refresh1 POST /api/v1/auth/refresh -H "@$TMP/refresh1.hdr"
expect 200
json refresh1 access_token >/dev/null || fail "no access_token in the answer"
set_cookie refresh1 >"$TMP/refresh2" || fail "no rotated refresh_token cookie"
[ -s "$TMP/refresh2" ] || fail "the rotated cookie is empty"
cmp -s "$TMP/refresh1" "$TMP/refresh2" && fail "the refresh token was not rotated"
ok
note "new refresh cookie $(prefix "$(cat "$TMP/refresh2")") differs from the old one"

# 6 ----------------------------------------------------------------------------------------
step "replay the old refresh cookie after ${DEMO_REUSE_WAIT}s, past REFRESH_REUSE_GRACE"
sleep "$DEMO_REUSE_WAIT"
call reuse POST /api/v1/auth/refresh -H "@$TMP/refresh1.hdr"
[ "$STATUS" != 200 ] || fail "got 200: still inside the grace window? set DEMO_REUSE_WAIT above REFRESH_REUSE_GRACE"
expect 401
case $(json reuse detail || true) in
  *reuse*) ;;
  *) fail "401, but not for reuse: $(json reuse detail || true)" ;;
esac
ok
note "$(json reuse detail)"

# 7 ----------------------------------------------------------------------------------------
step "the rotated cookie died with its family"
headers refresh2 "Cookie: refresh_token=$(cat "$TMP/refresh2")"
call refresh2 POST /api/v1/auth/refresh -H "@$TMP/refresh2.hdr"
expect 401
ok

# 8 ----------------------------------------------------------------------------------------
step "login again, then logout with cookie and bearer (POST /api/v1/auth/logout)"
login login2 DEMO_USER DEMO_PASSWORD
set_cookie login2 >"$TMP/refresh3" || fail "no refresh_token cookie"
ACCESS2=$(cat "$TMP/login2.token")
headers logout "Cookie: refresh_token=$(cat "$TMP/refresh3")" "Authorization: Bearer $ACCESS2"
call logout POST /api/v1/auth/logout -H "@$TMP/logout.hdr"
expect 200
json logout detail >/dev/null || fail "no detail in the answer"
CLEARED=$(set_cookie logout) || fail "the answer does not clear the cookie"
[ -z "$CLEARED" ] || fail "the answer sets a non-empty cookie"
grep -qi 'max-age=0' "$TMP/logout.headers" || fail "the cleared cookie has no Max-Age=0"
ok
note "cookie cleared (refresh_token=; Max-Age=0)"

# 9 ----------------------------------------------------------------------------------------
step "the logged-out access token is refused (GET /api/v1/sessions)"
headers sessions "Authorization: Bearer $ACCESS2"
call sessions GET /api/v1/sessions -H "@$TMP/sessions.hdr"
expect 401
ok

# 10 ---------------------------------------------------------------------------------------
step "admin login"
if [ -n "${SUPERUSER_USERNAME:-}" ] && [ -n "${SUPERUSER_PASSWORD:-}" ]; then
  ADMIN_USER=$SUPERUSER_USERNAME
  ADMIN_PASSWORD=$SUPERUSER_PASSWORD
  ADMIN_ORIGIN="SUPERUSER_USERNAME"
else
  ADMIN_USER="demo_admin_${RANDOM}_$(python3 -c 'import secrets; print(secrets.token_hex(3))')"
  ADMIN_PASSWORD=$(secret)
  if ! SUPERUSER_USERNAME=$ADMIN_USER SUPERUSER_EMAIL="$ADMIN_USER@example.com" SUPERUSER_PASSWORD=$ADMIN_PASSWORD \
    "$BIN" create-superuser </dev/null >"$TMP/superuser.out" 2>&1; then
    STATUS=000
    printf 'FAILED: %s create-superuser\n' "$BIN"
    sed 's/^/        /' "$TMP/superuser.out"
    exit 1
  fi
  ADMIN_ORIGIN="created with create-superuser"
fi
export ADMIN_USER ADMIN_PASSWORD
login admin ADMIN_USER ADMIN_PASSWORD
ADMIN_ACCESS=$(cat "$TMP/admin.token")
case $(jwt_claims "$TMP/admin.token" roles) in
  *'"admin"'*) ;;
  *) fail "$ADMIN_USER does not hold the admin role" ;;
esac
ok
note "admin $ADMIN_USER ($ADMIN_ORIGIN), token $(prefix "$ADMIN_ACCESS")"

# 11 ---------------------------------------------------------------------------------------
step "create a role (POST /api/v1/roles/create)"
ROLE="demo_role_$(python3 -c 'import secrets; print(secrets.token_hex(4))')"
printf '{"name": "%s", "description": "made by scripts/demo.sh"}' "$ROLE" >"$TMP/role.json"
headers admin "Authorization: Bearer $ADMIN_ACCESS"
call role POST /api/v1/roles/create -H "@$TMP/admin.hdr" -H 'Content-Type: application/json' \
  --data-binary "@$TMP/role.json"
expect 201
ROLE_ID=$(json role id) || fail "no id in the answer"
ok
note "role $ROLE, id $ROLE_ID"

# 12 ---------------------------------------------------------------------------------------
step "assign it by name (POST /api/v1/user_roles/assign)"
printf '{"user_id": "%s", "role_name": "%s"}' "$USER_ID" "$ROLE" >"$TMP/assign.json"
call assign POST /api/v1/user_roles/assign -H "@$TMP/admin.hdr" -H 'Content-Type: application/json' \
  --data-binary "@$TMP/assign.json"
expect 201
[ "$(json assign role_id)" = "$ROLE_ID" ] || fail "the answer names another role"
ok

# 13 ---------------------------------------------------------------------------------------
step "the user's next token carries the role"
login login3 DEMO_USER DEMO_PASSWORD
ROLES=$(jwt_claims "$TMP/login3.token" roles)
case $ROLES in
  *"\"$ROLE\""*) ;;
  *) fail "roles claim $ROLES lacks $ROLE" ;;
esac
ok
note "roles claim $ROLES"

# 14 ---------------------------------------------------------------------------------------
step "verify the token against the JWKS (GET /.well-known/jwks.json)"
call jwks GET /.well-known/jwks.json
expect 200
KID=$(python3 - "$TMP/login3.token" <<'PY'
import base64, json, sys
header = open(sys.argv[1]).read().split(".")[0]
print(json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))["kid"])
PY
) || fail "the token has no kid"
python3 - "$TMP/jwks.body" "$KID" <<'PY' || fail "kid $KID is not in the JWKS"
import json, sys
keys = json.load(open(sys.argv[1]))["keys"]
sys.exit(0 if any(k.get("kid") == sys.argv[2] and k.get("use") == "sig" for k in keys) else 1)
PY
if [ -x "$VENV_PYTHON" ] && "$VENV_PYTHON" -c 'import jwt, cryptography' 2>/dev/null; then
  if ! "$VENV_PYTHON" tests/interop/verify.py "$AUTH_URL/.well-known/openid-configuration" "$JWT_AUDIENCE" \
    "$(cat "$TMP/login3.token")" >"$TMP/verify.out" 2>&1; then
    printf 'FAILED: PyJWT did not verify the token\n'
    sed 's/^/        /' "$TMP/verify.out"
    exit 1
  fi
  ok
  note "kid $KID is published; $(tail -n 1 "$TMP/verify.out")"
else
  ok
  note "kid $KID is published with use=sig"
  note "signature not checked: no PyJWT in target/interop/venv (make interop creates it)"
fi

# 15 ---------------------------------------------------------------------------------------
step "register a first-party service of this API as an OAuth client (POST /api/v1/clients)"
SERVICE="demo_service_$(python3 -c 'import secrets; print(secrets.token_hex(3))')"
# A resource server learns only of tokens meant for its audience: this one serves the API's own.
printf '{"client_name": "%s", "scope": "demo:read", "first_party": true, "audience": "%s"}' "$SERVICE" "$JWT_AUDIENCE" \
  >"$TMP/client.json"
call client POST /api/v1/clients -H "@$TMP/admin.hdr" -H 'Content-Type: application/json' --data-binary "@$TMP/client.json"
expect 201
CLIENT_ID=$(json client client_id) || fail "no client_id in the answer"
CLIENT_SECRET=$(json client client_secret) || fail "no client_secret in the answer"
printf 'grant_type=client_credentials&scope=demo:read' >"$TMP/grant.form"
headers service "Authorization: Basic $(printf '%s:%s' "$CLIENT_ID" "$CLIENT_SECRET" | base64 -w0)"
call grant POST /oauth2/token -H "@$TMP/service.hdr" -H 'Content-Type: application/x-www-form-urlencoded' \
  --data-binary "@$TMP/grant.form"
expect 200
[ "$(json grant scope)" = "demo:read" ] || fail "the granted scope is not demo:read"
json grant access_token >"$TMP/service.token" || fail "no access_token"
ok
note "client $CLIENT_ID, client_credentials token $(prefix "$(cat "$TMP/service.token")")"

# 16 ---------------------------------------------------------------------------------------
step "the service introspects the user's token as a client (POST /oauth2/introspect)"
printf 'token=%s' "$(cat "$TMP/login3.token")" >"$TMP/introspect.form"
call introspect POST /oauth2/introspect -H "@$TMP/service.hdr" -H 'Content-Type: application/x-www-form-urlencoded' \
  --data-binary "@$TMP/introspect.form"
expect 200
[ "$(json introspect active)" = true ] || fail "the user's token is not active"
[ "$(json introspect sub)" = "$USER_ID" ] || fail "the answer names another user"
ok
note "active, sub $USER_ID, roles $(json introspect roles)"

# 17 ---------------------------------------------------------------------------------------
step "readiness again (GET /api/v1/readyz)"
ready ready2

echo "demo: all $TOTAL steps passed"
