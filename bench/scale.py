#!/usr/bin/env python3
"""`make bench-scale`: login and history-page latency on a small database and on a large one.

Starts one instance of the release build with the same production settings as `make bench`
(bench/run.py) against a fresh database, and measures it twice with wrk after a warm-up:

1. small database: the 64 bench users signed up through the API, plus one history user
   (`bench_history`) whose login history is exactly 100 rows over the last 90 days, loaded with
   COPY so that page 1 (50 rows) is full and the total count is fixed;
2. large database: the same, after SCALE_USERS users (`scale_user_<i>`, valid accounts with the
   `user` role and a real argon2id hash) and SCALE_HISTORY login-history rows (10 per user,
   random times over the 365 days before today, random IPv4 addresses, a few user agents, about
   90 % successful) were streamed in with `COPY ... FROM STDIN`, not through the API.

The scenarios are login (c=16, cycling through the 64 bench users, as in `make bench`) and the
first history page of the history user (c=4, GET /api/v1/users/user/history?page=1&size=50).
The history page runs at c=4, below saturation of the two cores, so that its p99 is the page's
own latency rather than the queueing of the load generator and the service on shared cores.
The bound is: login p50 and history-page p99 on the large database within 10 % of the small
database's. A missed bound is reported as "missed", not as a failure: the exit status is 0
whenever the run itself completes. Load times and rates, table sizes and row counts are printed
too, and the result is written as the "Scale" section of docs/BENCHMARKS.md (between the
`<!-- scale:begin -->` and `<!-- scale:end -->` lines; `make bench` keeps that section).

The login-history table holds one partition per month. A deployment that runs `migrate` monthly,
as docs/OPERATIONS.md asks, has a partition for every month of its history; the harness creates
the missing past months' partitions the same way before the first measurement, so that both
phases query the same partitions and only the amount of data differs.

Environment: SCALE_USERS (default 1000000), SCALE_HISTORY (default 10000000), BENCH_SECONDS
(default 10), BENCH_WARMUP (default 2), TEST_DATABASE_ADMIN_URL, BENCHMARKS_PATH (where to write
the section; default docs/BENCHMARKS.md, "-" to write nothing).
"""
import datetime
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import time
import uuid

import run as bench

SCALE_USERS = int(os.environ.get("SCALE_USERS", "1000000"))
SCALE_HISTORY = int(os.environ.get("SCALE_HISTORY", "10000000"))
BENCHMARKS_PATH = os.environ.get("BENCHMARKS_PATH", bench.BENCHMARKS)
HISTORY_USER = "bench_history"
HISTORY_ROWS = 100
CHUNK = 50_000  # rows per write to psql's stdin
BOUND = 1.10  # large-database figure over small-database figure

# A few user agents, CSV-quoted (they contain commas).
AGENTS = [
    '"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36"',
    '"Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15"',
    '"Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0"',
    '"Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148"',
    '"okhttp/4.12.0"',
    '"curl/8.5.0"',
]


def query(url, sql):
    """One psql statement against `url`; returns its unaligned, tuples-only output."""
    return subprocess.run(["psql", url, "-XAtq", "-v", "ON_ERROR_STOP=1", "-c", sql],
                          check=True, capture_output=True, text=True).stdout.strip()


def copy_in(url, target, chunks):
    """Streams CSV text from `chunks` (an iterator of (rows, text)) into `COPY target FROM STDIN`.

    Returns (rows, seconds in total, seconds spent generating the CSV in this process)."""
    started = time.perf_counter()
    generating = 0.0
    rows = 0
    proc = subprocess.Popen(["psql", url, "-Xq", "-v", "ON_ERROR_STOP=1", "-c", f"COPY {target} FROM STDIN (FORMAT csv)"],
                            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
    try:
        it = iter(chunks)
        while True:
            t = time.perf_counter()
            chunk = next(it, None)
            generating += time.perf_counter() - t
            if chunk is None:
                break
            proc.stdin.write(chunk[1].encode())
            rows += chunk[0]
    finally:
        proc.stdin.close()
        proc.wait()
    if proc.returncode != 0:
        raise RuntimeError(f"bench-scale: COPY {target} failed with status {proc.returncode}")
    return rows, time.perf_counter() - started, generating


class Clock:
    """Timestamps as text, fast: one string per day and one per second of the day, joined."""

    def __init__(self, first_day, days):
        self.first = datetime.datetime.combine(first_day, datetime.time(), datetime.timezone.utc)
        self.days = [(first_day + datetime.timedelta(days=d)).isoformat() for d in range(days)]
        self.tods = [f"{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}" for s in range(86400)]

    def at(self, second):
        """The time `second` seconds after the first day's midnight (UTC)."""
        return f"{self.days[second // 86400]} {self.tods[second % 86400]}+00"


def ip_pool(rng, n=65536):
    """Random public-looking IPv4 addresses (no 0/8, 10/8, 127/8 or multicast and above)."""
    firsts = [a for a in range(1, 224) if a not in (10, 127)]
    return [f"{rng.choice(firsts)}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}" for _ in range(n)]


def user_rows(ids, clock, password_hash):
    """users rows: scale_user_<i>, created one after another over the clock's span."""
    span = len(clock.days) * 86400
    quoted_hash = f'"{password_hash}"'  # the PHC string contains commas
    n = len(ids)
    for start in range(0, n, CHUNK):
        lines = []
        for i in range(start, min(start + CHUNK, n)):
            created = clock.at(i * span // n)
            lines.append(f"{ids[i]},scale_user_{i + 1},scale_user_{i + 1}@scale.example,{quoted_hash},t,{created},{created}\n")
        yield len(lines), "".join(lines)


def role_rows(ids, role_id):
    """user_roles rows: every scale user holds the `user` role."""
    for start in range(0, len(ids), CHUNK):
        part = ids[start:start + CHUNK]
        yield len(part), "".join(f"{u},{role_id}\n" for u in part)


def history_rows(ids, total, clock, ips, rng):
    """login_history rows: rounds of one row per user in a shuffled order (so that one user's rows
    are spread over the table, as they are when written one login at a time), at random times."""
    seconds = len(clock.days) * 86400
    done = 0
    while done < total:
        order = ids[:]
        rng.shuffle(order)
        order = order[:total - done]
        for start in range(0, len(order), CHUNK):
            part = order[start:start + CHUNK]
            k = len(part)
            times = [clock.at(s) for s in rng.choices(range(seconds), k=k)]
            rows = zip(part, times, rng.choices(ips, k=k), rng.choices(AGENTS, k=k), rng.choices("tf", weights=(9, 1), k=k))
            yield k, "".join(f"{u},{t},{ip},{ua},{ok}\n" for u, t, ip, ua, ok in rows)
        done += len(order)


def time_ordered_ids(clock, n, rng):
    """Ids like the service's UUIDv7: 48 bits of milliseconds (the user's created_at), then random
    bits; PostgreSQL takes the 32 hex digits without hyphens."""
    span = len(clock.days) * 86400
    first_ms = int(clock.first.timestamp()) * 1000
    rand = rng.randbytes(10 * n).hex()
    return [f"{first_ms + (i * span // n) * 1000:012x}{rand[20 * i:20 * i + 20]}" for i in range(n)]


def past_partitions(url, first_day):
    """Creates login_history_YYYY_MM for every month from `first_day`'s up to the current one,
    as monthly runs of `migrate` would have; the current and coming months exist already."""
    month = first_day.replace(day=1)
    this_month = datetime.datetime.now(datetime.timezone.utc).date().replace(day=1)
    while month < this_month:
        following = (month + datetime.timedelta(days=32)).replace(day=1)
        name = f"login_history_{month:%Y_%m}"
        query(url, f"CREATE TABLE IF NOT EXISTS {name} PARTITION OF login_history "
                   f"FOR VALUES FROM ('{month}') TO ('{following}')")
        month = following


def mib(n):
    return int(n) / (1024 * 1024)


def num(n):
    """1 000 000 rather than 1000000."""
    return f"{n:,.0f}".replace(",", " ")


def main():
    for tool in ("wrk", "psql"):
        if not shutil.which(tool):
            sys.exit(f"bench-scale: {tool} is required (make bench-scale installs wrk with apt-get)")
    if SCALE_USERS < 1 or SCALE_HISTORY < 0:
        sys.exit("bench-scale: SCALE_USERS must be at least 1 and SCALE_HISTORY at least 0")
    os.makedirs(bench.WORK, exist_ok=True)
    run = uuid.uuid4().hex[:8]
    db = f"auth_bench_scale_{run}"
    keys = os.path.join(bench.WORK, f"keys-{run}")
    port = bench.free_port()
    base = f"http://127.0.0.1:{port}"
    env = bench.service_env(run, db, keys, port)
    url = env["DATABASE_URL"]
    binary = os.path.join(bench.REL, "auth-service")
    rng = random.Random(1)

    # Every generated time lies before today (UTC): history over the 365 days before today,
    # accounts created over the 365 days before that. The history user's 100 rows lie in the
    # 90 days before today, so its login rows (today) are easy to tell apart.
    today = datetime.datetime.now(datetime.timezone.utc).date()
    history_clock = Clock(today - datetime.timedelta(days=365), 365)
    account_clock = Clock(today - datetime.timedelta(days=730), 365)
    ips = ip_pool(rng)

    server = None
    bench.psql(f'CREATE DATABASE "{db}"')
    try:
        bench.prepare(binary, env)
        past_partitions(url, history_clock.first.date())
        server, _ = bench.start_service(binary, env, base, os.path.join(bench.WORK, f"server-scale-{run}.log"))

        # Small database: the bench users and the history user, through the API.
        bench.signup_users(base)
        body = f'{{"username":"{HISTORY_USER}","email":"{HISTORY_USER}@bench.example","password":"{bench.PASSWORD}"}}'
        assert bench.http("POST", f"{base}/api/v1/users/signup", body.encode(), bench.JSON)[0] == 201
        history_id = query(url, f"SELECT id FROM users WHERE username = '{HISTORY_USER}'")

        # The history user's 100 rows, the same in both phases.
        seconds = 90 * 86400
        first = 365 * 86400 - seconds  # offset of "90 days before today" on the history clock
        own = [f"{history_id},{history_clock.at(first + s)},{rng.choice(ips)},{rng.choice(AGENTS)},{'t' if rng.random() < 0.9 else 'f'}\n"
               for s in rng.sample(range(seconds), HISTORY_ROWS)]
        copy_in(url, "login_history (user_id, login_time, ip_address, user_agent, successful)", [(HISTORY_ROWS, "".join(own))])

        def history_login():
            """An access token for the history user. Logging in writes a history row; it is removed
            (it is the user's only row from today) so that the user keeps exactly 100."""
            token, _ = bench.login_user(base, HISTORY_USER)
            query(url, f"DELETE FROM login_history WHERE user_id = '{history_id}' AND login_time >= '{today}T00:00:00+00'")
            query(url, "VACUUM ANALYZE login_history")
            count = int(query(url, f"SELECT count(*) FROM login_history WHERE user_id = '{history_id}'"))
            assert count == HISTORY_ROWS, count
            # What the scenario will read: a full page of 50 and the fixed total.
            status, _, page = bench.http("GET", f"{base}/api/v1/users/user/history?page=1&size=50",
                                         headers={"Authorization": f"Bearer {token}"})
            page = json.loads(page)
            assert status == 200 and len(page["items"]) == 50 and page["total"] == HISTORY_ROWS, (status, page.get("total"))
            return token

        def measure():
            """VACUUM ANALYZE and CHECKPOINT (so that neither falls into the measurement), a fresh
            token for the history user, then the two scenarios."""
            query(url, "VACUUM ANALYZE")
            token = history_login()
            query(url, "CHECKPOINT")
            return {
                "login": bench.run_scenario(base, "login", 2, 16, {"USERS": str(bench.USERS), "PASSWORD": bench.PASSWORD}),
                "history": bench.run_scenario(base, "history", 2, 4, {"TOKEN": token}),
            }

        print("bench-scale: measuring the small database", flush=True)
        small = measure()

        # Load: accounts, their role, their history, with COPY.
        print(f"bench-scale: loading {SCALE_USERS} users and {SCALE_HISTORY} history rows", flush=True)
        password_hash = query(url, "SELECT password_hash FROM users WHERE username = 'bench_user_1'")
        role_id = query(url, "SELECT id FROM roles WHERE lower(name) = 'user'")
        ids = time_ordered_ids(account_clock, SCALE_USERS, rng)
        loads = []
        for table, target, rows in (
            ("users", "users (id, username, email, password_hash, is_active, created_at, updated_at)",
             user_rows(ids, account_clock, password_hash)),
            ("user_roles", "user_roles (user_id, role_id)", role_rows(ids, role_id)),
            ("login_history", "login_history (user_id, login_time, ip_address, user_agent, successful)",
             history_rows(ids, SCALE_HISTORY, history_clock, ips, rng)),
        ):
            n, secs, gen = copy_in(url, target, rows)
            loads.append((table, n, secs, gen))
            print(f"bench-scale: COPY {table}: {num(n)} rows in {secs:.1f} s ({num(n / secs)} rows/s; "
                  f"{gen:.1f} s of it generating the CSV)", flush=True)
        del ids
        started = time.perf_counter()
        query(url, "VACUUM ANALYZE")
        vacuum_s = time.perf_counter() - started

        print("bench-scale: measuring the large database", flush=True)
        large = measure()

        # What the large database holds.
        counts = {t: int(query(url, f"SELECT count(*) FROM {t}")) for t in ("users", "user_roles", "login_history")}
        sizes = {
            "users": mib(query(url, "SELECT pg_total_relation_size('users')")),
            "user_roles": mib(query(url, "SELECT pg_total_relation_size('user_roles')")),
            "login_history": mib(query(url, "SELECT sum(pg_total_relation_size(relid)) FROM pg_partition_tree('login_history')")),
        }
        partitions = int(query(url, "SELECT count(*) FROM pg_partition_tree('login_history') WHERE isleaf"))
    finally:
        if server:
            server.terminate()
            server.wait()
        bench.psql(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        shutil.rmtree(keys, ignore_errors=True)

    # The report.
    def row(name, key, field, bound):
        a, b = small[key][field], large[key][field]
        ratio = b / a if a else float("nan")
        verdict = ("yes" if ratio <= BOUND else "no (missed)") if bound else ""
        fmt = "{:.0f}" if field == "rps" else "{:.2f}"
        return f"| {name} | {fmt.format(a)} | {fmt.format(b)} | {ratio:.2f} | {verdict} |", (not bound or ratio <= BOUND)

    rows = [
        row("login p50 ms", "login", "p50_ms", True),
        row("history page p99 ms", "history", "p99_ms", True),
        row("login p99 ms", "login", "p99_ms", False),
        row("history page p50 ms", "history", "p50_ms", False),
        row("login requests/s", "login", "rps", False),
        row("history page requests/s", "history", "rps", False),
    ]
    errors = {phase: sum(r["errors"] + r["socket_errors"] for r in res.values()) for phase, res in (("small", small), ("large", large))}
    lines = [
        "| metric | small DB | large DB | ratio | within 10 % |",
        "|---|---|---|---|---|",
        *(line for line, _ in rows),
        f"| errors (non-2xx and socket) | {errors['small']} | {errors['large']} | | |",
    ]
    table = "\n".join(lines)
    all_within = all(ok for _, ok in rows)
    verdict = ("both bounds held: login p50 and history-page p99 within 10 % of the small database"
               if all_within else "bound missed: see the rows marked \"no (missed)\"")
    summary = [f"- COPY {t}: {num(n)} rows in {s:.1f} s, {num(n / s)} rows/s (generating the CSV in Python: {g:.1f} s of it)"
               for t, n, s, g in loads]
    summary += [
        f"- VACUUM ANALYZE after the load: {vacuum_s:.1f} s",
        f"- rows present at the end: users {num(counts['users'])}, user_roles {num(counts['user_roles'])}, "
        f"login_history {num(counts['login_history'])}",
        f"- total size (indexes and TOAST included): users {sizes['users']:.0f} MiB, user_roles {sizes['user_roles']:.0f} MiB, "
        f"login_history {sizes['login_history']:.0f} MiB over {partitions} partitions",
    ]
    machine = f"{os.cpu_count()} cores, {bench.cpu_model()}, {platform.system()} {platform.release()}"
    print(table)
    print("\n".join(summary))
    print(f"- machine: {machine}")
    print(f"bench-scale: {verdict}")

    if BENCHMARKS_PATH == "-":
        return
    section = "\n".join([
        bench.SCALE_BEGIN,
        "## Scale (make bench-scale)",
        "",
        "Written by `make bench-scale` (bench/scale.py). One instance with the settings above is measured twice:",
        "on a small database (the 64 bench users, one history user with 100 history rows, and the rows the login",
        f"scenario writes itself), then after {num(SCALE_USERS)} users holding the `user` role and {num(SCALE_HISTORY)}",
        "login-history rows (10 per user, over the 365 days before the run, in monthly partitions) were loaded",
        "with `COPY` and the database vacuumed and analysed. Login (c=16) cycles through the 64 bench users as in",
        "`make bench`; the history page (c=4, below saturation) is page 1 (50 rows, with the total count) of the history user, whose",
        "rows are the same in both phases. The bound: login p50 and history-page p99 on the large database within",
        "10 % of the small database's (ratio = large / small).",
        "",
        f"Machine: {machine}. Run: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
        f"{bench.SECONDS} s per scenario after a {bench.WARMUP} s warm-up. Result: {verdict}.",
        "",
        table,
        "",
        *summary,
        bench.SCALE_END,
        "",
    ])
    try:
        with open(BENCHMARKS_PATH) as f:
            text = f.read()
    except FileNotFoundError:
        text = "# Benchmarks\n"
    begin, end = text.find(bench.SCALE_BEGIN), text.find(bench.SCALE_END)
    if begin >= 0 and end > begin:
        text = text[:begin] + section + text[end + len(bench.SCALE_END):].lstrip("\n")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    with open(BENCHMARKS_PATH, "w") as f:
        f.write(text)


if __name__ == "__main__":
    main()
