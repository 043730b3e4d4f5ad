# auth-service developer commands. `make run` and `make test` work on a fresh Debian-like machine.
SHELL := /bin/bash
CARGO ?= cargo
BIN := target/debug/auth-service
export CONFIG_DIR ?= config
TEST_RUN_ID := $(shell date +%s)$(shell echo $$$$)

.PHONY: run mail-sink build services database keys mfa-key migrate seed-roles create-superuser test check interop oauth-interop browser-test demo bench bench-scale chaos abuse timing fuzz schemathesis lint fmt kubernetes-check cluster cluster-test help

## Set everything up and serve on 127.0.0.1:8080 (mail: the inbox on http://127.0.0.1:1080).
run: services database keys mfa-key migrate seed-roles mail-sink
	MFA_ENCRYPTION_KEYS="$${MFA_ENCRYPTION_KEYS:-$$(cat .dev/mfa-encryption-keys)}" $(BIN) serve

## Start the development SMTP sink (127.0.0.1:1025, web inbox http://127.0.0.1:1080) unless one runs.
mail-sink:
	@scripts/dev-mail-sink.sh

## Build the debug binary.
build:
	$(CARGO) build

## Make sure PostgreSQL and Redis answer on 127.0.0.1.
services:
	@scripts/ensure-services.sh

## Create the development database if it is missing.
database: services
	@scripts/ensure-database.sh

## Generate a development key into .dev/keys if there is none.
keys: build
	@if [ ! -f "$${JWT_KEYS_DIR:-.dev/keys}/keys.json" ]; then \
		$(BIN) keys generate --alg RS256 --dir "$${JWT_KEYS_DIR:-.dev/keys}"; \
	else echo "keys: present in $${JWT_KEYS_DIR:-.dev/keys}"; fi

## Generate a development key sealing TOTP secrets into .dev/mfa-encryption-keys if there is none.
mfa-key:
	@mkdir -p .dev; if [ ! -s .dev/mfa-encryption-keys ]; then \
		(umask 077; printf 'dev1:%s\n' "$$(head -c 32 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')" > .dev/mfa-encryption-keys); \
		echo "mfa-key: generated .dev/mfa-encryption-keys"; \
	else echo "mfa-key: present in .dev/mfa-encryption-keys"; fi

## Apply pending migrations and create the coming months' login-history partitions.
migrate: build database
	$(BIN) migrate

## Insert the missing default roles.
seed-roles: build
	$(BIN) seed-roles

## Reads SUPERUSER_USERNAME, SUPERUSER_EMAIL and SUPERUSER_PASSWORD (or prompts).
create-superuser: build
	$(BIN) create-superuser

## Unit and integration tests against the local PostgreSQL and Redis (the workspace's tests include
## the fuzz targets' smoke harness), then the interop checks, the browser test, the demo and the
## compose check.
test: services
	@scripts/drop-test-databases.sh || true
	@set -o pipefail; TEST_RUN_ID=$(TEST_RUN_ID) $(CARGO) test --workspace --features test-hooks; \
		status=$$?; scripts/drop-test-databases.sh $(TEST_RUN_ID) || true; exit $$status
	@scripts/interop.sh
	@scripts/oauth-interop.sh
	@scripts/browser-test.sh
	@REFRESH_REUSE_GRACE=2s DEMO_REUSE_WAIT=3 scripts/with-service.sh scripts/demo.sh
	@scripts/check-compose.sh
	@scripts/check-kubernetes.sh

## The manifests in deploy/kubernetes/ against the Kubernetes API schemas and each other, offline.
kubernetes-check:
	@scripts/check-kubernetes.sh

## Our tokens verified by PyJWT and node's jose against a live instance.
interop: build
	@scripts/interop.sh

## OAuth 2.1 clients from authlib and openid-client against a live instance, from discovery alone.
oauth-interop: build
	@scripts/oauth-interop.sh

## The browser flow in headless Chromium (installed if missing), screenshots in target/screenshots/.
browser-test: build
	@scripts/browser-test.sh

## Walk the whole story against a running service (make run in another shell); AUTH_URL overrides.
demo:
	@scripts/demo.sh

## Load scenarios against the release build, with ceilings measured in the same run.
bench: services
	@command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; } || sudo apt-get install -y -qq wrk
	$(CARGO) build --release -p auth-service -p auth-bench
	python3 bench/run.py

## Login p50 and history-page p99 on a small database and after COPY-loading 1 000 000 users and
## 10 000 000 login-history rows (SCALE_USERS, SCALE_HISTORY); writes its section of docs/BENCHMARKS.md.
bench-scale: services
	@command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; } || sudo apt-get install -y -qq wrk
	$(CARGO) build --release -p auth-service -p auth-bench
	python3 bench/scale.py

## Faults under steady load: Redis stopped, PostgreSQL connections killed, actors failing, key reload,
## restart-intensity escalation; prints one table and fails on any violation.
chaos: services
	$(CARGO) build --features test-hooks
	python3 scripts/chaos.py

## Three instances behind HAProxy over a PostgreSQL primary + synchronous standby and Redis with
## Sentinel, all on loopback ports from CLUSTER_PORT_BASE (default 21000); Ctrl-C removes it all.
cluster: build
	@scripts/cluster.sh

## The cluster under load through logout, shared limits, key rotation, a Redis failover, a
## PostgreSQL promotion, a killed instance and a rolling restart; one row per phase.
cluster-test: build
	@python3 scripts/cluster-test.py

## Slow and abusive clients (slowloris, stalled bodies, 10 000 idle connections, huge headers,
## HTTP/2 floods) against a release instance; prints one table.
abuse: services
	$(CARGO) build --release -p auth-service
	python3 scripts/abuse.py

## Login latency for an unknown user and a wrong password, with production argon2 parameters.
timing: services
	$(CARGO) build --release -p auth-service
	python3 scripts/timing.py

## Coverage-guided fuzzing of the verifier, parsers, router and passkey parsers (cargo fuzz; FUZZ_SECONDS per target).
fuzz:
	@scripts/fuzz.sh long $${FUZZ_SECONDS:-300}

## Schemathesis against /openapi.json and a live instance: no 5xx, responses match the document.
schemathesis: build
	@scripts/schemathesis.sh

## cargo fmt --check and cargo clippy -D warnings over the workspace, every target.
lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --features test-hooks -- -D warnings

## The inner loop, no services needed: lint, then the unit tests of every crate (the actors
## included), built with the features `make test` uses so the two share their artifacts.
check: lint
	$(CARGO) test --workspace --features test-hooks --lib --bins

## Format the workspace.
fmt:
	$(CARGO) fmt --all

## List the targets with what each does (bare `make` is `make run`).
help:
	@awk '/^## / { text = text (text ? " " : "") substr($$0, 4); next } \
		/^[a-z][a-z0-9-]*:/ { printf "  %-18s %s\n", substr($$0, 1, index($$0, ":") - 1), text } \
		{ text = "" }' $(firstword $(MAKEFILE_LIST))
