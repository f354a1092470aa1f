"""The Jobs Table and the status callback over the web: jobtower (real HTTP, gunicorn) vs Tethys 4.6.1.

    python bench/bench_web.py [--db sqlite|postgresql|both] [--impl both|jobtower|tethys] [--quick]

jobtower: a user with --jobs jobs (default 100,000; the 50 newest Running) is served by
`jobtower serve --no-worker` (gunicorn) on a free loopback port. Timed over HTTP with a logged-in
session: the table page (GET /, 50 rows) and one live refresh of its 50 active rows
(GET /jobs-table/rows/?config=...&ids=...), time to first byte and total; then `wrk` against
`update-job-status/<id>/?token=...` with 2 and 4 gunicorn workers, without and with a monitor heartbeat.

Tethys: bench/peer/tethys_web_workload.py in Tethys's own virtualenv (peer/setup_tethys_venv.sh),
in-process: its JobsTable gizmo page and 50 per-row `update-row` POSTs, at --tethys-jobs sizes.

Prints tables and writes bench/results/web-<time>.json. Exit code 1 if a run failed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import html
import json
import os
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

import benchlib

TETHYS_WORKLOAD = os.path.join(benchlib.HERE, "peer", "tethys_web_workload.py")

USERNAME = "bench"
PASSWORD = "bench-password-not-secret"
SITE_LABEL = "jobtower_site"  # the standalone site's app (jobtower.web.views.SiteApp.package)
FILL_BATCH = 5000

TARGET_PAGE_MS = 50.0
TARGET_REFRESH_MS = 50.0
TARGET_CALLBACK_RPS = 1000.0

FULL = {"jobs": 100_000, "reps": 30, "wrk_seconds": 15, "tethys_jobs": (1000, 100_000)}
QUICK = {"jobs": 10_000, "reps": 10, "wrk_seconds": 5, "tethys_jobs": (1000,)}


log = benchlib.logger("bench_web")


def ms(seconds: float) -> float:
    return round(seconds * 1000.0, 3)


def summary(samples: list[float]) -> dict:
    return {"n": len(samples), "median_ms": ms(statistics.median(samples)),
            "p95_ms": ms(benchlib.percentile(samples, 95)), "min_ms": ms(min(samples)), "max_ms": ms(max(samples))}


# =========================================================================== HTTP over a raw socket


class HttpResult:
    def __init__(self, status: int, headers: dict[str, list[str]], body: bytes, ttfb: float, total: float):
        self.status, self.headers, self.body, self.ttfb, self.total = status, headers, body, ttfb, total


def http_get(port: int, path: str, headers: dict[str, str] | None = None, method: str = "GET",
             body: bytes = b"") -> HttpResult:
    """One request on a new connection, timed from connect(): first byte of the answer, and its end.

    gunicorn's sync workers close the connection after each answer, so the body ends at EOF.
    """
    lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    if body:
        lines.append(f"Content-Length: {len(body)}")
    raw = ("\r\n".join(lines) + "\r\n\r\n").encode() + body
    t0 = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port), timeout=120) as sock:
        sock.sendall(raw)
        chunks = [sock.recv(65536)]
        ttfb = time.perf_counter() - t0
        while True:
            chunk = sock.recv(1 << 20)
            if not chunk:
                break
            chunks.append(chunk)
        total = time.perf_counter() - t0
    data = b"".join(chunks)
    head, _, payload = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    parsed: dict[str, list[str]] = {}
    for line in header_lines:
        key, _, value = line.partition(":")
        parsed.setdefault(key.strip().lower(), []).append(value.strip())
    if "chunked" in ",".join(parsed.get("transfer-encoding", [])):
        payload = _unchunk(payload)
    return HttpResult(int(status_line.split()[1]), parsed, payload, ttfb, total)


def _unchunk(data: bytes) -> bytes:
    out, pos = [], 0
    while True:
        end = data.index(b"\r\n", pos)
        size = int(data[pos:end].split(b";")[0], 16)
        if size == 0:
            return b"".join(out)
        out.append(data[end + 2 : end + 2 + size])
        pos = end + 2 + size + 2


def cookies_from(result: HttpResult) -> dict[str, str]:
    found = {}
    for line in result.headers.get("set-cookie", []):
        name, _, rest = line.partition("=")
        found[name.strip()] = rest.split(";", 1)[0]
    return found


def login(port: int) -> str:
    """Log in through the site's login form; return the Cookie header of the session."""
    page = http_get(port, "/accounts/login/")
    jar = cookies_from(page)
    match = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', page.body)
    if page.status != 200 or not match or "csrftoken" not in jar:
        raise RuntimeError(f"login page: {page.status}, no CSRF token found")
    form = urllib.parse.urlencode({
        "csrfmiddlewaretoken": match.group(1).decode(), "username": USERNAME, "password": PASSWORD, "next": "/",
    }).encode()
    done = http_get(port, "/accounts/login/", method="POST", body=form, headers={
        "Cookie": f"csrftoken={jar['csrftoken']}", "Content-Type": "application/x-www-form-urlencoded",
        "Referer": f"http://127.0.0.1:{port}/accounts/login/",
    })
    jar.update(cookies_from(done))
    if done.status != 302 or "sessionid" not in jar:
        raise RuntimeError(f"login answered {done.status} without a session cookie")
    return f"csrftoken={jar['csrftoken']}; sessionid={jar['sessionid']}"


# =========================================================================== server CPU from /proc

_TICK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            text = fh.read()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()  # fields from 3 (state) on; comm may hold spaces


def server_pids(root: int, pg_database: str | None) -> list[int]:
    """The gunicorn arbiter and its workers, and the PostgreSQL backends serving `pg_database`."""
    pids = [root]
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fields = _stat(int(entry))
        if fields and int(fields[1]) == root:
            pids.append(int(entry))
        elif pg_database:
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as fh:
                    cmd = fh.read()
            except OSError:
                continue
            if cmd.startswith(b"postgres: ") and f" {pg_database} ".encode() in cmd:
                pids.append(int(entry))
    return pids


class CpuMeter:
    """CPU seconds (user + system) used by the server's processes between start() and stop()."""

    def __init__(self, root: int, pg_database: str | None) -> None:
        self.root, self.pg_database = root, pg_database

    def _snapshot(self) -> dict[int, float]:
        out = {}
        for pid in server_pids(self.root, self.pg_database):
            fields = _stat(pid)
            if fields:
                out[pid] = (int(fields[11]) + int(fields[12])) / _TICK
        return out

    def start(self) -> None:
        self.before = self._snapshot()

    def stop(self) -> float:
        after = self._snapshot()  # a backend that ended in between is lost: PostgreSQL's stay (CONN_MAX_AGE)
        return sum(value - self.before.get(pid, 0.0) for pid, value in after.items())


# =========================================================================== the jobtower server


class Server:
    """`jobtower serve --no-worker --workers N` on a free port, as a subprocess (its own process group)."""

    def __init__(self, workers: int, env: dict[str, str], logfile: str) -> None:
        self.port = benchlib.free_port()
        self.workers = workers
        self.log = open(logfile, "ab")  # noqa: SIM115 - the server writes to it until stop()
        cmd = [sys.executable, "-m", "jobtower.cli", "serve", "--host", "127.0.0.1", "--port", str(self.port),
               "--workers", str(workers), "--no-worker"]
        self.proc = subprocess.Popen(cmd, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 60
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"jobtower serve exited with {self.proc.returncode}; see {logfile}")
            try:
                if http_get(self.port, "/accounts/login/").status == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"jobtower serve did not answer within 60 s; see {logfile}")
            time.sleep(0.2)
        log(f"jobtower serve: port {self.port}, {workers} gunicorn workers, pid {self.proc.pid}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # gunicorn's arbiter stops its workers
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()


# =========================================================================== jobtower child (one database)


def seed(n_jobs: int, n_active: int, n_others: int = 0) -> dict:
    """Create the user and its jobs with the ORM (bulk, not timed); the newest `n_active` are Running."""
    from django.contrib.auth import get_user_model
    from django.db import transaction
    from django.utils import timezone

    from jobtower.models import Job, JobEvent

    user = get_user_model().objects.create_user(USERNAME, password=PASSWORD)
    workspace = os.path.join(os.environ["JOBTOWER_HOME"], "workspaces", USERNAME)
    now = timezone.now()
    started = now - dt.timedelta(minutes=5)
    done = 0
    t0 = time.perf_counter()
    while done < n_jobs:
        n = min(FILL_BATCH, n_jobs - done)
        rows = []
        for k in range(done, done + n):
            created = now - dt.timedelta(seconds=n_jobs - k)
            if k >= n_jobs - n_active:
                extra = {"_status": "RUN", "execute_time": started, "start_time": started}
            else:
                extra = {"_status": "COM", "execute_time": created, "start_time": created,
                         "completion_time": created + dt.timedelta(seconds=30)}
            rows.append(Job(job_type="BASIC", label=SITE_LABEL, user=user, name=f"job {k}",
                            description="bench job", workspace=workspace, creation_time=created, **extra))
        with transaction.atomic():
            Job.objects.bulk_create(rows)
        done += n
    active = list(Job.objects.filter(user=user, _status="RUN").order_by("-id").values_list("id", flat=True))
    # the active jobs' history (Pending -> Submitted -> Running), so each row shows how old its status is
    events = []
    for job_id in active:
        events.append(JobEvent(job_id=job_id, from_status="PEN", to_status="SUB", time=started, source="execute"))
        events.append(JobEvent(job_id=job_id, from_status="SUB", to_status="RUN", time=started, source="engine"))
    JobEvent.objects.bulk_create(events)
    log(f"seed: {n_jobs} jobs ({len(active)} Running) in {time.perf_counter() - t0:.1f}s")
    if n_others:
        # another user's jobs, newer than all of the bench user's: the bench user's newest 50 are then
        # no longer at the top of the id index, as in a database shared by many users
        other = get_user_model().objects.create_user(f"{USERNAME}-other")
        done = 0
        while done < n_others:
            n = min(FILL_BATCH, n_others - done)
            with transaction.atomic():
                Job.objects.bulk_create([
                    Job(job_type="BASIC", label=SITE_LABEL, user=other, name=f"other {done + k}",
                        description="bench job", workspace=workspace, _status="COM")
                    for k in range(n)
                ])
            done += n
        log(f"seed: {n_others} jobs of another user")
    return {"user_id": user.pk, "active_ids": active}


def measure_table(port: int, reps: int, warmups: int, expect_rows: int, meter: CpuMeter) -> dict:
    """The page and one refresh of its active rows, over HTTP with a logged-in session; with the CPU
    time the server's processes spent on them (gunicorn, and PostgreSQL's backends)."""
    cookie = login(port)
    page_headers = {"Cookie": cookie, "Accept": "text/html"}
    for _ in range(warmups):  # every gunicorn worker loads templates and opens its connection
        http_get(port, "/", page_headers)
    ttfb, total = [], []
    page = None
    meter.start()
    for _ in range(reps):
        page = http_get(port, "/", page_headers)
        if page.status != 200:
            raise RuntimeError(f"GET / answered {page.status}")
        ttfb.append(page.ttfb)
        total.append(page.total)
    page_cpu = meter.stop()
    text = page.body.decode()
    rows = len(re.findall(r'<tr data-job-id="\d+"', text))
    active = re.findall(r'<tr data-job-id="(\d+)" data-active="1"', text)
    if rows != expect_rows or len(active) != expect_rows:
        raise RuntimeError(f"the page shows {rows} rows, {len(active)} active; expected {expect_rows} of each")
    config = html.unescape(re.search(r'data-config="([^"]+)"', text).group(1))
    refresh_url = html.unescape(re.search(r'data-refresh-url="([^"]+)"', text).group(1))
    out = {"page": {"rows": rows, "active_rows": len(active), "bytes": len(page.body),
                    "ttfb": summary(ttfb), "total": summary(total),
                    "server_cpu_ms_per_request": ms(page_cpu / reps)}}

    # what jobs_table.js asks for: config, ids of the visible active rows, next = the page's path
    query = urllib.parse.urlencode({"config": config, "ids": ",".join(active), "next": "/"})
    path = f"{refresh_url}?{query}"
    rows_headers = {"Cookie": cookie, "Accept": "application/json"}
    for _ in range(warmups):
        http_get(port, path, rows_headers)
    ttfb, total = [], []
    meter.start()
    for _ in range(reps):
        answer = http_get(port, path, rows_headers)
        if answer.status != 200:
            raise RuntimeError(f"GET {refresh_url} answered {answer.status}: {answer.body[:200]!r}")
        ttfb.append(answer.ttfb)
        total.append(answer.total)
    refresh_cpu = meter.stop()
    got = json.loads(answer.body)["rows"]
    if sorted(got) != sorted(active):
        raise RuntimeError(f"the refresh returned {len(got)} rows for {len(active)} ids")
    out["refresh"] = {"rows": len(got), "bytes": len(answer.body), "url_bytes": len(path),
                      "ttfb": summary(ttfb), "total": summary(total),
                      "server_cpu_ms_per_request": ms(refresh_cpu / reps)}
    return out


def timed(fn, reps: int) -> dict:
    """Median/p95 wall and CPU time of `reps` calls of fn()."""
    wall, cpu = [], []
    for _ in range(reps):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return {"wall": summary(wall), "cpu": summary(cpu)}


def in_process(active_ids: list[int], reps: int, profile_path: str | None) -> dict:
    """The same requests through Django's test client in this process (same settings, no HTTP, no other
    process): SQL statements per request, wall and CPU time (CPU time moves less than wall time when
    other processes share the machine). With profile_path: where the time goes, piece by piece, and a
    cProfile of each request written there."""
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from jobtower import manager
    from jobtower.models import Job

    client = Client()
    assert client.login(username=USERNAME, password=PASSWORD)
    page = client.get("/")
    config = html.unescape(re.search(r'data-config="([^"]+)"', page.content.decode()).group(1))
    rows_path = "/jobs-table/rows/?" + urllib.parse.urlencode(
        {"config": config, "ids": ",".join(map(str, active_ids)), "next": "/"})
    job_id = active_ids[0]
    callback_path = f"/update-job-status/{job_id}/?token={manager.callback_token(job_id)}"
    paths = {"page": "/", "refresh": rows_path, "callback": callback_path}
    out: dict = {}
    full_sql: dict[str, list[str]] = {}
    for name, path in paths.items():
        client.get(path)
        with CaptureQueriesContext(connection) as ctx:
            resp = client.get(path)
        assert resp.status_code == 200, (name, resp.status_code)
        full_sql[name] = [q["sql"] for q in ctx.captured_queries]  # before more requests reset the log
        out[name] = {"queries": len(full_sql[name]), "sql": [q[:400] for q in full_sql[name]],
                     **timed(lambda path=path: client.get(path), reps)}
    beat = Heartbeat()
    try:
        time.sleep(1.1)  # monitor_alive() caches its answer for a second
        client.get(callback_path)
        with CaptureQueriesContext(connection) as ctx:
            client.get(callback_path)
        out["callback_monitor"] = {"queries": len(ctx.captured_queries),
                                   "sql": [q["sql"][:400] for q in ctx.captured_queries],
                                   **timed(lambda: client.get(callback_path), reps)}
    finally:
        beat.stop()
    if profile_path:
        out["breakdown"] = breakdown(client, active_ids, config, reps)
        out["profile_file"] = profile_path
        text = profile_text(client, paths, reps, out["breakdown"]) + explain(full_sql)
        with open(profile_path, "w") as fh:  # JSON, so that results/ keeps it out of git
            json.dump({"db": connection.vendor, "text": text}, fh)
            fh.write("\n")
    Job.objects.filter(pk__in=active_ids).update(check_requested=None)
    return out


def breakdown(client, active_ids: list[int], config_token: str, reps: int) -> dict:
    """Time the pieces of the page, the refresh and the callback apart (the calls their views make).

    These reach into jobtower's internals (gizmos, views, manager); a piece whose function is gone is
    skipped, so the rest of the benchmark does not depend on them.
    """
    from django.contrib.auth import get_user_model
    from django.test import RequestFactory

    from jobtower import gizmos, manager
    from jobtower.models import Job
    from jobtower.web.permissions import visible_jobs

    user = get_user_model().objects.get(username=USERNAME)
    request = RequestFactory().get("/")
    request.user = user
    request.session = client.session
    jobs = Job.objects.filter(user=user)
    table = gizmos.JobsTable(  # the site's table, as jobtower.web.views.home builds it
        jobs=jobs,
        column_fields=("id", "name", ("App", "label"), ("Type", "job_type"), "creation_time", "run_time"),
        reverse_sort=True, hover=True, striped=True, refresh_interval=2000,
    )
    config = table.config()
    page_jobs, _ = gizmos._page(jobs, 1, 50, "-id", "", "")
    refresh_jobs = list(gizmos.with_status_since(visible_jobs(user).filter(pk__in=active_ids)))
    job_id = active_ids[0]
    token = manager.callback_token(job_id)
    rows_url = "/jobs-table/rows/?" + urllib.parse.urlencode(
        {"config": config_token, "ids": ",".join(map(str, active_ids)), "next": "/"})
    pieces = {
        "page: the query (_page: 51 rows, sorted, with status_since)":
            lambda: gizmos._page(jobs, 1, 50, "-id", "", ""),
        "page: 50 rows of HTML (TableConfig.row_html)": lambda: [config.row_html(job) for job in page_jobs],
        "page: JobsTable.render() (query + rows + jobs_table.html)": lambda: table.render(request),
        "page: whole view through the test client": lambda: client.get("/"),
        "refresh: TableConfig.load(token)": lambda: gizmos.TableConfig.load(config_token),
        "refresh: the query (visible_jobs + with_status_since, 50 ids)":
            lambda: list(gizmos.with_status_since(visible_jobs(user).filter(pk__in=active_ids))),
        "refresh: 50 rows of HTML (TableConfig.row_html)": lambda: [config.row_html(job) for job in refresh_jobs],
        "refresh: whole view through the test client": lambda: client.get(rows_url),
        "callback: Job.objects.filter(pk=id).first()": lambda: Job.objects.filter(pk=job_id).first(),
        "callback: valid_callback_token()": lambda: manager.valid_callback_token(job_id, token),
        "callback: whole view through the test client":
            lambda: client.get(f"/update-job-status/{job_id}/?token={token}"),
    }
    out = {}
    for name, fn in pieces.items():
        try:
            out[name] = timed(fn, reps)
        except (AttributeError, TypeError) as exc:  # an internal that moved: say so, go on
            log(f"breakdown: skipped {name!r}: {exc}")
    return out


def explain(statements: dict[str, list[str]]) -> str:
    """The database's plan of each statement of the page and the refresh (PostgreSQL: EXPLAIN ANALYZE)."""
    from django.db import connection

    out = []
    for name in ("page", "refresh"):
        for sql in statements.get(name, []):
            if not sql.lstrip().upper().startswith("SELECT"):
                continue
            prefix = "EXPLAIN (ANALYZE, BUFFERS) " if connection.vendor == "postgresql" else "EXPLAIN QUERY PLAN "
            try:
                with connection.cursor() as cur:
                    cur.execute(prefix + sql)
                    plan = "\n".join("  " + " | ".join(str(c) for c in row) for row in cur.fetchall())
            except Exception as exc:  # noqa: BLE001 - the logged SQL is interpolated for display; it may not run
                plan = f"  (could not explain: {exc})"
            out.append(f"\n==== {name}: {sql[:1500]}\n{plan}\n")
    return "".join(out)


def profile_text(client, paths: dict, reps: int, pieces: dict) -> str:
    """The pieces' table, then a cProfile listing of `reps` in-process requests of each path."""
    import cProfile
    import io
    import pstats

    buf = io.StringIO()
    buf.write(f"pieces (median ms over {reps} calls, wall / CPU):\n")
    buf.writelines(f"  {r['wall']['median_ms']:9.2f} / {r['cpu']['median_ms']:9.2f}  {name}\n"
                   for name, r in pieces.items())
    for name, url in paths.items():
        prof = cProfile.Profile()
        for _ in range(reps):
            prof.enable()
            client.get(url)
            prof.disable()
        buf.write(f"\n==== {name}: GET {url[:70]}...  {reps} requests in-process under cProfile\n")
        stats = pstats.Stats(prof, stream=buf)
        stats.sort_stats("cumulative").print_stats(50)
        stats.sort_stats("tottime").print_stats(25)
    return buf.getvalue()


_WRK_LATENCY = re.compile(r"Latency\s+(\S+)\s+(\S+)\s+(\S+)")


def _wrk_time(text: str) -> float | None:
    """wrk's '1.23ms' / '450.00us' / '1.02s' -> milliseconds."""
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if not match:
        return None
    value, unit = float(match.group(1)), match.group(2)
    return round(value * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit], 3)


def run_wrk(url: str, threads: int, connections: int, seconds: int) -> dict:
    cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency", url]
    proc = subprocess.run(cmd, check=False, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=seconds + 60)
    out = proc.stdout
    result: dict = {"command": " ".join(cmd[:-1]) + " URL", "exit_code": proc.returncode}
    if m := re.search(r"Requests/sec:\s+([\d.]+)", out):
        result["requests_per_s"] = float(m.group(1))
    if m := re.search(r"(\d+) requests in ([\d.]+\w+)", out):
        result["requests"] = int(m.group(1))
    if m := _WRK_LATENCY.search(out):
        result["latency_avg_ms"], result["latency_stdev_ms"], result["latency_max_ms"] = (
            _wrk_time(m.group(1)), _wrk_time(m.group(2)), _wrk_time(m.group(3)))
    for pct in ("50", "75", "90", "99"):
        if m := re.search(rf"^\s+{pct}%\s+(\S+)", out, re.MULTILINE):
            result[f"latency_p{pct}_ms"] = _wrk_time(m.group(1))
    result["non_2xx"] = int(m.group(1)) if (m := re.search(r"Non-2xx or 3xx responses: (\d+)", out)) else 0
    if m := re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out):
        result["socket_errors"] = dict(zip(("connect", "read", "write", "timeout"), map(int, m.groups()), strict=True))
    if "requests_per_s" not in result:
        result["error"] = out[-1000:]
    return result


class Heartbeat:
    """A monitor's heartbeat row, kept fresh (every 2 s) while the load runs: the callback then only flags."""

    def __init__(self) -> None:
        from jobtower.models import Worker

        self.row = Worker.objects.create(name=f"bench-monitor-{os.getpid()}", kind="monitor",
                                         host=socket.gethostname(), pid=os.getpid())
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._beat, daemon=True)
        self.thread.start()

    def _beat(self) -> None:
        from django.db import connection
        from django.utils import timezone

        from jobtower.models import Worker

        try:
            while not self.stopping.wait(2.0):
                Worker.objects.filter(pk=self.row.pk).update(heartbeat=timezone.now())
        finally:
            connection.close()

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join()
        self.row.delete()


def measure_callbacks(server: Server, job_id: int, args, meter: CpuMeter) -> dict:
    from jobtower import manager
    from jobtower.models import Job

    path = f"/update-job-status/{job_id}/?token={manager.callback_token(job_id)}"
    url = f"http://127.0.0.1:{server.port}{path}"
    out = {}
    for mode in ("no_monitor", "monitor"):
        Job.objects.filter(pk=job_id).update(check_requested=None)
        beat = Heartbeat() if mode == "monitor" else None
        try:
            if beat:
                time.sleep(1.2)  # each worker caches "is a monitor alive?" for a second
            probe = http_get(server.port, path)
            if probe.status != 200 or json.loads(probe.body) != {"success": True}:
                raise RuntimeError(f"callback answered {probe.status}: {probe.body[:200]!r}")
            bad = http_get(server.port, f"/update-job-status/{job_id}/?token=wrong")
            if bad.status != 403:
                raise RuntimeError(f"a wrong token answered {bad.status}, expected 403")
            log(f"wrk: {server.workers} workers, {mode}, {args.wrk_seconds}s")
            meter.start()
            result = run_wrk(url, args.wrk_threads, args.wrk_connections, args.wrk_seconds)
            used = meter.stop()
            if result.get("requests"):
                result["server_cpu_ms_per_request"] = ms(used / result["requests"])
        finally:
            if beat:
                beat.stop()
        flagged = Job.objects.filter(pk=job_id, check_requested__isnull=False).exists()
        result["job_flagged"] = flagged
        if mode == "monitor" and not flagged:
            result["error"] = "the job was not flagged for the monitor: the callback took another path"
        out[mode] = result
        log(f"  {result.get('requests_per_s')} req/s, p50 {result.get('latency_p50_ms')} ms")
    return out


def jobtower_child(args) -> int:
    """One database: seed, serve, measure; print one JSON object on stdout."""
    os.environ["DJANGO_SETTINGS_MODULE"] = "jobtower.site.settings"
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection, connections

    call_command("migrate", interactive=False, verbosity=0)
    seeded = seed(args.jobs, args.active, args.others)
    analyzed = False
    if args.child_db == "postgresql" and not args.no_analyze:
        # autovacuum analyzes a table this size soon after a bulk load; until then the planner thinks
        # the user has a few dozen jobs (see --no-analyze)
        with connection.cursor() as cur:
            cur.execute("ANALYZE")
        analyzed = True
    connections.close_all()
    env = dict(os.environ)
    report: dict = {"impl": "jobtower", "db": args.child_db, "jobs": args.jobs, "active": args.active,
                    "other_jobs": args.others, "analyzed": analyzed,
                    "reps": args.reps, "versions": versions(connection, args.child_db)}
    logfile = os.path.join(os.environ["JOBTOWER_HOME"], "serve.log")
    pg_database = settings.DATABASES["default"]["NAME"] if args.child_db == "postgresql" else None
    report["callbacks"] = {}
    for n, workers in enumerate(args.workers):
        server = Server(workers, env, logfile)
        meter = CpuMeter(server.proc.pid, pg_database)
        try:
            if n == 0:
                log(f"table: {args.reps} timed requests each (gunicorn {workers} workers)")
                report["table_workers"] = workers
                report.update(measure_table(server.port, args.reps, args.warmups, args.active, meter))
            report["callbacks"][str(workers)] = measure_callbacks(server, seeded["active_ids"][0], args, meter)
        finally:
            server.stop()
    profile_path = None
    if args.profile:
        os.makedirs(benchlib.RESULTS, exist_ok=True)
        profile_path = os.path.join(benchlib.RESULTS, f"web-profile-{args.child_db}-{args.stamp}.json")
    report["in_process"] = in_process(seeded["active_ids"], args.profile_reps, profile_path)
    report["sqlite_options"] = settings.DATABASES["default"].get("OPTIONS") if args.child_db == "sqlite" else None
    report["conn_max_age"] = settings.DATABASES["default"].get("CONN_MAX_AGE", 0)
    connections.close_all()
    json.dump(report, sys.stdout)
    sys.stdout.write("\n")
    return 0


def versions(connection, db: str) -> dict:
    from importlib import metadata

    import django

    connection.ensure_connection()
    return {
        "django": django.__version__, "impl": metadata.version("jobtower"),
        "gunicorn": metadata.version("gunicorn"), "python": sys.version.split()[0],
        "db_server": benchlib.db_server_version(connection),
    }


# =========================================================================== driver


def pg_admin(base: str):
    import psycopg

    parts = urllib.parse.urlsplit(base)
    return psycopg.connect(dbname="postgres", user=parts.username or "postgres", password=parts.password or None,
                           host=parts.hostname or "127.0.0.1", port=parts.port or 5432, autocommit=True)


def pg_drop(base: str, name: str) -> None:
    from psycopg import sql

    with pg_admin(base) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def run_jobtower(db: str, args, scratch: str, secret: str) -> dict:
    home = os.path.join(scratch, f"jobtower-{db}")
    os.makedirs(home)
    env = dict(os.environ, JOBTOWER_HOME=home, JOBTOWER_SECRET_KEY=secret,
               JOBTOWER_ALLOWED_HOSTS="127.0.0.1,localhost,testserver")
    env.pop("DJANGO_SETTINGS_MODULE", None)
    pg_name = None
    if db == "sqlite":
        env["JOBTOWER_DATABASE_URL"] = "sqlite:///" + os.path.join(home, "jobtower.sqlite3")
    else:
        from psycopg import sql

        pg_name = f"jobtower_bench_web_{os.getpid()}"
        pg_drop(args.pg, pg_name)
        with pg_admin(args.pg) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(pg_name)))
        env["JOBTOWER_DATABASE_URL"] = f"{args.pg.rstrip('/')}/{pg_name}"
    cmd = [sys.executable, os.path.abspath(__file__), "--child-db", db, "--jobs", str(args.jobs),
           "--active", str(args.active), "--reps", str(args.reps), "--warmups", str(args.warmups),
           "--workers", ",".join(map(str, args.workers)), "--wrk-seconds", str(args.wrk_seconds),
           "--wrk-threads", str(args.wrk_threads), "--wrk-connections", str(args.wrk_connections),
           "--profile-reps", str(args.profile_reps), "--stamp", args.stamp, "--others", str(args.others)]
    if args.no_analyze:
        cmd.append("--no-analyze")
    if args.profile:
        cmd.append("--profile")
    log(f"jobtower on {db}: {args.jobs:,} jobs")
    try:
        proc = subprocess.run(cmd, check=False, env=env, stdout=subprocess.PIPE, text=True)
    finally:
        if pg_name:
            pg_drop(args.pg, pg_name)
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    if proc.returncode != 0 or not lines:
        return {"impl": "jobtower", "db": db, "error": f"exit code {proc.returncode}", "stdout": proc.stdout[-2000:]}
    return json.loads(lines[-1])


def run_tethys(python: str, db: str, jobs: int, args, scratch: str) -> dict:
    tag = f"tethys-{db}-{jobs}"
    workspace = os.path.join(scratch, tag, "workspace")
    if db == "sqlite":
        url = "sqlite:" + os.path.join(scratch, tag, "db.sqlite3")
        pg_name = None
    else:
        pg_name = f"jobtower_bench_webtethys_{os.getpid()}"
        url = f"{args.pg.rstrip('/')}/{pg_name}"
    big = jobs > 10_000
    cmd = [python, TETHYS_WORKLOAD, "--db", url, "--workspace", workspace, "--jobs", str(jobs),
           "--active", str(args.active),
           "--page-warmups", "0" if big else "1", "--page-reps", "1" if big else "5",
           "--refresh-warmups", "1", "--refresh-reps", "3" if big else "5",
           "--page-budget", str(args.tethys_timeout / 2)]
    log(f"tethys on {db}: {jobs:,} jobs (time limit {args.tethys_timeout}s)")
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        stdout, _ = proc.communicate(timeout=args.tethys_timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        if pg_name:
            pg_drop(args.pg, pg_name)
        return {"impl": "tethys", "db": db, "jobs": jobs,
                "error": f"did not finish within {args.tethys_timeout} s (killed)", "timeout": True}
    finally:
        shutil.rmtree(os.path.join(scratch, tag), ignore_errors=True)
    if pg_name:
        pg_drop(args.pg, pg_name)  # the workload drops it; this covers a crash
    lines = [line for line in stdout.splitlines() if line.strip()]
    if proc.returncode != 0 or not lines:
        return {"impl": "tethys", "db": db, "jobs": jobs, "error": f"exit code {proc.returncode}",
                "stdout": stdout[-2000:]}
    result = json.loads(lines[-1])
    result["wall_s"] = round(time.monotonic() - t0, 1)
    return result


# --------------------------------------------------------------------------- printing


def fmt(value, digits: int = 1) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def grid(rows: list[tuple]) -> str:
    rows = [tuple(str(c) for c in r) for r in rows]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    out = []
    for n, r in enumerate(rows):
        out.append("  ".join(c.ljust(widths[i]) if i == 0 else c.rjust(widths[i]) for i, c in enumerate(r)))
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def verdict(value, target: float, higher: bool = False) -> str:
    if not isinstance(value, (int, float)):
        return "n/a"
    ok = value >= target if higher else value <= target
    return "ok" if ok else "MISSED"


def print_jobtower(run: dict) -> None:
    if "error" in run:
        print(f"jobtower on {run['db']}: FAILED ({run['error']})\n{run.get('stdout', '')}")
        return
    v = run["versions"]
    print(f"== jobtower {v['impl']} on {run['db']} {v['db_server']} (Django {v['django']}, gunicorn {v['gunicorn']}), "
          f"{run['jobs']:,} jobs of one user, {run['active']} Running"
          + (f", {run['other_jobs']:,} newer jobs of another user" if run.get("other_jobs") else "")
          + (", ANALYZEd after the bulk load" if run.get("analyzed") else
             (", not ANALYZEd" if run["db"] == "postgresql" else "")) + "; over HTTP, "
          f"{run['table_workers']} gunicorn workers, {run['reps']} timed requests ==")
    inproc = run.get("in_process", {})
    rows = [("request", "TTFB median", "TTFB p95", "total median", "total p95", "server CPU", "bytes", "SQL",
             "in-process wall", "in-process CPU", "target", "result")]
    for key, label, target in (("page", "table page  GET /", TARGET_PAGE_MS),
                               ("refresh", f"refresh {run['refresh']['rows']} rows  GET /jobs-table/rows/",
                                TARGET_REFRESH_MS)):
        r = run[key]
        rows.append((label, fmt(r["ttfb"]["median_ms"], 2), fmt(r["ttfb"]["p95_ms"], 2),
                     fmt(r["total"]["median_ms"], 2), fmt(r["total"]["p95_ms"], 2),
                     fmt(r.get("server_cpu_ms_per_request"), 2), fmt(r["bytes"]),
                     fmt(inproc.get(key, {}).get("queries")),
                     fmt(inproc.get(key, {}).get("wall", {}).get("median_ms"), 2),
                     fmt(inproc.get(key, {}).get("cpu", {}).get("median_ms"), 2), f"<= {target:.0f} ms",
                     verdict(r["total"]["median_ms"], target)))
    print("times in ms; server CPU = CPU time of gunicorn's processes" + (" and PostgreSQL's backends"
          if run["db"] == "postgresql" else "") + " per request; SQL = statements per request;\n"
          "in-process = the same request through Django's test client in one process (no HTTP), median wall "
          "and CPU time")
    print(grid(rows))
    print()
    rows = [("update-job-status (wrk)", "req/s", "avg ms", "p50 ms", "p90 ms", "p99 ms", "max ms", "errors",
             "server CPU ms/req", "target", "result")]
    for workers, modes in run["callbacks"].items():
        for mode, r in modes.items():
            errs = r.get("non_2xx", 0) + sum((r.get("socket_errors") or {}).values())
            label = f"{workers} workers, " + ("monitor alive (flag only)" if mode == "monitor" else "no monitor")
            rows.append((label, fmt(r.get("requests_per_s")), fmt(r.get("latency_avg_ms"), 2),
                         fmt(r.get("latency_p50_ms"), 2), fmt(r.get("latency_p90_ms"), 2),
                         fmt(r.get("latency_p99_ms"), 2), fmt(r.get("latency_max_ms"), 1), fmt(errs),
                         fmt(r.get("server_cpu_ms_per_request"), 3),
                         f">= {TARGET_CALLBACK_RPS:.0f}/s",
                         verdict(r.get("requests_per_s"), TARGET_CALLBACK_RPS, True)))
    first = next(iter(next(iter(run["callbacks"].values())).values()))
    print(f"{first.get('command', 'wrk')} on loopback, BASIC Running job (no engine call), token in the URL")
    print(grid(rows))
    for key, label in (("callback", "no monitor"), ("callback_monitor", "monitor alive")):
        r = inproc.get(key)
        if r:
            cpu = r["cpu"]["median_ms"]
            print(f"in-process, {label}: {r['queries']} SQL, median {r['wall']['median_ms']:.2f} ms wall, "
                  f"{cpu:.2f} ms CPU per callback (about {1000 / cpu:,.0f} requests/s per busy core)")
    print()
    if inproc.get("breakdown"):
        print("where the time goes (in-process, median ms over "
              f"{next(iter(inproc['breakdown'].values()))['wall']['n']} calls)")
        rows = [("piece", "wall", "CPU")]
        for name, r in inproc["breakdown"].items():
            rows.append((name, fmt(r["wall"]["median_ms"], 2), fmt(r["cpu"]["median_ms"], 2)))
        print(grid(rows))
        print()


def print_tethys(db: str, runs: list[dict], jt: dict | None) -> None:
    good = [r for r in runs if "error" not in r]
    head = f"== Tethys 4.6.1 on {db}"
    if good:
        v = good[0]["versions"]
        head += (f" {v['db_server']} (Django {v['django']}): in-process, django.test.AsyncClient through the "
                 "ASGI handler, one user, the newest 50 jobs Running")
    print(head + " ==")
    rows = [("jobs", "page median", "page p95", "page CPU", "renders", "page bytes",
             "update-row median", "update-row p95", "50 x update-row", "50 x CPU")]
    for r in runs:
        if "error" in r:
            rows.append((fmt(r["jobs"]), r["error"], *[""] * 8))
            continue
        p, f = r["page"], r["refresh"]
        rows.append((fmt(r["jobs"]), fmt(p["median_ms"]), fmt(p["p95_ms"]), fmt(p.get("cpu_median_ms")),
                     fmt(p["reps"]), fmt(p["bytes"]), fmt(f["row_median_ms"], 2), fmt(f["row_p95_ms"], 2),
                     fmt(f["median_ms"]), fmt(f.get("cpu_median_ms"))))
    print("times in ms (medians; CPU = CPU time of the Tethys process); peak memory of the Tethys process: "
          + ", ".join(f"{r['max_rss_mb']:,.0f} MB at {r['jobs']:,} jobs" for r in good if "max_rss_mb" in r))
    print(grid(rows))
    if not (jt and "error" not in jt and good):
        print()
        return
    jp, jr = jt["page"], jt["refresh"]
    ip = jt.get("in_process", {})
    print(f"ratios = Tethys / jobtower (how many times faster, or smaller, jobtower is); jobtower at "
          f"{jt['jobs']:,} jobs: page {jp['total']['median_ms']:.2f} ms over HTTP "
          f"({ip.get('page', {}).get('cpu', {}).get('median_ms', 0):.2f} ms CPU in-process), one refresh of "
          f"{jr['rows']} rows {jr['total']['median_ms']:.2f} ms over HTTP "
          f"({ip.get('refresh', {}).get('cpu', {}).get('median_ms', 0):.2f} ms CPU), page {jp['bytes']:,} bytes")
    rows = [("Tethys jobs", "page time", "page CPU", "page bytes", "refresh time (50 rows)", "refresh CPU")]

    def ratio(a, b) -> str:
        return f"{a / b:,.0f}x" if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b else "n/a"

    for r in good:
        p, f = r["page"], r["refresh"]
        rows.append((fmt(r["jobs"]), ratio(p["median_ms"], jp["total"]["median_ms"]),
                     ratio(p.get("cpu_median_ms"), ip.get("page", {}).get("cpu", {}).get("median_ms")),
                     ratio(p["bytes"], jp["bytes"]), ratio(f["median_ms"], jr["total"]["median_ms"]),
                     ratio(f.get("cpu_median_ms"), ip.get("refresh", {}).get("cpu", {}).get("median_ms"))))
    print(grid(rows))
    print()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--db", choices=("sqlite", "postgresql", "both"), default="both")
    ap.add_argument("--impl", choices=("both", "jobtower", "tethys"), default="both")
    ap.add_argument("--quick", action="store_true", help="10,000 jobs, 10 requests, wrk 5 s, Tethys at 1,000 only")
    ap.add_argument("--jobs", type=int, help="jobtower: jobs of the user (default 100,000)")
    ap.add_argument("--active", type=int, default=50, help="Running jobs among the newest (= rows per page)")
    ap.add_argument("--others", type=int, default=0,
                    help="jobtower: also this many jobs of another user, newer than the bench user's (default 0)")
    ap.add_argument("--no-analyze", action="store_true",
                    help="PostgreSQL: skip the ANALYZE after the bulk load (as if autovacuum had not run yet)")
    ap.add_argument("--reps", type=int, help="timed requests of the page and the refresh (default 30)")
    ap.add_argument("--warmups", type=int, default=6)
    ap.add_argument("--workers", default="2,4", help="gunicorn workers for the callback load, comma-separated")
    ap.add_argument("--wrk-seconds", type=int)
    ap.add_argument("--wrk-threads", type=int, default=2)
    ap.add_argument("--wrk-connections", type=int, default=32)
    ap.add_argument("--tethys-jobs", help="comma-separated Tethys table sizes (default 1000,100000)")
    ap.add_argument("--tethys-timeout", type=int, default=1500, help="seconds allowed for each Tethys size")
    ap.add_argument("--profile", action="store_true",
                    help="cProfile the page and the refresh in-process; writes results/web-profile-<db>-<time>.txt")
    ap.add_argument("--profile-reps", type=int, default=20)
    ap.add_argument("--pg", default=benchlib.PG_SERVER,
                    help="PostgreSQL server URL without database; needs CREATEDB")
    # internal: one jobtower database, run in a child process (Django settings are per process)
    ap.add_argument("--child-db", choices=("sqlite", "postgresql"), help=argparse.SUPPRESS)
    ap.add_argument("--stamp", default=dt.datetime.now().strftime("%Y%m%d-%H%M%S"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    sizes = QUICK if args.quick else FULL
    args.jobs = args.jobs or sizes["jobs"]
    args.reps = args.reps or sizes["reps"]
    args.wrk_seconds = args.wrk_seconds or sizes["wrk_seconds"]
    args.workers = [int(w) for w in str(args.workers).split(",") if w]
    if args.child_db:
        return jobtower_child(args)

    tethys_sizes = [int(n) for n in args.tethys_jobs.split(",")] if args.tethys_jobs else list(sizes["tethys_jobs"])
    dbs = ("sqlite", "postgresql") if args.db == "both" else (args.db,)
    impls = ("jobtower", "tethys") if args.impl == "both" else (args.impl,)
    if "jobtower" in impls and not shutil.which("wrk"):
        raise SystemExit("wrk is not installed: apt-get install -y wrk")
    python = benchlib.tethys_python() if "tethys" in impls else None

    started = dt.datetime.now()
    load_before = os.getloadavg()
    secret = secrets.token_urlsafe(40)  # the server and this script sign callback tokens with it
    runs: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="jobtower-bench-web-") as scratch:
        for db in dbs:
            if "jobtower" in impls:
                runs.append(run_jobtower(db, args, scratch, secret))
            if "tethys" in impls:
                for n in tethys_sizes:
                    runs.append(run_tethys(python, db, n, args, scratch))
    report = {
        "started": started.isoformat(timespec="seconds"),
        "host": {**benchlib.host(), "loadavg_before": load_before, "loadavg_after": os.getloadavg()},
        "params": {"jobs": args.jobs, "active": args.active, "others": args.others, "no_analyze": args.no_analyze,
                   "reps": args.reps, "warmups": args.warmups,
                   "workers": args.workers, "wrk": f"-t{args.wrk_threads} -c{args.wrk_connections} "
                   f"-d{args.wrk_seconds}s", "tethys_jobs": tethys_sizes},
        "targets": {"page_ms": TARGET_PAGE_MS, "refresh_ms": TARGET_REFRESH_MS, "callback_rps": TARGET_CALLBACK_RPS},
        "runs": runs,
    }
    path = benchlib.save_results("web", report, started, indent=2)

    print(f"web benchmark, {os.cpu_count()} CPUs, load average {load_before[0]:.2f} before, "
          f"{report['host']['loadavg_after'][0]:.2f} after (other processes share the machine)")
    print()
    for db in dbs:
        jt = next((r for r in runs if r["impl"] == "jobtower" and r["db"] == db), None)
        if jt:
            print_jobtower(jt)
        te = [r for r in runs if r["impl"] == "tethys" and r["db"] == db]
        if te:
            print_tethys(db, te, jt)
    for r in runs:
        if r["impl"] == "jobtower" and r.get("in_process", {}).get("profile_file"):
            rel = os.path.relpath(r["in_process"]["profile_file"])
            print(f"profile ({r['db']}): python -c 'import json,sys; print(json.load(open(sys.argv[1]))[\"text\"])' "
                  f"{rel}")
    print(f"raw results: {os.path.relpath(path)}")
    failed = [r for r in runs if "error" in r and not r.get("timeout")]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
