"""The job admin at scale: filters whose choices need no scan of the table, and no COUNT(*) of it.

Runs on SQLite and on PostgreSQL (JOBTOWER_DATABASE_URL); bench/bench_scale.py times it at 1M jobs.
"""

from __future__ import annotations

from typing import Any

from django.db import connection
from django.test.utils import CaptureQueriesContext

from jobtower import admin as jobtower_admin
from jobtower import db as jobtower_db
from jobtower.models import Job


def make(job_manager: Any, user: Any, other: Any) -> list[Job]:
    jobs = [job_manager.create_job(name=f"mine {i}", user=user, job_type="BASIC") for i in range(3)]
    jobs.append(other.get_job_manager().create_job(name="theirs", user=user, job_type="LOCAL", command=["true"]))
    for job in jobs:
        job.save()
    return jobs


def test_the_filters_offer_every_app_and_job_type_and_filter_by_them(
    admin_client: Any, job_manager: Any, user: Any
) -> None:
    import jobtower

    class Other(jobtower.AppBase):
        package = "other_app"
        name = "Other"

    make(job_manager, user, Other)
    page = admin_client.get("/admin/jobtower/job/")
    text = page.content.decode()
    assert page.status_code == 200
    assert f"?label={job_manager.label}" in text and "?label=other_app" in text
    assert "?job_type=LOCAL" in text and "?job_type=CONDOR" in text and "job_type=CONDORJOB" not in text
    only = admin_client.get("/admin/jobtower/job/?label=other_app").content.decode()
    assert "theirs" in only and "mine 0" not in only
    local = admin_client.get("/admin/jobtower/job/?job_type=BASIC").content.decode()
    assert "mine 2" in local and "theirs" not in local


def test_the_changelist_never_counts_the_whole_table_twice(admin_client: Any, job_manager: Any, user: Any) -> None:
    for i in range(5):
        job_manager.create_job(name=f"job {i}", user=user, job_type="BASIC").save()
    admin_client.get("/admin/jobtower/job/")
    with CaptureQueriesContext(connection) as ctx:
        page = admin_client.get("/admin/jobtower/job/")
    assert page.status_code == 200 and "5 jobs" in page.content.decode()
    statements = [q["sql"].upper() for q in ctx.captured_queries]
    assert sum("COUNT(" in sql for sql in statements) <= 1, statements
    assert not any("DISTINCT" in sql for sql in statements), statements


def test_a_large_unfiltered_table_is_counted_from_the_planners_estimate_on_postgresql(
    admin_client: Any, job_manager: Any, user: Any, monkeypatch: Any
) -> None:
    for i in range(7):
        job_manager.create_job(name=f"job {i}", user=user, job_type="BASIC").save()
    monkeypatch.setattr(jobtower_db, "EXACT_COUNT_BELOW", 0)
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(f"ANALYZE {Job._meta.db_table}")
    paginator = jobtower_admin.EstimatedCountPaginator(Job.objects.all(), 100)
    assert paginator.count == 7  # the estimate right after ANALYZE; SQLite counts
    filtered = jobtower_admin.EstimatedCountPaginator(Job.objects.filter(name="job 1"), 100)
    assert filtered.count == 1
