"""An in-memory engine for fast unit tests: tests script what it reports."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, Sequence

from jobtower.backends.base import Backend, Observation
from jobtower.statuses import Status

if TYPE_CHECKING:
    from jobtower.models import Job


class MemoryBackend(Backend):
    """Keeps what each job "is doing" in a dict; `set()` changes it, `poll()` reports it."""

    name = "memory"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.states: dict[int, Observation] = {}
        self.submitted: list[int] = []
        self.calls: list[tuple[str, int | None]] = []
        self.fail_submit: Exception | None = None
        self.fail_poll: Exception | None = None

    def reset(self) -> None:
        """Forget every job and call."""
        with self._lock:
            self.states.clear()
            self.submitted.clear()
            self.calls.clear()
            self.fail_submit = self.fail_poll = None

    def set(self, job: "Job | int", status: Status, message: str = "") -> None:
        """Make the engine report `status` for `job` from now on."""
        job_id = job if isinstance(job, int) else job.pk
        with self._lock:
            self.states[job_id] = Observation(status, message)

    def submit(self, job: "Job") -> None:
        with self._lock:
            self.calls.append(("submit", job.pk))
            if self.fail_submit is not None:
                raise self.fail_submit
            self.submitted.append(job.pk)
            self.states[job.pk] = Observation(Status.SUBMITTED)

    def poll(self, jobs: Sequence["Job"]) -> dict[int, Observation]:
        with self._lock:
            self.calls.append(("poll", None))
            if self.fail_poll is not None:
                raise self.fail_poll
            return {job.pk: self.states[job.pk] for job in jobs if job.pk in self.states}

    def cancel(self, job: "Job") -> None:
        with self._lock:
            self.calls.append(("cancel", job.pk))
            self.states[job.pk] = Observation(Status.ABORTED)

    def hold(self, job: "Job") -> None:
        with self._lock:
            self.calls.append(("hold", job.pk))
            self.states[job.pk] = Observation(Status.PAUSED)

    def release(self, job: "Job") -> Status:
        with self._lock:
            self.calls.append(("release", job.pk))
            self.states[job.pk] = Observation(Status.RUNNING)
        return Status.RUNNING

    def logs(self, job: "Job") -> dict[str, Any]:
        return {"stdout": f"memory job {job.pk}\n", "stderr": ""}
