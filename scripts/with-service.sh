#!/usr/bin/env bash
# Runs a command against a throwaway instance of the service: a fresh database, a fresh key
# directory (one RS256 key), a unique Redis key prefix and a free port on 127.0.0.1. The
# command sees the instance's settings in its environment (AUTH_URL, DATABASE_URL, ...), and
# everything is removed afterwards. Extra settings can be passed in the environment, e.g.
# REFRESH_REUSE_GRACE=2s scripts/with-service.sh scripts/demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${BIN:-target/debug/auth-service}
WORK=target/with-service
mkdir -p "$WORK/empty-config"

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
run_id="svc_$$_$(date +%s)"
db="auth_test_${run_id}"
admin_url=${TEST_DATABASE_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}
keys="$PWD/$WORK/keys-$run_id"
log="$WORK/server-$run_id.log"

export BIN="$PWD/$BIN"
export CONFIG_DIR="$PWD/$WORK/empty-config"
export DATABASE_URL="${admin_url%/*}/$db"
export REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379/0}
export REDIS_KEY_PREFIX="$run_id:"
export JWT_KEYS_DIR="$keys"
# SERVICE_HOST=localhost: the issuer (and PUBLIC_URL) is http://localhost:<port>, a secure context
# with a domain, as WebAuthn needs; the listener stays on 127.0.0.1.
host=${SERVICE_HOST:-127.0.0.1}
export JWT_ISSUER="http://$host:$port"
export JWT_AUDIENCE=${JWT_AUDIENCE:-auth-service}
export BIND_ADDR="127.0.0.1:$port"
export AUTH_URL="http://$host:$port"
# Plain HTTP on loopback: the refresh cookie is the unprefixed, non-Secure one.
export COOKIE_SECURE=${COOKIE_SECURE:-false}
export ARGON2_MEMORY_KIB=${ARGON2_MEMORY_KIB:-256} ARGON2_ITERATIONS=${ARGON2_ITERATIONS:-1}
# A key sealing TOTP secrets for this run only (in the environment, never on disk or in argv).
MFA_ENCRYPTION_KEYS=${MFA_ENCRYPTION_KEYS:-run:$(head -c 32 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')}
export MFA_ENCRYPTION_KEYS

server_pid=""
cleanup() {
  if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
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
for _ in $(seq 1 100); do
  curl -fsS "$AUTH_URL/api/v1/readyz" >/dev/null 2>&1 && break
  sleep 0.1
done
if ! curl -fsS "$AUTH_URL/api/v1/readyz" >/dev/null; then
  echo "with-service: the service did not become ready; its log:" >&2
  tail -n 20 "$log" >&2
  exit 1
fi
"$@"
