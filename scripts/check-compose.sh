#!/usr/bin/env bash
# Checks docker/docker-compose.yml: with `docker compose config` when a compose binary exists,
# otherwise by loading it as YAML and checking the services the documentation promises.
set -euo pipefail
cd "$(dirname "$0")/.."
file=docker/docker-compose.yml
if docker compose version >/dev/null 2>&1; then
  docker compose -f "$file" config --quiet
  echo "compose: docker compose config accepts $file"
  exit 0
fi
venv=target/compose-check/venv
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import yaml' 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check pyyaml
fi
"$venv/bin/python" - "$file" <<'PY'
import sys
import yaml

doc = yaml.safe_load(open(sys.argv[1]))
services = doc["services"]
for name in ("postgres", "redis", "migrate", "auth", "mail"):
    assert name in services, f"service {name} missing"
for name in ("postgres", "redis", "auth"):
    assert "healthcheck" in services[name], f"{name} has no healthcheck"
auth = services["auth"]
assert any(str(v).endswith(":ro") or (isinstance(v, dict) and v.get("read_only")) for v in auth.get("volumes", [])), \
    "keys are not mounted read-only into auth"
assert str(auth.get("environment", {}).get("SMTP_URL", "")).startswith("smtp://mail:"), "auth does not send to mail"
deps = auth.get("depends_on", {})
assert deps.get("migrate", {}).get("condition") == "service_completed_successfully", "auth does not wait for migrate"
print(f"compose: {sys.argv[1]} is valid YAML with {len(services)} services, healthchecks and a read-only key mount")
PY
