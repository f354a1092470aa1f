"""One Jobs API workload, run against either Tethys Platform (the peer) or jobtower.

    python bench/core_workload.py --impl tethys|jobtower \
        --db sqlite:/path/file.sqlite3 | postgresql://postgres@127.0.0.1:5432/DBNAME \
        --workspace DIR [--n-create 10000] [--n-table 100000] [--n-status 1000]

The two implementations differ only in how Django is configured (``configure_*``), which app base
class is imported and how the table is pre-filled (``fill_*``, outside any timing). Every timed step
calls the public Jobs API the same way. Prints one JSON object on stdout; logs go to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import statistics
import sys
import time
import types
import urllib.parse
from collections.abc import Callable
from importlib import metadata
from typing import Any

import benchlib

APP_PACKAGE = "bench_app"
APP_NAME = "Bench"
N_USERS = 10
LIST_PAGE = 50
LIST_WARMUPS = 3
LIST_REPS = 30
GET_CALLS = 300
SEED = 20240611
FILL_BATCH = 2000
RAW_ROUNDS = 5

SQLITE_OPTIONS = {
    "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    "transaction_mode": "IMMEDIATE",
}
WRITE_VERBS = ("INSERT", "UPDATE", "DELETE", "REPLACE")
WRITE_AFTER_CTE = re.compile(r"\)\s*(INSERT|UPDATE|DELETE|REPLACE)\s", re.IGNORECASE)
# Transaction control is counted apart: on SQLite Django sends "BEGIN IMMEDIATE" through the cursor
# (so an execute_wrapper sees it), on PostgreSQL psycopg opens transactions implicitly (unseen).
TX_VERBS = ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE")


#: The Django apps both implementations install first.
DJANGO_APPS = ["django.contrib.auth", "django.contrib.contenttypes", "django.contrib.sessions"]

log = benchlib.logger("core_workload")


# --------------------------------------------------------------------------- database handling


def parse_db(url: str) -> dict:
    """Turn ``sqlite:/path`` or ``postgresql://user[:pw]@host:port/name`` into a DATABASES entry."""
    if url.startswith("sqlite:"):
        path = url[len("sqlite:"):]
        if path.startswith("//"):  # tolerate sqlite:///abs/path
            path = path[2:]
        if not path:
            raise SystemExit("--db sqlite: needs a file path")
        return {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": os.path.abspath(path),
            "OPTIONS": dict(SQLITE_OPTIONS),
        }
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("postgresql", "postgres"):
        raise SystemExit(f"unsupported --db {url!r}: use sqlite:PATH or postgresql://...")
    name = parts.path.lstrip("/")
    if not name:
        raise SystemExit("--db postgresql://... needs a database name")
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": name,
        "USER": urllib.parse.unquote(parts.username or "postgres"),
        "PASSWORD": urllib.parse.unquote(parts.password or ""),
        "HOST": parts.hostname or "127.0.0.1",
        "PORT": str(parts.port or 5432),
    }


def db_kind(db: dict) -> str:
    return "sqlite" if db["ENGINE"].endswith("sqlite3") else "postgresql"


def _pg_admin(db: dict):
    import psycopg

    return psycopg.connect(
        dbname="postgres",
        user=db["USER"],
        password=db["PASSWORD"] or None,
        host=db["HOST"],
        port=db["PORT"],
        autocommit=True,
    )


def fresh_database(db: dict) -> None:
    """Start from an empty database: delete the SQLite file or (re)create the PostgreSQL database."""
    if db_kind(db) == "sqlite":
        for suffix in ("", "-wal", "-shm", "-journal"):
            try:
                os.remove(db["NAME"] + suffix)
            except FileNotFoundError:
                pass
        os.makedirs(os.path.dirname(db["NAME"]), exist_ok=True)
        return
    from psycopg import sql

    with _pg_admin(db) as conn:
        ident = sql.Identifier(db["NAME"])
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (db["NAME"],)).fetchone()
        if exists:
            log(f"dropping leftover database {db['NAME']}")
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(ident))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(ident))


def drop_database(db: dict) -> None:
    try:
        from django.db import connections

        connections.close_all()
    except Exception:  # Django may not be configured yet if set-up failed early
        pass
    if db_kind(db) == "sqlite":
        return  # the driver throws the scratch directory away; keep the file for inspection until then
    from psycopg import sql

    with _pg_admin(db) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(db["NAME"])))


# --------------------------------------------------------------------------- implementation-specific part


def common_settings(db: dict) -> dict:
    return {
        "DEBUG": False,
        "SECRET_KEY": "jobtower-bench-not-secret",
        "USE_TZ": True,
        "TIME_ZONE": "UTC",
        "DEFAULT_AUTO_FIELD": "django.db.models.AutoField",
        "DATABASES": {"default": db},
        "ALLOWED_HOSTS": ["*"],
        "LOGGING": {
            "version": 1,
            "disable_existing_loggers": False,
            "handlers": {"stderr": {"class": "logging.StreamHandler", "stream": "ext://sys.stderr"}},
            "root": {"handlers": ["stderr"], "level": "WARNING"},
        },
    }


def tethys_settings(workspace: str) -> dict[str, Any]:
    """The settings Tethys's apps need besides INSTALLED_APPS, with workspaces under `workspace`."""
    return {
        "AUTHENTICATION_BACKENDS": [
            "django.contrib.auth.backends.ModelBackend",
            "guardian.backends.ObjectPermissionBackend",
        ],
        "ANONYMOUS_USER_NAME": "AnonymousUser",
        "TETHYS_WORKSPACES_ROOT": workspace,
        "USE_OLD_WORKSPACES_API": False,
        "RESOURCE_QUOTA_HANDLERS": (),
        "SUPPRESS_QUOTA_WARNINGS": ("user_workspace_quota", "app_workspace_quota"),
    }


def setup_tethys_django() -> None:
    """django.setup() with Tethys's apps installed, skipping the app harvest that tethys_apps runs at start-up."""
    import django

    # tethys_apps' AppConfig.ready() harvests installed apps from the database whenever sys.argv[1]
    # is not "migrate", i.e. before our migrate has run. A bare argv skips that start-up harvest.
    saved_argv, sys.argv = sys.argv, sys.argv[:1]
    try:
        django.setup()
    finally:
        sys.argv = saved_argv


def tethys_app() -> type:
    """The bench's Tethys app (APP_PACKAGE, APP_NAME), once Django is set up."""
    from tethys_apps.base import TethysAppBase

    class App(TethysAppBase):
        package = APP_PACKAGE
        name = APP_NAME
        root_url = "bench-app"

    return App


def fill_in_batches(count: int, users: list, make: Callable[[int, Any], Any], insert: Callable[[list], None]) -> None:
    """Insert `count` rows, row k made by `make(k, user)` for the users in turn, `insert(rows)` per FILL_BATCH."""
    from django.db import transaction

    for start in range(0, count, FILL_BATCH):
        rows = [make(k, users[k % len(users)]) for k in range(start, min(start + FILL_BATCH, count))]
        with transaction.atomic():
            insert(rows)


def insert_basic_jobs(rows: list) -> None:
    """Insert unsaved TethysJob rows as Tethys BasicJobs (multi-table inheritance, which bulk_create refuses)."""
    # the TethysJob rows with bulk_create (ids come back on PostgreSQL and SQLite >= 3.35), then the BasicJob rows
    from django.db import connection
    from tethys_compute.models import BasicJob, TethysJob

    child = BasicJob._meta
    parents = TethysJob.objects.bulk_create(rows)
    with connection.cursor() as cur:
        cur.executemany(
            f"INSERT INTO {connection.ops.quote_name(child.db_table)} ({connection.ops.quote_name(child.pk.column)}) "
            "VALUES (%s)", [(p.pk,) for p in parents],
        )


def configure_tethys(db: dict, workspace: str) -> types.SimpleNamespace:
    from django.conf import settings

    settings.configure(
        **common_settings(db),
        INSTALLED_APPS=[
            *DJANGO_APPS,
            "django.contrib.messages",
            "guardian",
            "tethys_apps",
            "tethys_compute",
            "tethys_services",
            "tethys_quotas",
        ],
        **tethys_settings(workspace),
    )
    setup_tethys_django()
    from tethys_compute.models import TethysJob

    App = tethys_app()

    def fill(count: int, users: list, workspaces: dict) -> None:
        fill_in_batches(count, users, lambda k, user: TethysJob(
            name=f"fill_{k}", description="bench job", user=user, label=APP_PACKAGE, workspace=workspaces[user.pk],
        ), insert_basic_jobs)

    return types.SimpleNamespace(
        App=App,
        job_manager=App.get_job_manager(),
        fill=fill,
        version=metadata.version("tethys-platform"),
    )


def configure_jobtower(db: dict, workspace: str) -> types.SimpleNamespace:
    import django
    from django.conf import settings

    settings.configure(
        **common_settings(db),
        INSTALLED_APPS=[*DJANGO_APPS, "jobtower"],
        JOBTOWER={"HOME": workspace},
    )
    django.setup()

    import jobtower
    from jobtower.models import Job

    class App(jobtower.AppBase):
        package = APP_PACKAGE
        name = APP_NAME

    def fill(count: int, users: list, workspaces: dict) -> None:
        fill_in_batches(count, users, lambda k, user: Job(
            user=user, label=APP_PACKAGE, job_type="BASIC", name=f"fill_{k}", description="bench job",
            workspace=workspaces[user.pk],
        ), Job.objects.bulk_create)

    return types.SimpleNamespace(
        App=App,
        job_manager=App.get_job_manager(),
        fill=fill,
        version=metadata.version("jobtower"),
    )


CONFIGURE = {"tethys": configure_tethys, "jobtower": configure_jobtower}


# --------------------------------------------------------------------------- measuring helpers


class StatementCounter:
    """A django execute_wrapper counting SQL statements: queries (all but transaction control),
    writes among them (INSERT/UPDATE/DELETE/REPLACE), and transaction-control statements apart."""

    def __init__(self) -> None:
        self.queries = 0
        self.writes = 0
        self.tx = 0

    def __call__(self, execute, sql, params, many, context):
        verb = sql.lstrip()[:10].upper()
        if verb.startswith(TX_VERBS):
            self.tx += 1
        else:
            self.queries += 1
            # "WITH ... INSERT INTO ..." (a CTE in front of the write) is a write too
            if verb.startswith(WRITE_VERBS) or (verb.startswith("WITH") and WRITE_AFTER_CTE.search(sql)):
                self.writes += 1
        return execute(sql, params, many, context)

    def snapshot(self) -> tuple[int, int]:
        return self.queries, self.writes


def ms(seconds: float) -> float:
    return round(seconds * 1000.0, 4)


# --------------------------------------------------------------------------- the workload (shared)


def run_workload(env: types.SimpleNamespace, counter: StatementCounter, args) -> dict:
    from django.contrib.auth.models import User

    job_manager = env.job_manager
    users = [User.objects.create_user(username=f"u{i}", password=None) for i in range(N_USERS)]
    out: dict = {}

    # a. create + save, one by one, autocommit; in rounds alternating with the database's own one-row
    # INSERT + COMMIT (the floor of one commit per save), so a busy machine slows both alike
    from django.db import connection, transaction

    log(f"create_save: {args.n_create} jobs, in {RAW_ROUNDS} rounds with raw one-row INSERT+COMMIT")
    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE bench_raw (id integer PRIMARY KEY, name varchar(64))")
    elapsed = raw_elapsed = cpu = 0.0
    done = raw_rows = 0
    queries = writes = 0
    for r in range(RAW_ROUNDS):
        count = args.n_create * (r + 1) // RAW_ROUNDS - done
        t0 = time.perf_counter()
        for i in range(raw_rows, raw_rows + count):
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute("INSERT INTO bench_raw (id, name) VALUES (%s, %s)", [i, f"row {i}"])
        raw_elapsed += time.perf_counter() - t0
        raw_rows += count
        q0, w0 = counter.snapshot()
        c0, t0 = time.process_time(), time.perf_counter()
        for i in range(done, done + count):
            job = job_manager.create_job(
                name="bench_{id}", user=users[i % N_USERS], job_type="BASIC", description="bench job"
            )
            job.save()
        elapsed += time.perf_counter() - t0
        cpu += time.process_time() - c0
        q1, w1 = counter.snapshot()
        queries += q1 - q0
        writes += w1 - w0
        done += count
    n = max(args.n_create, 1)
    out["create_save"] = {
        "n": args.n_create,
        "seconds": round(elapsed, 3),
        "jobs_per_s": round(args.n_create / elapsed, 1) if elapsed else None,
        # this process's CPU per job: on SQLite all of the work (a busy machine inflates wall time, not this)
        "cpu_us_per_job": round(cpu / n * 1e6, 1),
        "queries_per_job": round(queries / n, 2),
        "writes_per_job": round(writes / n, 2),
        "raw_insert_commit_per_s": round(raw_rows / raw_elapsed, 1) if raw_elapsed else None,
        "of_raw": round(raw_elapsed / elapsed, 3) if elapsed else None,
    }

    # b. fill the table (not timed)
    missing = args.n_table - args.n_create
    if missing > 0:
        log(f"fill: {missing} more jobs")
        t0 = time.perf_counter()
        # each user's workspace as create_job fills it in (an unsaved job: nothing is written)
        workspaces = {
            u.pk: job_manager.create_job(name="probe", user=u, job_type="BASIC").workspace for u in users
        }
        env.fill(missing, users, workspaces)
        log(f"fill: done in {time.perf_counter() - t0:.1f}s")
    total = job_manager.list_jobs().count()
    log(f"table holds {total} jobs for {APP_PACKAGE}")

    # c. first page of one user's jobs
    log("list_first_page")
    for _ in range(LIST_WARMUPS):
        list(job_manager.list_jobs(user=users[3])[:LIST_PAGE])
    times = []
    q0, w0 = counter.snapshot()
    for _ in range(LIST_REPS):
        t0 = time.perf_counter()
        page = list(job_manager.list_jobs(user=users[3])[:LIST_PAGE])
        times.append(time.perf_counter() - t0)
    q1, w1 = counter.snapshot()
    out["list_first_page"] = {
        "reps": LIST_REPS,
        "rows": len(page),
        "median_ms": ms(statistics.median(times)),
        "p95_ms": ms(benchlib.percentile(times, 95)),
        "queries": round((q1 - q0) / LIST_REPS, 2),
        "writes": round((w1 - w0) / LIST_REPS, 2),
    }

    # d. get_job by random id of one user
    log("get_job")
    ids = list(job_manager.list_jobs(user=users[3]).values_list("id", flat=True))
    rng = random.Random(SEED)
    picks = [rng.choice(ids) for _ in range(GET_CALLS)]
    times = []
    found = 0
    q0, w0 = counter.snapshot()
    for job_id in picks:
        t0 = time.perf_counter()
        job = job_manager.get_job(job_id=job_id, user=users[3])
        times.append(time.perf_counter() - t0)
        found += job is not None
    q1, w1 = counter.snapshot()
    out["get_job"] = {
        "calls": GET_CALLS,
        "found": found,
        "median_ms": ms(statistics.median(times)),
        "p95_ms": ms(benchlib.percentile(times, 95)),
        "queries": round((q1 - q0) / GET_CALLS, 2),
        "writes": round((w1 - w0) / GET_CALLS, 2),
    }

    # e. status reads on freshly executed jobs
    log(f"status_read: create + execute {args.n_status} jobs")
    t0 = time.perf_counter()
    for _ in range(args.n_status):
        job = job_manager.create_job(
            name="status_{id}", user=users[5], job_type="BASIC", description="bench job"
        )
        job.execute()
    exec_elapsed = time.perf_counter() - t0
    jobs = list(job_manager.list_jobs(user=users[5], order_by="-id")[: args.n_status])
    seen = set()
    q0, w0 = counter.snapshot()
    t0 = time.perf_counter()
    for job in jobs:
        seen.add(job.status)
    elapsed = time.perf_counter() - t0
    q1, w1 = counter.snapshot()
    n = max(len(jobs), 1)
    out["status_read"] = {
        "n": len(jobs),
        "ms_per_read": ms(elapsed / n),
        "queries_per_read": round((q1 - q0) / n, 2),
        "writes_per_read": round((w1 - w0) / n, 2),
        "statuses": sorted(seen),
        "create_execute_ms_per_job": ms(exec_elapsed / max(args.n_status, 1)),
    }
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--impl", choices=sorted(CONFIGURE), required=True)
    ap.add_argument("--db", required=True, help="sqlite:/path/file.sqlite3 or postgresql://user@host:port/name")
    ap.add_argument("--workspace", required=True, help="directory for app/job workspaces (emptied first)")
    ap.add_argument("--n-create", type=int, default=10000)
    ap.add_argument("--n-table", type=int, default=100000)
    ap.add_argument("--n-status", type=int, default=1000)
    args = ap.parse_args(argv)

    db = parse_db(args.db)
    workspace = os.path.abspath(args.workspace)
    shutil.rmtree(workspace, ignore_errors=True)
    os.makedirs(workspace)
    fresh_database(db)

    try:
        log(f"configuring Django for {args.impl} on {db_kind(db)}")
        env = CONFIGURE[args.impl](db, workspace)

        from django.core.management import call_command
        from django.db import connection

        t0 = time.perf_counter()
        call_command("migrate", verbosity=0, interactive=False)
        log(f"migrate: {time.perf_counter() - t0:.1f}s")

        counter = StatementCounter()
        with connection.execute_wrapper(counter):
            results = run_workload(env, counter, args)
        import django

        report = {
            "impl": args.impl,
            "db": db_kind(db),
            "versions": {
                "django": django.__version__,
                "impl": env.version,
                "python": sys.version.split()[0],
                "db_server": benchlib.db_server_version(connection),
            },
            "params": {"n_create": args.n_create, "n_table": args.n_table, "n_status": args.n_status},
            **results,
        }
    finally:
        drop_database(db)

    json.dump(report, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
