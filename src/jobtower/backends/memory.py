"""An in-memory engine for fast unit tests: tests script what it reports, through knobs, not patches."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from jobtower.backends.base import Backend, Capability, Observation, PollResult
from jobtower.statuses import Status

if TYPE_CHECKING:
    from jobtower.models import Job

ALL = frozenset(Capability) - {Capability.LOG_FILES, Capability.NODES, Capability.RESULTS}


class MemoryBackend(Backend):
    """Keeps what each job "is doing" in a dict; `set()` changes it, `poll()` reports it.

    Knobs (constructor OPTIONS or attributes): `fail_submit` / `fail_poll` (an exception, or a message
    for a ConnectionError) make submit() / poll() fail; `unreachable` (a set of job ids) makes poll()
    report those jobs as not reachable; `hold=False` makes it an engine that cannot pause;
    `finish_after=N` completes a job on its Nth poll; `results=True` gives it a results step
    (fetch_results), and `fail_results` makes that step raise.
    """

    name = "memory"

    def __init__(
        self,
        *,
        hold: bool = True,
        results: bool = False,
        finish_after: int | None = None,
        fail_submit: Exception | str | None = None,
        fail_poll: Exception | str | None = None,
    ) -> None:
        self._lock = threading.Lock()
        self.states: dict[int, Observation] = {}
        self.submitted: list[int] = []
        self.calls: list[tuple[str, int | None]] = []
        self.polls_seen: dict[int, int] = {}
        self._defaults = {"hold": hold, "results": results, "finish_after": finish_after, "fail_submit": fail_submit,
                          "fail_poll": fail_poll}
        self._apply_defaults()

    def _apply_defaults(self) -> None:
        self.hold_supported: bool = self._defaults["hold"]  # type: ignore[assignment]
        self.results_supported: bool = self._defaults["results"]  # type: ignore[assignment]
        self.finish_after: int | None = self._defaults["finish_after"]  # type: ignore[assignment]
        self.fail_submit: Exception | str | None = self._defaults["fail_submit"]  # type: ignore[assignment]
        self.fail_poll: Exception | str | None = self._defaults["fail_poll"]  # type: ignore[assignment]
        self.fail_results: Exception | str | None = None
        self.unreachable: set[int] = set()

    @property
    def capabilities(self) -> frozenset[Capability]:  # type: ignore[override]
        """Everything but nodes and log files; holding and results as the knobs say."""
        found = ALL if self.hold_supported else ALL - {Capability.HOLD}
        return found | {Capability.RESULTS} if self.results_supported else found

    def reset(self) -> None:
        """Forget every job and call; knobs go back to the constructor's values."""
        with self._lock:
            self.states.clear()
            self.submitted.clear()
            self.calls.clear()
            self.polls_seen.clear()
            self._apply_defaults()

    def set(self, job: Job | int, status: Status, message: str = "", **facts: Any) -> None:
        """Make the engine report `status` (and any Observation `facts`) for `job` from now on."""
        job_id = job if isinstance(job, int) else job.pk
        with self._lock:
            self.states[job_id] = Observation(status, message, **facts)

    @staticmethod
    def _raise(failure: Exception | str) -> None:
        raise failure if isinstance(failure, BaseException) else ConnectionError(failure)

    def submit(self, job: Job) -> None:
        with self._lock:
            self.calls.append(("submit", job.pk))
            if self.fail_submit is not None:
                self._raise(self.fail_submit)
            self.submitted.append(job.pk)
            self.states[job.pk] = Observation(Status.SUBMITTED)
            self.polls_seen[job.pk] = 0

    def poll(self, jobs: Sequence[Job]) -> PollResult:
        with self._lock:
            self.calls.append(("poll", None))
            if self.fail_poll is not None:
                self._raise(self.fail_poll)
            answer = PollResult()
            for job in jobs:
                if job.pk in self.unreachable:
                    answer.unreachable[job.pk] = "memory engine: unreachable (test knob)"
                    continue
                if job.pk not in self.states:
                    continue
                seen = self.polls_seen[job.pk] = self.polls_seen.get(job.pk, 0) + 1
                if self.finish_after is not None and seen >= self.finish_after \
                        and not self.states[job.pk].status.is_terminal:
                    self.states[job.pk] = Observation(Status.COMPLETE)
                answer.observations[job.pk] = self.states[job.pk]
            return answer

    def cancel(self, job: Job) -> None:
        with self._lock:
            self.calls.append(("cancel", job.pk))
            self.states[job.pk] = Observation(Status.ABORTED)

    def hold(self, job: Job) -> None:
        with self._lock:
            self.calls.append(("hold", job.pk))
            if not self.hold_supported:
                raise NotImplementedError("the memory engine was told it cannot hold jobs")
            self.states[job.pk] = Observation(Status.PAUSED)

    def release(self, job: Job) -> Status:
        with self._lock:
            self.calls.append(("release", job.pk))
            self.states[job.pk] = Observation(Status.RUNNING)
        return Status.RUNNING

    def logs(self, job: Job) -> dict[str, Any]:
        return {"stdout": f"memory job {job.pk}\n", "stderr": ""}

    def fetch_results(self, job: Job) -> None:
        with self._lock:
            self.calls.append(("fetch_results", job.pk))
            failure = self.fail_results
        if failure is not None:
            self._raise(failure)
