"""The Jobs Table's filters: several statuses, type, app, owner (staff), created-between; all in the URL."""

from __future__ import annotations

import datetime
import re
from typing import Any

import pytest
from django.db import connection
from django.test import RequestFactory
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from jobtower.gizmos import Filters, JobsTable, status_counts
from jobtower.models import Job

pytestmark = pytest.mark.django_db


def render(user: Any, query: str = "", jobs: Any = None) -> str:
    request = RequestFactory().get("/page/" + query)
    request.user = user
    table = JobsTable(jobs=Job.objects.all() if jobs is None else jobs, column_fields=("id", "name"),
                      reverse_sort=True, striped=True, hover=True)
    return str(table.render(request))


def ids_in(html: str) -> list[int]:
    return [int(i) for i in re.findall(r'<tr data-job-id="(\d+)"', html)]


@pytest.fixture
def jobs(user: Any, other_user: Any) -> dict[str, Job]:
    old = timezone.now() - datetime.timedelta(days=10)
    made = {
        "run_local": Job(name="a", job_type="LOCAL", label="app_one", user=user, _status="RUN"),
        "err_local": Job(name="b", job_type="LOCAL", label="app_two", user=user, _status="ERR"),
        "com_basic": Job(name="c", job_type="BASIC", label="app_one", user=other_user, _status="COM"),
        "old_com": Job(name="d", job_type="BASIC", label="app_one", user=user, _status="COM", creation_time=old),
    }
    for job in made.values():
        job.workspace = "/nonexistent"
        job.save()
    Job.objects.filter(pk=made["old_com"].pk).update(creation_time=old)
    return made


def test_several_statuses_type_and_app_narrow_the_table(jobs: dict[str, Job], user: Any) -> None:
    html = render(user, "?jt_status=RUN&jt_status=ERR")
    assert sorted(ids_in(html)) == sorted([jobs["run_local"].pk, jobs["err_local"].pk])
    assert ids_in(render(user, "?jt_type=basic")) == [jobs["old_com"].pk, jobs["com_basic"].pk]
    assert ids_in(render(user, "?jt_app=app_two")) == [jobs["err_local"].pk]
    assert ids_in(render(user, "?jt_status=COM&jt_app=app_one&jt_type=BASIC")) == [
        jobs["old_com"].pk, jobs["com_basic"].pk]


def test_created_between_includes_the_whole_last_day(jobs: dict[str, Job], user: Any) -> None:
    today = timezone.localdate().isoformat()
    recent = render(user, f"?jt_from={today}&jt_to={today}")
    assert jobs["old_com"].pk not in ids_in(recent) and jobs["run_local"].pk in ids_in(recent)
    early = (timezone.localdate() - datetime.timedelta(days=10)).isoformat()
    assert ids_in(render(user, f"?jt_to={early}")) == [jobs["old_com"].pk]


def test_a_bad_date_or_status_is_reported_and_kept_in_the_form(jobs: dict[str, Job], user: Any) -> None:
    html = render(user, "?jt_from=31.12.2026&jt_status=NOPE")
    assert "created from must be a date like 2026-01-31, not &#x27;31.12.2026&#x27;" in html
    assert "unknown status &#x27;NOPE&#x27;" in html
    assert 'value="31.12.2026"' in html
    assert len(ids_in(html)) == 4  # a filter that cannot be read narrows nothing


def test_only_staff_filter_by_owner(jobs: dict[str, Job], user: Any, other_user: Any) -> None:
    assert "jt_owner" not in render(user)
    assert len(ids_in(render(user, "?jt_owner=bob"))) == 4  # ignored for a non-staff user
    user.is_staff = True
    user.save()
    html = render(user, "?jt_owner=bob")
    assert 'name="jt_owner"' in html and ids_in(html) == [jobs["com_basic"].pk]


def test_counts_per_status_come_from_one_group_by_and_ignore_the_status_filter(
    jobs: dict[str, Job], user: Any
) -> None:
    filters = Filters.from_params(RequestFactory().get("/?jt_status=RUN&jt_app=app_one").GET, "jt")
    with CaptureQueriesContext(connection) as queries:
        counts = status_counts(Job.objects.all(), filters)
    assert len(queries) == 1 and "GROUP BY" in queries[0]["sql"]
    assert counts == {"RUN": 1, "COM": 2}
    html = render(user, "?jt_app=app_one")
    assert re.search(r'value="COM"[^>]*> Complete <span class="jobtower-n">2</span>', html)


def test_links_keep_every_filter_and_headers_say_how_they_sort(jobs: dict[str, Job], user: Any) -> None:
    html = render(user, "?jt_status=RUN&jt_status=ERR&jt_type=LOCAL&jt_from=2020-01-01&other=1")
    sort_link = re.search(r'<a href="(\?[^"]*jt_sort=name[^"]*)">Name', html).group(1)  # type: ignore[union-attr]
    for part in ("jt_status=RUN", "jt_status=ERR", "jt_type=LOCAL", "jt_from=2020-01-01", "other=1"):
        assert part in sort_link.replace("&amp;", "&")
    assert 'aria-sort="descending"' in html and 'aria-sort="none"' in html
    assert 'class="jobtower-table hover striped table table-hover table-striped"' in html
    assert 'class="jobtower-row status-RUN type-local"' in html
