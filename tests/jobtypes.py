"""Job types used only by the tests: on the in-memory engine (as configured), and one that counts submissions."""

from __future__ import annotations

import os
import signal
from collections.abc import Sequence
from pathlib import Path

from jobtower.backends import get_backend
from jobtower.backends.base import Backend, Capability, PollResult
from jobtower.backends.local import LocalBackend
from jobtower.backends.memory import MemoryBackend
from jobtower.models import Job
from jobtower.registry import class_for_stored, register_job_type

MEMORY_BACKEND = "jobtower.backends.memory:MemoryBackend"


def memory_backend() -> MemoryBackend:
    """Return the shared in-memory engine the MEMORY job type runs on."""
    backend = get_backend(MEMORY_BACKEND)
    assert isinstance(backend, MemoryBackend)
    return backend


class FileCountingBackend(Backend):
    """Appends one line per submission to $JOBTOWER_TEST_SUBMIT_LOG: counts across processes."""

    name = "file-counter"
    # An engine that can neither stop nor hold: the table must not offer what it cannot do.
    capabilities = frozenset({Capability.SUBMIT, Capability.POLL})

    def submit(self, job: Job) -> None:
        with open(os.environ["JOBTOWER_TEST_SUBMIT_LOG"], "a") as handle:
            handle.write(f"{job.pk} {os.getpid()}\n")

    def poll(self, jobs):  # noqa: ANN001, ANN201 - the engine never reports anything
        return {}


class StoppingLocalBackend(LocalBackend):
    """The LOCAL engine, whose poll can stop its own process with the answer in hand (SIGSTOP).

    When the file named by $JOBTOWER_TEST_STOP_AFTER_POLL exists, the first poll to remove it stops
    its process: a monitor hung between its poll and the write of what it saw, until a SIGCONT.
    """

    def poll(self, jobs: Sequence[Job]) -> PollResult:
        answer = super().poll(jobs)
        marker = os.environ.get("JOBTOWER_TEST_STOP_AFTER_POLL")
        if marker:
            try:
                os.unlink(marker)
            except FileNotFoundError:
                return answer
            os.kill(os.getpid(), signal.SIGSTOP)
        return answer


if class_for_stored("MEMORY") is None:

    @register_job_type("MEMORY")
    class MemoryJob(Job):
        backend_path = MEMORY_BACKEND

        class Meta:
            proxy = True
            app_label = "jobtower"

    @register_job_type("COUNTING")
    class CountingJob(Job):
        backend_path = "tests.jobtypes:FileCountingBackend"

        class Meta:
            proxy = True
            app_label = "jobtower"


if class_for_stored("MEMORY_NO_HOLD") is None:

    @register_job_type("MEMORY_NO_HOLD")
    class MemoryNoHoldJob(Job):
        """On the memory engine too; tests give it OPTIONS {"hold": False} in JOBTOWER["BACKENDS"]."""

        backend_path = MEMORY_BACKEND

        class Meta:
            proxy = True
            app_label = "jobtower"


def submissions(path: Path) -> list[str]:
    """Return the lines FileCountingBackend wrote."""
    return path.read_text().splitlines() if path.exists() else []
