"""LOCAL jobs with real processes: success, failure, timeout, stop, pause/resume, resubmit, results."""

from __future__ import annotations

import time

import pytest

from jobtower.backends import local
from jobtower.models import Job, JobEvent, LocalJob
from jobtower.statuses import Status
from tests.conftest import ended, gone, group_frozen, status_is, wait_for


def test_command_runs_in_its_folder_with_logs(job_manager, user, local_worker) -> None:
    job = job_manager.create_job(
        name="model_{id}", user=user, job_type="LOCAL",
        command=["sh", "-c", 'echo "out $OMP_NUM_THREADS $JOBTOWER_JOB_ID"; pwd; echo warn >&2; touch made.txt'],
        environment={"OMP_NUM_THREADS": "1"},
    )
    job.execute()
    done = ended(job)
    assert type(done) is LocalJob and done.status == "Complete", done.status_message
    logs = done.get_logs()
    assert logs["stdout"] == f"out 1 {job.pk}\n{done.folder}\n" and logs["stderr"] == "warn\n"
    assert (done.folder / "made.txt").exists()
    assert [(e.from_status, e.to_status) for e in done.history()] == [("PEN", "SUB"), ("SUB", "RUN"), ("RUN", "COM")]
    assert done.start_time and done.completion_time and done.run_time.total_seconds() >= 0


def test_failure_has_exit_code_and_stderr_tail(job_manager, user, local_worker) -> None:
    job = job_manager.create_job(
        name="bad", user=user, job_type="LOCAL",
        command=["sh", "-c", "for i in 1 2 3 4 5 6 7; do echo line$i >&2; done; exit 3"],
    )
    job.execute()
    done = ended(job)
    assert done.status_code is Status.ERROR
    assert done.status_message == "exit code 3: line3\nline4\nline5\nline6\nline7"


def test_timeout_ends_as_error_saying_so(job_manager, user, local_worker) -> None:
    job = job_manager.create_job(name="slow", user=user, job_type="LOCAL", command=["sleep", "60"], timeout=0.5)
    job.execute()
    done = ended(job, 20)
    assert done.status_code is Status.ERROR
    assert "timed out" in done.status_message and "0.5 s" in done.status_message


def test_stop_ends_the_whole_process_tree(job_manager, user, local_worker) -> None:
    job = job_manager.create_job(
        name="tree", user=user, job_type="LOCAL",
        command=["sh", "-c", "sleep 300 & echo $! > pids; sleep 300 & echo $! >> pids; wait"],
    )
    job.execute()
    running = status_is(job, Status.RUNNING)
    pids_file = running.folder / "pids"
    pids = wait_for(
        lambda: pids_file.exists() and len(pids_file.read_text().split()) == 2 and pids_file.read_text().split()
    )
    running.stop()
    assert Job.objects.get(pk=job.pk).status_code is Status.ABORTED
    for pid in pids:
        wait_for(lambda pid=pid: gone(pid), 10, what=f"child {pid} to end")
    assert Job.objects.get(pk=job.pk).status_message == "stopped by a user"


def test_pause_and_resume_really_stop_and_continue_the_process(job_manager, user, local_worker) -> None:
    job = job_manager.create_job(
        name="ticks", user=user, job_type="LOCAL",
        command=["sh", "-c", "i=0; while true; do i=$((i+1)); echo $i > ticks; sleep 0.05; done"],
    )
    job.execute()
    running = status_is(job, Status.RUNNING)
    ticks = running.folder / "ticks"
    wait_for(lambda: ticks.exists() and ticks.read_text().strip())
    running.pause()
    assert Job.objects.get(pk=job.pk).status_code is Status.PAUSED
    wait_for(lambda: group_frozen(running.folder / "attempts" / "1"), 10, what="SIGSTOP to reach the job's group")
    frozen = ticks.read_text()
    assert group_frozen(running.folder / "attempts" / "1") and ticks.read_text() == frozen
    running.resume()
    assert Job.objects.get(pk=job.pk).status_code is Status.RUNNING
    wait_for(lambda: ticks.read_text() != frozen, 5, what="ticks to go on")
    running.stop()


def test_resubmit_runs_a_new_attempt_and_keeps_the_old_logs(job_manager, user, local_worker) -> None:
    job = job_manager.create_job(
        name="again", user=user, job_type="LOCAL",
        command=["sh", "-c", 'echo "attempt $JOBTOWER_ATTEMPT"; [ "$JOBTOWER_ATTEMPT" = 2 ]'],
    )
    job.execute()
    first = ended(job)
    assert first.status_code is Status.ERROR
    first.resubmit()
    second = ended(first)
    assert second.status_code is Status.COMPLETE and second.attempt == 2
    assert second.get_logs()["stdout"] == "attempt 2\n"
    assert (second.folder / "attempts" / "1" / "stdout.txt").read_text() == "attempt 1\n"


def test_function_result_is_stored(job_manager, user, local_worker) -> None:
    job = job_manager.create_job(
        name="fn", user=user, job_type="LOCAL", function="tests.local_functions:add", args=[1, 2], kwargs={"scale": 10}
    )
    job.execute()
    done = ended(job)
    assert done.status_code is Status.COMPLETE, done.status_message
    assert done.result == {"sum": 30, "cwd": str(done.folder)}


def test_function_errors_and_non_json_results_are_errors(job_manager, user, local_worker) -> None:
    fails = job_manager.create_job(name="f", user=user, job_type="LOCAL", function="tests.engine_functions:fail",
                                   args=["dt too big"])
    odd = job_manager.create_job(name="o", user=user, job_type="LOCAL", function="tests.local_functions:not_json")
    fails.execute()
    odd.execute()
    assert "ValueError: model diverged: dt too big" in ended(fails).status_message
    assert "not JSON" in ended(odd).status_message


def test_progress_is_stored_while_running(job_manager, user, local_worker, tmp_path) -> None:
    from jobtower.monitor import Monitor

    flag = tmp_path / "go"
    job = job_manager.create_job(
        name="p", user=user, job_type="LOCAL", function="tests.local_functions:report_progress", args=[str(flag)]
    )
    job.execute()
    status_is(job, Status.RUNNING)
    monitor = Monitor(results_threads=0)

    def seen() -> bool:
        monitor.cycle()
        return Job.objects.get(pk=job.pk).progress == 50.0

    wait_for(seen, 20, what="progress 50%")
    assert Job.objects.get(pk=job.pk).progress_message == "year 15 of 30"
    flag.touch()
    done = ended(job)
    assert done.result == "finished" and done.progress == 100.0


def test_bad_local_jobs_are_refused_before_anything_moves(job_manager, user, db) -> None:
    with pytest.raises(TypeError, match="argv list"):
        job_manager.create_job(name="s", user=user, job_type="LOCAL", command="python run.py")
    missing = job_manager.create_job(name="m", user=user, job_type="LOCAL", command=["no-such-program-xyz"])
    with pytest.raises(ValueError, match="'no-such-program-xyz' was not found on PATH"):
        missing.execute()
    neither = job_manager.create_job(name="n", user=user, job_type="LOCAL")
    with pytest.raises(ValueError, match="exactly one of"):
        neither.execute()
    with pytest.raises(ValueError, match="timeout"):
        job_manager.create_job(name="t", user=user, job_type="LOCAL", command=["true"], timeout=-1)
    assert set(Job.objects.values_list("_status", flat=True)) == {"PEN"}


def test_a_job_whose_supervisor_vanished_is_lost_not_running_forever(job_manager, user, transactional_db) -> None:
    from jobtower import manager
    from jobtower.monitor import Monitor

    job = job_manager.create_job(name="lost", user=user, job_type="LOCAL", command=["true"])
    job.execute()
    (claimed,) = manager.claim(["LOCAL"], 1, source="test")
    folder = local.attempt_dir(claimed)
    (folder / "supervisor.pid").write_text("999999999")  # a pid that cannot be alive
    Monitor(results_threads=0).cycle()
    lost = Job.objects.get(pk=job.pk)
    assert lost.status_code is Status.ERROR and lost.status_message.startswith("lost:")


def test_a_claimed_job_that_never_started_is_queued_again(job_manager, user, transactional_db) -> None:
    from datetime import timedelta

    from django.utils import timezone

    from jobtower import manager
    from jobtower.monitor import Monitor

    job = job_manager.create_job(name="orphan", user=user, job_type="LOCAL", command=["true"])
    job.execute()
    (claimed,) = manager.claim(["LOCAL"], 1, source="test")
    Job.objects.filter(pk=job.pk).update(start_time=timezone.now() - timedelta(seconds=local.START_GRACE + 1))
    Monitor(results_threads=0).cycle()
    again = Job.objects.get(pk=job.pk)
    assert again.status_code is Status.SUBMITTED and "queued again" in again.status_message


def test_observing_healthy_jobs_in_a_tight_loop_never_calls_them_lost(job_manager, user, transactional_db) -> None:
    """A race the benchmark found: a supervisor starting or ending between two reads looked lost."""
    from jobtower import manager

    jobs = []
    for i in range(150):
        job = job_manager.create_job(name=f"h{i}", user=user, job_type="LOCAL", command=["true"])
        job.execute()
        jobs.append(job)
    claimed = manager.claim(["LOCAL"], 150, source="test")
    backend = local.LocalBackend()
    deadline = time.monotonic() + 120
    for job in claimed:
        # Watch each job from the moment its supervisor is started until it has ended.
        process = local.spawn(job)
        while True:
            assert time.monotonic() < deadline, "jobs of `true` should all end within two minutes"
            observation = backend.observe_one(job)
            if observation is not None:
                assert not observation.message.startswith("lost"), (job.pk, observation)
                if observation.status is Status.COMPLETE:
                    break
        process.wait()


def test_a_pause_between_claim_and_start_keeps_the_job_from_running(job_manager, user, transactional_db,
                                                                     tmp_path) -> None:
    from pathlib import Path

    from jobtower import manager

    flag = tmp_path / "ran"
    job = job_manager.create_job(name="race", user=user, job_type="LOCAL", command=["touch", str(flag)])
    job.execute()
    (claimed,) = manager.claim(["LOCAL"], 1, source="test")  # a worker took it but has not started it
    claimed.pause()  # finds no process yet: only its marker is left
    process = local.spawn(claimed)  # the worker starts it now
    try:
        folder = local.attempt_dir(claimed)
        wait_for(lambda: (folder / "supervisor.pid").exists(), 10, what="the supervisor to start")
        state = wait_for(
            lambda: (s := Path(f"/proc/{process.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]) == "T" and s,
            10, what="the supervisor to stop itself",
        )
        assert state == "T" and not flag.exists()
        claimed.resume()
        process.wait(10)
        assert flag.exists()
    finally:
        if process.poll() is None:
            process.kill()


def test_recording_ends_and_claiming_in_one_go_leaves_a_job_stopped_meanwhile_alone(
    job_manager, user, transactional_db
) -> None:
    from jobtower import manager
    from jobtower.backends.base import Observation, PollResult

    first, second = (job_manager.create_job(name=f"j{i}", user=user, job_type="LOCAL", command=["true"])
                     for i in range(2))
    first.execute()
    (running,) = manager.claim(["LOCAL"], 1, source="worker")
    second.execute()
    # A user stops the job while its worker, which still holds it as Running, records that it ended.
    manager.transition(Job.objects.get(pk=running.pk), Status.ABORTED, source="stop", message="stopped by a user")
    finished = {running.pk: Observation(Status.COMPLETE, "")}
    moved, claimed = manager.finish_and_claim([running], PollResult(observations=finished), ["LOCAL"], 5,
                                              source="worker")
    assert moved == 0 and [job.pk for job in claimed] == [second.pk]
    assert claimed[0].status_code is Status.RUNNING and claimed[0].command == ["true"]
    stopped = Job.objects.get(pk=running.pk)
    assert stopped.status_code is Status.ABORTED and stopped.status_message == "stopped by a user"
    assert [(e.from_status, e.to_status) for e in stopped.history()] == [("PEN", "SUB"), ("SUB", "RUN"), ("RUN", "ABT")]
    assert [(e.from_status, e.to_status, e.source) for e in Job.objects.get(pk=second.pk).history()] == [
        ("PEN", "SUB", "execute"), ("SUB", "RUN", "worker")]
    # The claimed job's end is recorded with the next claim (none left): one event, one move.
    done = {second.pk: Observation(Status.COMPLETE, "")}
    assert manager.finish_and_claim(claimed, PollResult(observations=done), ["LOCAL"], 5, source="worker") == (1, [])
    assert Job.objects.get(pk=second.pk).status_code is Status.COMPLETE
    assert JobEvent.objects.filter(job_id=second.pk, to_status="COM").count() == 1
