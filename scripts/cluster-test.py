#!/usr/bin/env python3
"""`make cluster-test`: three instances behind HAProxy under steady load while the cluster fails.

Brings up the cluster of scripts/cluster.sh (PostgreSQL primary + synchronous standby, Redis
master + replica + three sentinels, three instances, HAProxy), runs a mixed load through HAProxy
(signup, login, refresh with rotation, `me`, introspection, logout) and, phase by phase:

  a. a logout on one instance is honoured by the others on the next request;
  b. the lockout and the per-IP login limit are shared: parallel guesses spread over the three
     instances stop at the threshold;
  c. `keys generate` + `keys rotate` on the shared directory: every instance signs with the new
     key, and a JWKS consumer that caches for the JWKS max-age verifies every fresh token;
  d. the Redis master is SIGKILLed and Sentinel promotes the replica;
  e. the PostgreSQL primary is stopped and the standby promoted;
  f. one instance is SIGKILLed, then started again;
  g. a rolling restart: SIGTERM each instance in turn, wait for its exit, start it, wait until
     HAProxy sees it up.

After each phase it pauses the load and checks every write the load got acknowledged so far:
each signed-up user logs in, each live session refreshes with the newest token it received,
each logged-out session's access token and refresh token are refused. Prints one row per
phase; exits non-zero on any 5xx other than 503, a lost acknowledged write, a failed phase
check, an unexpected answer in a phase without a fault (baseline, a, b, c, g: any non-2xx of
the load), or a fault phase (d, e, f) after which the cluster did not recover. The cluster is
always brought down at the end. Token verification uses PyJWT, installed in target/cluster/venv.
"""
import concurrent.futures
import http.client
import json
import os
import queue
import random
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLUSTER = os.path.join(ROOT, "scripts", "cluster.sh")
STATE = os.path.join(ROOT, "target", "cluster", "state.env")
VENV = os.path.join(ROOT, "target", "cluster", "venv")
PASSWORD = "cluster password 1"
TIMEOUT = 10.0
WORKERS = int(os.environ.get("CLUSTER_TEST_WORKERS", "5"))
PAUSE = float(os.environ.get("CLUSTER_TEST_PAUSE", "0.12"))  # per worker between requests
MAX_SESSIONS = 40
LOCKOUT_THRESHOLD = 5  # LOCKOUT_THRESHOLD of the cluster (scripts/cluster.sh)
LOGIN_LIMIT, LOGIN_WINDOW = 20, 60.0  # RATE_LIMIT_LOGIN=20/60s of the cluster
FAULT_PHASES = ("d", "e", "f")


def ensure_pyjwt():
    """Re-executes this script in target/cluster/venv (created with PyJWT) unless jwt imports."""
    try:
        import jwt  # noqa: F401
        import cryptography  # noqa: F401
        return
    except ImportError:
        pass
    py = os.path.join(VENV, "bin", "python")
    if os.environ.get("CLUSTER_TEST_IN_VENV"):
        sys.exit("cluster-test: PyJWT is missing from " + VENV)
    ok = os.path.exists(py) and subprocess.run([py, "-c", "import jwt, cryptography"],
                                               stderr=subprocess.DEVNULL).returncode == 0
    if not ok:
        subprocess.run([sys.executable, "-m", "venv", VENV], check=True)
        subprocess.run([os.path.join(VENV, "bin", "pip"), "install", "--quiet", "--disable-pip-version-check",
                        "pyjwt[crypto]>=2.8"], check=True)
    os.environ["CLUSTER_TEST_IN_VENV"] = "1"
    os.execv(py, [py, os.path.abspath(__file__), *sys.argv[1:]])


# ------------------------------------------------------------------------------------------
# Cluster control


def cluster(*args, timeout=120):
    """Runs scripts/cluster.sh ARGS; returns its stdout; raises on failure."""
    p = subprocess.run([CLUSTER, *args], capture_output=True, text=True, timeout=timeout)
    if p.returncode != 0:
        raise RuntimeError(f"cluster.sh {' '.join(args)} failed ({p.returncode}): {p.stderr.strip()[-800:]}")
    return p.stdout


def read_state():
    state = {}
    with open(STATE) as f:
        for line in f:
            m = re.match(r"^([A-Z_0-9]+)='(.*)'$", line.strip())
            if m:
                state[m.group(1)] = m.group(2)
    return state


def read_env(path):
    env = {}
    with open(path) as f:
        for line in f:
            if "=" in line and not line.startswith("#"):
                k, v = line.rstrip("\n").split("=", 1)
                env[k] = v
    return env


# ------------------------------------------------------------------------------------------
# HTTP


class Answer:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers  # list of (name, value)
        self.body = body

    def header(self, name):
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return None

    def json(self):
        try:
            return json.loads(self.body)
        except ValueError:
            return {}

    def refresh_cookie(self):
        for k, v in self.headers:
            if k.lower() == "set-cookie" and v.startswith("refresh_token=") and not v.startswith("refresh_token=;"):
                value = v.split(";", 1)[0].split("=", 1)[1]
                if value:
                    return value
        return None


def request(port, method, path, body=None, headers=None, timeout=TIMEOUT):
    """An Answer, or the exception of a connection error / timeout."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return Answer(resp.status, resp.getheaders(), resp.read())
    except (OSError, http.client.HTTPException) as exc:
        return exc
    finally:
        conn.close()


def client_ip():
    """A simulated client address (X-Forwarded-For), so per-IP limits see many clients."""
    return f"10.{random.randrange(256)}.{random.randrange(256)}.{random.randrange(1, 255)}"


def jheaders(ip=None, extra=None):
    h = {"Content-Type": "application/json", "X-Forwarded-For": ip or client_ip()}
    h.update(extra or {})
    return h


def signup(port, name, ip=None):
    body = json.dumps({"username": name, "email": f"{name}@cluster.example", "password": PASSWORD})
    return request(port, "POST", "/api/v1/users/signup", body, jheaders(ip))


def login(port, name, password=PASSWORD, ip=None):
    return request(port, "POST", "/api/v1/auth/login-json", json.dumps({"username": name, "password": password}),
                   jheaders(ip))


def refresh(port, token, ip=None):
    return request(port, "POST", "/api/v1/auth/refresh", None,
                   {"Cookie": f"refresh_token={token}", "X-Forwarded-For": ip or client_ip()})


def logout(port, session, ip=None):
    return request(port, "POST", "/api/v1/auth/logout", None,
                   {"Cookie": f"refresh_token={session['refresh']}", "Authorization": f"Bearer {session['access']}",
                    "X-Forwarded-For": ip or client_ip()})


def me(port, access, ip=None):
    return request(port, "GET", "/api/v1/user_roles/me", None,
                   {"Authorization": f"Bearer {access}", "X-Forwarded-For": ip or client_ip()})


def sessions_list(port, access, ip=None):
    return request(port, "GET", "/api/v1/sessions", None,
                   {"Authorization": f"Bearer {access}", "X-Forwarded-For": ip or client_ip()})


def introspect(port, admin_access, token, ip=None):
    return request(port, "POST", "/api/v1/auth/introspect", urllib.parse.urlencode({"token": token}),
                   {"Content-Type": "application/x-www-form-urlencoded", "Authorization": f"Bearer {admin_access}",
                    "X-Forwarded-For": ip or client_ip()})


def status_of(r):
    return r.status if isinstance(r, Answer) else type(r).__name__


def ready(port):
    r = request(port, "GET", "/api/v1/readyz", timeout=2)
    return isinstance(r, Answer) and r.status == 200


def wait_all_ready(ports, since, timeout):
    """Seconds from `since` until every instance answers readyz 200 at once, or None."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if all(ready(p) for p in ports):
            return round(time.time() - since, 2)
        time.sleep(0.2)
    return None


def retry(fn, definitive, seconds=20):
    """Calls fn() until its answer's status is in `definitive` (or time runs out); returns the last."""
    return retry_until(fn, definitive, time.time() + seconds)


def retry_until(fn, definitive, deadline):
    while True:
        r = fn()
        if isinstance(r, Answer) and r.status in definitive:
            return r
        if time.time() > deadline:
            return r
        time.sleep(0.3)


# ------------------------------------------------------------------------------------------
# Bookkeeping


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.phase = "setup"
        self.after_recovery = False
        self.rows = {}
        self.order = []

    def row(self, phase=None):
        phase = phase or self.phase
        if phase not in self.rows:
            self.order.append(phase)
            self.rows[phase] = {"requests": 0, "2xx": 0, "503": 0, "4xx": 0, "5xx": 0, "conn": 0,
                                "after_errors": 0, "verified": 0, "verify_failed": 0, "ready": "-",
                                "data": "-", "notes": [], "error_notes": 0, "violations": []}
        return self.rows[phase]

    def set_phase(self, phase):
        with self.lock:
            self.phase = phase
            self.after_recovery = False
            self.row(phase)

    def record(self, kind, note=None):
        with self.lock:
            r = self.row()
            r["requests"] += 1
            r[kind] += 1
            if kind != "2xx" and self.after_recovery:
                r["after_errors"] += 1
            if note and (kind != "503" or self.after_recovery) and r["error_notes"] < 5:
                r["error_notes"] += 1
                r["notes"].append(("after recovery: " if self.after_recovery else "") + note)

    def note(self, text, phase=None):
        with self.lock:
            self.row(phase)["notes"].append(text)

    def violation(self, text, phase=None):
        with self.lock:
            self.row(phase)["violations"].append(text)


class JwksConsumer:
    """A resource server that verifies tokens offline: it reads the discovery document once,
    caches the JWKS for its Cache-Control max-age and never refetches early (an unknown kid is
    a failure), then checks signature, iss, aud and exp with PyJWT."""

    def __init__(self, port, audience, stats):
        import jwt
        self.jwt = jwt
        self.stats = stats
        self.port = port
        self.audience = audience
        meta = json.loads(request(port, "GET", "/.well-known/openid-configuration").body)
        self.issuer = meta["issuer"]
        self.jwks_path = urllib.parse.urlparse(meta["jwks_uri"]).path
        self.keys = {}
        self.expires = 0.0
        self.fetches = 0
        self.fetch_errors = 0
        self.kids_seen = {}
        self.q = queue.Queue(maxsize=2000)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.loop, daemon=True)

    def jwks(self):
        now = time.time()
        if now >= self.expires:
            r = request(self.port, "GET", self.jwks_path, timeout=5)
            if isinstance(r, Answer) and r.status == 200:
                m = re.search(r"max-age=(\d+)", r.header("cache-control") or "")
                self.keys = {k["kid"]: self.jwt.PyJWK(k) for k in json.loads(r.body)["keys"]}
                self.expires = now + (int(m.group(1)) if m else 0)
                self.fetches += 1
            else:
                self.fetch_errors += 1  # keep the cached keys, try again soon
                self.expires = now + 0.5
        return self.keys

    def verify(self, token):
        header = self.jwt.get_unverified_header(token)
        kid = header.get("kid")
        keys = self.jwks()
        if kid not in keys:
            raise ValueError(f"kid {kid} not in the cached JWKS ({len(keys)} keys, fetched {self.fetches}x)")
        self.jwt.decode(token, keys[kid].key, algorithms=[header["alg"]], audience=self.audience,
                        issuer=self.issuer, options={"require": ["exp", "iat", "iss", "aud", "sub"]})
        return kid

    def submit(self, token, phase):
        try:
            self.q.put_nowait((token, phase))
        except queue.Full:
            pass

    def loop(self):
        while not self.stop.is_set() or not self.q.empty():
            try:
                token, phase = self.q.get(timeout=0.2)
            except queue.Empty:
                continue
            try:
                kid = self.verify(token)
                with self.stats.lock:
                    self.stats.row(phase)["verified"] += 1
                    self.kids_seen.setdefault(phase, set()).add(kid)
            except Exception as exc:  # noqa: BLE001 - every failure is counted and shown
                with self.stats.lock:
                    r = self.stats.row(phase)
                    r["verify_failed"] += 1
                    if len(r["notes"]) < 40:
                        r["notes"].append(f"JWKS consumer: {exc}")

    def drain(self, seconds=10):
        deadline = time.time() + seconds
        while not self.q.empty() and time.time() < deadline:
            time.sleep(0.05)


class Load:
    """Workers through HAProxy. Every write the service acknowledged is remembered:
    users (signup 201), sessions with their newest refresh token (login/refresh 200) and
    revocations (logout 200). A session is used by one worker at a time."""

    def __init__(self, port, stats, consumer, admin):
        self.port = port
        self.stats = stats
        self.consumer = consumer
        self.admin = admin
        self.lock = threading.Lock()
        self.cv = threading.Condition(self.lock)
        self.users = []
        self.sessions = []
        self.busy = 0
        self.paused = False
        self.revoked = []
        self.lost = []  # acknowledged writes found missing by the load itself
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self.worker, daemon=True) for _ in range(WORKERS)]

    # -- classification
    def outcome(self, r, expected, what):
        """Records r; returns True when its status is one of `expected`."""
        if not isinstance(r, Answer):
            self.stats.record("conn", f"{what}: {type(r).__name__}: {r}")
            return False
        if r.status in expected:
            self.stats.record("2xx" if r.status < 300 else "4xx")
            return True
        if r.status == 503:
            self.stats.record("503", f"{what}: 503 {r.body[:100]!r}")
        elif r.status >= 500:
            self.stats.record("5xx", f"{what}: {r.status} {r.body[:120]!r}")
        elif r.status >= 300:
            self.stats.record("4xx", f"{what}: {r.status} {r.body[:120]!r}")
        else:
            self.stats.record("4xx", f"{what}: unexpected {r.status}")
        return False

    def unexpected(self, note):
        """Reclassifies the last 2xx as an unexpected answer (a 200 with the wrong content)."""
        with self.stats.lock:
            r = self.stats.row()
            r["2xx"] -= 1
            r["4xx"] += 1
            if self.stats.after_recovery:
                r["after_errors"] += 1
            r["notes"].append(note)

    # -- sessions
    def take(self):
        with self.lock:
            if not self.sessions:
                return None
            return self.sessions.pop(random.randrange(len(self.sessions)))

    def give_back(self, s):
        with self.lock:
            self.sessions.append(s)

    def new_session(self, user, r):
        s = {"id": uuid.uuid4().hex, "user": user, "access": r.json().get("access_token"),
             "refresh": r.refresh_cookie(), "pending": None, "since": time.time()}
        self.consumer.submit(s["access"], self.stats.phase)
        return s

    # -- operations
    def op_signup(self):
        name = "u" + uuid.uuid4().hex[:12]
        if self.outcome(signup(self.port, name), (201,), "signup"):
            with self.lock:
                self.users.append(name)

    def op_login(self):
        with self.lock:
            if not self.users or len(self.sessions) >= MAX_SESSIONS:
                return
            name = random.choice(self.users)
        r = login(self.port, name)
        if self.outcome(r, (200,), "login"):
            self.give_back(self.new_session(name, r))

    def do_refresh(self, s):
        r = refresh(self.port, s["refresh"])
        if isinstance(r, Answer) and r.status == 401 and s["pending"] is None:
            self.outcome(r, (200,), "refresh")
            self.lost.append(f"session of {s['user']}: refresh with its newest token answered 401 {r.body[:100]!r}")
            return  # dropped: counted as lost
        if isinstance(r, Answer) and r.status == 401:
            # Refused after an attempt whose outcome we never saw.
            self.outcome(r, (200,), "refresh (retry after an unanswered one)")
            self.lost.append(f"session of {s['user']}: the retry of an unanswered refresh got 401 "
                             f"{time.time() - s['pending']:.1f}s later {r.body[:100]!r}")
            return
        if self.outcome(r, (200,), "refresh") and r.refresh_cookie():
            s["refresh"] = r.refresh_cookie()
            s["access"] = r.json().get("access_token")
            s["pending"] = None
            self.consumer.submit(s["access"], self.stats.phase)
        elif s["pending"] is None:
            # No answer (or 503): the rotation may or may not have happened. Present the same
            # token again next time; within REFRESH_REUSE_GRACE it gets the same successor.
            s["pending"] = time.time()
        self.give_back(s)

    def do_logout(self, s):
        r = logout(self.port, s)
        if self.outcome(r, (200,), "logout"):
            with self.lock:
                self.revoked.append(s)
        else:
            s["pending_logout"] = True
            self.give_back(s)

    def op_refresh(self):
        s = self.take()
        if s:
            self.do_logout(s) if s.get("pending_logout") else self.do_refresh(s)

    def take_settled(self):
        """A session whose last refresh and logout were answered; one with an unanswered one is
        finished first (and not returned)."""
        s = self.take()
        if s and (s["pending"] is not None or s.get("pending_logout")):
            self.do_logout(s) if s.get("pending_logout") else self.do_refresh(s)
            return None
        return s

    def op_me(self):
        s = self.take_settled()
        if not s:
            return
        r = me(self.port, s["access"])
        if self.outcome(r, (200,), "me") and r.json().get("username") != s["user"]:
            self.unexpected(f"me: a live session of {s['user']} is seen as {r.json().get('username')!r}")
        self.give_back(s)

    def op_introspect(self):
        s = self.take_settled()
        if not s:
            return
        r = introspect(self.port, self.admin, s["access"])
        if self.outcome(r, (200,), "introspect") and not r.json().get("active"):
            self.unexpected(f"introspect: a live token of {s['user']} is inactive: {r.body[:100]!r}")
        self.give_back(s)

    def op_logout(self):
        with self.lock:
            if len(self.sessions) < MAX_SESSIONS // 2:
                return
        s = self.take()
        if s:
            self.do_logout(s)

    def worker(self):
        ops = [(self.op_signup, 4), (self.op_login, 8), (self.op_refresh, 25), (self.op_me, 35),
               (self.op_introspect, 15), (self.op_logout, 6)]
        table = [f for f, w in ops for _ in range(w)]
        while not self.stop.is_set():
            with self.cv:
                while self.paused and not self.stop.is_set():
                    self.cv.wait(0.2)
                self.busy += 1
            try:
                random.choice(table)()
            finally:
                with self.cv:
                    self.busy -= 1
                    self.cv.notify_all()
            time.sleep(PAUSE * random.uniform(0.5, 1.5))

    def start(self):
        for t in self.threads:
            t.start()

    def pause(self):
        with self.cv:
            self.paused = True
            while self.busy:
                self.cv.wait(0.5)

    def resume(self):
        with self.cv:
            self.paused = False
            self.cv.notify_all()

    def shutdown(self):
        self.stop.set()
        self.resume()
        for t in self.threads:
            t.join(timeout=TIMEOUT + 5)


# ------------------------------------------------------------------------------------------
# The data check


def data_check(load, port, budget=45.0):
    """Every acknowledged write still holds. Returns (summary, lost, unverified). Each check is
    retried while the service answers 503 or not at all, within `budget` seconds for the whole
    check; an item that still has no definitive answer then is reported as unverified."""
    lost, unverified = list(load.lost), []
    load.lost.clear()
    deadline = time.time() + budget

    def retry(fn, definitive):
        return retry_until(fn, definitive, deadline)

    def verdict(r, want, text):
        """None if r has the status `want`; else records a lost or an unverified write."""
        if isinstance(r, Answer) and r.status == want:
            return True
        (lost if isinstance(r, Answer) and r.status != 503 else unverified).append(f"{text}: {status_of(r)}")
        return False

    # Sessions whose last logout went unanswered: log out again (logout always answers 200).
    for s in [s for s in load.sessions if s.get("pending_logout")]:
        load.sessions.remove(s)
        r = retry(lambda: logout(port, s), (200,))
        if verdict(r, 200, f"logout of {s['user']} (retried)"):
            load.revoked.append(s)

    def check_user(name):
        verdict(retry(lambda: login(port, name), (200, 401, 429)), 200, f"user {name}: login")

    def check_session(s):
        was_pending = s["pending"] is not None
        r = retry(lambda: refresh(port, s["refresh"]), (200, 401))
        if verdict(r, 200, f"session of {s['user']}: refresh with its newest token"
                           + (" (after an unanswered one)" if was_pending else "")) and r.refresh_cookie():
            s["refresh"], s["access"], s["pending"] = r.refresh_cookie(), r.json().get("access_token"), None
            return True
        return False

    def check_revoked(s):
        verdict(retry(lambda: sessions_list(port, s["access"]), (200, 401)), 401,
                f"logged-out access token of {s['user']}: GET /api/v1/sessions")
        verdict(retry(lambda: refresh(port, s["refresh"]), (200, 401)), 401,
                f"logged-out refresh token of {s['user']}: refresh")

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        list(pool.map(check_user, list(load.users)))
        sessions = list(load.sessions)
        pending = sum(1 for s in sessions if s["pending"] is not None)
        alive = list(pool.map(check_session, sessions))
        load.sessions[:] = [s for s, ok in zip(sessions, alive) if ok]
        list(pool.map(check_revoked, list(load.revoked)))
    summary = f"{len(load.users)} users, {len(sessions)} sessions, {len(load.revoked)} logouts"
    if pending:
        summary += f" ({pending} sessions whose last refresh went unanswered)"
    return summary, lost, unverified


# ------------------------------------------------------------------------------------------
# Phases


class Test:
    def __init__(self, state):
        self.state = state
        self.hp = int(state["HAPROXY_PORT"])
        self.ports = [int(p) for p in state["INSTANCE_PORTS"].split(",")]
        self.stats = Stats()
        self.env = read_env(state["INSTANCE_ENV"])
        admin = login(self.hp, state["ADMIN_USER"], state["ADMIN_PASSWORD"])
        if status_of(admin) != 200:
            raise RuntimeError(f"admin login failed: {status_of(admin)}")
        self.admin = admin.json()["access_token"]
        self.consumer = JwksConsumer(self.hp, state["AUDIENCE"], self.stats)
        self.load = Load(self.hp, self.stats, self.consumer, self.admin)

    def ok(self, cond, text, phase=None):
        if not cond:
            self.stats.violation(text, phase)
        return cond

    # a
    def logout_everywhere(self):
        p = self.ports
        for rep in range(3):
            i_login, i_logout, i_after = p[rep % 3], p[(rep + 1) % 3], p[(rep + 2) % 3]
            name = "a" + uuid.uuid4().hex[:12]
            if not self.ok(status_of(signup(i_login, name)) == 201, f"signup on :{i_login} failed"):
                continue
            self.load.users.append(name)
            r = login(i_login, name)
            if not self.ok(status_of(r) == 200, f"login on :{i_login}: {status_of(r)}"):
                continue
            s = {"user": name, "access": r.json()["access_token"], "refresh": r.refresh_cookie()}
            for port in (i_login, i_after):  # each instance has seen (and cached) the token
                self.ok(me(port, s["access"]).json().get("username") == name, f"me on :{port} before logout")
                self.ok(status_of(sessions_list(port, s["access"])) == 200, f"sessions on :{port} before logout")
            r = logout(i_logout, s)
            if not self.ok(status_of(r) == 200, f"logout on :{i_logout}: {status_of(r)}"):
                continue
            self.load.revoked.append(s)
            for port in (i_after, i_login):
                who = me(port, s["access"]).json()
                self.ok(who.get("username") == "guest" and who.get("id") is None,
                        f"me on :{port} after logout on :{i_logout}: {who}")
                st = status_of(sessions_list(port, s["access"]))
                self.ok(st == 401, f"sessions on :{port} after logout on :{i_logout}: {st} (want 401)")
                st = status_of(refresh(port, s["refresh"]))
                self.ok(st == 401, f"refresh on :{port} after logout on :{i_logout}: {st} (want 401)")
                act = introspect(port, self.admin, s["access"]).json().get("active")
                self.ok(act is False, f"introspect on :{port} after logout: active={act}")
            self.stats.note(f"login :{i_login}, logout :{i_logout}; refused on :{i_after} and :{i_login}")

    # b
    def shared_limits(self):
        p = self.ports
        victim = "b" + uuid.uuid4().hex[:12]
        self.ok(status_of(signup(p[0], victim)) == 201, "signup of the lockout victim failed")
        n = 30

        def guess(i):
            return status_of(login(p[i % 3], victim, "wrong password " + str(i), ip=f"198.51.100.{i + 1}"))

        with concurrent.futures.ThreadPoolExecutor(12) as pool:
            got = list(pool.map(guess, range(n)))
        n401, n429 = got.count(401), got.count(429)
        self.stats.note(f"lockout: {n} parallel wrong passwords over 3 instances: {n401}x401 (reached the "
                        f"password check), {n429}x429, others {[g for g in got if g not in (401, 429)]}")
        self.ok(1 <= n401 <= LOCKOUT_THRESHOLD, f"lockout: {n401} attempts reached the password check "
                                                f"(threshold {LOCKOUT_THRESHOLD})")
        self.ok(n401 + n429 == n, "lockout: answers other than 401/429")
        st = status_of(login(p[1], victim, ip="198.51.100.200"))
        self.ok(st == 429, f"lockout: the right password while locked answered {st} (want 429)")

        ip = "203.0.113.9"
        m = 3 * LOGIN_LIMIT
        started = time.time()

        def same_ip(i):
            return status_of(login(p[i % 3], "nobody" + uuid.uuid4().hex[:10], "wrong password", ip=ip))

        with concurrent.futures.ThreadPoolExecutor(9) as pool:
            got = list(pool.map(same_ip, range(m)))
        elapsed = time.time() - started
        passed, n429 = got.count(401), got.count(429)
        allowed = LOGIN_LIMIT + int(elapsed * LOGIN_LIMIT / LOGIN_WINDOW) + 1
        self.stats.note(f"per-IP login limit {LOGIN_LIMIT}/{int(LOGIN_WINDOW)}s: {m} attempts from one address over "
                        f"3 instances in {elapsed:.1f}s: {passed} passed, {n429}x429")
        self.ok(passed <= allowed and n429 >= 1 and passed + n429 == m,
                f"per-IP limit: {passed} passed (at most {allowed}), {n429}x429, others "
                f"{[g for g in got if g not in (401, 429)]}")

    # c
    def rotate_keys(self):
        old_kid = self.kid_of(self.load_probe_token(self.ports[0]))
        before = self.load_probe_token(self.ports[1])
        t0 = time.time()
        out = cluster("rotate-keys", timeout=60)
        m = re.search(r"activated (\S+)", out)
        new_kid = m.group(1) if m else None
        self.stats.note(f"generated and rotated after the publish delay ({time.time() - t0:.1f}s): "
                        f"{old_kid[:8]}... -> {(new_kid or '?')[:8]}...")
        rotated = time.time()
        pending = set(self.ports)
        deadline = rotated + 15
        while pending and time.time() < deadline:
            for port in list(pending):
                tok = self.load_probe_token(port)
                if tok and self.kid_of(tok) == new_kid:
                    pending.discard(port)
            time.sleep(0.2)
        secs = round(time.time() - rotated, 2)
        self.ok(not pending, f"instances {sorted(pending)} still sign with the old key 15 s after the rotation")
        self.stats.row()["ready"] = f"{secs} (all sign with the new key)"
        try:
            self.consumer.verify(before)
            self.stats.note("a token signed before the rotation still verifies (old key retired, published)")
        except Exception as exc:  # noqa: BLE001
            self.ok(False, f"a token signed before the rotation no longer verifies: {exc}")
        return new_kid

    def load_probe_token(self, port):
        name = self.probe_user
        r = retry(lambda: login(port, name), (200,), 5)
        if status_of(r) == 200:
            tok = r.json()["access_token"]
            self.consumer.submit(tok, self.stats.phase)
            return tok
        return None

    @staticmethod
    def kid_of(token):
        import jwt
        return jwt.get_unverified_header(token)["kid"] if token else None

    # d
    def kill_redis_master(self):
        t0 = time.time()
        out = cluster("kill-redis-master", timeout=60).split()
        self.stats.note(f"master :{out[0]} SIGKILLed; sentinels promoted :{out[1]} "
                        f"({time.time() - t0:.1f}s, old node back as a replica)")
        return t0

    def repair_redis_url(self):
        """Fallback when the binary has no REDIS_SENTINELS: point REDIS_URL at the new master and
        restart the instances one by one, so the later phases run on a working cluster."""
        state = read_state()
        path = state["INSTANCE_ENV"]
        with open(path) as f:
            lines = f.read().splitlines()
        lines = [f"REDIS_URL=redis://127.0.0.1:{state['REDIS_MASTER_PORT']}/0" if l.startswith("REDIS_URL=") else l
                 for l in lines]
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")
        for n in (1, 2, 3):
            cluster("restart-instance", str(n), timeout=60)
            cluster("wait-haproxy-up", str(n), timeout=60)

    # f
    def kill_instance(self):
        cluster("kill-instance", "2")
        self.stats.note("instance 2 SIGKILLed")
        time.sleep(3)
        t0 = time.time()
        cluster("start-instance", "2", timeout=60)
        cluster("wait-haproxy-up", "2", timeout=60)
        self.stats.note(f"instance 2 started again, up in HAProxy after {time.time() - t0:.1f}s")
        return t0

    # g
    def rolling_restart(self):
        delay_seen = []
        for n in (1, 2, 3):
            port = self.ports[n - 1]
            t0 = time.time()
            stopper = subprocess.Popen([CLUSTER, "stop-instance", str(n)], stdout=subprocess.DEVNULL,
                                       stderr=subprocess.PIPE, text=True)
            first_503 = refused = None
            while stopper.poll() is None:
                r = request(port, "GET", "/api/v1/readyz", timeout=1)
                now = time.time() - t0
                if isinstance(r, Answer) and r.status == 503 and first_503 is None:
                    first_503 = now
                if not isinstance(r, Answer) and refused is None:
                    refused = now
                time.sleep(0.1)
            stopped = time.time() - t0
            self.ok(stopper.returncode == 0, f"stop-instance {n}: {stopper.stderr.read()}")
            cluster("start-instance", str(n), timeout=60)
            cluster("wait-haproxy-up", str(n), timeout=60)
            delay_seen.append(first_503 is not None and (refused is None or first_503 < refused))
            def secs(x):
                return "never" if x is None else f"after {x:.2f}s"

            self.stats.note(f"instance {n}: readyz 503 {secs(first_503)}, connections refused {secs(refused)}, "
                            f"exited after {stopped:.2f}s, up in HAProxy {time.time() - t0:.2f}s after SIGTERM")
        if not all(delay_seen):
            self.stats.note("SHUTDOWN_DELAY not in effect: readyz did not answer 503 before the listener closed")

    def haproxy_statuses(self):
        r = request(int(self.state["HAPROXY_STATS_PORT"]), "GET", "/;csv", timeout=2)
        if not isinstance(r, Answer) or r.status != 200:
            return {}
        out = {}
        for line in r.body.decode().splitlines():
            cells = line.split(",")
            if len(cells) > 17 and cells[0] == "instances" and cells[1].startswith("i"):
                out[cells[1]] = cells[17]
        return out

    def wait_haproxy_all_up(self, since, timeout):
        deadline = time.time() + timeout
        while time.time() < deadline:
            st = self.haproxy_statuses()
            if len(st) == 3 and all(v == "UP" for v in st.values()):
                return round(time.time() - since, 2)
            time.sleep(0.1)
        return None

    # ----------------------------------------------------------------------------------
    def phase(self, name, action, before=3.0, after=5.0, fault=False, ready_timeout=40):
        self.stats.set_phase(name)
        print(f"cluster-test: phase {name}", flush=True)
        time.sleep(before)
        t0 = time.time()
        try:
            since = action()
        except Exception as exc:  # noqa: BLE001 - a failing step fails the phase, not the run
            self.stats.violation(f"step failed: {exc}")
            since = t0
        if fault:
            secs = wait_all_ready(self.ports, since or t0, ready_timeout)
            self.stats.row()["ready"] = secs if secs is not None else f"not ready after {ready_timeout}s"
            self.ok(secs is not None, f"not every instance ready {ready_timeout}s after the fault")
            # HAProxy takes them back after `rise 2` good checks; until then it answers 503
            # itself when no instance is up. Failures count as "not recovered" only after that.
            up = self.wait_haproxy_all_up(since or t0, 10)
            self.stats.note(f"every instance ready after {secs}s, all UP in HAProxy after {up}s")
            with self.stats.lock:
                self.stats.after_recovery = True
        time.sleep(after)
        if fault:
            errs = self.stats.row()["after_errors"]
            self.ok(errs == 0, f"{errs} failed requests after every instance was ready again (not recovered)")
        self.check_data()

    def check_data(self):
        self.load.pause()
        self.consumer.drain()
        try:
            self.record_data_check(*data_check(self.load, self.hp))
        finally:
            self.load.resume()

    def record_data_check(self, summary, lost, unverified):
        r = self.stats.row()
        r["data"] = ", ".join([f"{len(lost)} LOST"] * bool(lost) + [f"{len(unverified)} unverified"] * bool(unverified)) or "ok"
        self.stats.note("data check: " + summary)
        for item in lost[:10]:
            self.stats.violation("lost acknowledged write: " + item)
        for item in unverified[:5]:
            self.stats.violation("could not verify (no definitive answer within the check's budget): " + item)

    def run(self):
        self.probe_user = "probe" + uuid.uuid4().hex[:8]
        assert status_of(signup(self.hp, self.probe_user)) == 201
        for _ in range(8):
            name = "u" + uuid.uuid4().hex[:12]
            if status_of(signup(self.hp, name)) == 201:
                self.load.users.append(name)
                r = login(self.hp, name)
                if status_of(r) == 200:
                    self.load.sessions.append(self.load.new_session(name, r))
        self.consumer.thread.start()
        self.load.start()
        self.phase("baseline", lambda: None, before=4, after=0)
        self.phase("a logout on one, refused by all", self.logout_everywhere, before=2, after=2)
        self.phase("b shared lockout and per-IP limit", self.shared_limits, before=1, after=2)
        self.phase("c key rotation", self.rotate_keys, before=2, after=3)
        kids = self.consumer.kids_seen.get("c key rotation", set())
        self.ok(len(kids) >= 2, f"the consumer verified tokens of {len(kids)} kid(s) during the rotation",
                "c key rotation")
        self.phase("d Redis master SIGKILL", self.kill_redis_master, before=4, after=6, fault=True)
        if self.state.get("REDIS_MODE") == "url":
            self.stats.note("REDIS_MODE=url (this binary does not take REDIS_SENTINELS): instances still "
                            "name the old master's port; restarting them with REDIS_URL of the new master")
            self.repair_redis_url()
        self.phase("e PostgreSQL primary stop, standby promoted",
                   lambda: (time.time(), cluster("promote-standby", timeout=60))[0], before=4, after=6, fault=True)
        self.phase("f instance SIGKILL + restart", self.kill_instance, before=4, after=5, fault=True)
        self.phase("g rolling restart", self.rolling_restart, before=2, after=3)
        self.load.shutdown()
        self.stats.set_phase("final data check")
        self.consumer.drain()
        self.record_data_check(*data_check(self.load, self.hp))
        self.consumer.stop.set()

    def verdict(self):
        """Adds the per-phase rules to the violations; returns them all."""
        out = []
        for name in self.stats.order:
            r = self.stats.rows[name]
            key = name.split(" ")[0]
            if r["5xx"]:
                r["violations"].append(f"{r['5xx']} answers 5xx other than 503")
            if r["verify_failed"]:
                r["violations"].append(f"{r['verify_failed']} tokens failed verification at the JWKS consumer")
            if key not in FAULT_PHASES and name not in ("setup", "final data check"):
                bad = r["503"] + r["4xx"] + r["conn"]
                if bad:
                    r["violations"].append(f"{bad} failed requests in a phase without a dependency fault "
                                           f"({r['503']}x503, {r['4xx']} unexpected 4xx, {r['conn']} connection errors)")
            out += [f"{name}: {v}" for v in r["violations"]]
        return out

    def table(self):
        heads = ["phase", "requests", "2xx", "503", "other errors (4xx/5xx/conn)", "tokens verified/failed",
                 "all ready again (s)", "data check", "result"]
        lines = ["| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
        for name in self.stats.order:
            r = self.stats.rows[name]
            if name == "setup":
                continue
            other = r["4xx"] + r["5xx"] + r["conn"]
            cells = [name, r["requests"], r["2xx"], r["503"], f"{other} ({r['4xx']}/{r['5xx']}/{r['conn']})",
                     f"{r['verified']}/{r['verify_failed']}", r["ready"], r["data"],
                     "FAIL" if r["violations"] else "ok"]
            lines.append("| " + " | ".join(str(c) for c in cells) + " |")
        return "\n".join(lines)


def main():
    ensure_pyjwt()
    started = time.time()

    def on_term(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_term)
    test = None
    violations = []
    try:
        print("cluster-test: bringing the cluster up", flush=True)
        up = subprocess.run([CLUSTER, "up"], timeout=300)
        if up.returncode != 0:
            print("cluster-test: scripts/cluster.sh up failed", file=sys.stderr)
            return 1
        state = read_state()
        print(f"cluster-test: up in {time.time() - started:.0f}s (instances use Redis via {state['REDIS_MODE']}); "
              f"load through HAProxy on :{state['HAPROXY_PORT']}", flush=True)
        test = Test(state)
        test.run()
    except KeyboardInterrupt:
        print("cluster-test: interrupted", file=sys.stderr)
        violations.append("interrupted")
    except Exception as exc:  # noqa: BLE001
        violations.append(f"aborted: {type(exc).__name__}: {exc}")
    finally:
        if test:
            test.load.shutdown()
            test.consumer.stop.set()
        subprocess.run([CLUSTER, "down"])
    if test:
        violations = test.verdict() + violations
        print()
        print(test.table())
        print()
        for name in test.stats.order:
            for n in test.stats.rows[name]["notes"][:20]:
                print(f"- {name}: {n}")
    print(f"\ncluster-test: {time.time() - started:.0f}s in all")
    if violations:
        print("\nVIOLATIONS:")
        for v in violations:
            print(f"- {v}")
        print("(instance, Redis, PostgreSQL and HAProxy logs: target/cluster/last-logs/)")
        return 1
    print("cluster-test: no violations")
    return 0


if __name__ == "__main__":
    sys.exit(main())
