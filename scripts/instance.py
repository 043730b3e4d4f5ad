"""A throwaway auth-service instance, as the load and fault scripts run one.

What bench/run.py, bench/scale.py, scripts/chaos.py, scripts/abuse.py and scripts/timing.py share:
a free loopback port, the settings every instance of theirs needs, its database migrated and
seeded with a key generated, `serve` started and awaited, and the release binary found.
scripts/with-service.sh does the same for a shell command. Standard library only.
"""
import os
import socket
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ADMIN_URL = os.environ.get("TEST_DATABASE_ADMIN_URL", "postgres://postgres@127.0.0.1:5432/postgres")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def database_url(db):
    """The URL of the database `db` on the server TEST_DATABASE_ADMIN_URL names."""
    return ADMIN_URL.rsplit("/", 1)[0] + "/" + db


def base_env(name, run, db, keys, port, redis_url="redis://127.0.0.1:6379/0"):
    """The settings of an instance of the script `name`: no configuration file, its own database,
    key directory, Redis key prefix and loopback port, and the plain-HTTP refresh cookie."""
    config = os.path.join(ROOT, "target", name, "empty-config")
    os.makedirs(config, exist_ok=True)
    return {
        **os.environ,
        "CONFIG_DIR": config,
        "DATABASE_URL": database_url(db),
        "REDIS_URL": redis_url,
        "REDIS_KEY_PREFIX": f"{name}:{run}:",
        "JWT_KEYS_DIR": keys,
        "JWT_ISSUER": f"http://127.0.0.1:{port}",
        "JWT_AUDIENCE": name,
        "BIND_ADDR": f"127.0.0.1:{port}",
        "COOKIE_SECURE": "false",
    }


def prepare(binary, env, key_args=("--alg", "RS256")):
    """Migrates and seeds the (already created) database and generates the signing key."""
    for args in (["migrate"], ["seed-roles"], ["keys", "generate", *key_args]):
        subprocess.run([binary, *args], env=env, check=True, stdout=subprocess.DEVNULL)


def serve(binary, env, log, ready, timeout=30.0, interval=0.05):
    """Starts `binary serve` (its output to the open file `log`) and polls `ready()` until it is
    true; returns the process and the seconds from its start. Past `timeout` the process is
    stopped and RuntimeError raised."""
    started = time.perf_counter()
    proc = subprocess.Popen([binary, "serve"], env=env, stdout=log, stderr=subprocess.STDOUT)
    while not ready():
        if time.perf_counter() - started > timeout:
            proc.terminate()
            proc.wait()
            raise RuntimeError("the service did not become ready")
        time.sleep(interval)
    return proc, time.perf_counter() - started


def release_env(script):
    """The environment with BIN (default: the release build) for scripts/with-service.sh, or None
    once `script` has said how to build a BIN that is missing."""
    env = dict(os.environ)
    env.setdefault("BIN", "target/release/auth-service")
    if not os.path.exists(os.path.join(ROOT, env["BIN"])):
        print(f"{script}: {env['BIN']} is missing; build it with: cargo build --release -p auth-service -j 1",
              file=sys.stderr)
        return None
    return env


def with_service(script, args, env):
    """Runs the Python script `script` with `args` inside scripts/with-service.sh, which starts a
    throwaway instance of BIN (from `env`) for it; returns its exit status."""
    cmd = [os.path.join(ROOT, "scripts", "with-service.sh"), sys.executable, os.path.abspath(script), *args]
    return subprocess.call(cmd, cwd=ROOT, env=env)
