"""A LOCAL worker's wake-up: how its ended jobs ended and its next claim, recorded in one go.

On PostgreSQL that is one statement (finish_and_claim's data-modifying CTEs), on SQLite one transaction;
both must record every job's move with its event, claim each queued job exactly once and never more
than the free slots, also when several workers race, and still write the notifications owed.
"""

from __future__ import annotations

import multiprocessing
from collections import Counter
from typing import Any

import pytest
from django.db import connections

from jobtower import manager
from jobtower.backends.base import Observation, PollResult
from jobtower.models import Delivery, Job, JobEvent
from jobtower.statuses import Status

WORKERS = 4
SLOTS = 2
JOBS = 40


def _queue(job_manager: Any, user: Any, count: int, prefix: str) -> list[Job]:
    jobs = [job_manager.create_job(name=f"{prefix}{i}", user=user, job_type="LOCAL", command=["true"])
            for i in range(count)]
    for job in jobs:
        job.execute()
    return jobs


def test_one_wake_up_records_every_end_with_its_message_and_claims_the_free_slots(
    job_manager, user, transactional_db
) -> None:
    queued = _queue(job_manager, user, 7, "batch")
    running = manager.claim(["LOCAL"], 3, source="worker")
    assert [job.pk for job in running] == [job.pk for job in queued[:3]]
    ok, failed, killed = running
    ends = {
        ok.pk: Observation(Status.COMPLETE, ""),
        failed.pk: Observation(Status.ERROR, "exit code 3: it's 'quoted', {braced} and 100 % odd\nline two"),
        killed.pk: Observation(Status.ERROR, "killed by SIGKILL"),
    }
    moved, claimed = manager.finish_and_claim(running, PollResult(observations=ends), ["LOCAL"], 3,
                                              source="worker-a")
    assert moved == 3
    assert [job.pk for job in claimed] == [job.pk for job in queued[3:6]]  # oldest first, the free slots only
    for job in claimed:  # the claimed jobs are whole: fields as a queryset loads them
        assert job.status_code is Status.RUNNING and job.command == ["true"] and job.start_time is not None
        assert job.extended_properties == Job.objects.get(pk=job.pk).extended_properties
    for job in running:
        stored = Job.objects.get(pk=job.pk)
        expected = ends[job.pk]
        assert (stored.status_code, stored.status_message) == (expected.status, expected.message)
        assert stored.completion_time is not None and stored.completion_time == job.completion_time
        assert job.status_code is expected.status  # the worker's objects are updated too
        assert [(e.from_status, e.to_status, e.source, e.message, e.attempt) for e in stored.history()][-1] == (
            "RUN", expected.status.value, "worker-a", expected.message, 1)
    assert Job.objects.get(pk=queued[6].pk).status_code is Status.SUBMITTED
    claims = Counter(JobEvent.objects.filter(from_status="SUB", to_status="RUN").values_list("job_id", flat=True))
    assert claims == {job.pk: 1 for job in queued[:6]}
    # Nothing ended and a full worker: nothing is claimed and nothing is written.
    events = JobEvent.objects.count()
    assert manager.finish_and_claim([], PollResult(), ["LOCAL"], 0, source="worker-a") == (0, [])
    assert JobEvent.objects.count() == events


def test_an_end_whose_job_moved_meanwhile_is_rechecked_and_its_slot_claims_nothing_twice(
    job_manager, user, transactional_db
) -> None:
    first, second = _queue(job_manager, user, 2, "moved")
    (running,) = manager.claim(["LOCAL"], 1, source="worker")
    # Another process ends the job (a stop) while this worker still holds it as Running.
    manager.transition(Job.objects.get(pk=running.pk), Status.ABORTED, source="stop", message="stopped by a user")
    moved, claimed = manager.finish_and_claim(
        [running], PollResult(observations={running.pk: Observation(Status.COMPLETE, "")}), ["LOCAL"], 2,
        source="worker")
    assert moved == 0 and [job.pk for job in claimed] == [second.pk]
    stopped = Job.objects.get(pk=first.pk)
    assert stopped.status_code is Status.ABORTED
    assert [e.to_status for e in stopped.history()] == ["SUB", "RUN", "ABT"]


def _race(worker: int, barrier: Any, queue: Any) -> None:
    """One worker: claim up to SLOTS, and at each next wake-up record them all Complete and claim again."""
    try:
        barrier.wait(timeout=60)
        held: list[Job] = []
        seen: list[int] = []
        idle = 0
        while idle < 3:
            ends = PollResult(observations={job.pk: Observation(Status.COMPLETE, "") for job in held})
            _, claimed = manager.finish_and_claim(held, ends, ["LOCAL"], SLOTS, source=f"race-{worker}")
            if len(claimed) > SLOTS:
                raise AssertionError(f"claimed {len(claimed)} jobs with {SLOTS} free slots")
            seen += [job.pk for job in claimed]
            held = claimed
            idle = 0 if claimed else idle + 1
        queue.put(seen)
    except Exception as exc:  # reported to the test, not lost in the child
        queue.put(f"crash: {type(exc).__name__}: {exc}")
    finally:
        connections.close_all()


def test_racing_workers_claim_and_record_every_job_exactly_once(job_manager, user, transactional_db) -> None:
    jobs = _queue(job_manager, user, JOBS, "race")
    connections.close_all()  # the children open their own connections
    ctx = multiprocessing.get_context("fork")
    barrier, queue = ctx.Barrier(WORKERS), ctx.Queue()
    processes = [ctx.Process(target=_race, args=(n, barrier, queue)) for n in range(WORKERS)]
    for process in processes:
        process.start()
    outcomes = [queue.get(timeout=120) for _ in processes]
    for process in processes:
        process.join(timeout=60)
        assert process.exitcode == 0
    assert not [o for o in outcomes if isinstance(o, str)], outcomes
    claimed = [pk for seen in outcomes for pk in seen]
    ids = sorted(job.pk for job in jobs)
    assert sorted(claimed) == ids  # every job claimed, none twice
    assert Counter(Job.objects.filter(pk__in=ids).values_list("_status", flat=True)) == {"COM": JOBS}
    moves = Counter(JobEvent.objects.filter(job_id__in=ids).values_list("from_status", "to_status"))
    assert moves == {("PEN", "SUB"): JOBS, ("SUB", "RUN"): JOBS, ("RUN", "COM"): JOBS}
    # Each job's end was recorded by the worker that claimed it.
    for event in JobEvent.objects.filter(job_id__in=ids, to_status="COM"):
        claim = JobEvent.objects.get(job_id=event.job_id, to_status="RUN")
        assert event.source == claim.source


def test_a_wake_up_writes_the_notifications_its_moves_owe(job_manager, user, settings, transactional_db) -> None:
    settings.JOBTOWER = {**settings.JOBTOWER, "WEBHOOKS": [{"url": "http://127.0.0.1:9/hook", "secret": "s"}]}
    first, second = _queue(job_manager, user, 2, "hooked")
    Delivery.objects.all().delete()
    (running,) = manager.claim(["LOCAL"], 1, source="worker")
    ends = PollResult(observations={running.pk: Observation(Status.COMPLETE, "")})
    moved, claimed = manager.finish_and_claim([running], ends, ["LOCAL"], 1, source="worker")
    assert moved == 1 and [job.pk for job in claimed] == [second.pk]
    sent = sorted((row.job_id, row.payload["old"], row.payload["new"]) for row in Delivery.objects.all())
    assert sent == sorted([(first.pk, "Submitted", "Running"), (first.pk, "Running", "Complete"),
                           (second.pk, "Submitted", "Running")])


@pytest.mark.postgres
def test_on_postgresql_a_wake_up_is_one_statement(job_manager, user, transactional_db) -> None:
    from django.db import connection

    queued = _queue(job_manager, user, 3, "one")
    running = manager.claim(["LOCAL"], 2, source="worker")
    statements: list[str] = []

    def count(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        statements.append(sql)
        return execute(sql, params, many, context)

    ends = PollResult(observations={job.pk: Observation(Status.COMPLETE, "") for job in running})
    with connection.execute_wrapper(count):
        moved, claimed = manager.finish_and_claim(running, ends, ["LOCAL"], 2, source="worker")
    assert connection.vendor == "postgresql", "run this test with JOBTOWER_DATABASE_URL set to PostgreSQL"
    assert (moved, [job.pk for job in claimed]) == (2, [queued[2].pk])
    assert len(statements) == 1 and statements[0].startswith("WITH ")
