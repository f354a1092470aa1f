"""A million jobs on PostgreSQL: the list, the Jobs Table, the API, the admin and a monitor cycle.

    python bench/bench_scale.py [--rows 1000000] [--users 1000] [--active 10000] [--reps 30]

A fresh database (`jobtower_bench_scale_<pid>`, created and dropped here) is migrated, then filled
with SQL alone (INSERT ... SELECT generate_series, then ANALYZE): --rows job rows over --users users,
the last --active of them active LOCAL jobs, the rest finished (Complete, Error or Aborted), and the
events they imply (3 per finished job, 1 per active one). Each active job has its attempt folder,
which reports nothing new (Submitted, waiting for a worker; no worker runs here), so a monitor cycle
reads 10,000 folders and moves nothing. One user (`bench`) owns 1,000 jobs, 50 of them active.

Timed in this process through Django's test client (as bench_web.py's in-process part): medians of
`list_jobs(user)[:50]`, the Jobs Table page (GET /), one refresh of its 50 active rows, the REST API
list (GET /api/jobs/), the admin changelist (GET /admin/jobtower/job/, as a superuser), and one monitor
cycle over the active jobs (wall and CPU). Printed beside them: the database size, the load average and
the issue's goals with ok/MISSED. --rows 100000 gives a run of about a minute.
"""

from __future__ import annotations

import argparse
import html
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse

import benchlib

PG = benchlib.PG_SERVER
SITE_LABEL = "jobtower_site"  # the standalone site's app: its jobs show on the site's Jobs Table
#: measure -> (goal, unit) from issue 17; None: the issue sets no figure for it.
GOALS = {
    "list_jobs(user)[:50]": 10.0,
    "Jobs Table page  GET /": 50.0,
    "refresh of 50 active rows": 20.0,
    "REST API list  GET /api/jobs/": None,
    "REST API list, superuser (all jobs)": None,
    "admin changelist": None,
    "monitor cycle, CPU": 1000.0,
    "monitor cycle, wall": None,
}


log = benchlib.logger("bench_scale")


def fill(cursor: object, rows: int, users: int, active: int, workspace: str, bench_user: int) -> None:
    """Fill the tables with SQL alone: users, jobs, events; the bench user owns 1/users of each."""
    execute = cursor.execute  # type: ignore[attr-defined]
    first_active = rows - active + 1
    execute(
        "INSERT INTO auth_user (password, is_superuser, username, first_name, last_name, email, is_staff, "
        "is_active, date_joined) SELECT '!', false, 'user' || g, '', '', '', false, true, now() "
        "FROM generate_series(1, %s) g", [users - 1])
    execute("SELECT min(id), max(id) FROM auth_user WHERE username LIKE 'user%%'")
    low, _high = cursor.fetchone()  # type: ignore[attr-defined]
    # Job g: user by g mod users, except that 50 of the active ones (every active/50-th) are the bench
    # user's; finished jobs cycle through Complete, Error, Aborted (8:1:1), created over 400 days.
    execute(f"""
        INSERT INTO jobtower_job (job_type, label, name, description, user_id, workspace, extended_properties,
            spec, engine_data, status, status_message, process_results_function, attempt, creation_time,
            execute_time, start_time, completion_time, progress_message, results_tries, results_status)
        SELECT 'LOCAL', '{SITE_LABEL}', 'sweep run ' || g, '',
            CASE WHEN g >= {first_active} THEN
                    CASE WHEN (g - {first_active}) % {max(1, active // 50)} = 0 THEN {bench_user}
                         ELSE {low} + g % {users - 1} END
                 WHEN g % {users} = 0 THEN {bench_user} ELSE {low} + g % {users - 1} END,
            '{workspace}', '{{}}'::jsonb, '{{"command": ["true"]}}'::jsonb, '{{}}'::jsonb,
            CASE WHEN g >= {first_active} THEN 'SUB' WHEN g % 10 = 1 THEN 'ERR' WHEN g % 10 = 2 THEN 'ABT'
                 ELSE 'COM' END,
            CASE WHEN g >= {first_active} THEN '' WHEN g % 10 = 1 THEN 'exit code 1' WHEN g % 10 = 2
                 THEN 'stopped by a user' ELSE '' END,
            '', 1, t, t, CASE WHEN g >= {first_active} THEN NULL ELSE t + interval '1 second' END,
            CASE WHEN g >= {first_active} THEN NULL ELSE t + interval '1 minute' END, '', 0, ''
        FROM (SELECT g, now() - interval '400 days' * (1 - g::float / {rows}) AS t
              FROM generate_series(1, {rows}) g) s
        """)
    execute("SELECT min(id) FROM jobtower_job")
    base = cursor.fetchone()[0]  # type: ignore[attr-defined]
    execute(f"""
        INSERT INTO jobtower_jobevent (job_id, attempt, from_status, to_status, time, source, message)
        SELECT j.id, 1, m.f, CASE WHEN m.n = 3 THEN j.status ELSE m.t END,
               j.creation_time + m.n * interval '20 seconds', m.src, ''
        FROM jobtower_job j
        JOIN (VALUES (1, 'PEN', 'SUB', 'execute'), (2, 'SUB', 'RUN', 'monitor'), (3, 'RUN', '', 'monitor'))
             AS m(n, f, t, src)
          ON m.n = 1 OR j.id < {base} + {rows - active}
        """)


def show_sql(name: str, fn: object) -> None:
    """Print how many statements `fn` sends, and the plan of its slowest one (--explain)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as ctx:
        fn()  # type: ignore[operator]
    queries = sorted(ctx.captured_queries, key=lambda q: float(q["time"]), reverse=True)
    print(f"\n--- {name}: {len(queries)} statements; slowest {queries[0]['time']} s:\n{queries[0]['sql'][:600]}")
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN ANALYZE " + queries[0]["sql"])
        print("\n".join(row[0] for row in cursor.fetchall()))


def child(db_url: str, rows: int, users: int, active: int, reps: int, explain: bool = False) -> None:
    os.environ["JOBTOWER_DATABASE_URL"] = db_url
    os.environ["DJANGO_SETTINGS_MODULE"] = "jobtower.site.settings"
    import django

    django.setup()
    import warnings

    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client

    import jobtower
    from jobtower.models import Job
    from jobtower.monitor import Monitor

    warnings.filterwarnings("ignore", message="No directory at")  # the site's static files are not built here
    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "testserver"]  # the test client's host
    call_command("migrate", verbosity=0)
    workspace = tempfile.mkdtemp(prefix="jobtower-bench-scale-")
    bench = get_user_model().objects.create_user("bench", "", "bench-password-not-secret")
    admin_user = get_user_model().objects.create_superuser("bench-admin", "", "bench-password-not-secret")
    start = time.perf_counter()
    with connection.cursor() as cursor:
        fill(cursor, rows, users, active, workspace, bench.pk)
        cursor.execute("ANALYZE")
    filled = time.perf_counter() - start
    active_ids = list(Job.objects.filter(_status="SUB").values_list("id", flat=True))
    start = time.perf_counter()
    for pk in active_ids:
        os.makedirs(os.path.join(workspace, f"job_{pk}", "attempts", "1"))
    folders = time.perf_counter() - start
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM jobtower_job")
        job_rows = cursor.fetchone()[0]
        cursor.execute("SELECT count(*) FROM jobtower_jobevent")
        event_rows = cursor.fetchone()[0]
        cursor.execute("SELECT pg_total_relation_size('jobtower_job'), pg_total_relation_size('jobtower_jobevent'), "
                       "pg_database_size(current_database())")
        job_bytes, event_bytes, db_bytes = cursor.fetchone()
    log(f"filled {job_rows:,} jobs and {event_rows:,} events in {filled:.1f} s, {len(active_ids):,} folders "
        f"in {folders:.1f} s")

    class Site(jobtower.AppBase):
        package = SITE_LABEL
        name = "Bench"

    manager = Site.get_job_manager()
    client = Client()
    client.force_login(bench)
    admin_client = Client()
    admin_client.force_login(admin_user)
    page = client.get("/")
    assert page.status_code == 200, page.status_code
    config = html.unescape(re.search(r'data-config="([^"]+)"', page.content.decode()).group(1))  # type: ignore[union-attr]
    mine = list(Job.objects.filter(user=bench, _status="SUB").order_by("-id").values_list("id", flat=True)[:50])
    rows_path = "/jobs-table/rows/?" + urllib.parse.urlencode(
        {"config": config, "ids": ",".join(map(str, mine)), "next": "/"})

    def get(path: str, client: Client = client) -> None:
        answer = client.get(path)
        assert answer.status_code == 200, (path, answer.status_code, answer.content[:300])

    measures = {
        "list_jobs(user)[:50]": lambda: list(manager.list_jobs(user=bench)[:50]),
        "Jobs Table page  GET /": lambda: get("/"),
        "refresh of 50 active rows": lambda: get(rows_path),
        "REST API list  GET /api/jobs/": lambda: get("/api/jobs/"),
        "REST API list, superuser (all jobs)": lambda: get("/api/jobs/", admin_client),
        "admin changelist": lambda: get("/admin/jobtower/job/", admin_client),
    }
    results: dict[str, float] = {}
    for name, fn in measures.items():
        fn()
        if explain:
            show_sql(name, fn)
        fn()
        samples = []
        for _ in range(reps):
            t0 = time.perf_counter()
            fn()
            samples.append(time.perf_counter() - t0)
        results[name] = statistics.median(samples) * 1000
    monitor = Monitor(results_threads=0, delivery_thread=False)
    # As `jobtower monitor` does: it takes (renews) the lease before each cycle, untimed, and its polls
    # and writes are fenced by it.
    assert monitor.lead(), "the bench's monitor could not take the monitors' lease"
    monitor.cycle()  # warm-up: imports, the backend
    wall, cpu = [], []
    cycles = max(3, reps // 10)
    for _ in range(cycles):
        monitor.lead()
        t0, c0 = time.perf_counter(), time.process_time()
        monitor.cycle()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    assert monitor.polls == 1 + cycles, f"{monitor.polls} polls in {1 + cycles} cycles: a cycle stood down"
    if explain:
        import cProfile
        import pstats

        monitor.lead()
        profile = cProfile.Profile()
        profile.runcall(monitor.cycle)
        print("\n--- one monitor cycle, by cumulative time:")
        pstats.Stats(profile, stream=sys.stdout).sort_stats("cumulative").print_stats(30)
    results["monitor cycle, CPU"] = statistics.median(cpu) * 1000
    results["monitor cycle, wall"] = statistics.median(wall) * 1000
    assert Job.objects.filter(_status="SUB").count() == len(active_ids), "the monitor moved a job"

    listed = admin_client.get("/api/jobs/").json()
    counted = (f"superuser API list: count {listed['count']:,}, "
               f"{'the planner' + chr(39) + 's estimate' if listed.get('count_estimated') else 'counted (COUNT(*))'}")
    load = os.getloadavg()
    print(f"\nPostgreSQL {connection.pg_version // 10000}, {os.cpu_count()} CPUs, load average "
          f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print(f"jobtower_job: {job_rows:,} rows, {job_bytes / 2**20:,.0f} MiB; jobtower_jobevent: {event_rows:,} rows, "
          f"{event_bytes / 2**20:,.0f} MiB; database {db_bytes / 2**20:,.0f} MiB; {len(active_ids):,} active LOCAL "
          f"jobs; the measured user has {Job.objects.filter(user=bench).count():,} jobs")
    print(counted)
    print(f"{'measure':<32} {'median ms':>10} {'goal ms':>8}  ")
    for name, value in results.items():
        goal = GOALS[name]
        verdict = "" if goal is None else ("ok" if value <= goal else "MISSED")
        print(f"{name:<32} {value:>10.2f} {'-' if goal is None else f'<= {goal:g}':>8}  {verdict}")
    shutil.rmtree(workspace, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000, help="job rows (default 1,000,000)")
    ap.add_argument("--users", type=int, default=1000)
    ap.add_argument("--active", type=int, default=10_000, help="active LOCAL jobs among the rows")
    ap.add_argument("--reps", type=int, default=30)
    ap.add_argument("--explain", action="store_true", help="print each measure's slowest statement and its plan")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.active * 2 > args.rows or args.users < 2:
        ap.error("--active must be at most half of --rows, and --users at least 2")
    if args.child:
        child(args.child, args.rows, args.users, args.active, args.reps, args.explain)
        return 0
    name = f"jobtower_bench_scale_{os.getpid()}"
    subprocess.run(["psql", f"{PG}/postgres", "-qc", f"CREATE DATABASE {name}"], check=True)
    try:
        with tempfile.TemporaryDirectory() as home:
            return subprocess.run(
                [sys.executable, __file__, "--child", f"{PG}/{name}", "--rows", str(args.rows), "--users",
                 str(args.users), "--active", str(args.active), "--reps", str(args.reps),
                 *(["--explain"] if args.explain else [])],
                env={**os.environ, "JOBTOWER_HOME": home},
            ).returncode
    finally:
        subprocess.run(["psql", f"{PG}/postgres", "-qc", f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"])


if __name__ == "__main__":
    sys.exit(main())
