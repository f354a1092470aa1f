"""The LOCAL worker waits on its supervisors' exits (pidfds) and on wake-ups from submitters, not on a timer."""

from __future__ import annotations

import os
import socket
import threading
import time
from typing import Any

from jobtower.backends import local
from jobtower.statuses import Status
from jobtower.worker import LocalWorker
from tests.conftest import fresh, wait_for

IDLE_SLEEP = 20.0


def test_a_finished_job_is_recorded_when_its_supervisor_exits_not_at_the_next_look(
    job_manager: Any, user: Any, transactional_db: Any
) -> None:
    job = job_manager.create_job(name="quick", user=user, job_type="LOCAL", command=["sleep", "0.2"])
    job.execute()
    # A worker that would look again only after IDLE_SLEEP: the job's end must wake it long before.
    worker = LocalWorker(concurrency=2, idle_sleep=IDLE_SLEEP)
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop,), daemon=True)
    started = time.monotonic()
    thread.start()
    try:
        wait_for(lambda: fresh(job).status_code is Status.RUNNING, 10.0, what="the worker to start the job")
        wait_for(lambda: fresh(job).status_code is Status.COMPLETE, 5.0,
                 what=f"the worker to record the end well before its {IDLE_SLEEP:g} s look")
        assert time.monotonic() - started < IDLE_SLEEP / 2
        assert worker.pidfds == {}  # closed with the job
    finally:
        stop.set()
        thread.join(timeout=IDLE_SLEEP + 10)
    assert not thread.is_alive()


def test_an_idle_worker_claims_a_job_executed_on_its_host_at_once_not_at_the_next_look(
    job_manager: Any, user: Any, transactional_db: Any
) -> None:
    worker = LocalWorker(concurrency=2, idle_sleep=IDLE_SLEEP)
    looked = threading.Event()
    step = worker.step

    def step_and_say() -> bool:
        busy = step()
        looked.set()
        return busy

    worker.step = step_and_say  # type: ignore[method-assign]
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop,), daemon=True)
    thread.start()
    try:
        # The worker found the queue empty and waits: for an exit, a wake-up, or its next look.
        assert looked.wait(10.0), "the worker's first look at the queue"
        started = time.monotonic()
        job = job_manager.create_job(name="woken", user=user, job_type="LOCAL", command=["true"])
        job.execute()
        wait_for(lambda: fresh(job).status_code is Status.COMPLETE, 5.0,
                 what=f"the woken worker to run the job well before its {IDLE_SLEEP:g} s look")
        assert time.monotonic() - started < IDLE_SLEEP / 2
        assert worker.wakeup is not None and worker.wakeup.path.exists()
    finally:
        stop.set()
        thread.join(timeout=IDLE_SLEEP + 10)
    assert not thread.is_alive()
    assert not any(local.wakeup_dir().glob(f"{socket.gethostname()}.{os.getpid()}.*"))  # removed on exit


def test_waking_workers_removes_sockets_of_gone_workers_and_leaves_other_hosts_alone(transactional_db: Any) -> None:
    folder = local.wakeup_dir()
    folder.mkdir(parents=True, exist_ok=True)
    live = local.WakeupSocket()
    gone_worker = local.WakeupSocket()
    gone_worker.sock.close()  # killed: its file stays, nothing reads it
    other_host = folder / "another-host.4242.0badcafe.sock"
    other_host.write_text("")  # as a worker of another host sharing this home would leave it
    try:
        told = local.wake_workers()
        assert told >= 1 and live.drain() == 1
        assert not gone_worker.path.exists()
        assert other_host.exists()
    finally:
        live.close()
        other_host.unlink()


def test_a_command_named_like_a_shell_builtin_runs_the_program(job_manager, user, local_worker, tmp_path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    program = bin_dir / "echo"
    program.write_text("#!/bin/sh\nprintf 'the program, not the builtin: %s\\n' \"$*\"\n")
    program.chmod(0o755)
    job = job_manager.create_job(
        name="echo", user=user, job_type="LOCAL", command=["echo", "hi"],
        environment={"PATH": f"{bin_dir}:{os.environ['PATH']}"},
    )
    job.execute()
    done = wait_for(lambda: (j := fresh(job)).status_code.is_terminal and j, 30.0, what="the job to end")
    assert done.status_code is Status.COMPLETE, done.status_message
    assert done.get_logs()["stdout"] == "the program, not the builtin: hi\n"


def test_a_worker_never_runs_more_jobs_than_its_concurrency(job_manager: Any, user: Any, transactional_db: Any) -> None:
    """Each job records when it ran; at no moment do more than `concurrency` of them overlap."""
    jobs = [job_manager.create_job(name=f"c{i}", user=user, job_type="LOCAL",
                                   command=["sh", "-c", 'date +%s.%N > began; sleep 0.6; date +%s.%N > ended'])
            for i in range(6)]
    for job in jobs:
        job.execute()
    worker = LocalWorker(concurrency=2, idle_sleep=0.05)
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop,), daemon=True)
    thread.start()
    try:
        for job in jobs:
            wait_for(lambda job=job: fresh(job).status_code is Status.COMPLETE, 30.0, what=f"job {job.pk} to complete")
    finally:
        stop.set()
        thread.join(timeout=30)
    spans = [(float((job.folder / "began").read_text()), float((job.folder / "ended").read_text())) for job in jobs]
    most = max(sum(start <= moment < end for start, end in spans) for moment, _ in spans)
    assert most <= 2, f"{most} jobs ran at once with concurrency 2: {sorted(spans)}"
