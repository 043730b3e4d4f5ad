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

if [ "${1:-}" != "--steps" ]; then
  export JWKS_MAX_AGE=1s KEYS_POLL_INTERVAL=100ms CLOCK_SKEW=1s RATE_LIMIT_ENABLED=false JWT_AUDIENCE=interop-audience
  exec scripts/with-service.sh "$0" --steps
fi

# From here on, inside scripts/with-service.sh: the instance runs at $AUTH_URL.
base=$AUTH_URL
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
