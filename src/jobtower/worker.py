"""`jobtower worker`: claims Submitted LOCAL jobs from the database and runs them, supervised."""

from __future__ import annotations

import logging
import os
import select
import signal
import socket
import subprocess
import threading
import time
from typing import TYPE_CHECKING, cast

from django.db import connections
from django.utils import timezone

from jobtower import manager
from jobtower.backends import backend_for, get_backend, local
from jobtower.backends.base import Observation, PollResult
from jobtower.registry import registered_classes
from jobtower.statuses import Status

if TYPE_CHECKING:
    from jobtower.models import Job, LocalJob

log = logging.getLogger("jobtower.worker")

HEARTBEAT_EVERY = 5.0
#: Seconds between looks for stopped jobs due for SIGKILL while no job runs here.
ESCALATE_EVERY = 0.2
#: The longest a wait goes without checking whether the worker was asked to stop.
STOP_CHECK_EVERY = 0.25


def local_job_types() -> list[str]:
    """Return the registered job types that run on the local engine (as JOBTOWER["BACKENDS"] says)."""
    return [name for name, cls in registered_classes() if isinstance(backend_for(cls), local.LocalBackend)]


class Heartbeat:
    """A row in the Worker table that says this process is alive."""

    def __init__(self, kind: str, name: str, capacity: int = 0) -> None:
        self.kind, self.name, self.capacity = kind, name, capacity
        self.last = 0.0

    def beat(self, running: int = 0, *, force: bool = False) -> None:
        """Refresh the heartbeat (at most every few seconds unless forced)."""
        from jobtower.models import Worker

        now = time.monotonic()
        if not force and now - self.last < HEARTBEAT_EVERY:
            return
        self.last = now
        Worker.objects.update_or_create(
            name=self.name,
            defaults={"kind": self.kind, "host": socket.gethostname(), "pid": os.getpid(),
                      "heartbeat": timezone.now(), "capacity": self.capacity, "running": running},
            create_defaults={"kind": self.kind, "host": socket.gethostname(), "pid": os.getpid(),
                             "capacity": self.capacity, "running": running},
        )

    def remove(self) -> None:
        """Say goodbye: delete the row."""
        from jobtower.models import Worker

        Worker.objects.filter(name=self.name).delete()


class LocalWorker:
    """Runs up to `concurrency` LOCAL jobs at once; each under a supervisor that outlives us."""

    def __init__(self, *, concurrency: int | None = None, name: str | None = None, idle_sleep: float = 0.1) -> None:
        self.concurrency = concurrency or os.cpu_count() or 1
        self.name = name or f"worker@{socket.gethostname()}:{os.getpid()}"
        self.idle_sleep = idle_sleep
        self.backend = get_backend("jobtower.backends.local:LocalBackend")
        self.job_types = local_job_types()
        self.running: dict[int, tuple[Job, subprocess.Popen[bytes]]] = {}
        #: A pidfd per running supervisor (Linux >= 5.3): the idle wait wakes the moment one exits.
        self.pidfds: dict[int, int] = {}
        self.heartbeat = Heartbeat("worker", self.name, self.concurrency)
        self.next_escalation = 0.0
        #: Where this host's submitters say a job was queued (made when run() starts).
        self.wakeup: local.WakeupSocket | None = None

    def step(self) -> bool:
        """Finish what ended, enforce timeouts, claim and start new jobs; True if anything happened."""
        self.heartbeat.beat(len(self.running))
        finished = [(job, process) for job, process in self.running.values() if process.poll() is not None]
        for job, _ in finished:
            del self.running[job.pk]
            fd = self.pidfds.pop(job.pk, None)
            if fd is not None:
                os.close(fd)
        jobs = [job for job, _ in finished]
        answer = PollResult()
        if finished:
            # A supervisor that could not record the start never ran its job: only we can tell why.
            failed = {job.pk: why for job, process in finished if (why := local.start_failure(job, process))}
            answer = manager.poll(self.backend, [job for job in jobs if job.pk not in failed])
            answer.observations.update({pk: Observation(Status.ERROR, why) for pk, why in failed.items()})
        # How the finished jobs ended and the next claim: one transaction.
        _, claimed = manager.finish_and_claim(
            jobs, answer, self.job_types, self.concurrency - len(self.running), source="worker"
        )
        if self.running:
            self.backend.enforce([job for job, _ in self.running.values()])
        elif time.monotonic() >= self.next_escalation:
            # Stopped jobs are no longer active, and may be another worker's: their SIGKILL is due
            # here even when we run nothing (enforce() above does it otherwise).
            self.next_escalation = time.monotonic() + ESCALATE_EVERY
            local.escalate_stops()
        for job in claimed:
            self._start(job)
        return bool(finished or claimed)

    def _start(self, job: Job) -> None:
        try:
            process = local.spawn(cast("LocalJob", job))
        except Exception as exc:
            log.exception("could not start job %s", job.pk)
            manager.transition(
                job, Status.ERROR, source="worker", strict=False,
                message=f"could not start: {type(exc).__name__}: {exc}",
            )
            return
        self.running[job.pk] = (job, process)
        try:
            self.pidfds[job.pk] = os.pidfd_open(process.pid)
        except (AttributeError, OSError):
            pass  # an older kernel: the wait below looks again after a short sleep instead
        if (local.attempt_dir(job) / "stopped").exists():
            # stop() raced with our claim: it found no process yet, so end the one we just started.
            local.request_end(process.pid, local.attempt_dir(job))

    def run(self, stop: threading.Event | None = None, *, until_idle: bool = False) -> None:
        """Work until `stop` is set or SIGTERM/SIGINT (or, with until_idle, no work is left)."""
        stop = stop or threading.Event()
        _stop_on_signals(stop)
        try:
            self.wakeup = local.WakeupSocket()
        except OSError as exc:
            log.warning("%s: no wake-up socket in %s (%s); new jobs are found by looking every %g s",
                        self.name, local.wakeup_dir(), exc, self.idle_sleep)
        self.heartbeat.beat(force=True)
        log.info("%s: running up to %d LOCAL jobs at once", self.name, self.concurrency)
        try:
            while not stop.is_set():
                try:
                    busy = self.step()
                except Exception:
                    # One bad step (a database hiccup, a job deleted mid-way) must not end the worker:
                    # what it missed is in the jobs' folders, and the monitor or the next step reads it.
                    log.exception("%s: a step failed; going on", self.name)
                    connections.close_all()
                    busy = False
                    stop.wait(1.0)
                if until_idle and not busy and not self.running:
                    break
                if not busy:
                    self.wait(stop)
        finally:
            # Running jobs keep going under their supervisors; the monitor records how they end.
            for fd in self.pidfds.values():
                os.close(fd)
            self.pidfds.clear()
            if self.wakeup is not None:
                self.wakeup.close()
                self.wakeup = None
            self.heartbeat.remove()
            connections.close_all()

    def wait(self, stop: threading.Event) -> None:
        """Wait until a running job's supervisor exits, a job is queued, or `idle_sleep` passes.

        A supervisor's pidfd becomes readable when it exits, so a finished job is recorded at once
        instead of at the next look; the wake-up socket becomes readable when a job is executed on
        this host, so it is claimed at once. The queue is looked at every `idle_sleep` seconds anyway
        (jobs queued from another host, or by a resume). Without pidfds (an old kernel), look again
        soon while jobs run.
        """
        full = len(self.running) >= self.concurrency
        if len(self.pidfds) < len(self.running):
            stop.wait(0.01 if full else self.idle_sleep)
            return
        waiting = list(self.pidfds.values())
        if self.wakeup is not None and not full:
            waiting.append(self.wakeup.fileno())
        if not waiting:
            stop.wait(self.idle_sleep)
            return
        # While every slot is taken there is nothing to claim: only an exit matters, so wait longer.
        deadline = time.monotonic() + (max(self.idle_sleep, 1.0) if full else self.idle_sleep)
        while not stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return
            # In slices, so that a stop (another thread's, or SIGTERM's handler) is seen soon.
            ready, _, _ = select.select(waiting, [], [], min(left, STOP_CHECK_EVERY))
            if ready:
                if self.wakeup is not None and self.wakeup.fileno() in ready:
                    self.wakeup.drain()
                return


def _stop_on_signals(stop: threading.Event) -> None:
    if threading.current_thread() is not threading.main_thread():
        return
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
