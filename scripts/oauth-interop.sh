#!/usr/bin/env bash
# OAuth 2.1 interoperability: client libraries nobody here wrote use a live instance from its
# discovery document alone — Python authlib (client_credentials with client_secret_basic and
# private_key_jwt, introspection as a resource server authenticated as a client, and the
# authorization code flow with PKCE as a public client: ID token, userinfo, refresh, and a user
# with an authenticator app whose ID token carries amr otp/mfa and the multi-factor acr) and node
# openid-client (discovery, then client_credentials with client_secret_post, its default method;
# its authorization code flow runs in a real browser in scripts/browser-test.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${BIN:-target/debug/auth-service}
WORK=target/oauth-interop
mkdir -p "$WORK"

if [ ! -x "$WORK/venv/bin/python" ] || ! "$WORK/venv/bin/python" -c 'import authlib, requests, cryptography' 2>/dev/null; then
  python3 -m venv "$WORK/venv"
  "$WORK/venv/bin/pip" install --quiet --disable-pip-version-check "authlib>=1.3,<2" "requests>=2.31" "cryptography>=42"
fi
if [ ! -d "$WORK/node/node_modules/openid-client" ]; then
  mkdir -p "$WORK/node"
  (cd "$WORK/node" && npm init -y >/dev/null && npm pkg set type=module >/dev/null &&
    npm install --silent --no-audit --no-fund "openid-client@^6" >/dev/null)
fi
cp tests/oauth/openid_client_check.mjs "$WORK/node/check.mjs"

if [ "${1:-}" != "--steps" ]; then
  export RATE_LIMIT_ENABLED=false
  exec scripts/with-service.sh "$0" --steps
fi

# From here on, inside scripts/with-service.sh: the instance runs at $AUTH_URL.
base=$AUTH_URL
SUPERUSER_USERNAME=oauth_admin SUPERUSER_EMAIL=oauth-admin@example.com SUPERUSER_PASSWORD='oauth admin password' \
  "$BIN" create-superuser >/dev/null
admin=$(curl -fsS -H 'content-type: application/json' -d '{"username":"oauth_admin","password":"oauth admin password"}' \
  "$base/api/v1/auth/login-json" | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')

"$WORK/venv/bin/python" tests/oauth/authlib_check.py "$base" "$admin"

client=$(curl -fsS -H "authorization: Bearer $admin" -H 'content-type: application/json' \
  -d '{"client_name":"openid-client","scope":"orders:read","token_endpoint_auth_method":"client_secret_post"}' \
  "$base/api/v1/clients")
id=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["client_id"])' <<<"$client")
secret=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["client_secret"])' <<<"$client")
(cd "$WORK/node" && node check.mjs "$base" "$id" "$secret" orders:read)
echo "oauth interop: authlib (client_secret_basic, private_key_jwt, introspection, authorization code + PKCE, a TOTP second factor with amr/acr) and openid-client (client_secret_post) passed"
