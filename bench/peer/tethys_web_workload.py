"""Tethys Platform 4.6.1's Jobs Table in the web: its gizmo page and its per-row `update-row` refresh.

    <tethys venv>/bin/python bench/peer/tethys_web_workload.py \
        --db sqlite:/path/file.sqlite3 | postgresql://postgres@127.0.0.1:5432/DBNAME \
        --workspace DIR --jobs 1000 [--active 50] [--page-reps 5] [--refresh-reps 5]

Runs in Tethys's own virtualenv (bench/peer/setup_tethys_venv.sh), in-process: Django's AsyncClient
drives the full middleware stack (sessions, auth, CSRF, messages) through Django's ASGI handler, the way
Tethys is deployed (daphne). One user owns `--jobs` BasicJobs; the newest `--active` are Running.

- page: GET of a view that renders `{% gizmo jobs_table_options %}` with
  `JobsTable(jobs=job_manager.list_jobs(user), column_fields=..., reverse_sort=True, ...)`, the way an app
  controller does (Tethys has no pagination: every job is a row). Time and HTML size.
- refresh: what `jobs_table.js` sends every refresh interval for each active row: one
  `POST <base_ajax_url><id>/update-row` per row, with the table's `data-*` settings encoded as jQuery's
  `$.param` encodes them. One refresh = one request for each of the `--active` rows, in sequence.

Prints one JSON object on stdout; logs go to stderr. Drops the PostgreSQL database at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import html
import json
import os
import re
import resource
import shutil
import statistics
import sys
import time
import types
from importlib import metadata
from urllib.parse import quote

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # bench/, for core_workload's database helpers

import benchlib  # noqa: E402 - found through the sys.path entry above
import core_workload as cw  # noqa: E402

APP_PACKAGE = cw.APP_PACKAGE
USERNAME = "bench"
# The columns of jobtower's standalone table (jobtower.web.views.home), in Tethys's spelling.
COLUMN_FIELDS = ("id", "name", ("App", "label"), ("Type", "type"), "creation_time", "run_time")
# this module is also the URLconf
urlpatterns: list = []


log = benchlib.logger("tethys_web")


def configure(db: dict, workspace: str) -> types.SimpleNamespace:
    from django.conf import settings

    base = cw.common_settings(db)
    settings.configure(
        **base,
        INSTALLED_APPS=[
            *cw.DJANGO_APPS,
            "django.contrib.messages",
            "django.contrib.staticfiles",
            "guardian",
            "tethys_apps",
            "tethys_compute",
            "tethys_services",
            "tethys_quotas",
            "tethys_gizmos",
            "tethys_sdk",
        ],
        MIDDLEWARE=[
            "django.contrib.sessions.middleware.SessionMiddleware",
            "django.middleware.common.CommonMiddleware",
            "django.middleware.csrf.CsrfViewMiddleware",
            "django.contrib.auth.middleware.AuthenticationMiddleware",
            "django.contrib.messages.middleware.MessageMiddleware",
            # Tethys portal's own (sync) middleware; it reads request.user, so the user is loaded
            # before the async views run (their login check cannot query from the event loop).
            "tethys_portal.middleware.TethysMfaRequiredMiddleware",
            "django.middleware.clickjacking.XFrameOptionsMiddleware",
        ],
        TEMPLATES=[{
            "BACKEND": "django.template.backends.django.DjangoTemplates",
            "APP_DIRS": True,
            "OPTIONS": {"context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]},
        }],
        ROOT_URLCONF=__name__,
        STATIC_URL="/static/",
        **cw.tethys_settings(workspace),
        TEMPLATE_DEBUG=False,
    )
    cw.setup_tethys_django()
    from django.shortcuts import render
    from django.urls import include, path
    from tethys_sdk.gizmos import JobsTable

    job_manager = cw.tethys_app().get_job_manager()

    def jobs_page(request):
        """An app controller showing the user's Jobs Table, as Tethys's docs write it."""
        jobs_table_options = JobsTable(
            jobs=job_manager.list_jobs(request.user),
            column_fields=COLUMN_FIELDS,
            reverse_sort=True, hover=True, striped=True, refresh_interval=2000,
        )
        return render(request, "bench_tethys_jobs.html", {"jobs_table_options": jobs_table_options})

    urlpatterns[:] = [
        path("jobs/", jobs_page, name="jobs"),
        path("developer/gizmos/", include(("tethys_gizmos.urls", "gizmos"))),
    ]
    return types.SimpleNamespace(job_manager=job_manager, version=metadata.version("tethys-platform"))


PAGE_TEMPLATE = """{% load tethys %}<!doctype html>
<html><head><meta charset="utf-8"><title>My jobs</title></head>
<body><h2>My jobs</h2>
{% gizmo jobs_table_options %}
</body></html>"""


def install_page_template() -> None:
    """Make `bench_tethys_jobs.html` loadable without a template folder (a locmem loader in front)."""
    from django.conf import settings
    from django.template import engines

    engine = engines["django"].engine
    from django.template.loaders.locmem import Loader

    engine.template_loaders.insert(0, Loader(engine, {"bench_tethys_jobs.html": PAGE_TEMPLATE}))
    assert settings.ROOT_URLCONF == __name__


def fill(user, count: int, active: int, workspace: str) -> list[int]:
    """Insert `count` BasicJobs for `user` (bulk, outside all timings); the newest `active` are Running."""
    from django.utils import timezone
    from tethys_compute.models import TethysJob

    now = timezone.now()
    started = now - dt.timedelta(minutes=5)

    def make(k: int, owner: object) -> TethysJob:
        run = k >= count - active
        return TethysJob(
            name=f"job_{k}", description="bench job", user=owner, label=APP_PACKAGE, workspace=workspace,
            _status="RUN" if run else "COM",
            execute_time=started if run else now - dt.timedelta(days=1),
            start_time=started if run else now - dt.timedelta(days=1),
            completion_time=None if run else now - dt.timedelta(hours=23),
        )

    cw.fill_in_batches(count, [user], make, cw.insert_basic_jobs)
    return list(
        TethysJob.objects.filter(user=user, _status="RUN").order_by("-id").values_list("id", flat=True)[:active]
    )


def jquery_param(value, prefix: str = "") -> list[tuple[str, str]]:
    """Encode like jQuery's $.param (traditional=false): nested keys in brackets, null as ""."""
    if isinstance(value, dict):
        out = []
        for key, item in value.items():
            out += jquery_param(item, f"{prefix}[{key}]" if prefix else str(key))
        return out
    if isinstance(value, list):
        out = []
        for i, item in enumerate(value):
            inner = f"{prefix}[{i if isinstance(item, (dict, list)) else ''}]"
            out += jquery_param(item, inner)
        return out
    if value is None:
        return [(prefix, "")]
    if isinstance(value, bool):
        return [(prefix, "true" if value else "false")]
    return [(prefix, str(value))]


def jquery_data(raw: str):
    """jQuery's .data() conversion of a data-* attribute value."""
    if raw == "true":
        return True
    if raw == "false":
        return False
    if raw == "null":
        return None
    if re.fullmatch(r"-?\d+(\.\d+)?", raw):
        return float(raw) if "." in raw else int(raw)
    if raw[:1] in "{[":
        try:
            return json.loads(raw)
        except ValueError:
            return raw
    return raw


def table_settings(page: str) -> dict:
    """The table's data-* attributes that update_row() sends, read from the rendered page."""
    head = page[page.index('<table class="table jobs-table'):]
    head = head[: head.index(">", head.index("data-base-ajax-url"))]
    attrs = {k: html.unescape(v) for k, v in re.findall(r'data-([a-z-]+)="([^"]*)"', head)}
    return {
        "base_ajax_url": attrs["base-ajax-url"],
        "data": {
            "column_fields": jquery_data(attrs["column-fields"]),
            "show_status": jquery_data(attrs["show-status"]),
            "show_actions": jquery_data(attrs["show-actions"]),
            "actions": jquery_data(attrs["actions"]),
        },
    }


async def measure(args, env) -> dict:
    from asgiref.sync import sync_to_async
    from django.contrib.auth.models import User
    from django.test import AsyncClient

    user = await sync_to_async(User.objects.create_user)(username=USERNAME, password="bench-password")
    log(f"fill: {args.jobs} jobs ({args.active} Running)")
    t0 = time.perf_counter()
    active_ids = await sync_to_async(fill)(user, args.jobs, args.active, args.workspace)
    log(f"fill: done in {time.perf_counter() - t0:.1f}s")

    client = AsyncClient()
    await client.aforce_login(user)
    out: dict = {"jobs": args.jobs, "active": args.active}

    # -- the page
    times, cpu, sizes, page = [], [], [], ""
    deadline = time.monotonic() + args.page_budget
    reps = args.page_warmups + args.page_reps
    for i in range(reps):
        t0, c0 = time.perf_counter(), time.process_time()
        resp = await client.get("/jobs/")
        body = resp.content
        elapsed = time.perf_counter() - t0
        used = time.process_time() - c0
        if resp.status_code != 200:
            raise SystemExit(f"page answered {resp.status_code}")
        if i >= args.page_warmups:
            times.append(elapsed)
            cpu.append(used)
            sizes.append(len(body))
        page = body.decode()
        log(f"page {i + 1}/{reps}: {elapsed * 1000:.0f} ms, {len(body):,} bytes")
        if time.monotonic() > deadline and times:
            log(f"page: stopping after {len(times)} timed renders (budget {args.page_budget}s)")
            break
    rows = page.count('class="job-row"')
    if rows != args.jobs:
        raise SystemExit(f"the page shows {rows} rows, expected {args.jobs} (a gizmo error renders nothing)")
    out["page"] = {
        "reps": len(times), "rows": rows, "bytes": sizes[-1],
        "median_ms": cw.ms(statistics.median(times)), "p95_ms": cw.ms(benchlib.percentile(times, 95)),
        "min_ms": cw.ms(min(times)), "cpu_median_ms": cw.ms(statistics.median(cpu)),
    }

    # -- the refresh: one update-row POST per active row, as jobs_table.js sends them
    settings = table_settings(page)
    body = "&".join(f"{quote(k, safe='[]')}={quote(v)}" for k, v in jquery_param(settings["data"]))
    url = settings["base_ajax_url"] + "{}/update-row"
    row_times, refresh_times, refresh_cpu, statuses = [], [], [], set()
    html_bytes = 0
    for rep in range(args.refresh_warmups + args.refresh_reps):
        t_refresh, c_refresh = time.perf_counter(), time.process_time()
        per_row = []
        for job_id in active_ids:
            t0 = time.perf_counter()
            resp = await client.post(
                url.format(job_id), data=body, content_type="application/x-www-form-urlencoded; charset=UTF-8",
                headers={"X-Requested-With": "XMLHttpRequest"},
            )
            data = json.loads(resp.content)
            per_row.append(time.perf_counter() - t0)
            if resp.status_code != 200 or not data.get("success"):
                raise SystemExit(f"update-row {job_id} answered {resp.status_code}: {resp.content[:300]!r}")
            statuses.add(data["status"])
            html_bytes = len(resp.content)
        elapsed = time.perf_counter() - t_refresh
        used = time.process_time() - c_refresh
        if rep >= args.refresh_warmups:
            refresh_times.append(elapsed)
            refresh_cpu.append(used)
            row_times += per_row
    out["refresh"] = {
        "rows": len(active_ids), "reps": len(refresh_times),
        "median_ms": cw.ms(statistics.median(refresh_times)), "p95_ms": cw.ms(benchlib.percentile(refresh_times, 95)),
        "cpu_median_ms": cw.ms(statistics.median(refresh_cpu)),
        "row_median_ms": cw.ms(statistics.median(row_times)), "row_p95_ms": cw.ms(benchlib.percentile(row_times, 95)),
        "row_bytes": html_bytes, "statuses": sorted(s for s in statuses if s),
        "request": {"url": url.format("<id>"), "body_bytes": len(body)},
    }
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--db", required=True, help="sqlite:/path/file.sqlite3 or postgresql://user@host:port/name")
    ap.add_argument("--workspace", required=True)
    ap.add_argument("--jobs", type=int, default=1000)
    ap.add_argument("--active", type=int, default=50)
    ap.add_argument("--page-warmups", type=int, default=1)
    ap.add_argument("--page-reps", type=int, default=5)
    ap.add_argument("--page-budget", type=float, default=120.0,
                    help="stop timing further page renders after this many seconds (at least one is timed)")
    ap.add_argument("--refresh-warmups", type=int, default=1)
    ap.add_argument("--refresh-reps", type=int, default=5)
    args = ap.parse_args(argv)

    db = cw.parse_db(args.db)
    args.workspace = os.path.abspath(args.workspace)
    shutil.rmtree(args.workspace, ignore_errors=True)
    os.makedirs(args.workspace)
    cw.fresh_database(db)
    try:
        log(f"configuring Django for Tethys on {cw.db_kind(db)}")
        env = configure(db, args.workspace)
        install_page_template()
        from django.core.management import call_command
        from django.db import connection

        call_command("migrate", verbosity=0, interactive=False)
        results = asyncio.run(measure(args, env))
        import django

        report = {
            "impl": "tethys", "db": cw.db_kind(db),
            "versions": {
                "django": django.__version__, "impl": env.version, "python": sys.version.split()[0],
                "db_server": benchlib.db_server_version(connection),
            },
            "client": "django.test.AsyncClient (in-process, ASGI handler, full middleware)",
            "max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            **results,
        }
    finally:
        cw.drop_database(db)
    json.dump(report, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
