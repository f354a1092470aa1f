"""The LOCAL worker waits on its supervisors' exits (pidfds), not on a timer."""

from __future__ import annotations

import threading
import time
from typing import Any

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
