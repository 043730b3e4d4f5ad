#!/usr/bin/env python3
"""`make bench`: load scenarios against the release build, with ceilings measured in the same run.

Starts a fresh instance with production settings (OWASP argon2 parameters, an RS256 2048-bit
key, rate limiting off so the limiter does not throttle the load), drives each scenario with wrk
after a warm-up, measures the ceilings on the same machine (a bare hyper server under the same
load, argon2 hashes/s and RS256 signatures/s with every core busy), and prints one table. The
table, the machine and the start-up and memory figures are written to docs/BENCHMARKS.md.

Environment: BENCH_SECONDS (default 10), BENCH_WARMUP (default 2), TEST_DATABASE_ADMIN_URL;
BENCH_ONLY runs only the scenarios whose name contains it (with every ceiling) and leaves
docs/BENCHMARKS.md alone.
"""
import hashlib
import base64
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
import instance  # noqa: E402 (scripts/instance.py, found through the path set above)
from instance import ADMIN_URL, free_port  # noqa: E402,F401 (bench/scale.py takes free_port from here)

REL = os.path.join(ROOT, "target", "release")
WORK = os.path.join(ROOT, "target", "bench")
WRK_DIR = os.path.join(ROOT, "bench", "wrk")
SECONDS = int(os.environ.get("BENCH_SECONDS", "10"))
WARMUP = int(os.environ.get("BENCH_WARMUP", "2"))
PASSWORD = "bench password 1"
USERS = 64
# The many-users scenario: distinct users and tokens, each request another one (the default
# TOKEN_CACHE_SIZE and AUTHZ_CACHE_SIZE, 16 384, hold them; the cache comparison below shows a
# cache smaller than its working set).
MANY_USERS = int(os.environ.get("BENCH_MANY_USERS", "10000"))
ONLY = os.environ.get("BENCH_ONLY", "")
# The browser flow's client, and the PKCE pair every pre-made code is bound to.
REDIRECT_URI = "https://app.bench.example/callback"
VERIFIER = "bench-verifier-" + "v" * 43
CHALLENGE = base64.urlsafe_b64encode(hashlib.sha256(VERIFIER.encode()).digest()).rstrip(b"=").decode()
# Codes made per scenario and phase: more than the exchange can use in its time.
CODES = int(os.environ.get("BENCH_CODES", "80000"))
# Pending second steps made per phase for the mfa step: more than it can use in its time.
STEPS = int(os.environ.get("BENCH_STEPS", "40000"))
MFA_STEP = "mfa step (recovery code to session: 1 signature)"


class Done(Exception):
    """The scenarios BENCH_ONLY asked for have run."""


def wanted(name):
    return ONLY in name


def http(method, url, body=None, headers=None):
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def service_env(run, db, keys, port):
    """The environment of a bench instance: production settings, its own database, keys, Redis prefix and port."""
    return {**instance.base_env("bench", run, db, keys, port), "RATE_LIMIT_ENABLED": "false", "LOG_LEVEL": "info"}


def prepare(binary, env):
    """Migrates and seeds the (already created) database and generates the signing key."""
    instance.prepare(binary, env, ("--alg", "RS256", "--bits", "2048"))


def start_service(binary, env, base, log_path):
    """Starts `serve`; returns the process and the milliseconds from process start to the first readyz 200."""
    def ready():
        try:
            return http("GET", f"{base}/api/v1/readyz")[0] == 200
        except OSError:
            return False

    try:
        server, seconds = instance.serve(binary, env, open(log_path, "w"), ready, interval=0.002)
    except RuntimeError:
        sys.exit("bench: the service did not become ready")
    return server, seconds * 1000


JSON = {"Content-Type": "application/json"}


def signup_users(base):
    """Signs up bench_user_1..USERS through the API (the login scenario cycles through them)."""
    for i in range(1, USERS + 1):
        body = json.dumps({"username": f"bench_user_{i}", "email": f"bench_user_{i}@bench.example", "password": PASSWORD})
        assert http("POST", f"{base}/api/v1/users/signup", body.encode(), JSON)[0] == 201


def login_user(base, user):
    """Logs `user` in; returns its access token and its refresh token (from the cookie)."""
    status, headers, body = http("POST", f"{base}/api/v1/auth/login-json", json.dumps({"username": user, "password": PASSWORD}).encode(), JSON)
    assert status == 200, status
    cookie = headers.get("set-cookie") or headers.get("Set-Cookie")
    return json.loads(body)["access_token"], cookie.split(";")[0].split("=", 1)[1]


# `make bench-scale` (bench/scale.py) writes its own section of docs/BENCHMARKS.md between these
# lines; `make bench` rewrites the rest of the file and keeps that section.
BENCHMARKS = os.path.join(ROOT, "docs", "BENCHMARKS.md")
SCALE_BEGIN = "<!-- scale:begin -->"
SCALE_END = "<!-- scale:end -->"


def scale_section(path):
    """The scale section of the file at `path`, markers included, or "" if it has none."""
    try:
        with open(path) as f:
            text = f.read()
    except OSError:
        return ""
    begin, end = text.find(SCALE_BEGIN), text.find(SCALE_END)
    if begin < 0 or end < begin:
        return ""
    return text[begin:end + len(SCALE_END)] + "\n"


def psql(sql, db=None):
    url = instance.database_url(db) if db else ADMIN_URL
    return subprocess.run(["psql", url, "-qAtc", sql], check=True, capture_output=True, text=True).stdout


def many_users_tokens(db, env):
    """Inserts MANY_USERS users (holding `user`) straight into the database and signs one access
    token for each with the service's key and claims type (logging each in would cost one argon2
    hash apiece); returns the path of the file of tokens, one per line."""
    ids = psql(f"""
        WITH new AS (
            INSERT INTO users (id, username, email, password_hash)
            SELECT gen_random_uuid(), 'many_' || n, 'many_' || n || '@bench.example', 'unusable'
            FROM generate_series(1, {MANY_USERS}) AS n RETURNING id
        ), grant_role AS (
            INSERT INTO user_roles (user_id, role_id) SELECT new.id, r.id FROM new, roles r WHERE r.name = 'user'
        )
        SELECT id FROM new""", db)
    minted = subprocess.run(
        [os.path.join(REL, "mint-tokens"), env["JWT_KEYS_DIR"], env["JWT_ISSUER"], env["JWT_AUDIENCE"], "3600"],
        input=ids, capture_output=True, text=True, check=True).stdout
    path = os.path.join(WORK, f"many-tokens-{db}.txt")
    with open(path, "w") as f:
        f.write(minted)
    return path


def premade_codes(db, user_id, client_id, scope, name):
    """Stores CODES live authorization codes for `user_id` and `client_id` with `scope`, bound to
    REDIRECT_URI and CHALLENGE, for each phase of a scenario (as the authorization endpoint stores
    them: the SHA-256 of 32 random bytes); returns the path the codes files start with."""
    path = os.path.join(WORK, f"codes-{name}-{db}")
    rows = []
    for phase in ("w", "m"):
        with open(f"{path}.{phase}", "w") as f:
            for _ in range(CODES):
                secret = os.urandom(32)
                f.write(base64.urlsafe_b64encode(secret).rstrip(b"=").decode() + "\n")
                rows.append(f"\\\\x{hashlib.sha256(secret).hexdigest()}")
    copy = os.path.join(WORK, f"codes-{name}-{db}.copy")
    with open(copy, "w") as f:
        f.write("\n".join(rows) + "\n")
    url = instance.database_url(db)
    script = f"""CREATE TEMP TABLE premade (code_hash bytea);
             \\copy premade FROM '{copy}'
             INSERT INTO oauth_codes (code_hash, client_id, user_id, redirect_uri, scope, code_challenge, auth_time, expires_at)
             SELECT code_hash, '{client_id}', '{user_id}', '{REDIRECT_URI}', '{scope}', '{CHALLENGE}', now(),
                    now() + interval '1 hour' FROM premade;
             """
    subprocess.run(["psql", url, "-qAt", "-v", "ON_ERROR_STOP=1"], input=script, text=True, check=True,
                   stdout=subprocess.DEVNULL)
    os.remove(copy)
    return path


def premade_steps(db):
    """Stores STEPS pending second steps per phase (as a password login of an account with a
    second factor stores them: the SHA-256 of a 32-byte mfa_token), for accounts made here with
    ten recovery codes each (the SHA-256 of a code's normal form), one code per step; returns the
    path the steps files start with ("<mfa_token> <code>" per line). Made in SQL: a password login
    per step would cost an argon2 hash apiece."""
    path = os.path.join(WORK, f"steps-{db}")
    alphabet = "abcdefghijklmnopqrstuvwxyz234567"
    users, pending, codes = [], [], []
    for phase in ("w", "m"):
        with open(f"{path}.{phase}", "w") as f:
            for i in range(STEPS):
                if i % 10 == 0:
                    users.append(str(uuid.uuid4()))
                user = users[-1]
                secret = os.urandom(32)
                code = "".join(alphabet[b % 32] for b in os.urandom(10))
                f.write(base64.urlsafe_b64encode(secret).rstrip(b"=").decode() + " " + code + "\n")
                pending.append(f"\\\\x{hashlib.sha256(secret).hexdigest()}\t{user}")
                codes.append(f"{user}\t\\\\x{hashlib.sha256(code.encode()).hexdigest()}")
    copies = {}
    for name, rows in (("users", users), ("pending", pending), ("codes", codes)):
        copies[name] = os.path.join(WORK, f"steps-{name}-{db}.copy")
        with open(copies[name], "w") as f:
            f.write("\n".join(rows) + "\n")
    script = f"""CREATE TEMP TABLE n (id uuid);
             \\copy n FROM '{copies["users"]}'
             INSERT INTO users (id, username, email, password_hash)
             SELECT id, 'mfa_' || id, 'mfa_' || id || '@bench.example', 'unusable' FROM n;
             CREATE TEMP TABLE p (digest bytea, user_id uuid);
             \\copy p FROM '{copies["pending"]}'
             INSERT INTO mfa_pending (digest, user_id, password_version, session_kind, max_attempts, expires_at)
             SELECT p.digest, p.user_id, 0, 'api', 5, now() + interval '1 hour' FROM p;
             \\copy mfa_recovery_codes (user_id, digest) FROM '{copies["codes"]}'
             """
    subprocess.run(["psql", instance.database_url(db), "-qAt", "-v", "ON_ERROR_STOP=1"], input=script, text=True,
                   check=True, stdout=subprocess.DEVNULL)
    for copy in copies.values():
        os.remove(copy)
    return path


def counters(base, family):
    """The `result` series of one counter family, from the service's /metrics."""
    _, _, body = http("GET", f"{base}/metrics")
    out = {}
    for line in body.decode().splitlines():
        if line.startswith(f"auth_{family}_total{{"):
            labels, value = line.rsplit(" ", 1)
            out[labels.split('result="', 1)[1].split('"', 1)[0]] = float(value)
    return out


def cache_deltas(base, work):
    """Runs `work()`; returns its result and how the token and standing caches counted meanwhile."""
    before = {c: counters(base, c) for c in ("token_cache", "authz_cache")}
    result = work()
    after = {c: counters(base, c) for c in ("token_cache", "authz_cache")}
    deltas = {c: {k: after[c].get(k, 0) - before[c].get(k, 0) for k in ("hit", "miss", "eviction")} for c in before}
    return result, deltas


def hit_rate(d):
    total = d["hit"] + d["miss"]
    return d["hit"] / total if total else float("nan")


def script(name):
    """wrk takes one script: the scenario's own code after the shared reporting code."""
    path = os.path.join(WORK, f"{name}.lua")
    with open(path, "w") as out:
        for part in ("common.lua", f"{name}.lua"):
            with open(os.path.join(WRK_DIR, part)) as f:
                out.write(f.read() + "\n")
    return path


def wrk(url, scenario, threads, conns, seconds, env=None):
    cmd = ["wrk", f"-t{threads}", f"-c{conns}", f"-d{seconds}s", "--timeout", "10s", "-s", script(scenario), url]
    out = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **(env or {})}, check=True).stdout
    for line in out.splitlines():
        if line.startswith("BENCH "):
            return json.loads(line[6:])
    raise RuntimeError(f"wrk printed no result:\n{out}")


def run_scenario(url, scenario, threads, conns, env=None):
    if WARMUP:
        wrk(url, scenario, threads, conns, WARMUP, {**(env or {}), "PHASE": "w"})
    return wrk(url, scenario, threads, conns, SECONDS, {**(env or {}), "PHASE": "m"})


def status_mib(pid, field):
    """A memory figure of /proc/PID/status (VmRSS: resident now, VmHWM: its peak) in MiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def rss_mib(pid):
    return status_mib(pid, "VmRSS")


def sampled_peak_rss(pid, work):
    """Runs `work()` while sampling the process's resident set every 50 ms; returns (result, peak MiB)."""
    import threading
    peak = [rss_mib(pid)]
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], rss_mib(pid))
            time.sleep(0.05)

    t = threading.Thread(target=sample)
    t.start()
    try:
        result = work()
    finally:
        done.set()
        t.join()
    return result, peak[0]


def peak_rss_mib(pid):
    return status_mib(pid, "VmHWM")


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main():
    for tool in ("wrk", "psql"):
        if not shutil.which(tool):
            sys.exit(f"bench: {tool} is required (make bench installs wrk with apt-get)")
    os.makedirs(WORK, exist_ok=True)
    run = uuid.uuid4().hex[:8]
    db = f"auth_bench_{run}"
    keys = os.path.join(WORK, f"keys-{run}")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = service_env(run, db, keys, port)
    binary = os.path.join(REL, "auth-service")
    server = bare = None
    psql(f'CREATE DATABASE "{db}"')
    try:
        prepare(binary, env)

        # Start-up: process start to the first readyz 200.
        server, startup_ms = start_service(binary, env, base, os.path.join(WORK, f"server-{run}.log"))

        # Seed: users, an admin, tokens.
        signup_users(base)
        admin_env = {**env, "SUPERUSER_USERNAME": "bench_admin", "SUPERUSER_EMAIL": "admin@bench.example", "SUPERUSER_PASSWORD": PASSWORD}
        subprocess.run([binary, "create-superuser"], env=admin_env, check=True, stdout=subprocess.DEVNULL)

        def login(user):
            return login_user(base, user)

        token, _ = login("bench_user_1")
        admin_token, _ = login("bench_admin")
        refresh_tokens = ",".join(login(f"bench_user_{i}")[1] for i in range(1, 17))
        status, _, body = http("POST", f"{base}/api/v1/clients", json.dumps({"client_name": "bench", "scope": "bench"}).encode(),
                               {**JSON, "authorization": f"Bearer {admin_token}"})
        assert status == 201, body
        registered = json.loads(body)
        basic = base64.b64encode(f"{registered['client_id']}:{registered['client_secret']}".encode()).decode()
        many_tokens = many_users_tokens(db, env) if wanted(f"me, {MANY_USERS} users") else None
        # The browser flow: a web app (first party, so no consent page), its sign-in page, and
        # pre-made codes for the exchange (made as the authorization endpoint makes them; a
        # sign-in per code would cost an argon2 hash apiece).
        web = {"client_name": "bench web app", "grant_types": ["authorization_code", "refresh_token"],
               "redirect_uris": [REDIRECT_URI], "scope": "openid profile email", "first_party": True}
        status, _, body = http("POST", f"{base}/api/v1/clients", json.dumps(web).encode(),
                               {**JSON, "authorization": f"Bearer {admin_token}"})
        assert status == 201, body
        web = json.loads(body)
        web_basic = base64.b64encode(f"{web['client_id']}:{web['client_secret']}".encode()).decode()
        authorize_path = "/oauth2/authorize?" + urllib.parse.urlencode({
            "response_type": "code", "client_id": web["client_id"], "redirect_uri": REDIRECT_URI,
            "scope": "openid profile", "state": "bench-state", "nonce": "bench-nonce",
            "code_challenge": CHALLENGE, "code_challenge_method": "S256"})
        user_id = psql("SELECT id FROM users WHERE username = 'bench_user_1'", db).strip()
        exchanges = [
            ("code exchange (OpenID: access and ID token, 2 signatures)", "openid profile email"),
            ("code exchange (OAuth: access token, 1 signature)", "profile"),
        ]
        codes = {name: premade_codes(db, user_id, web["client_id"], scope, str(i))
                 for i, (name, scope) in enumerate(exchanges) if wanted(name)}
        steps = None
        if wanted(MFA_STEP):
            steps = premade_steps(db)

        # Ceilings, measured now, on this machine.
        ceilings = json.loads(subprocess.run(
            [os.path.join(REL, "ceilings"), keys, "5", "19456", "2", "1"], capture_output=True, text=True, check=True).stdout)
        # The HTTP ceiling is measured three times, around the HTTP scenarios (before, between and
        # after them), and its median used: the throughput of this machine drifts by more than
        # the margins being measured within a few minutes.
        bare_port = free_port()
        bare = subprocess.Popen([os.path.join(REL, "bare-hyper"), f"127.0.0.1:{bare_port}"])
        time.sleep(0.3)
        bare_runs = []

        def measure_bare():
            bare_runs.append(run_scenario(f"http://127.0.0.1:{bare_port}/", "get", 2, 64))

        http_runs = []
        measure_bare()
        me_caches = many_caches = None
        if wanted("JWKS"):
            http_runs.append(("JWKS", run_scenario(f"{base}/.well-known/jwks.json", "get", 2, 64)))
        if wanted("healthz"):
            http_runs.append(("healthz", run_scenario(f"{base}/api/v1/healthz", "get", 2, 64)))
        measure_bare()
        if wanted("me"):
            me_run, me_caches = cache_deltas(base, lambda: run_scenario(base, "me", 2, 64, {"TOKEN": token}))
            http_runs.append(("me", me_run))
        if many_tokens:
            many_run, many_caches = cache_deltas(
                base, lambda: run_scenario(base, "me-many", 2, 64, {"TOKENS_FILE": many_tokens}))
            http_runs.append((f"me, {MANY_USERS} users", many_run))
        if wanted("introspection"):
            http_runs.append(("introspection", run_scenario(base, "introspect", 2, 64, {"TOKEN": token, "ADMIN_TOKEN": admin_token})))
        if wanted("sign-in page"):
            http_runs.append(("sign-in page (GET /oauth2/authorize, no session)",
                              run_scenario(base, "sign-in-page", 2, 64, {"AUTHORIZE_PATH": authorize_path})))
        measure_bare()
        bare.terminate()
        bare.wait()
        bare = None
        http_ceiling = {key: statistics.median(r[key] for r in bare_runs)
                        for key in ("rps", "p50_ms", "p99_ms", "errors", "socket_errors")}

        results = []

        def add(name, conns, ceiling_name, ceiling, r):
            results.append({"scenario": name, "c": conns, "ceiling_name": ceiling_name, "ceiling": ceiling, **r,
                            "ratio": r["rps"] / ceiling if ceiling else float("nan")})

        for name, r in http_runs:
            add(name, 64, "HTTP", http_ceiling["rps"], r)
        if wanted("login"):
            add("login", 16, "argon2", ceilings["argon2_per_sec"],
                run_scenario(base, "login", 2, 16, {"USERS": str(USERS), "PASSWORD": PASSWORD}))
        if wanted("refresh"):
            add("refresh", 16, "RS256 sign", ceilings["sign_per_sec"],
                run_scenario(base, "refresh", 16, 16, {"REFRESH_TOKENS": refresh_tokens}))
        if wanted("signup"):
            add("signup", 16, "argon2", ceilings["argon2_per_sec"], run_scenario(base, "signup", 2, 16, {"RUN": run}))
        if wanted("client_credentials"):
            for conns in (16, 64):
                add("client_credentials", conns, "RS256 sign", ceilings["sign_per_sec"],
                    run_scenario(base, "client-credentials", 2, conns, {"BASIC": basic}))
        exchange_conns = int(os.environ.get("BENCH_EXCHANGE_CONNS", "16"))
        for name, path in codes.items():
            add(name, exchange_conns, "RS256 sign", ceilings["sign_per_sec"], run_scenario(
                base, "code-exchange", 2, exchange_conns,
                {"CODES_FILE": path, "THREADS": "2", "BASIC": web_basic, "REDIRECT_URI": REDIRECT_URI, "VERIFIER": VERIFIER}))
        if steps:
            add(MFA_STEP, 16, "RS256 sign", ceilings["sign_per_sec"], run_scenario(
                base, "mfa-step", 2, 16, {"STEPS_FILE": steps, "THREADS": "2"}))
        # Hashing threads give their working memory back after 2 s idle; let them, so that the
        # figure is the `me` workload's own and not the previous scenario's leftovers.
        if ONLY:
            raise Done
        time.sleep(3)
        memory_run, rss = sampled_peak_rss(server.pid, lambda: run_scenario(base, "me", 2, 256, {"TOKEN": token}))
        lifetime_rss = peak_rss_mib(server.pid)
        cache_lib = json.loads(subprocess.run(
            [os.path.join(REL, "caches"), "2", "4096"], capture_output=True, text=True, check=True).stdout)
    except Done:
        pass
    finally:
        for proc in (bare, server):
            if proc:
                proc.terminate()
                proc.wait()
        psql(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        shutil.rmtree(keys, ignore_errors=True)
        if locals().get("many_tokens"):
            os.remove(many_tokens)
        for path in list(locals().get("codes", {}).values()) + [p for p in [locals().get("steps")] if p]:
            for phase in ("w", "m"):
                os.remove(f"{path}.{phase}")

    if ONLY:
        print(f"bare hyper: {http_ceiling['rps']:.0f}/s; RS256 signatures: {ceilings['sign_per_sec']:.0f}/s; "
              f"argon2: {ceilings['argon2_per_sec']:.0f}/s")
        for r in results:
            print(f"{r['scenario']}: {r['rps']:.0f}/s p50 {r['p50_ms']:.2f} ms p99 {r['p99_ms']:.2f} ms, "
                  f"{r['errors'] + r['socket_errors']} errors, {r['ratio']:.2f} x {r['ceiling_name']}")
        return
    lines = [
        "| scenario | c | requests/s | p50 ms | p99 ms | errors | ceiling | ceiling/s | ratio |",
        "|---|---|---|---|---|---|---|---|---|",
        f"| bare hyper (HTTP ceiling, median of 3) | 64 | {http_ceiling['rps']:.0f} | {http_ceiling['p50_ms']:.2f} | {http_ceiling['p99_ms']:.2f} | "
        f"{http_ceiling['errors'] + http_ceiling['socket_errors']} | | | |",
    ]
    for r in results:
        lines.append(
            f"| {r['scenario']} | {r['c']} | {r['rps']:.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['errors'] + r['socket_errors']} | "
            f"{r['ceiling_name']} | {r['ceiling']:.0f} | {r['ratio']:.2f} |")
    lines.append(
        f"| me (memory run) | 256 | {memory_run['rps']:.0f} | {memory_run['p50_ms']:.2f} | {memory_run['p99_ms']:.2f} | "
        f"{memory_run['errors'] + memory_run['socket_errors']} | | | |")
    table = "\n".join(lines)
    p99_ratio = {r["scenario"]: r["p99_ms"] / http_ceiling["p99_ms"] for r in results if r["scenario"] in ("JWKS", "healthz")}
    p99_line = ", ".join(f"{k} {v:.2f}" for k, v in p99_ratio.items())
    summary = [
        f"- peak RSS of the service during the c=256 `me` run: {rss:.1f} MiB "
        f"(lifetime peak over every scenario, argon2 memory included: {lifetime_rss:.1f} MiB)",
        f"- process start to first readyz 200: {startup_ms:.0f} ms",
        "- bare hyper runs (before, between and after the HTTP scenarios): "
        + ", ".join(f"{r['rps']:.0f}/s (p99 {r['p99_ms']:.2f} ms)" for r in bare_runs),
        f"- p99 over the bare server's p99: {p99_line}",
        f"- one argon2id hash (m=19456, t=2, p=1), single thread: {ceilings['argon2_hash_ms']:.1f} ms; "
        f"{ceilings['argon2_per_sec']:.0f} hashes/s with all {ceilings['cores']} cores busy",
        f"- one RS256 signature (key parsed once): {ceilings['sign_ms']:.3f} ms; {ceilings['sign_per_sec']:.0f}/s with all cores busy",
        f"- one check of the bundled password list: {ceilings['password_check_listed_ns']:.0f} ns listed, "
        f"{ceilings['password_check_unlisted_ns']:.0f} ns unlisted "
        f"({ceilings['password_check_unlisted_ns'] / (ceilings['argon2_hash_ms'] * 1e6):.1e} of one argon2 hash)",
    ]
    for name, d in (("me", me_caches), (f"me, {MANY_USERS} users", many_caches)):
        if d is None:
            continue
        t, a = d["token_cache"], d["authz_cache"]
        summary.append(
            f"- caches during `{name}`: verified tokens {hit_rate(t):.3f} hits ({t['miss']:.0f} signature checks, "
            f"{t['eviction']:.0f} evictions), standing {hit_rate(a):.3f} hits ({a['miss']:.0f} database reads, "
            f"{a['eviction']:.0f} evictions)")
    cache_table = [
        "",
        f"Cache libraries, every core looking up and inserting on a miss, capacity {cache_lib['capacity']} "
        "(bench/src/bin/caches.rs; `hot`: one key; `cycle`: 10 000 keys in turn; `skewed`: 90 % of look-ups over "
        "1 000 regular keys among one-off keys, hit rate of the regular keys):",
        "",
        "| pattern | quick_cache ns/look-up | quick_cache hit rate | moka ns/look-up | moka hit rate |",
        "|---|---|---|---|---|",
    ]
    for pattern in ("hot", "cycle", "skewed"):
        q, m = cache_lib[f"{pattern}/quick_cache"], cache_lib[f"{pattern}/moka"]
        cache_table.append(f"| {pattern} | {q['ns_per_op']:.0f} | {q['hit_rate']:.3f} | {m['ns_per_op']:.0f} | {m['hit_rate']:.3f} |")
    summary.extend(cache_table)
    machine = f"{os.cpu_count()} cores, {cpu_model()}, {platform.system()} {platform.release()}"
    print(table)
    print("\n".join(summary))
    print(f"- machine: {machine}")

    scale = scale_section(BENCHMARKS)
    with open(BENCHMARKS, "w") as f:
        f.write("# Benchmarks\n\n")
        f.write("Written by `make bench` (bench/run.py). Every ratio compares a scenario with a ceiling measured in the\n"
                "same run on the same machine: the HTTP ceiling is a bare hyper server answering a fixed body under the\n"
                "same load generator and concurrency, measured before, between and after the HTTP scenarios (the median\n"
                "of the three is the ceiling); the argon2 ceiling is hashes per second at the configured\n"
                "parameters with every core busy; the signing ceiling is RS256 signatures per second with the key\n"
                "parsed once, every core busy. The load generator (wrk) runs on the same cores as the service,\n"
                "PostgreSQL and Redis. Non-2xx answers count as errors.\n\n")
        f.write(f"Machine: {machine}. Run: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
                f"{SECONDS} s per scenario after a {WARMUP} s warm-up.\n\n")
        f.write("Service settings: OWASP argon2id (m=19456 KiB, t=2, p=1), RS256 2048-bit active key, "
                "RATE_LIMIT_ENABLED=false, LOG_LEVEL=info (access log to a file), defaults otherwise.\n\n")
        f.write(table + "\n\n" + "\n".join(summary) + "\n")
        extra = os.path.join(ROOT, "bench", "NOTES.md")
        if os.path.exists(extra):
            with open(extra) as notes:
                f.write("\n" + notes.read())
        if scale:
            f.write("\n" + scale)


if __name__ == "__main__":
    main()
