#!/usr/bin/env bash
# Interoperability check: a live service's tokens must verify with PyJWT (PyJWKClient) and
# node's jose (createRemoteJWKSet), each fetching only our discovery document and JWKS.
# Covers RS256 and ES256 tokens, before and after a key rotation.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${BIN:-target/debug/auth-service}
WORK=target/interop
mkdir -p "$WORK"

if [ ! -x "$WORK/venv/bin/python" ] || ! "$WORK/venv/bin/python" -c 'import jwt, cryptography' 2>/dev/null; then
  python3 -m venv "$WORK/venv"
  "$WORK/venv/bin/pip" install --quiet --disable-pip-version-check "pyjwt[crypto]>=2.8"
fi
if [ ! -d "$WORK/node/node_modules/jose" ]; then
  mkdir -p "$WORK/node"
  (cd "$WORK/node" && npm init -y >/dev/null && npm install --silent --no-audit --no-fund "jose@^5" >/dev/null)
fi
cp tests/interop/verify.mjs "$WORK/node/verify.mjs"

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
run_id="interop_$$_$(date +%s)"
db="auth_test_${run_id}"
admin_url=${TEST_DATABASE_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}
keys="$WORK/keys-$run_id"
log="$WORK/server-$run_id.log"

export CONFIG_DIR="$WORK/empty-config"
mkdir -p "$CONFIG_DIR"
export DATABASE_URL="${admin_url%/*}/$db"
export REDIS_URL=redis://127.0.0.1:6379/0
export REDIS_KEY_PREFIX="interop:$run_id:"
export JWT_KEYS_DIR="$keys"
export JWT_ISSUER="http://127.0.0.1:$port"
export JWT_AUDIENCE=interop-audience
export BIND_ADDR="127.0.0.1:$port"
export JWKS_MAX_AGE=1s KEYS_POLL_INTERVAL=100ms CLOCK_SKEW=1s
export ARGON2_MEMORY_KIB=256 ARGON2_ITERATIONS=1 RATE_LIMIT_ENABLED=false

server_pid=""
cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
  psql "$admin_url" -qc "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" >/dev/null 2>&1 || true
  rm -rf "$keys"
}
trap cleanup EXIT

psql "$admin_url" -qc "CREATE DATABASE \"$db\""
"$BIN" migrate >/dev/null
"$BIN" seed-roles >/dev/null
"$BIN" keys generate --alg RS256 >/dev/null
"$BIN" serve >"$log" 2>&1 &
server_pid=$!
base="http://127.0.0.1:$port"
for _ in $(seq 1 100); do
  curl -fsS "$base/api/v1/readyz" >/dev/null 2>&1 && break
  sleep 0.1
done
curl -fsS "$base/api/v1/readyz" >/dev/null

login() {
  curl -fsS -H 'content-type: application/json' -d '{"username":"interop_user","password":"interop password 1"}' \
    "$base/api/v1/auth/login-json" | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])'
}
curl -fsS -o /dev/null -H 'content-type: application/json' \
  -d '{"username":"interop_user","email":"interop@example.com","password":"interop password 1"}' "$base/api/v1/users/signup"

verify() {
  "$WORK/venv/bin/python" tests/interop/verify.py "$base/.well-known/openid-configuration" interop-audience "$@"
  (cd "$WORK/node" && node verify.mjs "$base/.well-known/oauth-authorization-server" interop-audience "$@")
}

echo "before rotation (RS256 active):"
rs256=$(login)
verify "$rs256"

"$BIN" keys generate --alg ES256 >/dev/null
sleep 2.5
"$BIN" keys rotate >/dev/null
for _ in $(seq 1 50); do
  es256=$(login)
  [ "$(python3 -c 'import base64,json,sys; h=sys.argv[1].split(".")[0]; print(json.loads(base64.urlsafe_b64decode(h+"=="))["alg"])' "$es256")" = ES256 ] && break
  sleep 0.1
done
echo "after rotation (ES256 active, RS256 retired but published):"
verify "$rs256" "$es256"
echo "interop: 2 libraries x (1 + 2) tokens verified"
