#!/usr/bin/env bash
# Makes sure PostgreSQL and Redis answer on their default loopback ports: uses running ones,
# else starts installed ones, else installs them with apt (Debian/Ubuntu) and starts them.
set -euo pipefail

SUDO=""
if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then SUDO="sudo"; fi

pg_up() { pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; }
redis_up() { [ "$(redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null)" = "PONG" ]; }

wait_for() {
  local what=$1 check=$2
  for _ in $(seq 1 60); do
    if $check; then return 0; fi
    sleep 0.5
  done
  echo "error: $what did not come up" >&2
  exit 1
}

if ! command -v pg_isready >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
  if ! pg_up 2>/dev/null || ! redis_up 2>/dev/null; then
    echo "installing PostgreSQL and Redis with apt-get"
    $SUDO apt-get update -qq
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql redis-server postgresql-client redis-tools >/dev/null
  fi
fi

if pg_up; then
  echo "PostgreSQL: running"
else
  if ! ls /etc/postgresql >/dev/null 2>&1; then
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  fi
  version=$(ls /etc/postgresql | sort -V | tail -n 1)
  hba="/etc/postgresql/$version/main/pg_hba.conf"
  # Development machines connect as postgres over loopback without a password, as CI does.
  if ! $SUDO grep -q '^host all postgres 127.0.0.1/32 trust' "$hba"; then
    $SUDO sed -i '1i host all postgres 127.0.0.1/32 trust' "$hba"
  fi
  echo "PostgreSQL: starting cluster $version/main"
  $SUDO pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  wait_for PostgreSQL pg_up
fi

if redis_up; then
  echo "Redis: running"
else
  if ! command -v redis-server >/dev/null 2>&1; then
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
  fi
  echo "Redis: starting"
  $SUDO mkdir -p /var/lib/redis /var/log/redis
  $SUDO redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/auth-service-dev.log
  wait_for Redis redis_up
fi
