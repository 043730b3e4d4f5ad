#!/usr/bin/env python3
"""Login timing: does a failed login take as long for an unknown user as for a known user with a
wrong password?

Usage (from the repository root):

    python3 scripts/timing.py [-n 200]      # starts a throwaway instance via scripts/with-service.sh
    BIN=target/release/auth-service ARGON2_MEMORY_KIB=19456 ARGON2_ITERATIONS=2 RATE_LIMIT_ENABLED=false \\
        scripts/with-service.sh python3 scripts/timing.py --inner [-n 200]

The first form runs the release binary with the production Argon2id parameters (m=19456 KiB, t=2:
exported explicitly, because scripts/with-service.sh otherwise sets cheap ones) and with
RATE_LIMIT_ENABLED=false, so that no attempt is answered 429 or locked out.

It signs up one user, warms up, then makes N login attempts (POST /api/v1/auth/login, form) for an
unknown username and N for the known username with a wrong password, one at a time over one
keep-alive connection, interleaved in pairs whose order alternates (U K, K U, U K, ...) so that
drift affects both sides equally. It prints the medians, p10/p90, the difference of the medians
(in ms and as a percentage of the unknown-user median), a Mann-Whitney U test and a bootstrap 95%
interval of the difference of the medians.

Exit status: 1 when any attempt is not answered 401 or the bodies are not byte-identical; 0
otherwise (the timing is reported, never asserted).
"""

import argparse
import http.client
import json
import math
import os
import random
import statistics
import sys
import time
import urllib.parse

import instance

WARMUP_PAIRS = 10
BOOTSTRAP_ROUNDS = 4000


def outer(args):
    env = instance.release_env("timing")
    if env is None:
        return 1
    env["ARGON2_MEMORY_KIB"] = "19456"
    env["ARGON2_ITERATIONS"] = "2"
    env.pop("ARGON2_PARALLELISM", None)
    env["RATE_LIMIT_ENABLED"] = "false"
    return instance.with_service(__file__, ["--inner", "-n", str(args.n)], env)


class Client:
    """Sequential requests over one keep-alive connection (reopened if the server closes it)."""

    def __init__(self, host, port):
        self.host, self.port = host, port
        self.conn = None

    def request(self, method, path, body, content_type):
        for attempt in (1, 2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
                self.conn.connect()
            try:
                t0 = time.perf_counter_ns()
                self.conn.request(method, path, body=body, headers={"Content-Type": content_type})
                resp = self.conn.getresponse()
                data = resp.read()
                elapsed = (time.perf_counter_ns() - t0) / 1e6
                if resp.getheader("connection", "").lower() == "close":
                    self.conn.close()
                    self.conn = None
                return resp.status, data, elapsed
            except (http.client.HTTPException, ConnectionError):
                self.conn.close()
                self.conn = None
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")


def percentile(xs, q):
    """Linear interpolation between closest ranks (numpy's default)."""
    s = sorted(xs)
    pos = (len(s) - 1) * q
    lo, hi = math.floor(pos), math.ceil(pos)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def mann_whitney(a, b):
    """U of sample a, the normal-approximation two-sided p-value (tie-corrected, with continuity
    correction) and P(a > b) + P(a = b)/2 (0.5: neither side tends to be slower)."""
    n1, n2 = len(a), len(b)
    pooled = sorted([(x, 0) for x in a] + [(x, 1) for x in b])
    ranks = [0.0] * len(pooled)
    ties = 0.0
    i = 0
    while i < len(pooled):
        j = i
        while j + 1 < len(pooled) and pooled[j + 1][0] == pooled[i][0]:
            j += 1
        rank = (i + j) / 2 + 1
        for k in range(i, j + 1):
            ranks[k] = rank
        t = j - i + 1
        ties += t ** 3 - t
        i = j + 1
    r1 = sum(r for r, (_, g) in zip(ranks, pooled) if g == 0)
    u1 = r1 - n1 * (n1 + 1) / 2
    n = n1 + n2
    mean = n1 * n2 / 2
    sd = math.sqrt(n1 * n2 / 12 * ((n + 1) - ties / (n * (n - 1))))
    z = 0.0 if sd == 0 else (abs(u1 - mean) - 0.5) / sd
    p = math.erfc(max(z, 0.0) / math.sqrt(2))
    return u1, (u1 - mean) / sd if sd else 0.0, p, u1 / (n1 * n2)


def bootstrap_median_diff(a, b, rounds=BOOTSTRAP_ROUNDS, seed=1):
    rng = random.Random(seed)
    diffs = []
    for _ in range(rounds):
        ra = [a[rng.randrange(len(a))] for _ in a]
        rb = [b[rng.randrange(len(b))] for _ in b]
        diffs.append(statistics.median(ra) - statistics.median(rb))
    return percentile(diffs, 0.025), percentile(diffs, 0.975)


def inner(args):
    url = os.environ.get("AUTH_URL", "http://127.0.0.1:8080")
    host, port = url.split("//", 1)[1].rstrip("/").split(":")
    client = Client(host, int(port))
    suffix = f"{os.getpid()}{int(time.time()) % 100000}"
    username = f"timing_{suffix}"
    password = "correct horse battery staple"
    unknown = f"nobody_{suffix}"

    status, body, _ = client.request("POST", "/api/v1/users/signup", json.dumps(
        {"username": username, "email": f"{username}@example.com", "password": password}).encode(), "application/json")
    if status != 201:
        print(f"timing: signup answered {status}: {body[:200]!r}", file=sys.stderr)
        return 1

    def login(name, pw):
        form = urllib.parse.urlencode({"username": name, "password": pw}).encode()
        return client.request("POST", "/api/v1/auth/login", form, "application/x-www-form-urlencoded")

    status, body, ok_ms = login(username, password)
    if status != 200:
        print(f"timing: login with the right password answered {status}: {body[:200]!r}", file=sys.stderr)
        return 1

    wrong = "wrong password 12345"
    kinds = {"unknown": (unknown, wrong), "known": (username, wrong)}
    samples = {"unknown": [], "known": []}
    bodies = {}  # body -> count
    statuses = {}  # (kind, status) -> count
    problems = []

    def attempt(kind, record):
        status, body, ms = login(*kinds[kind])
        statuses[(kind, status)] = statuses.get((kind, status), 0) + 1
        bodies[body] = bodies.get(body, 0) + 1
        if status != 401 and len(problems) < 5:
            problems.append(f"{kind}: status {status}, body {body[:200]!r}")
        if record:
            samples[kind].append(ms)

    started = time.monotonic()
    for i in range(WARMUP_PAIRS + args.n):
        order = ("unknown", "known") if i % 2 == 0 else ("known", "unknown")
        for kind in order:
            attempt(kind, record=i >= WARMUP_PAIRS)
    elapsed = time.monotonic() - started

    u, k = samples["unknown"], samples["known"]
    mu, mk = statistics.median(u), statistics.median(k)
    diff = mk - mu
    lo, hi = bootstrap_median_diff(k, u)
    u_stat, z, p, prob = mann_whitney(k, u)
    paired = [kk - uu for uu, kk in zip(u, k)]
    within_noise = p >= 0.05 and lo <= 0 <= hi

    print(f"service {url}: Argon2id m={os.environ.get('ARGON2_MEMORY_KIB')} KiB t={os.environ.get('ARGON2_ITERATIONS')}, "
          f"RATE_LIMIT_ENABLED={os.environ.get('RATE_LIMIT_ENABLED')}; one successful login took {ok_ms:.2f} ms")
    print(f"{args.n} + {args.n} failed logins after {WARMUP_PAIRS} warm-up pairs, sequential, alternating pairs; "
          f"{elapsed:.1f}s")
    print()
    header = f"{'login attempt':<28} {'n':>4} {'median':>10} {'p10':>10} {'p90':>10} {'mean':>10} {'stdev':>9}"
    print(header)
    print("-" * len(header))
    for label, xs in (("unknown username", u), ("known user, wrong password", k)):
        print(f"{label:<28} {len(xs):>4} {statistics.median(xs):>7.2f} ms {percentile(xs, 0.1):>7.2f} ms "
              f"{percentile(xs, 0.9):>7.2f} ms {statistics.mean(xs):>7.2f} ms {statistics.stdev(xs):>6.2f} ms")
    print("-" * len(header))
    print(f"difference of medians (known - unknown): {diff:+.2f} ms = {diff / mu * 100:+.1f} % of the unknown-user median")
    print(f"bootstrap 95% interval of that difference ({BOOTSTRAP_ROUNDS} resamples): [{lo:+.2f}, {hi:+.2f}] ms")
    print(f"paired differences (same pair, known - unknown): median {statistics.median(paired):+.2f} ms, "
          f"p10 {percentile(paired, 0.1):+.2f} ms, p90 {percentile(paired, 0.9):+.2f} ms")
    print(f"Mann-Whitney U = {u_stat:.0f} (z = {z:+.2f}), two-sided p = {p:.3g}; "
          f"P(known slower than unknown) = {prob:.3f} (0.5 = indistinguishable)")
    print("verdict: " + ("difference within noise (p >= 0.05 and the interval contains 0)" if within_noise else
                         "the two cases are distinguishable by latency (p < 0.05 or the interval excludes 0)"))

    print()
    status_text = ", ".join(f"{kind} {st}: {c}" for (kind, st), c in sorted(statuses.items()))
    print(f"statuses: {status_text}")
    failed = False
    if problems or any(st != 401 for (_, st) in statuses):
        failed = True
        for line in problems:
            print(f"  unexpected answer: {line}")
    if len(bodies) == 1:
        print(f"bodies: byte-identical across all {sum(bodies.values())} answers: {next(iter(bodies)).decode(errors='replace')}")
    else:
        failed = True
        print(f"bodies: {len(bodies)} different bodies:")
        for b, c in bodies.items():
            print(f"  {c:>4} x {b[:200]!r}")
    print("RESULT: " + ("FAIL (statuses or bodies differ)" if failed else "ok (401 with identical bodies; timing reported above)"))
    return 1 if failed else 0


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("-n", type=int, default=200, help="attempts of each kind (default 200)")
    p.add_argument("--inner", action="store_true", help="run against AUTH_URL (inside scripts/with-service.sh)")
    args = p.parse_args()
    if args.n < 2:
        p.error("-n must be at least 2")
    sys.exit(inner(args) if args.inner else outer(args))


if __name__ == "__main__":
    main()
