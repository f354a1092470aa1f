"""The engine seam: results as claimed work, capabilities, backends from settings, stale engines,
untrusted observations. The contract every backend passes is in test_contract.py."""

from __future__ import annotations

import ast
import datetime
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.core.exceptions import ImproperlyConfigured
from django.test import Client
from django.utils import timezone

from jobtower import manager
from jobtower.backends import Capability, get_backend
from jobtower.backends.memory import MemoryBackend
from jobtower.errors import NotSupported
from jobtower.gizmos import JobsTable
from jobtower.models import Job
from jobtower.monitor import Monitor
from jobtower.statuses import Status
from tests.conftest import wait_for
from tests.jobtypes import MEMORY_BACKEND

SRC = Path(__file__).resolve().parent.parent / "src" / "jobtower"


def fresh(job: Job) -> Job:
    return Job.objects.get(pk=job.pk)


def results_ready(job: Job, function: str, **values: Any) -> None:
    """Put a job in Results-Ready with `function` to run (set-up only; the engine did its part)."""
    Job.objects.filter(pk=job.pk).update(
        _status=Status.RESULTS_READY.value, results_status=Status.COMPLETE.value,
        _process_results_function=function, **values,
    )
    job.refresh_from_db()


# -- one-way seam -----------------------------------------------------------------------------------


def test_no_backend_imports_the_manager() -> None:
    offenders = []
    for path in sorted((SRC / "backends").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""] + [f"{node.module}.{a.name}" for a in node.names]
            offenders += [f"{path.name}: {n}" for n in names if n in ("jobtower.manager", "jobtower.monitor")]
    assert offenders == []


# -- results processing as its own step --------------------------------------------------------------


def test_a_results_step_killed_mid_function_is_taken_over_and_the_job_completes(
    job_manager, user, engine_env
) -> None:
    job = job_manager.create_job(name="r", user=user, job_type="BASIC")
    job.execute()
    results_ready(job, "tests.results_functions:hang_first_time")
    env = {**engine_env, "JOBTOWER_TEST_RESULTS_CLAIM_TIMEOUT": "2"}
    runs = job.folder / "results_runs"

    def start() -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "jobtower.cli", "monitor", "--interval", "0.2"], env=env)

    first = start()
    try:
        wait_for(lambda: runs.exists() and runs.read_text().strip(), 30, what="the results step to start")
        first.send_signal(signal.SIGKILL)  # mid-function: the claim stays behind
        first.wait(10)
        held = fresh(job)
        assert held.status_code is Status.RESULTS_READY and held.results_tries == 1
        assert held.results_claimed_at is not None
    finally:
        first.kill()
    second = start()
    try:
        done = wait_for(lambda: (j := fresh(job)).status_code.is_terminal and j, 60, what="the job to end")
    finally:
        second.terminate()
        second.wait(10)
    assert done.status_code is Status.COMPLETE, done.status_message
    assert done.results_tries == 2 and len(runs.read_text().splitlines()) == 2  # at least once: twice here
    assert (job.folder / "processed.txt").exists()
    assert done.history().last().source == "results"


def test_a_results_step_that_keeps_dying_ends_in_error_after_its_tries(job_manager, user, db) -> None:
    job = job_manager.create_job(name="r", user=user, job_type="BASIC")
    job.execute()
    long_ago = timezone.now() - datetime.timedelta(hours=1)
    results_ready(job, "tests.results_functions:record", results_tries=3, results_claimed_at=long_ago)
    Monitor(results_threads=0).cycle()
    ended = fresh(job)
    assert ended.status_code is Status.ERROR
    assert "did not finish in 3 tries" in ended.status_message and "Resubmit" in ended.status_message


def test_a_live_claim_is_left_alone_and_an_expired_one_taken_over(job_manager, user, db) -> None:
    job = job_manager.create_job(name="r", user=user, job_type="BASIC")
    job.execute()
    results_ready(job, "tests.results_functions:record", results_tries=1, results_claimed_at=timezone.now())
    assert manager.results_due(10) == [] and manager.process_results(job) is False
    assert fresh(job).status_code is Status.RESULTS_READY
    Job.objects.filter(pk=job.pk).update(results_claimed_at=timezone.now() - datetime.timedelta(hours=1))
    assert [j.pk for j in manager.results_due(10)] == [job.pk]
    assert manager.process_results(fresh(job)) is True
    assert fresh(job).status_code is Status.COMPLETE and fresh(job).results_tries == 2


def test_an_interrupted_results_step_is_handed_back_at_once(job_manager, user, db) -> None:
    job = job_manager.create_job(name="r", user=user, job_type="BASIC")
    job.execute()
    results_ready(job, "tests.results_functions:interrupted")
    with pytest.raises(KeyboardInterrupt):
        manager.process_results(job)
    released = fresh(job)
    assert released.status_code is Status.RESULTS_READY
    assert released.results_claimed_at is None and released.results_tries == 1
    Job.objects.filter(pk=job.pk).update(_process_results_function="tests.results_functions:record")
    Monitor(results_threads=0).cycle()
    assert fresh(job).status_code is Status.COMPLETE and fresh(job).results_tries == 2


def test_transition_only_moves_status_and_a_monitor_runs_the_results(job_manager, user, memory,
                                                                      transactional_db) -> None:
    from tests import results_functions

    results_functions.CALLS.clear()
    monitor = Monitor(results_threads=1)
    monitor.heartbeat.beat(force=True)
    manager._monitor_seen[:] = [0.0, 0.0]
    try:
        job = job_manager.create_job(name="r", user=user, job_type="MEMORY",
                                     process_results_function="tests.results_functions:record")
        job.execute()
        memory.set(job, Status.COMPLETE)
        assert manager.transition(job, Status.COMPLETE, source="engine") is True
        assert job.status_code is Status.RESULTS_READY and results_functions.CALLS == []
        assert job.status == "Results-Ready"  # a read while a monitor runs runs no user code
        assert results_functions.CALLS == []
        monitor.cycle()
        monitor.wait_for_results(30)
        assert fresh(job).status_code is Status.COMPLETE and results_functions.CALLS == [job.pk]
    finally:
        monitor.heartbeat.remove()
        manager._monitor_seen[:] = [0.0, 0.0]


def test_without_a_monitor_reading_the_status_finishes_a_results_ready_job(job_manager, user, db) -> None:
    manager._monitor_seen[:] = [0.0, 0.0]
    job = job_manager.create_job(name="r", user=user, job_type="BASIC")
    job.execute()
    results_ready(job, "tests.results_functions:record")
    assert fresh(job).status == "Complete"


# -- capabilities ---------------------------------------------------------------------------------------


@pytest.fixture
def no_hold(settings: Any) -> MemoryBackend:
    """MEMORY jobs on an engine that cannot hold, chosen through JOBTOWER["BACKENDS"]."""
    settings.JOBTOWER = {**settings.JOBTOWER,
                         "BACKENDS": {"MEMORY": {"BACKEND": MEMORY_BACKEND, "OPTIONS": {"hold": False}}}}
    backend = get_backend(MEMORY_BACKEND, {"hold": False})
    assert isinstance(backend, MemoryBackend)
    backend.reset()
    yield backend
    backend.reset()


def running_on(job_manager, user, backend: MemoryBackend) -> Job:  # noqa: ANN001
    job = job_manager.create_job(name="no <hold>", user=user, job_type="MEMORY")
    job.execute()
    backend.set(job, Status.RUNNING)
    job.update_status()
    assert fresh(job).status_code is Status.RUNNING
    return fresh(job)


def test_backends_come_from_settings_with_their_options(job_manager, user, db, no_hold, memory) -> None:
    job = running_on(job_manager, user, no_hold)
    assert job.get_backend() is no_hold and no_hold is not memory
    assert no_hold.submitted == [job.pk] and memory.submitted == []
    assert Capability.HOLD not in manager.capabilities(job)


def test_broken_backend_settings_are_clear_errors(settings, job_manager, user, db) -> None:
    job = job_manager.create_job(name="b", user=user, job_type="MEMORY")
    settings.JOBTOWER = {**settings.JOBTOWER, "BACKENDS": {"MEMORY": {"BACKEND": MEMORY_BACKEND, "OPTION": {}}}}
    with pytest.raises(ImproperlyConfigured, match="unknown keys"):
        job.get_backend()
    settings.JOBTOWER = {**settings.JOBTOWER, "BACKENDS": {"MEMORY": "jobtower.backends.local:NoSuchBackend"}}
    with pytest.raises(ImportError, match="NoSuchBackend"):
        job.get_backend()
    settings.JOBTOWER = {**settings.JOBTOWER, "BACKENDS": {"MEMORY": "jobtower.models:Job"}}
    with pytest.raises(ImproperlyConfigured, match="not a jobtower backend"):
        job.get_backend()
    with pytest.raises(TypeError, match="takes no OPTIONS, got: colour"):
        get_backend("jobtower.backends.local:LocalBackend", {"colour": "red"})


def test_pause_on_an_engine_that_cannot_hold_is_not_offered_and_refused_with_409(
    job_manager, user, db, no_hold
) -> None:
    job = running_on(job_manager, user, no_hold)
    html = str(JobsTable(jobs=[job]).render(_request(user)))
    assert 'data-jt-action="terminate"' in html and 'data-jt-action="pause"' not in html
    with pytest.raises(NotSupported, match="cannot pause: its engine \\(memory\\) does not support it"):
        manager.pause(job)
    client = Client()
    client.force_login(user)
    config = JobsTable(jobs=[], actions=["pause"]).config().sign()
    url = f"/jobs-table/action/{job.pk}/pause/"
    as_json = client.post(url, {"config": config}, HTTP_ACCEPT="application/json")
    assert as_json.status_code == 409 and "engine does not support it" in as_json.json()["error"]
    as_page = client.post(url, {"config": config})
    assert as_page.status_code == 409 and as_page["Content-Type"].startswith("text/html")
    assert b"engine does not support it" in as_page.content
    user.user_permissions.add(Permission.objects.get(codename="add_job", content_type__app_label="jobtower"))
    api = client.post(f"/api/jobs/{job.pk}/pause/")
    assert api.status_code == 409 and "does not support" in api.json()["error"]
    shown = client.get(f"/api/jobs/{job.pk}/").json()
    assert "hold" not in shown["capabilities"] and {"submit", "stop", "logs"} <= set(shown["capabilities"])
    assert fresh(job).status_code is Status.RUNNING and ("hold", job.pk) not in no_hold.calls


def test_an_engine_that_cannot_stop_refuses_stop_and_a_plain_delete(job_manager, user, db, set_status) -> None:
    job = job_manager.create_job(name="c", user=user, job_type="COUNTING")
    job.save()
    set_status(job, Status.RUNNING)
    assert manager.supports(job, "stop") is False and manager.supports(job, "logs") is False
    html = str(JobsTable(jobs=[job]).render(_request(user)))
    assert 'data-jt-action="terminate"' not in html and 'data-jt-action="pause"' not in html
    with pytest.raises(NotSupported, match="cannot stop"):
        job.stop()
    client = Client()
    client.force_login(user)
    logs = client.get(f"/api/jobs/{job.pk}/logs/")
    assert logs.status_code == 409 and "cannot logs" not in logs.json()["error"]
    assert "does not support it" in logs.json()["error"]
    with pytest.raises(NotSupported):
        job.delete()
    assert Job.objects.filter(pk=job.pk).exists()
    job.delete(force=True)
    assert not Job.objects.filter(pk=job.pk).exists()


def test_jobs_the_app_drives_can_do_everything(job_manager, user, db) -> None:
    job = job_manager.create_job(name="b", user=user, job_type="BASIC")
    assert manager.capabilities(job) == frozenset(Capability)
    assert all(manager.supports(job, action) for action in manager.NEEDS)


def _request(user) -> Any:  # noqa: ANN001
    from django.test import RequestFactory

    request = RequestFactory().get("/")
    request.user = user
    return request


# -- stale engines and untrusted observations -------------------------------------------------------


def test_an_unreachable_engine_leaves_statuses_marked_stale_until_it_answers(job_manager, user, memory,
                                                                             transactional_db) -> None:
    jobs = [job_manager.create_job(name=f"s{i}", user=user, job_type="MEMORY") for i in range(3)]
    for job in jobs:
        job.execute()
        memory.set(job, Status.RUNNING)
    monitor = Monitor(results_threads=0)
    monitor.cycle()
    memory.unreachable = {jobs[0].pk}
    for job in jobs:
        memory.set(job, Status.COMPLETE)
    monitor.cycle()
    away, *others = (fresh(job) for job in jobs)
    assert away.status_code is Status.RUNNING and away.stale_since is not None
    assert all(j.status_code is Status.COMPLETE and j.stale_since is None for j in others)
    memory.unreachable = set()
    memory.fail_poll = "engine down"  # a poll that raises: every job it was asked about is stale
    monitor.cycle()
    assert fresh(jobs[0]).stale_since is not None
    memory.fail_poll = None
    monitor.cycle()
    back = fresh(jobs[0])
    assert back.status_code is Status.COMPLETE and back.stale_since is None


@pytest.mark.parametrize("facts, reason", [
    ({"result": float("nan")}, "not plain JSON"),
    ({"result": {"text": "a\x00b"}}, "NUL"),
    ({"result": "x" * 2_000_000}, "at most"),
    ({"engine_data": {"when": object()}}, "not plain JSON"),
])
def test_a_poisoned_observation_ends_that_job_and_the_others_complete(facts, reason, job_manager, user, memory,
                                                                      transactional_db) -> None:
    poisoned = job_manager.create_job(name="poison", user=user, job_type="MEMORY")
    healthy = [job_manager.create_job(name=f"h{i}", user=user, job_type="MEMORY") for i in range(20)]
    for job in (poisoned, *healthy):
        job.execute()
        memory.set(job, Status.COMPLETE)
    memory.set(poisoned, Status.COMPLETE, **facts)
    Monitor(results_threads=0).cycle()
    bad = fresh(poisoned)
    assert bad.status_code is Status.ERROR and reason in bad.status_message
    assert [fresh(job).status_code for job in healthy] == [Status.COMPLETE] * 20


def test_what_a_job_reports_is_cleaned_before_it_is_stored(job_manager, user, memory, transactional_db) -> None:
    jobs = [job_manager.create_job(name=f"p{i}", user=user, job_type="MEMORY") for i in range(4)]
    for job in jobs:
        job.execute()
    memory.set(jobs[0], Status.RUNNING, "bad\x00byte", progress=10, progress_message="a\x00b")
    memory.set(jobs[1], Status.RUNNING, progress=float("inf"))
    memory.set(jobs[2], Status.RUNNING, progress=int("1" + "0" * 400), progress_message="too big")
    memory.set(jobs[3], Status.RUNNING, "m" * 10_000, progress="lots")  # type: ignore[arg-type]
    Monitor(results_threads=0).cycle()
    first, infinite, huge, wordy = (fresh(job) for job in jobs)
    assert all(j.status_code is Status.RUNNING for j in (first, infinite, huge, wordy))
    assert first.status_message == "badbyte" and first.progress == 10 and first.progress_message == "ab"
    assert infinite.progress is None and huge.progress is None and wordy.progress is None
    assert len(wordy.status_message) == manager.MAX_MESSAGE


def test_a_write_the_database_refuses_ends_only_that_job(job_manager, user, memory, transactional_db,
                                                         monkeypatch) -> None:
    from django.db import DatabaseError

    jobs = [job_manager.create_job(name=f"w{i}", user=user, job_type="MEMORY") for i in range(5)]
    for job in jobs:
        job.execute()
        memory.set(job, Status.RUNNING, progress=5)
    real = manager.record_facts
    refused = jobs[2].pk

    def record_facts(job: Job, observation: Any) -> bool:
        if job.pk == refused:
            raise DatabaseError("value too long for type character varying(255)")
        return real(job, observation)

    monkeypatch.setattr(manager, "record_facts", record_facts)
    Monitor(results_threads=0).cycle()
    states = {job.pk: fresh(job).status_code for job in jobs}
    assert states.pop(refused) is Status.ERROR
    assert set(states.values()) == {Status.RUNNING}
    assert "could not record" in fresh(jobs[2]).status_message


def test_a_busy_database_leaves_the_job_for_the_next_cycle_not_in_error(job_manager, user, memory,
                                                                        transactional_db, monkeypatch) -> None:
    from django.db import OperationalError

    jobs = [job_manager.create_job(name=f"b{i}", user=user, job_type="MEMORY") for i in range(3)]
    for job in jobs:
        job.execute()
        memory.set(job, Status.RUNNING, progress=5)
    real = manager.record_facts
    busy = jobs[1].pk

    def record_facts(job: Job, observation: Any) -> bool:
        if job.pk == busy:
            raise OperationalError("database is locked")
        return real(job, observation)

    monkeypatch.setattr(manager, "record_facts", record_facts)
    Monitor(results_threads=0).cycle()
    waiting = fresh(jobs[1])
    assert waiting.status_code is Status.RUNNING and waiting.progress is None  # moved; its progress waits
    monkeypatch.setattr(manager, "record_facts", real)
    Monitor(results_threads=0).cycle()
    assert [fresh(job).status_code for job in jobs] == [Status.RUNNING] * 3
    assert [fresh(job).progress for job in jobs] == [5.0] * 3
