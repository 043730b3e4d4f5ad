#!/usr/bin/env bash
# A scaled-out auth-service on loopback, for `make cluster` and `make cluster-test`:
#
#   PostgreSQL primary + one synchronous streaming standby   base+432, base+433
#   Redis master + replica                                    base+379, base+380
#   three Redis Sentinels                                     base+381..383
#   three auth-service instances                              base+81..83
#   HAProxy in front of them (stats page on base+90)          base+80
#
# base is CLUSTER_PORT_BASE (default 21000). Everything lives in a run directory under /tmp
# (PostgreSQL refuses to run as root, so its data directories belong to the postgres user) and
# in target/cluster/state.env, which records the ports, the run directory and the pid files so
# that `down` (or the next `up`, after a SIGKILL) can remove everything. Nothing here touches
# the PostgreSQL and Redis on the default ports.
#
# Usage:
#   scripts/cluster.sh                  up, print the addresses, wait; Ctrl-C or SIGTERM: down
#   scripts/cluster.sh up               start everything in the background, write state.env, exit
#   scripts/cluster.sh down             stop and remove everything (also a previous run's leftovers)
#   scripts/cluster.sh status           the addresses and who is primary/master now
#   scripts/cluster.sh kill-redis-master    SIGKILL the master named by the sentinels, wait for the
#                                           failover, restart the old node as a replica
#   scripts/cluster.sh promote-standby      stop the PostgreSQL primary (-m fast), promote the standby
#   scripts/cluster.sh kill-instance N      SIGKILL instance N (1..3)
#   scripts/cluster.sh start-instance N     start instance N with the cluster's settings, wait until ready
#   scripts/cluster.sh stop-instance N      SIGTERM instance N and wait until it has exited
#   scripts/cluster.sh restart-instance N   stop-instance N, then start-instance N
#   scripts/cluster.sh wait-haproxy-up N    wait until HAProxy counts instance N as UP
#   scripts/cluster.sh rotate-keys          generate a next key, wait the publish delay, rotate
#
# Extra settings for the instances can be passed in the environment of `up` as CLUSTER_ENV_<NAME>
# (e.g. CLUSTER_ENV_LOG_LEVEL=debug). CLUSTER_REDIS_MODE=sentinel|url|auto (default auto: use
# REDIS_SENTINELS, and fall back to REDIS_URL naming the master if the binary does not know it).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

BASE=${CLUSTER_PORT_BASE:-21000}
SRC_BIN=${BIN:-$ROOT/target/debug/auth-service}
STATE_DIR=$ROOT/target/cluster
STATE=$STATE_DIR/state.env
PGBIN=${PGBIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)}
MASTER_NAME=authmaster
DB=auth_cluster
ADMIN_USER=cluster_admin
ADMIN_PASSWORD="cluster admin password 1"

log() { echo "cluster: $*" >&2; }
die() { echo "cluster: error: $*" >&2; exit 1; }

# ---------------------------------------------------------------------------------------------
# State

load_state() {
  [ -f "$STATE" ] || die "no cluster is up (no $STATE); run scripts/cluster.sh up"
  # shellcheck disable=SC1090
  . "$STATE"
}

write_state() {
  mkdir -p "$STATE_DIR"
  {
    echo "# written by scripts/cluster.sh; sourced by it and read by scripts/cluster-test.py"
    for name in RUN BASE BIN_COPY HAPROXY_PORT HAPROXY_STATS_PORT HAPROXY_SOCK INSTANCE_PORTS \
      PG_PRIMARY_PORT PG_STANDBY_PORT PG_PRIMARY_DIR PG_STANDBY_DIR PG_SOCKDIR PG_ADMIN_URL DATABASE_URL \
      REDIS_MASTER_PORT REDIS_REPLICA_PORT SENTINEL_PORTS SENTINEL_MASTER REDIS_MODE INSTANCE_ENV \
      KEYS_DIR ADMIN_USER ADMIN_PASSWORD ISSUER AUDIENCE; do
      printf "%s='%s'\n" "$name" "${!name-}"
    done
  } >"$STATE.tmp"
  mv "$STATE.tmp" "$STATE"
}

# Sets one NAME='value' line of the state file (used after a promotion or a failover).
set_state() {
  local name=$1 value=$2
  sed -i "s|^$name=.*|$name='$value'|" "$STATE"
}

pidfile() { echo "$RUN/pids/$1.pid"; }

# True if the pid in pid file $1 is alive and its command line contains $2 (so a reused pid of
# an unrelated process is never signalled).
pid_alive() {
  local file=$1 expect=$2 pid
  [ -f "$file" ] || return 1
  pid=$(cat "$file")
  [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "$expect"
}

expect_of() {
  case "$(basename "$1" .pid)" in
    instance-*) echo "serve" ;;
    redis-* | sentinel-*) echo "redis-server" ;;
    haproxy) echo "haproxy" ;;
    *) echo "" ;;
  esac
}

# Starts a daemon in its own session (so its pid is its process group) and records its pid.
spawn() {
  local name=$1 logfile=$2
  shift 2
  setsid "$@" >>"$logfile" 2>&1 </dev/null &
  echo $! >"$(pidfile "$name")"
}

wait_until() {
  local what=$1 tries=$2 delay=$3
  shift 3
  for _ in $(seq 1 "$tries"); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep "$delay"
  done
  return 1
}

# ---------------------------------------------------------------------------------------------
# PostgreSQL

as_pg() { runuser -u postgres -- "$@"; }
psql_at() { local port=$1; shift; psql -X -h 127.0.0.1 -p "$port" -U postgres -d postgres -qtA "$@"; }
# True when the primary sees standby1 with `state` (streaming) or `sync_state` (sync) $1.
standby_state() {
  test "$(psql_at "$PG_PRIMARY_PORT" -c "SELECT state || ' ' || sync_state FROM pg_stat_replication WHERE application_name = 'standby1'" 2>/dev/null | grep -c -w "$1")" = 1
}

start_postgres() {
  mkdir -p "$RUN/pg"
  chown postgres:postgres "$RUN/pg"
  chmod 700 "$RUN/pg"
  as_pg "$PGBIN/initdb" -D "$PG_PRIMARY_DIR" -U postgres --auth=trust -E UTF8 --no-sync >/dev/null
  cat >>"$PG_PRIMARY_DIR/postgresql.conf" <<EOF

# scripts/cluster.sh
listen_addresses = '127.0.0.1'
port = $PG_PRIMARY_PORT
unix_socket_directories = '$PG_SOCKDIR'
max_connections = 100
shared_buffers = 32MB
wal_level = replica
max_wal_senders = 5
wal_keep_size = 128MB
hot_standby = on
synchronous_commit = on
EOF
  as_pg "$PGBIN/pg_ctl" -D "$PG_PRIMARY_DIR" -l "$RUN/pg/primary.log" -w -t 60 start >/dev/null

  # The standby: a base backup of the primary with -R (standby.signal and primary_conninfo,
  # whose application_name names it for synchronous_standby_names).
  as_pg "$PGBIN/pg_basebackup" -D "$PG_STANDBY_DIR" -R -X stream -c fast \
    -d "host=127.0.0.1 port=$PG_PRIMARY_PORT user=postgres application_name=standby1" >/dev/null
  cat >>"$PG_STANDBY_DIR/postgresql.conf" <<EOF
port = $PG_STANDBY_PORT
# Once promoted it has no standby of its own: it must not wait for one.
synchronous_standby_names = ''
EOF
  as_pg "$PGBIN/pg_ctl" -D "$PG_STANDBY_DIR" -l "$RUN/pg/standby.log" -w -t 60 start >/dev/null
  wait_until "standby streaming" 100 0.1 standby_state streaming || die "the PostgreSQL standby did not start streaming (see $RUN/pg/standby.log)"

  # Synchronous replication: a commit returns to the client only once the standby has flushed
  # its WAL (synchronous_commit = on, the standby named in synchronous_standby_names). This is
  # what makes "no acknowledged write lost" hold when the primary goes away and the standby is
  # promoted: every write a client saw acknowledged is already on the standby. (Set only now,
  # after the base backup, so the standby does not inherit it, and only once the standby is
  # streaming, so nothing waits for a standby that does not exist yet.)
  psql_at "$PG_PRIMARY_PORT" -c "ALTER SYSTEM SET synchronous_standby_names = 'standby1'" >/dev/null
  psql_at "$PG_PRIMARY_PORT" -c "SELECT pg_reload_conf()" >/dev/null
  wait_until "sync standby" 100 0.1 standby_state sync || die "the standby did not become synchronous"
  psql_at "$PG_PRIMARY_PORT" -c "CREATE DATABASE $DB" >/dev/null
}

# ---------------------------------------------------------------------------------------------
# Redis and Sentinel

redis_at() { local port=$1; shift; redis-cli -h 127.0.0.1 -p "$port" "$@"; }

redis_pong() { test "$(redis_at "$1" ping 2>/dev/null)" = PONG; }

start_redis_node() {
  local port=$1
  shift
  spawn "redis-$port" "$RUN/redis/redis-$port.log" redis-server --port "$port" --bind 127.0.0.1 \
    --save "" --appendonly no --repl-diskless-sync-delay 0 --dir "$RUN/redis" "$@"
  wait_until "redis $port" 100 0.05 redis_pong "$port" || die "redis on $port did not start"
}

replica_linked() { redis_at "$1" info replication | tr -d '\r' | grep -q '^master_link_status:up'; }

# The master's port as the first sentinel that answers sees it.
sentinel_master_port() {
  local p
  for p in ${SENTINEL_PORTS//,/ }; do
    p=${p#*:}
    if out=$(redis_at "$p" sentinel get-master-addr-by-name "$SENTINEL_MASTER" 2>/dev/null) && [ -n "$out" ]; then
      echo "$out" | sed -n 2p
      return 0
    fi
  done
  return 1
}

sentinels_agree() {
  local p info
  for p in ${SENTINEL_PORTS//,/ }; do
    p=${p#*:}
    info=$(redis_at "$p" sentinel master "$SENTINEL_MASTER" 2>/dev/null | paste - - | tr -d '\r') || return 1
    echo "$info" | grep -qP '^num-other-sentinels\t2$' || return 1
    echo "$info" | grep -qP '^num-slaves\t1$' || return 1
  done
}

start_redis() {
  mkdir -p "$RUN/redis"
  # Replication to the replica is asynchronous, but the instances acknowledge a revocation only
  # once the replica holds it (WAIT, REDIS_WAIT_REPLICAS); rate-limit counters written in the
  # last instant before the master is SIGKILLed may be missing on the promoted replica.
  start_redis_node "$REDIS_MASTER_PORT"
  start_redis_node "$REDIS_REPLICA_PORT" --replicaof 127.0.0.1 "$REDIS_MASTER_PORT"
  wait_until "replica" 100 0.1 replica_linked "$REDIS_REPLICA_PORT" || die "the Redis replica did not sync"
  local i port conf
  for i in 1 2 3; do
    port=$((BASE + 380 + i))
    conf=$RUN/redis/sentinel-$port.conf
    # Sentinel rewrites its config file, so it must be a writable file of its own.
    cat >"$conf" <<EOF
port $port
bind 127.0.0.1
dir $RUN/redis
sentinel monitor $SENTINEL_MASTER 127.0.0.1 $REDIS_MASTER_PORT 2
sentinel down-after-milliseconds $SENTINEL_MASTER 1000
sentinel failover-timeout $SENTINEL_MASTER 5000
sentinel parallel-syncs $SENTINEL_MASTER 1
EOF
    spawn "sentinel-$port" "$RUN/redis/sentinel-$port.log" redis-server "$conf" --sentinel
  done
  wait_until "sentinels" 300 0.1 sentinels_agree || die "the sentinels did not find each other and the replica"
}

# ---------------------------------------------------------------------------------------------
# Instances

write_instance_env() {
  local redis_lines
  if [ "$REDIS_MODE" = sentinel ]; then
    redis_lines="REDIS_SENTINELS=$SENTINEL_PORTS
REDIS_SENTINEL_MASTER=$SENTINEL_MASTER"
  else
    redis_lines="REDIS_URL=redis://127.0.0.1:$(sentinel_master_port || echo "$REDIS_MASTER_PORT")/0"
  fi
  {
    cat <<EOF
CONFIG_DIR=$RUN/empty-config
DATABASE_URL=$DATABASE_URL
DATABASE_POOL_SIZE=6
USER_STORE_WORKERS=6
$redis_lines
REDIS_KEY_PREFIX=cluster:
JWT_KEYS_DIR=$KEYS_DIR
JWT_ISSUER=$ISSUER
JWT_AUDIENCE=$AUDIENCE
COOKIE_SECURE=false
TRUST_PROXY_HEADERS=true
TRUSTED_PROXY_IPS=127.0.0.1/32
RATE_LIMIT_ENABLED=true
RATE_LIMIT_LOGIN=20/60s
RATE_LIMIT_LOGIN_ACCOUNT=1000/60s
RATE_LIMIT_SIGNUP=1000/60s
RATE_LIMIT_REFRESH=1000/60s
RATE_LIMIT_DEFAULT=5000/60s
LOCKOUT_THRESHOLD=5
LOCKOUT_BASE=60s
LOCKOUT_MAX=1h
KEYS_POLL_INTERVAL=1s
JWKS_MAX_AGE=2s
CLOCK_SKEW=1s
ACCESS_TOKEN_TTL=15m
REFRESH_REUSE_GRACE=30s
SHUTDOWN_DELAY=2s
SHUTDOWN_GRACE=10s
ARGON2_MEMORY_KIB=4096
ARGON2_ITERATIONS=1
HASH_CONCURRENCY=1
HASH_QUEUE_TIMEOUT=5s
DEPENDENCY_TIMEOUT=1s
PROBE_TIMEOUT=1s
LOG_LEVEL=info
EOF
    # Overrides from the caller: CLUSTER_ENV_NAME=value.
    env | sed -n 's/^CLUSTER_ENV_\([A-Z0-9_]*=.*\)$/\1/p'
  } >"$INSTANCE_ENV"
}

instance_port() { echo $((BASE + 80 + $1)); }

ready_at() { curl -fsS -m 2 -o /dev/null "http://127.0.0.1:$1/api/v1/readyz"; }

# The cluster's settings as NAME=value words (no value holds a space).
instance_env() { mapfile -t INSTANCE_VARS < <(grep -v -e '^#' -e '^$' "$INSTANCE_ENV"); }

# Runs a command of the binary with the cluster's settings.
with_env() { instance_env; env "${INSTANCE_VARS[@]}" "$@"; }

start_instance() {
  local n=$1 port
  port=$(instance_port "$n")
  if pid_alive "$(pidfile "instance-$n")" serve; then die "instance $n is already running"; fi
  echo "--- start $(date -u +%FT%T.%3NZ)" >>"$RUN/logs/instance-$n.log"
  instance_env
  setsid env "${INSTANCE_VARS[@]}" BIND_ADDR="127.0.0.1:$port" "$BIN_COPY" serve \
    >>"$RUN/logs/instance-$n.log" 2>&1 </dev/null &
  echo $! >"$(pidfile "instance-$n")"
  for _ in $(seq 1 300); do
    if ready_at "$port" 2>/dev/null; then return 0; fi
    if ! pid_alive "$(pidfile "instance-$n")" serve; then
      log "instance $n exited; the end of its log:"
      tail -n 5 "$RUN/logs/instance-$n.log" >&2
      return 1
    fi
    sleep 0.1
  done
  log "instance $n did not become ready within 30 s"
  return 1
}

stop_instance() {
  local n=$1 file pid
  file=$(pidfile "instance-$n")
  pid_alive "$file" serve || { log "instance $n is not running"; return 0; }
  pid=$(cat "$file")
  kill -TERM "$pid"
  for _ in $(seq 1 300); do
    [ -d "/proc/$pid" ] || return 0
    sleep 0.1
  done
  log "instance $n did not exit 30 s after SIGTERM; killing it"
  kill -KILL -- "-$pid" 2>/dev/null || true
}

kill_instance() {
  local n=$1 file pid
  file=$(pidfile "instance-$n")
  pid_alive "$file" serve || die "instance $n is not running"
  pid=$(cat "$file")
  kill -KILL -- "-$pid"
  for _ in $(seq 1 100); do [ -d "/proc/$pid" ] || return 0; sleep 0.05; done
}

start_instances() {
  local n
  if [ "$REDIS_MODE" = auto ]; then
    REDIS_MODE=sentinel
    write_instance_env
    if ! start_instance 1; then
      if grep -q -E 'REDIS_URL|REDIS_SENTINEL' "$RUN/logs/instance-1.log"; then
        log "this binary does not take REDIS_SENTINELS yet; falling back to REDIS_URL naming the master"
        REDIS_MODE=url
        write_instance_env
        start_instance 1 || die "instance 1 did not start (see $RUN/logs/instance-1.log)"
      else
        die "instance 1 did not start (see $RUN/logs/instance-1.log)"
      fi
    fi
  else
    write_instance_env
    start_instance 1 || die "instance 1 did not start (see $RUN/logs/instance-1.log)"
  fi
  write_state
  for n in 2 3; do start_instance "$n" || die "instance $n did not start (see $RUN/logs/instance-$n.log)"; done
}

# ---------------------------------------------------------------------------------------------
# HAProxy

ensure_haproxy() {
  command -v haproxy >/dev/null 2>&1 && return 0
  log "installing haproxy with apt-get"
  local sudo=""
  if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then sudo=sudo; fi
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq haproxy >/dev/null 2>&1 || {
    $sudo apt-get update -qq
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq haproxy >/dev/null
  }
  # This script never uses the package's service (/etc/haproxy/haproxy.cfg); it runs its own
  # haproxy with a configuration in the run directory.
  command -v haproxy >/dev/null 2>&1 || die "haproxy could not be installed"
}

start_haproxy() {
  local cfg=$RUN/haproxy.cfg n
  cat >"$cfg" <<EOF
global
    maxconn 2000
    stats socket $HAPROXY_SOCK mode 600 level admin
    log stdout format short local0 notice

defaults
    mode http
    log global
    option httplog
    option dontlognull
    # The client's address travels in X-Forwarded-For; the instances trust 127.0.0.1
    # (TRUSTED_PROXY_IPS), so per-IP limits see the client, not the proxy.
    option forwardfor
    timeout connect 1s
    timeout client 30s
    timeout server 15s
    timeout http-request 10s
    timeout http-keep-alive 5s
    timeout queue 5s
    # A connection refused (an instance stopping or killed) is retried on another instance.
    retries 3
    option redispatch 1
    retry-on conn-failure empty-response

frontend auth
    bind 127.0.0.1:$HAPROXY_PORT
    default_backend instances

backend instances
    balance roundrobin
    # Membership follows readiness: an instance leaves after one failed check (or at once when
    # its connection is refused) and comes back after two good ones.
    option httpchk GET /api/v1/readyz
    http-check expect status 200
    default-server inter 400ms fastinter 250ms downinter 400ms fall 1 rise 2 observe layer4 error-limit 1 on-error mark-down
EOF
  for n in 1 2 3; do
    echo "    server i$n 127.0.0.1:$(instance_port "$n") check" >>"$cfg"
  done
  cat >>"$cfg" <<EOF

listen stats
    bind 127.0.0.1:$HAPROXY_STATS_PORT
    stats enable
    stats uri /
    stats refresh 2s
EOF
  haproxy -c -q -f "$cfg" || die "haproxy rejects $cfg"
  spawn haproxy "$RUN/logs/haproxy.log" haproxy -db -f "$cfg"
  wait_until "haproxy" 100 0.1 ready_at "$HAPROXY_PORT" || die "nothing ready behind haproxy (see $RUN/logs/haproxy.log)"
  for n in 1 2 3; do wait_haproxy_up "$n" || die "haproxy does not see instance $n up"; done
}

# The status (UP, DOWN, ...) HAProxy gives instance N, from the stats CSV.
haproxy_status() {
  curl -fsS -m 2 "http://127.0.0.1:$HAPROXY_STATS_PORT/;csv" | awk -F, -v s="i$1" '$1 == "instances" && $2 == s { print $18 }'
}

wait_haproxy_up() {
  for _ in $(seq 1 200); do
    case "$(haproxy_status "$1" 2>/dev/null)" in UP) return 0 ;; esac
    sleep 0.1
  done
  return 1
}

# ---------------------------------------------------------------------------------------------
# up / down

wait_for_binary() {
  local size1 size2
  for _ in $(seq 1 120); do
    if [ -x "$SRC_BIN" ]; then
      size1=$(stat -c %s.%Y "$SRC_BIN")
      sleep 1
      size2=$(stat -c %s.%Y "$SRC_BIN" 2>/dev/null || true)
      [ "$size1" = "$size2" ] && return 0
    else
      log "waiting for $SRC_BIN (being built?)"
      sleep 5
    fi
  done
  die "$SRC_BIN does not exist (run make build)"
}

ports_free() {
  local p
  for p in "$@"; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then die "port $p is in use (set CLUSTER_PORT_BASE)"; fi
  done
}

cmd_up() {
  if [ -f "$STATE" ]; then
    log "removing the leftovers of a previous run"
    cmd_down
  fi
  command -v redis-server >/dev/null 2>&1 || die "redis-server is not installed (run make services)"
  [ -x "$PGBIN/initdb" ] || die "PostgreSQL server binaries not found (run make services)"
  ensure_haproxy
  wait_for_binary

  HAPROXY_PORT=$((BASE + 80))
  HAPROXY_STATS_PORT=$((BASE + 90))
  INSTANCE_PORTS="$((BASE + 81)),$((BASE + 82)),$((BASE + 83))"
  PG_PRIMARY_PORT=$((BASE + 432))
  PG_STANDBY_PORT=$((BASE + 433))
  REDIS_MASTER_PORT=$((BASE + 379))
  REDIS_REPLICA_PORT=$((BASE + 380))
  SENTINEL_PORTS="127.0.0.1:$((BASE + 381)),127.0.0.1:$((BASE + 382)),127.0.0.1:$((BASE + 383))"
  SENTINEL_MASTER=$MASTER_NAME
  REDIS_MODE=${CLUSTER_REDIS_MODE:-auto}
  ports_free "$HAPROXY_PORT" "$HAPROXY_STATS_PORT" $((BASE + 81)) $((BASE + 82)) $((BASE + 83)) \
    "$PG_PRIMARY_PORT" "$PG_STANDBY_PORT" "$REDIS_MASTER_PORT" "$REDIS_REPLICA_PORT" \
    $((BASE + 381)) $((BASE + 382)) $((BASE + 383))

  RUN=$(mktemp -d /tmp/auth-cluster.XXXXXX)
  chmod 755 "$RUN"
  mkdir -p "$RUN/pids" "$RUN/logs" "$RUN/empty-config"
  HAPROXY_SOCK=$RUN/haproxy.sock
  PG_SOCKDIR=$RUN/pg
  PG_PRIMARY_DIR=$RUN/pg/primary
  PG_STANDBY_DIR=$RUN/pg/standby
  INSTANCE_ENV=$RUN/instance.env
  KEYS_DIR=$RUN/keys
  ISSUER="http://127.0.0.1:$HAPROXY_PORT"
  AUDIENCE=auth-cluster
  # A frozen copy (a hard link: cargo replaces the file on a rebuild), so a rebuild of target/debug during a run does not change the instances.
  BIN_COPY=$RUN/auth-service
  ln "$SRC_BIN" "$BIN_COPY" 2>/dev/null || cp "$SRC_BIN" "$BIN_COPY"
  PG_ADMIN_URL="postgres://postgres@127.0.0.1:$PG_PRIMARY_PORT/postgres"
  # Both hosts; tokio-postgres connects to the first that accepts read-write sessions, so after
  # a promotion the pools reconnect to the new primary.
  DATABASE_URL="postgres://postgres@127.0.0.1:$PG_PRIMARY_PORT,127.0.0.1:$PG_STANDBY_PORT/$DB?target_session_attrs=read-write"
  write_state
  trap 'log "up failed; cleaning up"; cmd_down' EXIT

  log "PostgreSQL primary and synchronous standby"
  start_postgres
  write_state
  log "Redis master, replica and three sentinels"
  start_redis
  log "database, roles, administrator and signing key"
  write_instance_env
  local single="postgres://postgres@127.0.0.1:$PG_PRIMARY_PORT/$DB"
  with_env DATABASE_URL="$single" "$BIN_COPY" migrate >"$RUN/logs/setup.log" 2>&1
  with_env DATABASE_URL="$single" "$BIN_COPY" seed-roles >>"$RUN/logs/setup.log" 2>&1
  with_env DATABASE_URL="$single" SUPERUSER_USERNAME="$ADMIN_USER" SUPERUSER_EMAIL="$ADMIN_USER@cluster.example" \
    SUPERUSER_PASSWORD="$ADMIN_PASSWORD" "$BIN_COPY" create-superuser >>"$RUN/logs/setup.log" 2>&1
  with_env "$BIN_COPY" keys generate --alg RS256 --dir "$KEYS_DIR" >>"$RUN/logs/setup.log" 2>&1
  log "three instances"
  start_instances
  log "HAProxy"
  start_haproxy
  write_state
  trap - EXIT
  log "up (redis via $REDIS_MODE); state in ${STATE#"$ROOT"/}"
}

stop_pid_files() {
  local sig=$1 f pid
  for f in "$RUN"/pids/*.pid; do
    [ -f "$f" ] || continue
    if pid_alive "$f" "$(expect_of "$f")"; then
      pid=$(cat "$f")
      kill "-$sig" -- "-$pid" 2>/dev/null || kill "-$sig" "$pid" 2>/dev/null || true
    fi
  done
}

any_alive() {
  local f
  for f in "$RUN"/pids/*.pid; do
    [ -f "$f" ] && pid_alive "$f" "$(expect_of "$f")" && return 0
  done
  return 1
}

cmd_down() {
  [ -f "$STATE" ] || { log "nothing to stop"; return 0; }
  # shellcheck disable=SC1090
  . "$STATE"
  if [ -n "${RUN:-}" ] && [ -d "$RUN" ]; then
    stop_pid_files TERM
    for _ in $(seq 1 30); do any_alive || break; sleep 0.1; done
    stop_pid_files KILL
    local d
    for d in "${PG_PRIMARY_DIR:-}" "${PG_STANDBY_DIR:-}"; do
      if [ -n "$d" ] && [ -f "$d/postmaster.pid" ]; then
        as_pg "$PGBIN/pg_ctl" -D "$d" stop -m immediate >/dev/null 2>&1 || true
      fi
    done
    # Keep the logs of the last run for a post-mortem; remove everything else.
    rm -rf "$STATE_DIR/last-logs"
    mkdir -p "$STATE_DIR/last-logs"
    cp "$RUN"/logs/*.log "$RUN"/redis/*.log "$RUN"/pg/*.log "$STATE_DIR/last-logs/" 2>/dev/null || true
    case "$RUN" in /tmp/auth-cluster.*) rm -rf "$RUN" ;; esac
  fi
  rm -f "$STATE"
  log "down (logs of this run in ${STATE_DIR#"$ROOT"/}/last-logs)"
}

cmd_status() {
  load_state
  local n
  echo "HAProxy        http://127.0.0.1:$HAPROXY_PORT   (stats http://127.0.0.1:$HAPROXY_STATS_PORT/)"
  for n in 1 2 3; do
    echo "instance $n     http://127.0.0.1:$(instance_port "$n")   haproxy: $(haproxy_status "$n" 2>/dev/null || echo '?')   log: $RUN/logs/instance-$n.log"
  done
  local p role
  for p in "$PG_PRIMARY_PORT" "$PG_STANDBY_PORT"; do
    role=$(psql_at "$p" -c "SELECT CASE WHEN pg_is_in_recovery() THEN 'standby' ELSE 'primary' END" 2>/dev/null || echo down)
    echo "PostgreSQL     127.0.0.1:$p   $role"
  done
  echo "Redis master   127.0.0.1:$(sentinel_master_port || echo '?')   (sentinels $SENTINEL_PORTS, master name $SENTINEL_MASTER; instances use $REDIS_MODE)"
  echo "DATABASE_URL   $DATABASE_URL"
  echo "admin          $ADMIN_USER / $ADMIN_PASSWORD"
  echo "keys           $KEYS_DIR"
}

# ---------------------------------------------------------------------------------------------
# Faults

cmd_kill_redis_master() {
  load_state
  local old new
  old=$(sentinel_master_port) || die "no sentinel answers"
  pid_alive "$(pidfile "redis-$old")" redis-server || die "the master on $old is not one of ours or not running"
  kill -KILL "$(cat "$(pidfile "redis-$old")")"
  log "SIGKILLed the Redis master on $old"
  for _ in $(seq 1 300); do
    new=$(sentinel_master_port 2>/dev/null || true)
    if [ -n "$new" ] && [ "$new" != "$old" ]; then break; fi
    sleep 0.1
  done
  [ -n "$new" ] && [ "$new" != "$old" ] || die "the sentinels did not fail over within 30 s"
  log "the sentinels promoted $new"
  # The old node comes back as a replica of the new master (no persistence: it resyncs).
  start_redis_node "$old" --replicaof 127.0.0.1 "$new"
  set_state REDIS_MASTER_PORT "$new"
  set_state REDIS_REPLICA_PORT "$old"
  echo "$old $new"
}

cmd_promote_standby() {
  load_state
  local primary_dir=$PG_PRIMARY_DIR standby_dir=$PG_STANDBY_DIR
  as_pg "$PGBIN/pg_ctl" -D "$primary_dir" stop -m fast -w >/dev/null
  log "stopped the PostgreSQL primary on $PG_PRIMARY_PORT"
  as_pg "$PGBIN/pg_ctl" -D "$standby_dir" promote -w >/dev/null
  test "$(psql_at "$PG_STANDBY_PORT" -c "SELECT pg_is_in_recovery()")" = f || die "the standby is still in recovery"
  log "promoted the standby on $PG_STANDBY_PORT"
  # The old primary stays down; the roles swap in the state.
  local p=$PG_PRIMARY_PORT
  set_state PG_PRIMARY_PORT "$PG_STANDBY_PORT"
  set_state PG_STANDBY_PORT "$p"
  set_state PG_PRIMARY_DIR "$standby_dir"
  set_state PG_STANDBY_DIR "$primary_dir"
  set_state PG_ADMIN_URL "postgres://postgres@127.0.0.1:$PG_STANDBY_PORT/postgres"
}

cmd_rotate_keys() {
  load_state
  local delay out wait
  # The publish delay of docs/OPERATIONS.md: JWKS_MAX_AGE + KEYS_POLL_INTERVAL + CLOCK_SKEW.
  delay=$(grep -E '^(JWKS_MAX_AGE|KEYS_POLL_INTERVAL|CLOCK_SKEW)=' "$INSTANCE_ENV" | sed 's/.*=//' |
    awk '/ms$/ { t += $0 / 1000; next } /s$/ { t += $0; next } /m$/ { t += $0 * 60 } END { print t }')
  with_env "$BIN_COPY" keys generate --alg RS256 --dir "$KEYS_DIR"
  sleep "$delay"
  for _ in 1 2 3 4 5; do
    if out=$(with_env "$BIN_COPY" keys rotate --dir "$KEYS_DIR" 2>&1); then
      echo "$out"
      return 0
    fi
    wait=$(echo "$out" | sed -n 's/.*try again in \([0-9]*\)s.*/\1/p')
    [ -n "$wait" ] || die "keys rotate: $out"
    sleep $((wait + 1))
  done
  die "keys rotate kept refusing: $out"
}

# ---------------------------------------------------------------------------------------------

cmd_foreground() {
  SLEEP_PID=""
  trap 'exit 130' INT
  trap 'exit 143' TERM
  cmd_up
  trap '[ -z "$SLEEP_PID" ] || kill "$SLEEP_PID" 2>/dev/null; cmd_down' EXIT
  echo
  cmd_status
  echo
  echo "Ctrl-C stops and removes everything."
  # Short sleeps, waited for interruptibly: a signal runs the trap at once, and a SIGKILL of
  # this script leaves no sleeper behind for long.
  while :; do
    sleep 1 &
    SLEEP_PID=$!
    wait "$SLEEP_PID" || true
  done
}

case "${1:-}" in
  "") cmd_foreground ;;
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  kill-redis-master) cmd_kill_redis_master ;;
  promote-standby) cmd_promote_standby ;;
  kill-instance) load_state; kill_instance "${2:?instance number}" ;;
  start-instance) load_state; start_instance "${2:?instance number}" ;;
  stop-instance) load_state; stop_instance "${2:?instance number}" ;;
  restart-instance) load_state; stop_instance "${2:?instance number}"; start_instance "$2" ;;
  wait-haproxy-up) load_state; wait_haproxy_up "${2:?instance number}" ;;
  rotate-keys) cmd_rotate_keys ;;
  *) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2 ;;
esac
