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
from jobtower.backends import Capability, Observation, PollResult
from jobtower.backends.memory import MemoryBackend
from jobtower.errors import InvalidTransition, NotSupported, SubmitError
from jobtower.models import Job, JobEvent, Worker
from jobtower.statuses import Status

pytestmark = pytest.mark.django_db


def fresh(job: Job) -> Job:
    return Job.objects.get(pk=job.pk)


def moves(job: Job) -> list[tuple[str, str, str, str]]:
    """Return the job's history rows as (from, to, source, message)."""
    return [(e.from_status, e.to_status, e.source, e.message) for e in job.history()]


def submitted(job_manager: Any, user: Any, n: int, job_type: str = "MEMORY") -> list[Job]:
    """Return `n` new jobs of `job_type`, executed (Submitted), as stored."""
    jobs = []
    for i in range(n):
        job = job_manager.create_job(name=f"j{i}", user=user, job_type=job_type)
        job.execute()
        jobs.append(fresh(job))
    return jobs


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
    """Make the database refuse JobEvent rows whose message is the given text (a real trigger)."""
    made: list[str] = []
    postgres = connection.vendor == "postgresql"

    def refuse(message: str | None = None, job_id: int | None = None) -> None:
        name = f"refuse_{len(made)}"
        when = f"NEW.message = '{message}'" if message is not None else f"NEW.job_id = {int(job_id or 0)}"
        with connection.cursor() as cursor:
            if postgres:
                # check_violation: an IntegrityError, as SQLite's RAISE(ABORT) below
                cursor.execute(
                    f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                    "RAISE EXCEPTION 'refused by the test' USING ERRCODE = 'check_violation'; END $$"
                )
                cursor.execute(
                    f"CREATE TRIGGER {name} BEFORE INSERT ON jobtower_jobevent FOR EACH ROW WHEN ({when}) "
                    f"EXECUTE FUNCTION {name}()"
                )
            else:
                cursor.execute(
                    f"CREATE TRIGGER {name} BEFORE INSERT ON jobtower_jobevent WHEN {when} "
                    "BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"
                )
        made.append(name)

    yield refuse
    with connection.cursor() as cursor:
        for name in made:
            if postgres:
                cursor.execute(f"DROP TRIGGER IF EXISTS {name} ON jobtower_jobevent")
                cursor.execute(f"DROP FUNCTION IF EXISTS {name}()")
            else:
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
    jobs = submitted(job_manager, user, 3)
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
    jobs = submitted(job_manager, user, 2)
    refuse_events(message="finished")
    answer = PollResult(observations={job.pk: Observation(Status.ABORTED, "finished") for job in jobs})
    moved, claimed = manager.finish_and_claim(jobs, answer, ["MEMORY"], 5, source="worker")
    assert (moved, claimed) == (2, [])
    for job in jobs:
        assert fresh(job).status_code is Status.ERROR
        assert "refused by the test" in fresh(job).status_message


def test_a_finished_job_the_engine_said_nothing_about_is_left_as_it_is(running: Job, job_manager: Any,
                                                                       user: Any) -> None:
    other = job_manager.create_job(name="o", user=user, job_type="MEMORY")
    other.execute()
    answer = PollResult(observations={other.pk: Observation(Status.ABORTED, "ended")})
    moved, claimed = manager.finish_and_claim([running, fresh(other)], answer, [], 0, source="worker")
    assert (moved, claimed) == (1, [])
    assert fresh(running).status_code is Status.RUNNING
    assert fresh(other).status_code is Status.ABORTED  # the next job's news is not lost


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
    manager.release_claim(job.pk)
    assert fresh(job).results_tries == 0  # one try, handed back
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


# -- defaults and counts -------------------------------------------------------------------------------


@pytest.fixture
def counting(monkeypatch: Any, tmp_path: Any) -> None:
    """Let COUNTING jobs (a second engine type) be submitted."""
    monkeypatch.setenv("JOBTOWER_TEST_SUBMIT_LOG", str(tmp_path / "submitted.log"))


def test_an_observation_applied_without_a_source_is_the_engines(running: Job, job_manager: Any,
                                                                user: Any) -> None:
    assert manager.observe(running, Observation(Status.ABORTED, "gone")) is True
    assert moves(running)[-1] == (Status.RUNNING.value, Status.ABORTED.value, "engine", "gone")
    other = submitted(job_manager, user, 1)[0]
    assert manager.apply_observations([(other, Observation(Status.RUNNING))]) == 1
    assert moves(other)[-1][2] == "engine"


def test_a_job_with_nothing_new_does_not_stop_the_next_jobs_move(job_manager: Any, user: Any,
                                                                 memory: Any) -> None:
    same, moving = submitted(job_manager, user, 2)
    moved = manager.apply_observations([(same, Observation(Status.SUBMITTED)),
                                        (moving, Observation(Status.RUNNING))])
    assert moved == 1 and fresh(moving).status_code is Status.RUNNING


def test_moves_that_carry_facts_are_each_counted(job_manager: Any, user: Any, memory: Any) -> None:
    jobs = submitted(job_manager, user, 3)
    moved = manager.apply_observations([(job, Observation(Status.ABORTED, result={"n": n}))
                                        for n, job in enumerate(jobs)])
    assert moved == 3
    assert [fresh(job).result for job in jobs] == [{"n": 0}, {"n": 1}, {"n": 2}]


def test_a_move_without_progress_keeps_the_progress_reported_before(running: Job) -> None:
    assert manager.record_facts(running, Observation(Status.RUNNING, progress=50, progress_message="half"))
    job = fresh(running)
    assert manager.observe(job, Observation(Status.ABORTED, "stopped")) is True
    stored = fresh(job)
    assert (stored.progress, stored.progress_message) == (50, "half")


# -- moves written in bulk -----------------------------------------------------------------------------


def test_a_bulk_move_to_running_sets_start_time_once(job_manager: Any, user: Any, memory: Any) -> None:
    jobs = submitted(job_manager, user, 3)
    earlier = timezone.now() - datetime.timedelta(hours=2)
    Job.objects.filter(pk=jobs[0].pk).update(start_time=earlier)
    jobs[0] = fresh(jobs[0])
    before = timezone.now()
    assert manager.apply_observations([(job, Observation(Status.RUNNING)) for job in jobs]) == 3
    assert fresh(jobs[0]).start_time == earlier and jobs[0].start_time == earlier
    for job in jobs[1:]:
        assert fresh(job).start_time is not None and fresh(job).start_time >= before
        assert job.start_time == fresh(job).start_time
    aborted = submitted(job_manager, user, 2)
    assert manager.apply_observations([(job, Observation(Status.ABORTED)) for job in aborted]) == 2
    assert [fresh(job).start_time for job in aborted] == [None, None]
    assert [job.start_time for job in aborted] == [None, None]


def test_a_bulk_move_counts_the_job_that_moved_meanwhile_and_moves_it_from_where_it_is(
    job_manager: Any, user: Any, memory: Any
) -> None:
    jobs = submitted(job_manager, user, 3)
    Job.objects.filter(pk=jobs[0].pk).update(_status=Status.RUNNING.value)  # moved meanwhile
    assert manager.apply_observations([(job, Observation(Status.ABORTED, "gone")) for job in jobs]) == 3
    assert moves(fresh(jobs[0]))[-1][:2] == (Status.RUNNING.value, Status.ABORTED.value)
    assert all(fresh(job).status_code is Status.ABORTED for job in jobs)


# -- a worker finishing and claiming -------------------------------------------------------------------


def test_a_worker_records_plain_and_rich_endings_and_counts_both(job_manager: Any, user: Any,
                                                                 memory: Any) -> None:
    jobs = submitted(job_manager, user, 2)
    claimed = manager.claim(["MEMORY"], 2, source="worker")
    assert [j.pk for j in claimed] == [j.pk for j in jobs]
    plain, rich = claimed
    answer = PollResult(observations={plain.pk: Observation(Status.ABORTED, "done"),
                                      rich.pk: Observation(Status.ABORTED, "done", result={"x": 1})})
    moved, more = manager.finish_and_claim([plain, rich], answer, ["MEMORY"], 1, source="worker")
    assert (moved, more) == (2, [])
    assert fresh(rich).result == {"x": 1} and fresh(plain).status_code is Status.ABORTED


def test_a_worker_counts_the_finished_job_that_moved_meanwhile(job_manager: Any, user: Any, memory: Any) -> None:
    jobs = submitted(job_manager, user, 2)
    a, b = manager.claim(["MEMORY"], 2, source="worker")
    Job.objects.filter(pk=a.pk).update(_status=Status.PAUSED.value)  # a user paused it meanwhile
    answer = PollResult(observations={job.pk: Observation(Status.ABORTED, "ended") for job in (a, b)})
    moved, _ = manager.finish_and_claim([a, b], answer, [], 0, source="worker")
    assert moved == 2
    assert moves(fresh(a))[-1][:2] == (Status.PAUSED.value, Status.ABORTED.value)
    assert [fresh(job).status_code for job in jobs] == [Status.ABORTED, Status.ABORTED]


def test_a_stale_job_that_finishes_is_no_longer_stale(job_manager: Any, user: Any, memory: Any) -> None:
    submitted(job_manager, user, 1)
    job = manager.claim(["MEMORY"], 1, source="worker")[0]
    Job.objects.filter(pk=job.pk).update(stale_since=timezone.now())
    job = fresh(job)
    answer = PollResult(observations={job.pk: Observation(Status.ABORTED, "ended")})
    assert manager.finish_and_claim([job], answer, [], 0, source="worker")[0] == 1
    assert fresh(job).stale_since is None and fresh(job).status_code is Status.ABORTED


def test_a_claim_over_several_types_and_jobs_clears_the_queue_note_and_says_nothing(
    job_manager: Any, user: Any, memory: Any, counting: None, django_capture_on_commit_callbacks: Any
) -> None:
    from jobtower.signals import job_status_changed

    submitted(job_manager, user, 2)
    ending = manager.claim(["MEMORY"], 2, source="worker")
    queued = submitted(job_manager, user, 2) + submitted(job_manager, user, 1, job_type="COUNTING")
    Job.objects.filter(pk__in=[j.pk for j in queued]).update(status_message="waiting for a slot")
    heard: list[tuple[int, str, str]] = []

    def hear(sender: Any, job: Job, old: Status, new: Status, source: str, message: str, **kw: Any) -> None:
        heard.append((job.pk, new.value, message))

    job_status_changed.connect(hear)
    try:
        answer = PollResult(observations={job.pk: Observation(Status.ABORTED, "ended") for job in ending})
        with django_capture_on_commit_callbacks(execute=True):
            moved, claimed = manager.finish_and_claim(ending, answer, ["MEMORY", "COUNTING"], 5, source="w")
    finally:
        job_status_changed.disconnect(hear)
    assert moved == 2
    assert sorted(j.pk for j in claimed) == sorted(j.pk for j in queued)
    for job in queued:
        stored = fresh(job)
        assert stored.status_code is Status.RUNNING and stored.status_message == ""
        assert moves(stored)[-1] == (Status.SUBMITTED.value, Status.RUNNING.value, "w", "")
    assert sorted(heard) == sorted([(j.pk, Status.ABORTED.value, "ended") for j in ending]
                                   + [(j.pk, Status.RUNNING.value, "") for j in queued])


def test_an_idle_worker_with_a_queue_of_another_type_claims_nothing(job_manager: Any, user: Any, memory: Any,
                                                                    counting: None) -> None:
    waiting = submitted(job_manager, user, 1, job_type="COUNTING")[0]
    assert manager.finish_and_claim([], PollResult(), ["MEMORY"], 3, source="worker") == (0, [])
    assert manager.finish_and_claim([], PollResult(), ["MEMORY", "COUNTING"], 0, source="worker") == (0, [])
    assert manager.finish_and_claim([], PollResult(), ["MEMORY", "BASIC"], 3, source="worker") == (0, [])
    assert fresh(waiting).status_code is Status.SUBMITTED


# -- refused moves say where the job may go --------------------------------------------------------------


def test_an_illegal_move_names_the_moves_allowed_from_there(job_manager: Any, user: Any) -> None:
    from jobtower import statuses

    job = job_manager.create_job(name="p", user=user, job_type="BASIC")
    job.save()
    allowed = ", ".join(sorted(s.display for s in statuses.TRANSITIONS[Status.PENDING]))
    assert allowed  # a Pending job may go somewhere
    with pytest.raises(InvalidTransition) as info:
        manager.transition(job, Status.PAUSED, source="test")
    assert str(info.value) == f"job {job.pk} cannot move from Pending to Paused: from Pending a job may move to: " \
        f"{allowed}"
    assert (info.value.current, info.value.new) == (Status.PENDING.value, Status.PAUSED.value)


# -- a new attempt -------------------------------------------------------------------------------------


def test_a_new_attempt_starts_with_a_fresh_results_step(job_manager: Any, user: Any) -> None:
    job = job_manager.create_job(name="r", user=user, job_type="BASIC")
    job.execute()
    Job.objects.filter(pk=job.pk).update(_status=Status.ERROR.value, results_tries=3,
                                         results_status=Status.COMPLETE.value, results_claimed_at=timezone.now())
    manager.resubmit(fresh(job))
    again = fresh(job)
    assert again.attempt == 2 and again.status_code is Status.SUBMITTED
    assert (again.results_tries, again.results_status, again.results_claimed_at) == (0, "", None)


# -- the results step, claimed -----------------------------------------------------------------------------


def test_an_engine_with_a_results_step_finishes_at_results_ready_first(running: Job, memory: Any) -> None:
    memory.results_supported = True
    assert manager.has_results_step(running) is True
    assert manager.transition(running, Status.COMPLETE, source="engine") is True
    assert fresh(running).status_code is Status.RESULTS_READY


def test_a_claim_is_recorded_on_the_row_and_the_object(running: Job) -> None:
    job = results_ready(running)
    before = timezone.now()
    assert manager.claim_results(job) is True
    stored = fresh(job)
    assert stored.results_claimed_at is not None and stored.results_claimed_at >= before
    assert (job.results_tries, job.results_claimed_at) == (1, stored.results_claimed_at)
    assert stored.results_tries == 1
    assert manager.claim_results(fresh(job)) is False  # held
    assert manager.results_due(5) == []


def test_a_results_step_out_of_tries_ends_in_error_from_the_results_step(running: Job, settings: Any) -> None:
    long_ago = timezone.now() - datetime.timedelta(hours=1)
    job = results_ready(running, results_tries=3, results_claimed_at=long_ago)
    assert manager.claim_results(job) is False
    assert moves(fresh(job))[-1][:3] == (Status.RESULTS_READY.value, Status.ERROR.value, "results")


def test_a_failing_results_step_ends_in_error_from_the_results_step(running: Job) -> None:
    job = results_ready(running, _process_results_function="tests.results_functions:explode")
    assert manager.process_results(job) is True
    stored = fresh(job)
    assert stored.status_code is Status.ERROR
    assert "processing results failed: RuntimeError: the output file was empty" in stored.status_message
    assert moves(stored)[-1][:3] == (Status.RESULTS_READY.value, Status.ERROR.value, "results")


@pytest.mark.parametrize("function", ["stopped_meanwhile", "stopped_then_explode"])
def test_a_job_stopped_while_its_results_step_runs_stays_aborted(job_manager: Any, user: Any, function: str) -> None:
    job = job_manager.create_job(name="r", user=user, job_type="BASIC")
    job.execute()
    job = results_ready(job, _process_results_function=f"tests.results_functions:{function}")
    assert manager.process_results(job) is True
    assert fresh(job).status_code is Status.ABORTED


# -- freshness -------------------------------------------------------------------------------------------


def test_settling_or_refreshing_a_job_with_nothing_to_do_says_nothing_moved(job_manager: Any, user: Any,
                                                                          running: Job, settings: Any) -> None:
    basic = job_manager.create_job(name="b", user=user, job_type="BASIC")
    basic.execute()
    assert manager.settle(fresh(basic)) is False and manager.settle(running) is False
    assert manager.refresh(fresh(basic)) is False
    assert manager.refresh_if_due(fresh(basic)) is False
    settings.JOBTOWER = {**settings.JOBTOWER, "STATUS_REFRESH_INTERVAL": 3600}
    Job.objects.filter(pk=running.pk).update(last_status_check=timezone.now())
    assert manager.refresh_if_due(fresh(running)) is False  # checked a moment ago


# -- a workflow's nodes -----------------------------------------------------------------------------------


def test_node_messages_alone_are_stored_and_cut_to_size(job_manager: Any, user: Any) -> None:
    from tests.test_workflow import shell, workflow

    wf = workflow(job_manager, user)
    for name in "ab":
        wf.add_node(name=name, attributes=shell("true"))
    Job.objects.filter(pk=wf.pk).update(_status=Status.RUNNING.value)
    states = {"a": Status.RUNNING, "b": Status.RUNNING}
    manager.apply_observations([(fresh(wf), Observation(Status.VARIOUS, nodes=states))])
    long = "x" * 1200
    said = Observation(Status.VARIOUS, nodes=states, engine_data={"node_messages": {"a": "held by policy", "b": long}})
    manager.apply_observations([(fresh(wf), said)])
    stored = {node.name: node.status_message for node in fresh(wf).node_set.all()}
    assert stored == {"a": "held by policy", "b": "x" * 1000}


# -- stale marks, flags, the monitor's heartbeat -------------------------------------------------------


def test_marking_jobs_already_marked_changes_nothing(running: Job) -> None:
    assert manager.mark_stale([], True) == 0
    assert manager.mark_stale([running], False) == 0  # not stale: nothing to clear
    assert manager.mark_stale([running], True) == 1
    assert manager.mark_stale([fresh(running)], True) == 0


def test_a_check_flag_is_set_once_and_a_missing_job_is_said_missing(running: Job) -> None:
    assert manager.flag_for_check(running.pk) is True
    first = fresh(running).check_requested
    assert first is not None
    assert manager.flag_for_check(running.pk) is True  # flagged already: still a job to check
    assert fresh(running).check_requested == first
    assert manager.flag_for_check(running.pk + 1000) is False


def test_a_monitor_silent_for_longer_than_its_limit_is_gone(db: Any) -> None:
    stale = timezone.now() - datetime.timedelta(seconds=manager.MONITOR_STALE_AFTER + 0.5)
    Worker.objects.create(name="m", kind="monitor", host="here", pid=1, heartbeat=stale)
    manager._monitor_seen[:] = [0.0, 0.0]
    try:
        assert manager.MONITOR_STALE_AFTER == 15
        assert manager.monitor_alive() is False
        Worker.objects.filter(name="m").update(heartbeat=timezone.now())
        manager._monitor_seen[:] = [0.0, 0.0]
        assert manager.monitor_alive() is True
    finally:
        manager._monitor_seen[:] = [0.0, 0.0]


# -- what an engine cannot do ----------------------------------------------------------------------------


class WatchOnly(MemoryBackend):
    """An engine that reports statuses but takes no jobs."""

    name = "watch-only"

    @property
    def capabilities(self) -> frozenset[Capability]:  # type: ignore[override]
        return frozenset({Capability.POLL})


def test_an_engine_that_takes_no_jobs_refuses_execute_and_resubmit(job_manager: Any, user: Any,
                                                                   settings: Any) -> None:
    settings.JOBTOWER = {**settings.JOBTOWER,
                         "BACKENDS": {"MEMORY": {"BACKEND": "tests.test_manager_rest:WatchOnly"}}}
    job = job_manager.create_job(name="w", user=user, job_type="MEMORY")
    with pytest.raises(NotSupported) as info:
        job.execute()
    assert str(info.value) == f"MEMORY job {job.pk} cannot run: its engine (watch-only) does not support it"
    assert fresh(job).status_code is Status.PENDING
    Job.objects.filter(pk=job.pk).update(_status=Status.ERROR.value)
    with pytest.raises(NotSupported, match="cannot resubmit"):
        manager.resubmit(fresh(job))
    assert fresh(job).status_code is Status.ERROR and fresh(job).attempt == 1
    assert not manager.supports(job, "execute") and not manager.supports(job, "resubmit")
    assert manager.supports(job, "no such action")  # nothing needed, nothing refused


# -- actions and their history rows ----------------------------------------------------------------------


def test_a_refused_submission_ends_in_error_from_execute(job_manager: Any, user: Any, memory: Any) -> None:
    memory.fail_submit = "the queue is closed"
    job = job_manager.create_job(name="f", user=user, job_type="MEMORY")
    with pytest.raises(SubmitError, match="memory did not accept the job: ConnectionError: the queue is closed"):
        job.execute()
    assert moves(fresh(job))[-1][:3] == (Status.SUBMITTED.value, Status.ERROR.value, "execute")


def test_stop_and_resubmit_say_so_in_the_history(running: Job) -> None:
    manager.stop(running)
    assert moves(fresh(running))[-1] == (Status.RUNNING.value, Status.ABORTED.value, "stop", "stopped by a user")
    manager.resubmit(fresh(running))
    assert (Status.ABORTED.value, Status.PENDING.value, "resubmit", "new attempt") in moves(fresh(running))


def test_deleting_an_active_job_its_engine_cannot_stop_is_refused_unless_forced(
    job_manager: Any, user: Any, counting: None
) -> None:
    job = job_manager.create_job(name="c", user=user, job_type="COUNTING")
    job.execute()
    with pytest.raises(NotSupported, match="cannot stop"):
        manager.delete(fresh(job))
    assert Job.objects.filter(pk=job.pk).exists()
    manager.delete(fresh(job), force=True)
    assert not Job.objects.filter(pk=job.pk).exists()


# -- pruning -------------------------------------------------------------------------------------------


def test_pruning_counts_every_batch_and_takes_any_positive_age(job_manager: Any, user: Any) -> None:
    old = timezone.now() - datetime.timedelta(days=2)
    ids = []
    for n in range(3):
        job = job_manager.create_job(name=f"o{n}", user=user, job_type="BASIC")
        job.execute()
        Job.objects.filter(pk=job.pk).update(_status=Status.COMPLETE.value, completion_time=old)
        ids.append(job.pk)
    assert manager.prune(datetime.timedelta(seconds=1), dry_run=True) == 3
    assert manager.prune(datetime.timedelta(seconds=1), batch=2) == 3
    assert not Job.objects.filter(pk__in=ids).exists()
    with pytest.raises(ValueError, match="positive age"):
        manager.prune(datetime.timedelta(0))
