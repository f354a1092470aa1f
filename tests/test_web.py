"""The status callback, the plain job list and the admin, through Django's test client."""

from __future__ import annotations

import pytest
from django.urls import reverse

from jobtower import manager
from jobtower.models import Job, JobEvent
from jobtower.statuses import Status

pytestmark = pytest.mark.django_db


def test_callback_rechecks_the_job_and_answers_success(client, job_manager, user, memory, rf) -> None:
    job = job_manager.create_job(name="cb", user=user, job_type="MEMORY")
    job.execute()
    memory.set(job, Status.RUNNING)
    url = job_manager.get_job_status_callback_url(rf.get("/"), job.pk)
    response = client.get(url)
    assert response.status_code == 200 and response.json() == {"success": True}
    assert Job.objects.get(pk=job.pk).status_code is Status.RUNNING
    assert JobEvent.objects.filter(job=job, to_status="RUN", source="engine").count() == 1
    assert client.post(url).json() == {"success": True}  # a job may also POST, without CSRF


def test_callback_sets_nothing_by_itself(client, job_manager, user, rf) -> None:
    job = job_manager.create_job(name="basic", user=user, job_type="BASIC")
    job.execute()
    url = job_manager.get_job_status_callback_url(rf.get("/"), job.pk)
    assert client.get(url + "&status=COM").json() == {"success": True}
    assert Job.objects.get(pk=job.pk).status_code is Status.SUBMITTED


def test_callback_unknown_id_is_404_json_for_callers_with_its_token(client) -> None:
    response = client.get(f"/update-job-status/424242/?token={manager.callback_token(424242)}")
    assert response.status_code == 404
    assert response.json()["success"] is False and "424242" in response.json()["error"]


def test_callback_without_token_is_refused_unless_owner(client, job_manager, user, other_user) -> None:
    job = job_manager.create_job(name="cb", user=user, job_type="BASIC")
    job.save()
    url = f"/update-job-status/{job.pk}/"
    assert client.get(url).status_code == 403
    assert client.get(url + "?token=forged").status_code == 403
    assert client.get(url + f"?token={manager.callback_token(job.pk + 1)}").status_code == 403
    client.force_login(other_user)
    assert client.get(url).status_code == 403
    client.force_login(user)
    assert client.get(url).json() == {"success": True}


def test_callback_tokens_can_be_turned_off(client, job_manager, user, settings) -> None:
    settings.JOBTOWER = {**settings.JOBTOWER, "CALLBACK_REQUIRES_TOKEN": False}
    job = job_manager.create_job(name="cb", user=user, job_type="BASIC")
    job.save()
    assert client.get(f"/update-job-status/{job.pk}/").json() == {"success": True}


def test_callback_rejects_other_methods(client) -> None:
    assert client.put("/update-job-status/1/").status_code == 405


def test_job_list_needs_login_and_shows_only_own_jobs_escaped(client, job_manager, user, other_user) -> None:
    mine = job_manager.create_job(name="<script>alert(1)</script>", user=user, job_type="BASIC")
    mine.save()
    theirs = job_manager.create_job(name="bobs-secret-job", user=other_user, job_type="BASIC")
    theirs.save()
    response = client.get(reverse("jobtower:home"))
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]
    client.force_login(user)
    page = client.get(reverse("jobtower:home")).content.decode()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "<script>alert" not in page
    assert "bobs-secret-job" not in page
    assert client.post(reverse("jobtower:home")).status_code == 405


def test_admin_shows_jobs_and_history_read_mostly(admin_client, job_manager, user) -> None:
    job = job_manager.create_job(name="adm", user=user, job_type="BASIC")
    job.execute()
    assert admin_client.get("/admin/jobtower/job/").status_code == 200
    page = admin_client.get(f"/admin/jobtower/job/{job.pk}/change/")
    assert page.status_code == 200 and b"Submitted" in page.content
    assert admin_client.get("/admin/jobtower/job/add/").status_code == 403
    assert admin_client.get("/admin/jobtower/jobevent/").status_code == 200


def test_callback_accepts_tokens_of_a_rotated_key(client, job_manager, user, rf, settings) -> None:
    job = job_manager.create_job(name="rot", user=user, job_type="BASIC")
    job.save()
    url = job_manager.get_job_status_callback_url(rf.get("/"), job.pk)
    settings.SECRET_KEY_FALLBACKS = [settings.SECRET_KEY]
    settings.SECRET_KEY = "a-brand-new-key"
    assert client.get(url).json() == {"success": True}
    settings.SECRET_KEY_FALLBACKS = []
    assert client.get(url).status_code == 403


def test_admin_bulk_delete_goes_through_job_delete(admin_client, job_manager, user, memory) -> None:
    job = job_manager.create_job(name="bulk", user=user, job_type="MEMORY")
    job.execute()
    response = admin_client.post(
        "/admin/jobtower/job/", {"action": "delete_selected", "_selected_action": [job.pk], "post": "yes"}
    )
    assert response.status_code == 302
    assert not Job.objects.filter(pk=job.pk).exists()
    assert ("cancel", job.pk) in memory.calls
