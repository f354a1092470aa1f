"""Opt-in e-mail on completion: extended_properties={"notify": "email"} on a job, through the outbox."""

from __future__ import annotations

from typing import Any

from django.core import mail

from jobtower.models import Delivery
from jobtower.monitor import Monitor


def finished(job_manager: Any, user: Any, *moves: str, notify: str | None = None) -> Any:
    props = {"notify": notify} if notify else {}
    job = job_manager.create_job(name="mailed", user=user, job_type="BASIC", extended_properties=props)
    job.execute()
    for status in moves:
        job.status = status
    return job


def test_a_job_that_asks_is_mailed_once_per_terminal_status_without_any_setting(
    job_manager: Any, user: Any, settings: Any, transactional_db: Any
) -> None:
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    user.email = "alice@example.org"
    user.save()
    mail.outbox.clear()
    asked = finished(job_manager, user, "Running", "Complete", notify="email")
    finished(job_manager, user, "Running", "Complete")  # did not ask: no mail
    rows = Delivery.objects.filter(kind=Delivery.EMAIL)
    assert list(rows.values_list("job_id", "payload__new")) == [(asked.pk, "Complete")]
    Monitor(results_threads=0).cycle()
    Monitor(results_threads=0).cycle()
    assert [m.subject for m in mail.outbox] == [f"Job mailed ({asked.pk}): Complete"]


def test_opt_in_mode_mails_only_the_jobs_that_ask(
    job_manager: Any, user: Any, settings: Any, transactional_db: Any
) -> None:
    settings.JOBTOWER = {**settings.JOBTOWER, "NOTIFY_EMAIL": {"statuses": ["Error"], "opt_in": True}}
    user.email = "alice@example.org"
    user.save()
    asked = finished(job_manager, user, "Running", "Error", notify="email")
    finished(job_manager, user, "Running", "Error")
    asked_but_complete = finished(job_manager, user, "Running", "Complete", notify="email")
    rows = Delivery.objects.filter(kind=Delivery.EMAIL)
    assert list(rows.values_list("job_id", flat=True)) == [asked.pk]
    assert asked_but_complete.pk not in rows.values_list("job_id", flat=True)
