"""`jobtower monitor`: keeps every active job current, one batched poll per engine per cycle."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections import defaultdict

from django.db import connections

from jobtower import manager, statuses
from jobtower.backends import get_backend
from jobtower.registry import registered_classes
from jobtower.worker import Heartbeat, _stop_on_signals

log = logging.getLogger("jobtower.monitor")

#: What the monitor asks engines about: every active status but Results-Ready, which is the manager's
#: own step (outputs fetched, process_results_function running) and must not be finished by a poll.
POLLED_CODES = [s.value for s in statuses.POLLED]


def engines() -> dict[str, list[str]]:
    """Return each backend path with the job types that run on it."""
    found: dict[str, list[str]] = defaultdict(list)
    for name, cls in registered_classes():
        if cls.backend_path:
            found[cls.backend_path].append(name)
    return dict(found)


class Monitor:
    """Polls each engine once per cycle for all of its active jobs and applies what it saw."""

    def __init__(self, *, interval: float = 2.0, check_interval: float = 0.2, name: str | None = None) -> None:
        self.interval = interval
        self.check_interval = check_interval
        self.name = name or f"monitor@{socket.gethostname()}:{os.getpid()}"
        self.heartbeat = Heartbeat("monitor", self.name)
        self.polls = 0  # engine calls made, for tests and benchmarks

    def cycle(self) -> int:
        """Poll every engine once for all its active jobs; return how many jobs moved."""
        from jobtower.models import Job

        moved = 0
        for path, job_types in engines().items():
            jobs = list(
                Job.objects.filter(job_type__in=job_types, _status__in=POLLED_CODES).order_by("id")
            )
            if jobs:
                moved += self._poll(path, jobs)
        return moved

    def check_requested(self) -> int:
        """Re-check at once the jobs whose status callback was called; return how many moved."""
        from jobtower.models import Job

        flagged = list(Job.objects.filter(check_requested__isnull=False).order_by("id")[:1000])
        if not flagged:
            return 0
        Job.objects.filter(pk__in=[job.pk for job in flagged]).update(check_requested=None)
        by_engine: dict[str, list[Job]] = defaultdict(list)
        for job in flagged:
            if job.backend_path and job.status_code in statuses.POLLED:
                by_engine[job.backend_path].append(job)
        return sum(self._poll(path, jobs) for path, jobs in by_engine.items())

    def _poll(self, path: str, jobs: list) -> int:
        backend = get_backend(path)
        self.polls += 1
        try:
            seen = backend.poll(jobs)
        except Exception as exc:
            # An engine that does not answer changes no status: they stay as they were.
            log.warning("%s did not answer for %d active jobs: %s", backend.name, len(jobs), exc)
            return 0
        moved = manager.apply_observations(
            [(job, seen[job.pk]) for job in jobs if job.pk in seen], source="monitor"
        )
        try:
            backend.enforce([job for job in jobs if job.status_code.is_active])
        except Exception:
            log.exception("%s: enforcing limits failed", backend.name)
        return moved

    def run(self, stop: threading.Event | None = None) -> None:
        """Monitor until `stop` is set or SIGTERM/SIGINT."""
        stop = stop or threading.Event()
        _stop_on_signals(stop)
        self.heartbeat.beat(force=True)
        log.info("%s: checking active jobs every %.1f s", self.name, self.interval)
        next_cycle = 0.0
        try:
            while not stop.is_set():
                try:
                    self.heartbeat.beat()
                    if time.monotonic() >= next_cycle:
                        next_cycle = time.monotonic() + self.interval
                        self.cycle()
                    self.check_requested()
                except Exception:
                    log.exception("%s: a cycle failed; going on", self.name)
                    connections.close_all()
                stop.wait(self.check_interval)
        finally:
            self.heartbeat.remove()
            connections.close_all()
