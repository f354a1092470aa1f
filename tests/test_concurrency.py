"""execute() is exactly-once: 16 threads and 4 processes race on one job; one submission, one event."""

from __future__ import annotations

import multiprocessing
import threading
from pathlib import Path

import pytest
from django.db import connections

from jobtower.errors import AlreadyExecuted
from jobtower.models import Job, JobEvent
from tests.jobtypes import submissions

THREADS = 16
PROCESSES = 4


def _execute(job_id: int, barrier, results: list) -> None:  # noqa: ANN001
    try:
        job = Job.objects.get(pk=job_id)
        barrier.wait(timeout=60)
        try:
            job.execute()
            results.append("submitted")
        except AlreadyExecuted:
            results.append("refused")
    except Exception as exc:  # a crash must show up in the assertion, not vanish in a thread
        results.append(f"crash: {type(exc).__name__}: {exc}")
    finally:
        connections.close_all()


def _process_main(job_id: int, barrier, queue) -> None:  # noqa: ANN001
    results: list[str] = []
    _execute(job_id, barrier, results)
    queue.put(results[0])


@pytest.mark.django_db(transaction=True)
def test_sixteen_threads_and_four_processes_submit_once(job_manager, user, tmp_path: Path, monkeypatch) -> None:
    log = tmp_path / "submissions.log"
    monkeypatch.setenv("JOBTOWER_TEST_SUBMIT_LOG", str(log))
    job = job_manager.create_job(name="race_{id}", user=user, job_type="COUNTING")
    job.save()

    # Children open their own connections: nothing may be shared across the fork.
    connections.close_all()
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(THREADS + PROCESSES)
    queue = ctx.Queue()
    processes = [ctx.Process(target=_process_main, args=(job.pk, barrier, queue)) for _ in range(PROCESSES)]
    for process in processes:
        process.start()
    results: list[str] = []
    threads = [threading.Thread(target=_execute, args=(job.pk, barrier, results)) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    outcomes = results + [queue.get(timeout=120) for _ in processes]
    for process in processes:
        process.join(timeout=60)
        assert process.exitcode == 0

    assert sorted(outcomes) == ["refused"] * (THREADS + PROCESSES - 1) + ["submitted"], outcomes
    assert len(submissions(log)) == 1
    events = list(JobEvent.objects.filter(job_id=job.pk).values_list("from_status", "to_status"))
    assert events == [("PEN", "SUB")]
    assert Job.objects.get(pk=job.pk).status == "Submitted"


def _create(job_manager, user, barrier, names: list, count: int) -> None:  # noqa: ANN001
    try:
        barrier.wait(timeout=60)
        for n in range(count):
            job = job_manager.create_job(name=f"race_{{id}}_{n}", user=user, job_type="BASIC")
            job.save()
            names.append((job.pk, job.name))
    except Exception as exc:  # a crash must show up in the assertion, not vanish in a thread
        names.append((None, f"crash: {type(exc).__name__}: {exc}"))
    finally:
        connections.close_all()


@pytest.mark.django_db(transaction=True)
def test_concurrent_saves_give_distinct_ids_each_expanded_in_its_own_name(job_manager, user) -> None:
    """Each save draws its id inside its one INSERT: writers racing never share an id or a name."""
    barrier = threading.Barrier(8)
    names: list = []
    threads = [threading.Thread(target=_create, args=(job_manager, user, barrier, names, 25)) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert len(names) == 200 and all(pk is not None for pk, _ in names), [n for n in names if n[0] is None][:3]
    assert len({pk for pk, _ in names}) == 200
    stored = dict(Job.objects.values_list("pk", "name"))
    assert all(stored[pk] == name and name.startswith(f"race_{pk}_") for pk, name in names)
