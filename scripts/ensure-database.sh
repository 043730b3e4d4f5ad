#!/usr/bin/env bash
# Creates the database named in DATABASE_URL (default: the development database) if missing.
set -euo pipefail
url=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/auth_service}
db=${url##*/}
db=${db%%\?*}
admin_url=${url%/*}/postgres
if ! psql "$admin_url" -tAc "SELECT 1 FROM pg_database WHERE datname = '$db'" | grep -q 1; then
  psql "$admin_url" -qc "CREATE DATABASE \"$db\""
  echo "created database $db"
fi
