#!/usr/bin/env python3
"""`make chaos`: steady mixed load on loopback while dependencies and actors fail.

Starts its own Redis (so stopping it disturbs nothing else on the machine), a fresh database
on the local PostgreSQL, and the service built with the test-only failure hook. Workers keep
signing up, logging in, refreshing, reading a protected route and fetching the JWKS while the
script, phase by phase:

  1. stops Redis for 10 s and starts it again;
  2. kills every PostgreSQL backend connection of the service (pg_terminate_backend);
  3. makes each actor kind fail once through the failure hook;
  4. generates a key and sends SIGHUP for a key reload in the middle of traffic;
  5. makes one UserStore worker fail repeatedly until the restart-intensity limit trips: the
     process must exit with status 3, and is then restarted, as an orchestrator would. While
     the process stops and is down, refused or closed connections are counted apart: that
     outage is the documented escalation;
  6. writes mail to the outbox steadily while making the Mailer fail again and again: every
     mail must reach the script's own SMTP sink (scripts/mail-sink.py).

`CHAOS_ONLY=mail` runs the baseline and phase 6 only.

Per phase it records requests, answers by status, 5xx other than 503 (must be 0), connection
resets and hangs past the request timeout (must be 0; refused connections while the process is
down in phase 5 are counted apart), and how long readyz took to turn 503 after the fault and
back to 200 after recovery. Then the data check: every user whose signup got 201 must log in,
and every session whose refresh last got 200 must refresh again with the token it received.
Prints one table; exits non-zero on any violation.
"""
import http.client
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import uuid

import instance
from instance import ADMIN_URL, ROOT, free_port

BIN = os.environ.get("BIN", os.path.join(ROOT, "target", "debug", "auth-service"))
WORK = os.path.join(ROOT, "target", "chaos")
REQUEST_TIMEOUT = 10.0
WORKERS = int(os.environ.get("CHAOS_WORKERS", "6"))
PASSWORD = "chaos password 1"
ONLY_MAIL = os.environ.get("CHAOS_ONLY") == "mail"


class Service:
    def __init__(self):
        self.run = uuid.uuid4().hex[:8]
        self.db = f"auth_test_chaos_{self.run}"
        self.port = free_port()
        self.redis_port = free_port()
        self.keys = os.path.join(WORK, f"keys-{self.run}")
        self.env = {
            **instance.base_env("chaos", self.run, self.db, self.keys, self.port,
                                redis_url=f"redis://127.0.0.1:{self.redis_port}/0"),
            "ARGON2_MEMORY_KIB": "256",
            "ARGON2_ITERATIONS": "1",
            "RATE_LIMIT_LOGIN": "100000/60s",
            "RATE_LIMIT_LOGIN_ACCOUNT": "100000/60s",
            "RATE_LIMIT_SIGNUP": "100000/60s",
            "RATE_LIMIT_REFRESH": "100000/60s",
            "RATE_LIMIT_DEFAULT": "100000/60s",
            "REFRESH_REUSE_GRACE": "300s",
            "RESTART_MAX": "3",
            "RESTART_WINDOW": "60s",
            "RESTART_BACKOFF_INITIAL": "50ms",
            "RESTART_BACKOFF_MAX": "1s",
            "DEPENDENCY_TIMEOUT": "1s",
            "PROBE_TIMEOUT": "500ms",
            "KEYS_POLL_INTERVAL": "1s",
            "LOG_LEVEL": "warn",
        }
        self.smtp_port = free_port()
        self.inbox_port = free_port()
        self.env.update({
            "SMTP_URL": f"smtp://127.0.0.1:{self.smtp_port}",
            "MAIL_FROM": "chaos <no-reply@chaos.test>",
            "MAIL_POLL_INTERVAL": "200ms",
            "MAIL_RETRY_BASE": "100ms",
            "MAIL_RETRY_MAX": "1s",
        })
        self.redis = None
        self.sink = None
        self.proc = None
        self.log = open(os.path.join(WORK, f"server-{self.run}.log"), "w")

    def start_redis(self):
        self.redis = subprocess.Popen(
            ["redis-server", "--port", str(self.redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", self.redis_port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("redis did not start")

    def stop_redis(self):
        self.redis.terminate()
        self.redis.wait()

    def start_sink(self):
        python = subprocess.run([os.path.join(ROOT, "scripts", "ensure-mail-sink.sh")], check=True,
                                capture_output=True, text=True).stdout.strip()
        self.sink = subprocess.Popen(
            [python, os.path.join(ROOT, "scripts", "mail-sink.py"), "--smtp", f"127.0.0.1:{self.smtp_port}",
             "--http", f"127.0.0.1:{self.inbox_port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", self.smtp_port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("the mail sink did not start")

    def inbox(self):
        """Recipient -> number of mails the sink received for it."""
        _, _, body = request(self.inbox_port, "GET", "/messages", timeout=10)
        counts = {}
        for m in json.loads(body):
            for to in m["to"]:
                counts[to] = counts.get(to, 0) + 1
        return counts

    def setup(self):
        subprocess.run(["psql", ADMIN_URL, "-qc", f'CREATE DATABASE "{self.db}"'], check=True, stdout=subprocess.DEVNULL)
        instance.prepare(BIN, self.env)
        self.start_redis()
        self.start_sink()

    def start(self):
        self.proc, _ = instance.serve(BIN, self.env, self.log, lambda: ready_status(self.port) == 200)

    def teardown(self):
        for p in (self.proc, self.redis, self.sink):
            if p and p.poll() is None:
                p.terminate()
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    p.kill()
        subprocess.run(["psql", ADMIN_URL, "-qc", f'DROP DATABASE IF EXISTS "{self.db}" WITH (FORCE)'],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        subprocess.run(["rm", "-rf", self.keys])


def request(port, method, path, body=None, headers=None, timeout=REQUEST_TIMEOUT):
    """Returns (status, headers, body) or raises the connection error."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.getheaders(), resp.read()
    finally:
        conn.close()


def ready_status(port):
    try:
        return request(port, "GET", "/api/v1/readyz", timeout=2)[0]
    except OSError:
        return None


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.phase = "baseline"
        self.rows = {}
        self.down = False  # the process is intentionally down (escalation phase)

    def row(self, phase):
        return self.rows.setdefault(phase, {"requests": 0, "2xx": 0, "4xx": 0, "503": 0, "other_5xx": 0, "resets": 0,
                                            "hangs": 0, "refused_while_down": 0, "refused": 0, "to_503_s": None,
                                            "to_200_s": None, "notes": []})

    def record(self, outcome):
        with self.lock:
            r = self.row(self.phase)
            r["requests"] += 1
            r[outcome] += 1


def cookie_of(headers):
    for k, v in headers:
        if k.lower() == "set-cookie" and v.startswith("refresh_token=") and not v.startswith("refresh_token=;"):
            return v.split(";", 1)[0].split("=", 1)[1]
    return None


class Load:
    def __init__(self, service, stats):
        self.s = service
        self.stats = stats
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.users = []  # (username, password) whose signup got 201
        self.sessions = []  # dicts {access, refresh, username}; a session is used by one worker at a time
        self.confirmed = {}  # session id -> last refresh token that came with a 200

    def call(self, method, path, body=None, headers=None):
        try:
            status, hdrs, data = request(self.s.port, method, path, body, headers)
        except ConnectionRefusedError:
            self.stats.record("refused_while_down" if self.stats.down else "refused")
            return None
        except (socket.timeout, TimeoutError):
            self.stats.record("hangs")
            return None
        except (ConnectionResetError, BrokenPipeError, http.client.RemoteDisconnected, http.client.BadStatusLine):
            self.stats.record("refused_while_down" if self.stats.down else "resets")
            return None
        except OSError:
            self.stats.record("refused_while_down" if self.stats.down else "resets")
            return None
        if 200 <= status < 300:
            self.stats.record("2xx")
        elif status == 503:
            self.stats.record("503")
        elif 500 <= status:
            self.stats.record("other_5xx")
            with self.stats.lock:
                self.stats.row(self.stats.phase)["notes"].append(f"{status} {method} {path}")
        else:
            self.stats.record("4xx")
        return status, hdrs, data

    def signup(self):
        name = f"c{uuid.uuid4().hex[:12]}"
        body = json.dumps({"username": name, "email": f"{name}@chaos.example", "password": PASSWORD})
        r = self.call("POST", "/api/v1/users/signup", body, {"Content-Type": "application/json"})
        if r and r[0] == 201:
            with self.lock:
                self.users.append(name)

    def login(self):
        with self.lock:
            if not self.users:
                return
            name = random.choice(self.users)
        body = json.dumps({"username": name, "password": PASSWORD})
        r = self.call("POST", "/api/v1/auth/login-json", body, {"Content-Type": "application/json"})
        if r and r[0] == 200:
            token = json.loads(r[2])["access_token"]
            refresh = cookie_of(r[1])
            sid = uuid.uuid4().hex
            with self.lock:
                self.sessions.append({"id": sid, "access": token, "refresh": refresh})
                self.confirmed[sid] = refresh

    def take_session(self):
        with self.lock:
            if not self.sessions:
                return None
            return self.sessions.pop(random.randrange(len(self.sessions)))

    def give_back(self, session):
        with self.lock:
            self.sessions.append(session)

    def refresh(self):
        session = self.take_session()
        if not session:
            return
        try:
            r = self.call("POST", "/api/v1/auth/refresh", None, {"Cookie": f"refresh_token={session['refresh']}"})
            if r and r[0] == 200:
                session["refresh"] = cookie_of(r[1])
                session["access"] = json.loads(r[2])["access_token"]
                with self.lock:
                    self.confirmed[session["id"]] = session["refresh"]
        finally:
            self.give_back(session)

    def read(self):
        session = self.take_session()
        if not session:
            return
        try:
            self.call("GET", "/api/v1/sessions", None, {"Authorization": f"Bearer {session['access']}"})
        finally:
            self.give_back(session)

    def jwks(self):
        self.call("GET", "/.well-known/jwks.json")

    def worker(self):
        ops = [(self.signup, 10), (self.login, 15), (self.refresh, 25), (self.read, 30), (self.jwks, 20)]
        funcs = [f for f, w in ops for _ in range(w)]
        while not self.stop.is_set():
            random.choice(funcs)()
            time.sleep(0.005)


class ReadyMonitor:
    """Polls readyz every 100 ms and remembers when it changed."""

    def __init__(self, port):
        self.port = port
        self.history = []  # (time, status)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.loop, daemon=True)

    def loop(self):
        while not self.stop.is_set():
            self.history.append((time.time(), ready_status(self.port)))
            time.sleep(0.1)

    def first(self, after, predicate, timeout):
        deadline = after + timeout
        while time.time() < deadline:
            for t, status in list(self.history):
                if t >= after and predicate(status):
                    return t
            time.sleep(0.05)
        return None


def metric(port, name):
    try:
        status, _, body = request(port, "GET", "/metrics", timeout=5)
    except OSError:
        return None
    for line in body.decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return 0.0


def main():
    service = Service()
    stats = Stats()
    service.setup()
    violations = []
    try:
        service.start()
        load = Load(service, stats)
        monitor = ReadyMonitor(service.port)
        monitor.thread.start()
        threads = [threading.Thread(target=load.worker, daemon=True) for _ in range(WORKERS)]
        for t in threads:
            t.start()

        def phase(name):
            with stats.lock:
                stats.phase = name
                stats.row(name)

        def note(name, text):
            with stats.lock:
                stats.row(name)["notes"].append(text)

        def recovery(name, fault_at, recovered_at, expect_503=True):
            r = stats.row(name)
            t503 = monitor.first(fault_at, lambda s: s != 200, 15)
            r["to_503_s"] = None if t503 is None else round(t503 - fault_at, 2)
            if expect_503 and t503 is None:
                violations.append(f"{name}: readyz never turned 503")
            t200 = monitor.first(recovered_at, lambda s: s == 200, 30)
            r["to_200_s"] = None if t200 is None else round(t200 - recovered_at, 2)
            if t200 is None:
                violations.append(f"{name}: readyz did not return to 200")

        phase("baseline")
        time.sleep(8)

        if not ONLY_MAIL:
            phase("redis stopped 10 s")
            fault = time.time()
            service.stop_redis()
            time.sleep(10)
            service.start_redis()
            recovered = time.time()
            recovery("redis stopped 10 s", fault, recovered)
            time.sleep(3)

            phase("postgres backends killed")
            fault = time.time()
            subprocess.run(["psql", ADMIN_URL, "-qtAc",
                            f"SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = '{service.db}'"],
                           check=True, stdout=subprocess.DEVNULL)
            recovery("postgres backends killed", fault, fault, expect_503=False)
            time.sleep(5)

            phase("each actor fails once")
            fault = time.time()
            for kind in ("key_manager", "rate_limiter", "health", "user_store"):
                status = request(service.port, "POST", f"/api/v1/_test/fail/{kind}")[0]
                note("each actor fails once", f"{kind}: hook {status}")
                time.sleep(1.5)
            recovery("each actor fails once", fault, time.time(), expect_503=False)
            time.sleep(2)

            phase("SIGHUP key reload")
            subprocess.run([BIN, "keys", "generate", "--alg", "ES256"], env=service.env, check=True, stdout=subprocess.DEVNULL)
            service.proc.send_signal(signal.SIGHUP)
            time.sleep(0.5)
            keys = json.loads(request(service.port, "GET", "/.well-known/jwks.json")[2])["keys"]
            note("SIGHUP key reload", f"JWKS has {len(keys)} keys after reload")
            if len(keys) != 2:
                violations.append("SIGHUP: the new key was not published")
            time.sleep(5)

            name = "restart intensity (exit 3, restarted)"
            phase(name)
            fault = time.time()
            exit_code = None
            for attempt in range(12):
                before = metric(service.port, 'auth_actor_restarts_total{actor="user_store"}')
                # From here until the restart is seen (or the replacement process is ready), refused
                # and closed connections are the documented escalation, not a fault of the service.
                stats.down = True
                try:
                    request(service.port, "POST", "/api/v1/_test/fail/user_store?worker=0", timeout=5)
                except OSError:
                    pass
                deadline = time.time() + 10
                while time.time() < deadline:
                    if service.proc.poll() is not None:
                        break
                    now = metric(service.port, 'auth_actor_restarts_total{actor="user_store"}')
                    if now is not None and before is not None and now > before:
                        stats.down = False
                        break
                    time.sleep(0.05)
                if service.proc.poll() is not None:
                    exit_code = service.proc.wait()
                    note(name, f"process exited with status {exit_code} after {attempt + 1} injected failures")
                    break
            if exit_code != 3:
                violations.append(f"restart intensity: expected exit status 3, got {exit_code}")
            time.sleep(1)
            service.start()
            stats.down = False
            recovery(name, fault, time.time(), expect_503=False)
            time.sleep(4)

        name = "mailer fails while mail flows"
        phase(name)
        written = []
        producing = threading.Event()

        def produce():
            i = 0
            while not producing.is_set():
                to = f"chaos-{service.run}-{i}@example.com"
                subprocess.run(["psql", service.env["DATABASE_URL"], "-qc",
                                "INSERT INTO mail_outbox (id, kind, recipient, subject, body_text, body_html) "
                                f"VALUES (gen_random_uuid(), 'chaos', '{to}', 'chaos {i}', 'text {i}', '<p>html {i}</p>')"],
                               check=True, stdout=subprocess.DEVNULL)
                written.append(to)
                i += 1
                time.sleep(0.05)

        producer = threading.Thread(target=produce, daemon=True)
        producer.start()
        restarts_before = metric(service.port, 'auth_actor_restarts_total{actor="mailer"}') or 0.0
        for _ in range(5):
            time.sleep(1)
            status = request(service.port, "POST", "/api/v1/_test/fail/mailer")[0]
            if status != 202:
                violations.append(f"{name}: the failure hook answered {status}")
        time.sleep(1)
        producing.set()
        producer.join(timeout=30)
        deadline = time.time() + 60
        inbox = {}
        while time.time() < deadline:
            inbox = service.inbox()
            if all(to in inbox for to in written):
                break
            time.sleep(0.5)
        missing = [to for to in written if to not in inbox]
        duplicated = sum(1 for to in written if inbox.get(to, 0) > 1)
        restarts = (metric(service.port, 'auth_actor_restarts_total{actor="mailer"}') or 0.0) - restarts_before
        note(name, f"{len(written)} mails written, {len(written) - len(missing)} delivered, {duplicated} more than once; "
                   f"mailer restarted {int(restarts)} times")
        if missing:
            violations.append(f"{name}: {len(missing)} of {len(written)} mails never arrived")
        if restarts < 5:
            violations.append(f"{name}: the mailer restarted {int(restarts)} times, expected 5")
        time.sleep(2)

        load.stop.set()
        for t in threads:
            t.join(timeout=REQUEST_TIMEOUT + 5)
        monitor.stop.set()

        # Data check.
        phase("data check")
        failed_logins = 0
        for name_ in load.users:
            body = json.dumps({"username": name_, "password": PASSWORD})
            r = request(service.port, "POST", "/api/v1/auth/login-json", body, {"Content-Type": "application/json"})
            if r[0] != 200:
                failed_logins += 1
        failed_refresh = 0
        for sid, token in load.confirmed.items():
            r = request(service.port, "POST", "/api/v1/auth/refresh", None, {"Cookie": f"refresh_token={token}"})
            if r[0] != 200:
                failed_refresh += 1
        note("data check", f"{len(load.users)} signed-up users log in: {len(load.users) - failed_logins} ok, {failed_logins} failed")
        note("data check", f"{len(load.confirmed)} sessions refresh with their last token: "
                           f"{len(load.confirmed) - failed_refresh} ok, {failed_refresh} failed")
        if failed_logins:
            violations.append(f"data check: {failed_logins} signed-up users cannot log in")
        if failed_refresh:
            violations.append(f"data check: {failed_refresh} sessions lost")
        reuse = subprocess.run(["psql", service.env["DATABASE_URL"], "-qtAc",
                                "SELECT count(*) FROM refresh_families WHERE revoke_reason = 'reuse_detected'"],
                               capture_output=True, text=True, check=True).stdout.strip()
        note("data check", f"sessions revoked by reuse detection: {reuse}")
        if reuse != "0":
            violations.append("data check: sessions were revoked as reused")
    finally:
        service.teardown()

    headers = ["phase", "requests", "2xx", "4xx", "503", "other 5xx", "resets", "hangs", "refused/closed while down",
               "readyz 503 after (s)", "readyz 200 after (s)"]
    print("| " + " | ".join(headers) + " |")
    print("|" + "---|" * len(headers))
    for name, r in stats.rows.items():
        if name == "data check":
            continue
        cells = [name, r["requests"], r["2xx"], r["4xx"], r["503"], r["other_5xx"], r["resets"], r["hangs"],
                 r["refused_while_down"], r["to_503_s"] if r["to_503_s"] is not None else "-",
                 r["to_200_s"] if r["to_200_s"] is not None else "-"]
        print("| " + " | ".join(str(c) for c in cells) + " |")
        if r["other_5xx"] or r["resets"] or r["hangs"] or r["refused"]:
            violations.append(f"{name}: {r['other_5xx']} non-503 5xx, {r['resets']} resets, {r['hangs']} hangs, "
                              f"{r['refused']} refused while up")
    for name, r in stats.rows.items():
        for n in r["notes"][:10]:
            print(f"- {name}: {n}")
    if violations:
        print("\nVIOLATIONS:")
        for v in violations:
            print(f"- {v}")
        sys.exit(1)
    print("\nchaos: no violations")


if __name__ == "__main__":
    main()
