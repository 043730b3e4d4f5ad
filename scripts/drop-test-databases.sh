#!/usr/bin/env bash
# Drops the databases made by integration-test runs: those of run $1 if given, otherwise every
# test database older than an hour.
set -euo pipefail
admin_url=${TEST_DATABASE_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}
if [ -n "${1:-}" ]; then
  filter="datname LIKE 'auth_test\\_$1\\_%'"
else
  filter="datname LIKE 'auth_test\\_%' AND (pg_stat_file('base/'||oid||'/PG_VERSION')).modification < now() - interval '1 hour'"
fi
for db in $(psql "$admin_url" -tAc "SELECT datname FROM pg_database WHERE $filter" 2>/dev/null || true); do
  psql "$admin_url" -qc "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" >/dev/null 2>&1 || true
done
