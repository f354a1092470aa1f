"""What manager.py does past sanitize(): tests written from mutants of the rest of the file that survived.

Each test checks what a caller or user can see (a status, an event row, a claim, a stored fact, a deleted
record), not how the code is written; docs/contributing.rst says how the mutants were run.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from jobtower import manager
from jobtower.backends import Observation, PollResult
from jobtower.errors import InvalidTransition
from jobtower.models import Job, JobEvent, Worker
from jobtower.statuses import Status

pytestmark = pytest.mark.django_db


def fresh(job: Job) -> Job:
    return Job.objects.get(pk=job.pk)


def moves(job: Job) -> list[tuple[str, str, str, str]]:
    """Return the job's history rows as (from, to, source, message)."""
    return [(e.from_status, e.to_status, e.source, e.message) for e in job.history()]


@pytest.fixture
def running(job_manager: Any, user: Any, memory: Any) -> Job:
    """A MEMORY job its engine reports Running, stored Running."""
    job = job_manager.create_job(name="r", user=user, job_type="MEMORY")
    job.execute()
    memory.set(job, Status.RUNNING)
    assert manager.transition(job, Status.RUNNING, source="engine") is True
    return fresh(job)


@pytest.fixture
def refuse_events() -> Iterator[Any]:
    """Make the database refuse JobEvent rows whose message is the given text (a real SQLite trigger)."""
    made: list[str] = []

    def refuse(message: str | None = None, job_id: int | None = None) -> None:
        name = f"refuse_{len(made)}"
        when = f"NEW.message = '{message}'" if message is not None else f"NEW.job_id = {int(job_id or 0)}"
        with connection.cursor() as cursor:
            cursor.execute(
                f"CREATE TRIGGER {name} BEFORE INSERT ON jobtower_jobevent WHEN {when} "
                "BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"
            )
        made.append(name)

    yield refuse
    with connection.cursor() as cursor:
        for name in made:
            cursor.execute(f"DROP TRIGGER IF EXISTS {name}")


# -- facts without a move ------------------------------------------------------------------------------


def test_engine_data_reported_without_a_move_is_merged_and_stored(running: Job) -> None:
    Job.objects.filter(pk=running.pk).update(engine_data={"kept": 1, "changed": "old"})
    job = fresh(running)
    events = job.history().count()
    assert manager.observe(job, Observation(Status.RUNNING, engine_data={"changed": "new", "added": 2})) is False
    assert fresh(job).engine_data == {"kept": 1, "changed": "new", "added": 2}
    assert job.engine_data == {"kept": 1, "changed": "new", "added": 2}  # the object says what is stored
    assert job.history().count() == events  # facts are not moves


def test_the_same_engine_data_again_writes_nothing(running: Job) -> None:
    Job.objects.filter(pk=running.pk).update(engine_data={"a": 1})
    job = fresh(running)
    assert manager.record_facts(job, Observation(Status.RUNNING, engine_data={"a": 1})) is False
    assert manager.record_facts(job, Observation(Status.RUNNING)) is False
    assert manager.record_facts(job, Observation(Status.RUNNING, engine_data={"a": 2})) is True
    assert fresh(job).engine_data == {"a": 2}


def test_a_new_progress_message_alone_is_stored(running: Job) -> None:
    job = running
    assert manager.record_facts(job, Observation(Status.RUNNING, progress=40, progress_message="a")) is True
    assert manager.record_facts(job, Observation(Status.RUNNING, progress=40, progress_message="a")) is False
    assert manager.record_facts(job, Observation(Status.RUNNING, progress=40, progress_message="b")) is True
    stored = fresh(job)
    assert (stored.progress, stored.progress_message) == (40, "b")


# -- a database that refuses a write -------------------------------------------------------------------


def test_a_refused_bulk_move_is_retried_job_by_job_and_each_refusal_ends_in_error(
    job_manager: Any, user: Any, memory: Any, refuse_events: Any
) -> None:
    jobs = []
    for n in range(3):
        job = job_manager.create_job(name=f"j{n}", user=user, job_type="MEMORY")
        job.execute()
        jobs.append(fresh(job))
    refuse_events(message="all done")
    moved = manager.apply_observations([(job, Observation(Status.ABORTED, "all done")) for job in jobs])
    assert moved == 3
    for job in jobs:
        ended = fresh(job)
        assert ended.status_code is Status.ERROR
        assert ended.status_message.startswith("could not record what the engine reported: IntegrityError")
        assert "refused by the test" in ended.status_message
        assert moves(ended)[-1][:3] == (Status.SUBMITTED.value, Status.ERROR.value, "engine")


def test_a_job_whose_error_move_is_refused_too_keeps_its_status(running: Job, refuse_events: Any) -> None:
    refuse_events(job_id=running.pk)
    assert manager.apply_observations([(running, Observation(Status.ABORTED, "gone"))]) == 0
    assert fresh(running).status_code is Status.RUNNING


def test_a_workers_refused_write_is_recorded_job_by_job(job_manager: Any, user: Any, memory: Any,
                                                        refuse_events: Any) -> None:
    jobs = []
    for n in range(2):
        job = job_manager.create_job(name=f"j{n}", user=user, job_type="MEMORY")
        job.execute()
        jobs.append(fresh(job))
    refuse_events(message="finished")
    answer = PollResult(observations={job.pk: Observation(Status.ABORTED, "finished") for job in jobs})
    moved, claimed = manager.finish_and_claim(jobs, answer, ["MEMORY"], 5, source="worker")
    assert (moved, claimed) == (2, [])
    for job in jobs:
        assert fresh(job).status_code is Status.ERROR
        assert "refused by the test" in fresh(job).status_message


def test_a_finished_job_the_engine_said_nothing_about_is_left_as_it_is(running: Job) -> None:
    moved, claimed = manager.finish_and_claim([running], PollResult(), [], 0, source="worker")
    assert (moved, claimed) == (0, [])
    assert fresh(running).status_code is Status.RUNNING


# -- the results step ----------------------------------------------------------------------------------


def results_ready(job: Job, **values: Any) -> Job:
    Job.objects.filter(pk=job.pk).update(_status=Status.RESULTS_READY.value, results_status=Status.COMPLETE.value,
                                         **values)
    return fresh(job)


def test_results_due_with_no_room_returns_nothing(running: Job) -> None:
    job = results_ready(running)
    assert [j.pk for j in manager.results_due(1)] == [job.pk]
    assert manager.results_due(0) == [] and manager.results_due(-1) == []
    assert manager.results_due(1, exclude=[job.pk]) == []


def test_renewing_a_claim_moves_its_time_and_only_for_results_ready_jobs(running: Job, job_manager: Any,
                                                                          user: Any) -> None:
    long_ago = timezone.now() - datetime.timedelta(hours=1)
    job = results_ready(running, results_claimed_at=long_ago, results_tries=1)
    other = job_manager.create_job(name="o", user=user, job_type="BASIC")
    other.execute()
    Job.objects.filter(pk=other.pk).update(results_claimed_at=long_ago)
    assert manager.renew_claims([]) == 0
    assert manager.renew_claims([job.pk, other.pk]) == 1
    assert fresh(job).results_claimed_at > long_ago
    assert fresh(other).results_claimed_at == long_ago
    assert manager.results_due(5) == []  # a renewed claim is held


def test_a_released_claim_is_free_again_and_gives_its_try_back(running: Job) -> None:
    job = results_ready(running, results_claimed_at=timezone.now(), results_tries=2)
    manager.release_claim(job.pk)
    released = fresh(job)
    assert released.results_claimed_at is None and released.results_tries == 1
    assert [j.pk for j in manager.results_due(5)] == [job.pk]
    Job.objects.filter(pk=job.pk).update(results_tries=0, results_claimed_at=timezone.now())
    manager.release_claim(job.pk)  # a step never counted is not counted below zero
    assert fresh(job).results_tries == 0 and fresh(job).results_claimed_at is not None


def test_the_engines_results_are_fetched_before_the_job_completes(running: Job, memory: Any) -> None:
    memory.results_supported = True
    job = results_ready(running)
    assert manager.process_results(job) is True
    assert ("fetch_results", job.pk) in memory.calls
    assert fresh(job).status_code is Status.COMPLETE


def test_a_stored_result_replaces_the_old_one_only_while_results_ready(running: Job) -> None:
    job = results_ready(running, result={"old": True})
    manager.store_result(job, {"rows": [1, 2]})
    assert fresh(job).result == {"rows": [1, 2]} and job.result == {"rows": [1, 2]}
    with pytest.raises(ValueError, match="process_results_function returned"):
        manager.store_result(job, {"bad": object()})
    assert fresh(job).result == {"rows": [1, 2]}
    Job.objects.filter(pk=job.pk).update(_status=Status.COMPLETE.value)
    manager.store_result(fresh(job), {"late": 1})
    assert fresh(job).result == {"rows": [1, 2]}  # a finished job's result stays


# -- checks on request -----------------------------------------------------------------------------------


def test_with_a_monitor_running_a_callback_flags_the_job_and_asks_no_engine(running: Job, memory: Any) -> None:
    Worker.objects.create(name="m", kind="monitor", host="here", pid=1, heartbeat=timezone.now())
    manager._monitor_seen[:] = [0.0, 0.0]
    try:
        memory.calls.clear()
        memory.set(running, Status.COMPLETE)
        assert manager.request_check(running) is False
        assert memory.calls == []
        stored = fresh(running)
        assert stored.check_requested is not None and stored.status_code is Status.RUNNING
    finally:
        manager._monitor_seen[:] = [0.0, 0.0]


def test_without_a_monitor_a_callback_checks_the_job_here(running: Job, memory: Any) -> None:
    manager._monitor_seen[:] = [0.0, 0.0]
    memory.set(running, Status.COMPLETE)
    assert manager.request_check(running) is True
    assert fresh(running).status_code is Status.COMPLETE and fresh(running).check_requested is None


# -- actions on jobs that are gone or never saved -----------------------------------------------------


def test_acting_on_a_deleted_job_says_it_does_not_exist(running: Job) -> None:
    Job.objects.filter(pk=running.pk).delete()
    with pytest.raises(Job.DoesNotExist, match=f"job {running.pk} does not exist"):
        manager.stop(running)


def test_deleting_a_job_never_saved_is_refused(job_manager: Any, user: Any) -> None:
    job = Job(name="never", job_type="BASIC", user=user)
    with pytest.raises(ValueError, match="never saved"):
        manager.delete(job)


def test_a_job_that_ended_before_delete_many_stopped_it_is_deleted(running: Job, memory: Any) -> None:
    stale = fresh(running)
    Job.objects.filter(pk=running.pk).update(_status=Status.COMPLETE.value)  # ended meanwhile
    with pytest.raises(InvalidTransition):
        manager.stop(stale)
    assert manager.delete_many(Job.objects.filter(pk=running.pk))[0] >= 1
    assert not Job.objects.filter(pk=running.pk).exists()
    assert JobEvent.objects.filter(job_id=running.pk).count() == 0
