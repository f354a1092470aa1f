"""The live job page: one JSON request returns every changing part; the timeline is drawn from the events."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.test import Client

from jobtower.models import Job, JobEvent
from jobtower.statuses import Status
from jobtower.web.jobpage import timeline_svg

pytestmark = pytest.mark.django_db

EVIL = '<jt-evil x="1">&amp;'


@pytest.fixture
def job(job_manager: Any, user: Any) -> Job:
    job = job_manager.create_job(name="page job", user=user, job_type="BASIC")
    job.save()
    return job


def client_for(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_the_live_endpoint_returns_every_fragment_in_one_answer(job: Job, user: Any) -> None:
    job.update_status("Running")
    Job.objects.filter(pk=job.pk).update(progress=42.0, progress_message=EVIL, status_message=EVIL)
    data = client_for(user).get(f"/jobs/{job.pk}/live.json").json()
    assert data["active"] is True
    assert set(data["html"]) == {"status", "progress", "run_time", "actions", "result", "error", "files", "timeline"}
    assert "Running" in data["html"]["status"] and "42%" in data["html"]["progress"]
    assert "<jt-evil" not in data["html"]["status"] + data["html"]["progress"]
    assert "&lt;jt-evil" in data["html"]["progress"]
    # The same actions, under the same rules, as a table row of a running BASIC job.
    actions = set(re.findall(r'data-jt-action="(\w+)"', data["html"]["actions"]))
    assert actions == {"pause", "terminate", "delete"}


def test_the_job_page_shows_actions_settings_as_json_and_the_timeline(job: Job, user: Any) -> None:
    html = client_for(user).get(f"/jobs/{job.pk}/").content.decode()
    assert 'data-jt-action="run"' in html and 'name="csrfmiddlewaretoken"' in html
    assert "data-jobtower-job" in html and f"/jobs/{job.pk}/live.json" in html
    assert "Not executed yet" in html  # no events, no timeline
    assert "{'" not in html  # settings are JSON, not a Python dict


def test_someone_elses_job_is_404_and_anonymous_is_401(job: Job, other_user: Any) -> None:
    assert client_for(other_user).get(f"/jobs/{job.pk}/live.json").status_code == 404
    assert Client().get(f"/jobs/{job.pk}/live.json").status_code == 401


def test_stop_from_the_job_page_config_goes_through_the_table_action(job: Job, user: Any) -> None:
    job.update_status("Running")
    client = client_for(user, )
    page = client.get(f"/jobs/{job.pk}/").content.decode()
    token = re.search(r'name="config" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
    answer = client.post(f"/jobs-table/action/{job.pk}/terminate/", {"config": token},
                         HTTP_ACCEPT="application/json")
    assert answer.status_code == 200, answer.content
    assert Job.objects.get(pk=job.pk).status_code is Status.ABORTED
    # A Stop the job's status no longer allows is refused with the reason.
    again = client.post(f"/jobs-table/action/{job.pk}/terminate/", {"config": token}, HTTP_ACCEPT="application/json")
    assert again.status_code == 409 and "not possible" in again.json()["error"]


def spans(svg: str) -> list[tuple[str, str]]:
    return re.findall(r'class="jobtower-span" data-status="(\w+)" data-lane="(\d+)"', svg)


def test_the_timeline_has_one_span_per_status_and_a_lane_per_attempt(job: Job, job_manager: Any) -> None:
    for status in ("Submitted", "Running", "Complete"):
        job.update_status(status)
    assert spans(timeline_svg(job)) == [("SUB", "0"), ("RUN", "0"), ("COM", "0")]
    JobEvent.objects.create(job=job, attempt=2, from_status="COM", to_status="SUB", source="resubmit",
                            message=EVIL)
    JobEvent.objects.create(job=job, attempt=2, from_status="SUB", to_status="ERR", source="engine")
    svg = timeline_svg(job)
    assert spans(svg)[3:] == [("SUB", "1"), ("ERR", "1")]
    assert "Attempt 1" in svg and "Attempt 2" in svg
    assert "<jt-evil" not in svg and "&lt;jt-evil" in svg
