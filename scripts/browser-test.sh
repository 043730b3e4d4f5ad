#!/usr/bin/env bash
# The browser flow in a real browser: installs Debian's chromium if it is missing
# (scripts/ensure-chromium.sh) and playwright-core and openid-client from npm, starts a
# throwaway instance (scripts/with-service.sh), registers a third-party web application
# (client_secret_post, openid-client's default method), and
# runs tests/browser/flow.mjs: headless Chromium signs a user in through the hosted pages to an
# openid-client relying party and back, with a wrong password, consent, prompt=none and
# sign-out on the way; then a new person signs up on the hosted pages, confirms the address
# from the mail (an SMTP sink this script starts) and resets a forgotten password, sets up an
# authenticator app and a passkey (Chromium's virtual authenticator) on the security page and
# signs in with each. Screenshots of every page go to target/screenshots/ (or
# $SCREENSHOT_DIR).
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${BIN:-target/debug/auth-service}
WORK=$PWD/target/browser
SHOTS=${SCREENSHOT_DIR:-$PWD/target/screenshots}

if [ "${1:-}" != "--steps" ]; then
  CHROMIUM=$(scripts/ensure-chromium.sh)
  export CHROMIUM
  mkdir -p "$WORK/node"
  if [ ! -d "$WORK/node/node_modules/playwright-core" ] || [ ! -d "$WORK/node/node_modules/openid-client" ]; then
    (cd "$WORK/node" && npm init -y >/dev/null && npm pkg set type=module >/dev/null &&
      npm install --silent --no-audit --no-fund "playwright-core@^1" "openid-client@^6" >/dev/null)
  fi
  [ -x "$BIN" ] || cargo build --bin auth-service
  # The SMTP server the service mails to; the flow reads the verification and reset mails from it.
  python=$(scripts/ensure-mail-sink.sh)
  sink_out="$WORK/mail-sink.json"
  "$python" scripts/mail-sink.py --smtp 127.0.0.1:0 --http 127.0.0.1:0 >"$sink_out" &
  sink_pid=$!
  trap 'kill $sink_pid 2>/dev/null || true' EXIT
  for _ in $(seq 1 600); do [ -s "$sink_out" ] && break; sleep 0.1; done
  ports=$(head -n1 "$sink_out")
  if [ -z "$ports" ]; then echo "browser-test: the mail sink did not start within 60 s" >&2; exit 1; fi
  export SMTP_URL="smtp://127.0.0.1:$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["smtp"])' "$ports")"
  export MAIL_INBOX="http://127.0.0.1:$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["http"])' "$ports")"
  export MAIL_POLL_INTERVAL=200ms
  # One browser signs in a dozen times within a minute (password, second factors, passkeys):
  # the per-IP sign-in limit is tested elsewhere, so this instance allows more.
  export RATE_LIMIT_LOGIN=${RATE_LIMIT_LOGIN:-60/60s}
  # Passkeys need a secure context with a domain: the pages are served as http://localhost.
  SERVICE_HOST=localhost scripts/with-service.sh "$0" --steps
  exit $?
fi

# From here on, inside scripts/with-service.sh: the instance runs at $AUTH_URL.
base=$AUTH_URL
app_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
app="http://127.0.0.1:$app_port"

SUPERUSER_USERNAME=browser_admin SUPERUSER_EMAIL=browser-admin@example.com SUPERUSER_PASSWORD='browser admin password' \
  "$BIN" create-superuser >/dev/null
admin=$(curl -fsS -H 'content-type: application/json' -d '{"username":"browser_admin","password":"browser admin password"}' \
  "$base/api/v1/auth/login-json" | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')

# The user who signs in, and the application they sign in to.
password='a browser user password'
curl -fsS -o /dev/null -H 'content-type: application/json' \
  -d "{\"username\":\"ada\",\"email\":\"ada@example.com\",\"password\":\"$password\"}" "$base/api/v1/users/signup"
client=$(curl -fsS -H "authorization: Bearer $admin" -H 'content-type: application/json' -d "{
  \"client_name\": \"Example App\",
  \"token_endpoint_auth_method\": \"client_secret_post\",
  \"grant_types\": [\"authorization_code\", \"refresh_token\"],
  \"redirect_uris\": [\"$app/callback\"],
  \"post_logout_redirect_uris\": [\"$app/signed-out\"],
  \"scope\": \"openid profile email roles offline_access\"}" "$base/api/v1/clients")
id=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["client_id"])' <<<"$client")
secret=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["client_secret"])' <<<"$client")

rm -rf "$SHOTS"
cp tests/browser/flow.mjs "$WORK/node/flow.mjs"
(cd "$WORK/node" && node flow.mjs "$base" "$id" "$secret" "$app_port" ada "$password" "$SHOTS" "$CHROMIUM" "$MAIL_INBOX")
