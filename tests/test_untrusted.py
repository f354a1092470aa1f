"""Everything a LOCAL job writes is untrusted: one hostile or broken job never stalls the others.

Real processes write the poison (a NUL in stderr or progress, a huge or non-numeric progress, a forged
exit code, a list-shaped result); a fuzz test writes random bytes into every file a job can write. In
each case every healthy job still ends Complete, and the poisoned one ends with a clear reason.
"""

from __future__ import annotations

import random

import pytest

from jobtower import manager
from jobtower.backends import local
from jobtower.models import Job
from jobtower.monitor import Monitor
from jobtower.statuses import Status
from tests.conftest import wait_for

#: Shell commands that each poison what the job leaves behind, and what must be said about them.
POISONS = {
    "nul-in-stderr": (["sh", "-c", r"printf 'bad\000byte\n' >&2; exit 1"], Status.ERROR, "exit code 1: badbyte"),
    "huge-progress": (["sh", "-c", 'printf \'{"percent": 1%0400d}\' 0 > "$JOBTOWER_PROGRESS_FILE"'],
                      Status.COMPLETE, ""),
    "nan-progress": (["sh", "-c", 'echo \'{"percent": NaN, "message": "x"}\' > "$JOBTOWER_PROGRESS_FILE"'],
                     Status.COMPLETE, ""),
    "forged-exit-code": (["sh", "-c", 'd=$(dirname "$JOBTOWER_PROGRESS_FILE"); '
                          'echo \'{"exit_code": "zero"}\' > "$d/exit.json"; sleep 2'],
                         Status.ERROR, "could not read the job's state files"),
}


def settle(jobs: list[Job], timeout: float = 60.0, waiting_for: list[Job] | None = None) -> dict[int, Job]:
    """Run monitor cycles until every job (of `waiting_for`) has ended; return them all as stored."""
    monitor = Monitor(results_threads=0)
    wanted = {job.pk for job in (jobs if waiting_for is None else waiting_for)}

    def done() -> dict[int, Job] | None:
        monitor.cycle()
        stored = {job.pk: job for job in Job.objects.filter(pk__in=[j.pk for j in jobs])}
        return stored if all(stored[pk].status_code.is_terminal for pk in wanted) else None

    return wait_for(done, timeout, interval=0.1, what="every job to end")


def finished_function_jobs(job_manager, user, n: int, result: str) -> list[Job]:  # noqa: ANN001
    """Return `n` claimed function jobs whose attempt folders say they ended well with `result`.

    No process runs: the files are written as a supervisor and the job would, so a test can then
    overwrite any of them as a hostile or broken job might.
    """
    for i in range(n):
        job_manager.create_job(name=f"f{i}", user=user, job_type="LOCAL", function="tests.local_functions:add",
                               args=[1, 2]).execute()
    claimed = manager.claim(["LOCAL"], n, source="test")
    for job in claimed:
        folder = local.attempt_dir(job)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "supervisor.pid").write_text("999999999")  # a pid that cannot be alive
        (folder / "exit.json").write_text('{"exit_code": 0}')
        (folder / "result.json").write_text(result)
        (folder / "progress.json").write_text('{"percent": 100, "message": "done"}')
    return claimed


@pytest.mark.parametrize("poison", sorted(POISONS))
def test_a_poisoned_local_job_never_holds_up_twenty_healthy_ones(poison, job_manager, user, local_worker) -> None:
    command, status, message = POISONS[poison]
    bad = job_manager.create_job(name=poison, user=user, job_type="LOCAL", command=command)
    healthy = [job_manager.create_job(name=f"ok{i}", user=user, job_type="LOCAL", command=["true"])
               for i in range(20)]
    for job in (bad, *healthy):
        job.execute()
    stored = settle([bad, *healthy])
    assert [stored[job.pk].status_code for job in healthy] == [Status.COMPLETE] * 20
    ended = stored[bad.pk]
    assert ended.status_code is status and message in ended.status_message, ended.status_message
    assert "\x00" not in ended.status_message and (ended.progress is None or 0 <= ended.progress <= 100)


def test_nul_in_a_progress_message_is_dropped_not_stored(job_manager, user, local_worker) -> None:
    job = job_manager.create_job(name="p", user=user, job_type="LOCAL", function="tests.local_functions:nul_progress")
    job.execute()
    done = settle([job])[job.pk]
    assert done.status_code is Status.COMPLETE and done.progress == 10 and done.progress_message == "ab"


def test_a_list_shaped_result_ends_that_job_with_a_reason(job_manager, user, transactional_db) -> None:
    claimed = finished_function_jobs(job_manager, user, 3, '{"value": 3}')
    (local.attempt_dir(claimed[1]) / "result.json").write_text("[1, 2, 3]")
    stored = settle(claimed)
    first, listed, last = (stored[job.pk] for job in claimed)
    assert first.status_code is last.status_code is Status.COMPLETE and first.result == 3
    assert listed.status_code is Status.ERROR and "result.json" in listed.status_message


FILES = ("progress.json", "result.json", "exit.json", "supervisor.pid", "exit.reserved")


def test_random_bytes_in_every_file_a_job_writes_never_stop_the_others(job_manager, user,
                                                                        transactional_db) -> None:
    rng = random.Random(20261207)
    claimed = finished_function_jobs(job_manager, user, 60, '{"value": {"sum": 3}}')
    healthy, fuzzed = claimed[::3], [job for n, job in enumerate(claimed) if n % 3]
    for job in fuzzed:
        folder = local.attempt_dir(job)
        for name in rng.sample(FILES, rng.randint(1, len(FILES))):
            size = rng.choice([0, 1, 7, 64, 4096])
            data = bytes(rng.getrandbits(8) for _ in range(size))
            if rng.random() < 0.3:  # valid JSON holding hostile values
                data = rng.choice([b'{"percent": 1e999}', b'{"value": "\\u0000"}', b'{"exit_code": 1.5}',
                                   b'{"exit_code": null}', b"[]", b'{"percent": "x", "message": 5}',
                                   b'{"value": ' + b"[" * 5000 + b"]" * 5000 + b"}"])
            (folder / name).write_bytes(data)
    stored = settle(claimed, waiting_for=healthy)
    assert [stored[job.pk].status_code for job in healthy] == [Status.COMPLETE] * len(healthy)
    assert all(stored[job.pk].result == {"sum": 3} for job in healthy)
    for job in fuzzed:  # whatever it ends as (a job with no readable pid waits to be run again)
        ended = stored[job.pk]
        assert "\x00" not in ended.status_message and "\x00" not in ended.progress_message
        assert ended.progress is None or 0 <= ended.progress <= 100


# -- what a function job leaves, read back on every engine (functions.outcome) ------------------------


@pytest.fixture
def left(job_manager, user, transactional_db, tmp_path):  # noqa: ANN001, ANN201
    """A saved function job and the folder of its attempt, where a test writes what the job left."""
    job = job_manager.create_job(name="f", user=user, job_type="LOCAL", function="tests.local_functions:add",
                                 workspace=str(tmp_path))
    job.save()
    folder = local.attempt_dir(job)
    folder.mkdir(parents=True)
    return job, folder


def test_a_result_reached_through_a_link_is_not_read(left, tmp_path) -> None:  # noqa: ANN001
    from jobtower.backends import functions
    from jobtower.backends.base import Observation

    job, folder = left
    secret = tmp_path / "secret.json"
    secret.write_text('{"value": "the server\'s own file"}')
    (folder / "result.json").symlink_to(secret)
    seen = functions.outcome(job, Observation(Status.COMPLETE))
    assert seen.status is Status.ERROR and seen.result is None and "link" in seen.message
    # A link anywhere below the job's folder is refused too: the job owns every step of the way.
    (folder / "result.json").unlink()
    real = tmp_path / "elsewhere"
    real.mkdir()
    (real / "result.json").write_text('{"value": 1}')
    folder.rmdir()
    folder.symlink_to(real)
    seen = functions.outcome(job, Observation(Status.COMPLETE))
    assert seen.status is Status.ERROR and "link" in seen.message


@pytest.mark.parametrize(("content", "words"), [
    ("fifo", "not a regular file"),
    ("huge", "at most 1,100,000 are read"),
    ('{"value": NaN}', "not JSON"),
    ('{"value": ' + "[" * 5000 + "]" * 5000 + "}", "not JSON"),
    ("[1, 2]", 'must hold {"value": ...}'),
    ("", "not JSON"),
])
def test_a_hostile_result_file_ends_the_job_in_error_with_the_reason(left, content, words) -> None:  # noqa: ANN001
    import os

    from jobtower.backends import functions
    from jobtower.backends.base import Observation

    job, folder = left
    path = folder / "result.json"
    if content == "fifo":
        os.mkfifo(path)  # a reader that opened it blocking would wait forever
    elif content == "huge":
        path.write_bytes(b'{"value": "' + b"x" * 1_200_000 + b'"}')
    else:
        path.write_text(content)
    seen = functions.outcome(job, Observation(Status.COMPLETE))
    assert seen.status is Status.ERROR and seen.result is None and words in seen.message, seen.message


def test_the_exception_a_function_raised_is_the_reason_and_a_missing_one_keeps_the_engines(left) -> None:  # noqa: ANN001
    from jobtower.backends import functions
    from jobtower.backends.base import Observation

    job, folder = left
    engine_says = Observation(Status.ERROR, "exit code 1")
    assert functions.outcome(job, engine_says).message == "exit code 1"  # killed before it could say
    (folder / "error.json").write_text('{"type": "pkg.mod.Diverged", "message": "dt too big"}')
    assert functions.outcome(job, engine_says).message == "pkg.mod.Diverged: dt too big"
    (folder / "error.json").write_text('{"type": 5, "message": ["not", "text"]}')
    assert functions.outcome(job, engine_says).message == "exit code 1"
