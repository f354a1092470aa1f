"""`jobtower monitor`: keeps every active job current, one batched poll per engine per cycle.

Each cycle it asks every engine once about all of that engine's active jobs and applies the answers
(moves, progress, stale marks), then hands Results-Ready jobs to a small pool of threads that run their
results steps (fetch outputs, process_results_function), so a slow or hanging function never holds
up status tracking for the other jobs. It also sends the notifications in the outbox (webhooks,
e-mail; see jobtower.outbox): on a thread of its own when it runs, so a slow endpoint never holds up
status polling, or in each cycle when cycles are driven one by one.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections import defaultdict
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING

from django.db import connections

from jobtower import conf, manager, outbox, statuses
from jobtower.backends import Backend, Capability, EngineKey, backend_at, engine_key
from jobtower.errors import LeaseLost
from jobtower.registry import registered_classes
from jobtower.worker import Heartbeat, _stop_on_signals

if TYPE_CHECKING:
    from jobtower.models import Job

log = logging.getLogger("jobtower.monitor")

#: What the monitor asks engines about: every active status but Results-Ready, which is the manager's
#: own step (outputs fetched, process_results_function running) and must not be finished by a poll.
POLLED_CODES = [s.value for s in statuses.POLLED]
#: The name of the lease that decides which monitor polls.
LEASE = "monitor"


def engines() -> dict[EngineKey, list[str]]:
    """Return each engine (backend and options, as settings choose) with the job types that run on it."""
    found: dict[EngineKey, list[str]] = defaultdict(list)
    for name, cls in registered_classes():
        key = engine_key(cls)
        if key is not None:
            found[key].append(name)
    return dict(found)


def id_ranges(ids: Iterable[int]) -> str:
    """Return job ids as sorted ranges, "3-7,9,12-13": a short log line for thousands of ids."""
    parts: list[str] = []
    first = last = None
    for pk in sorted(set(ids)):
        if last is not None and pk == last + 1:
            last = pk
            continue
        if first is not None:
            parts.append(str(first) if first == last else f"{first}-{last}")
        first = last = pk
    if first is not None:
        parts.append(str(first) if first == last else f"{first}-{last}")
    return ",".join(parts)


class Monitor:
    """Polls each engine once per cycle for all of its active jobs and applies what it saw."""

    def __init__(
        self,
        *,
        interval: float = 2.0,
        check_interval: float = 0.2,
        name: str | None = None,
        results_threads: int = 2,
        delivery_thread: bool = True,
    ) -> None:
        self.interval = interval
        self.check_interval = check_interval
        self.name = name or f"monitor@{socket.gethostname()}:{os.getpid()}"
        self.heartbeat = Heartbeat("monitor", self.name)
        self.polls = 0  # engine calls made, for tests and benchmarks
        self.cycles = 0  # cycles run; the debug line of each poll names its cycle
        #: Threads running results steps; 0 runs them in the cycle itself (tests, one-shot use).
        self.results_threads = results_threads
        self._pool: ThreadPoolExecutor | None = None
        #: time.monotonic() until which this monitor holds the lease (0: it does not lead).
        self._leading_until = 0.0
        #: Set once lead() first succeeds: from then on every poll and write is fenced by the lease
        #: (cycles driven without lead(), in tests and one-shot use, are not).
        self._fenced = False
        self._running: dict[int, Future[None]] = {}
        #: run() sends notifications on a thread of their own; without one, cycle() sends them.
        self.delivery_thread = delivery_thread
        self._sender: threading.Thread | None = None
        self._quit = threading.Event()

    def cycle(self) -> int:
        """Poll every engine once for all its active jobs, then start due results steps; return moves."""
        from jobtower.models import Job

        moved = 0
        self.cycles += 1
        try:
            for key, job_types in engines().items():
                jobs = list(
                    Job.objects.filter(job_type__in=job_types, _status__in=POLLED_CODES).order_by("id")
                )
                if jobs:
                    moved += self._poll(backend_at(key), jobs)
        except LeaseLost as exc:
            self._stand_down(f"cycle {self.cycles}", exc)
            return moved
        self.results()
        if self._sender is None:
            self.deliver()
        return moved

    def check_requested(self) -> int:
        """Re-check at once the jobs whose status callback was called; return how many moved."""
        from jobtower.models import Job

        flagged = list(Job.objects.filter(check_requested__isnull=False).order_by("id")[:1000])
        if not flagged:
            return 0
        moved = 0
        try:
            self._may_poll("checking flagged jobs")
            Job.objects.filter(pk__in=[job.pk for job in flagged]).update(check_requested=None)
            by_engine: dict[EngineKey, list[Job]] = defaultdict(list)
            for job in flagged:
                key = engine_key(type(job))
                if key is not None and job.status_code in statuses.POLLED:
                    by_engine[key].append(job)
            for key, jobs in by_engine.items():
                moved += self._poll(backend_at(key), jobs, "check")
        except LeaseLost as exc:
            self._stand_down("a check of flagged jobs", exc)
        return moved

    def _poll(self, backend: Backend, jobs: list[Job], why: str = "cycle") -> int:
        """Ask `backend` about `jobs` and write what it said; LeaseLost if this monitor may no longer."""
        self._may_poll(f"polling {backend.name}")
        self.polls += 1
        if log.isEnabledFor(logging.DEBUG):
            # Which monitor asked about which jobs, and when: how an operator (and the failover test)
            # sees that no job was polled twice in a cycle by two monitors. One check when not debugging.
            log.debug("%s: %s %d polled %s for %d job(s): %s", self.name, why, self.cycles, backend.name,
                      len(jobs), id_ranges(job.pk for job in jobs))
        answer = manager.poll(backend, jobs)
        with self._fence_writes(f"writing what {backend.name} answered"):
            moved = manager.apply_poll(jobs, answer, source="monitor")
            if backend.can(Capability.LIMITS):
                try:
                    backend.enforce([job for job in jobs if job.status_code.is_active])
                except LeaseLost:
                    raise
                except Exception:
                    log.exception("%s: enforcing limits failed", backend.name)
        if log.isEnabledFor(logging.DEBUG):
            # And that it wrote what it saw: a leader that lost its lease meanwhile writes nothing.
            log.debug("%s: %s %d wrote what %s answered: %d moved", self.name, why, self.cycles, backend.name,
                      moved)
        return moved

    # -- fencing: never act on a lease this monitor no longer holds ------------------------------
    #
    # A leader that hangs (SIGSTOP, a swapped-out host, an engine call that takes minutes) longer than
    # its lease finds, when it wakes, that a standby may have taken over and polled the same jobs. So it
    # checks before each poll (by its own monotonic clock: no query) and in each write transaction (by
    # the lease row, one SELECT that also keeps the lease from changing hands until the commit),
    # and abandons the rest of its cycle when the lease is not its own any more.

    def _may_poll(self, what: str) -> None:
        """Raise LeaseLost when this leader's lease may have run out, by its own clock: no query."""
        if self._fenced and time.monotonic() >= self._leading_until:
            raise LeaseLost(f"its lease ran out (by its own clock) before {what}")

    def _fence_writes(self, what: str) -> AbstractContextManager[None]:
        """Return the context in which a poll's answer is written: fenced by the lease when leading."""
        if not self._fenced:
            return nullcontext()
        if time.monotonic() >= self._leading_until:
            # The poll outlasted the lease (a slow engine, or this process was stopped). Its answer is
            # still ours to write if no other monitor took the lease meanwhile: then nobody else polled.
            self._renew(what)
        return manager.fenced(self._check_lease)

    def _check_lease(self) -> None:
        """The fence of each write transaction: one small SELECT that locks the lease row."""
        from jobtower.models import lease

        if time.monotonic() >= self._leading_until:
            self._renew("a write")  # the write phase itself outlasted the lease
        elif not lease.still_held(LEASE, self.name):
            raise LeaseLost("another monitor holds its lease now (the lease row says so)")

    def _renew(self, what: str) -> None:
        """Extend the lease only if no other monitor took it; LeaseLost if one did."""
        from jobtower.models import lease

        seconds = self._lease_seconds()
        started = time.monotonic()
        if not lease.renew(LEASE, self.name, seconds):
            self._leading_until = 0.0
            raise LeaseLost(f"its lease ran out before {what} and another monitor took it")
        self._leading_until = started + seconds - self.check_interval
        log.warning("%s: its lease ran out before %s, but no other monitor had taken it: renewed it. "
                    "A cycle (or one engine's poll) longer than 1.5 x --interval does this; "
                    "a longer --interval avoids it", self.name, what)

    def _stand_down(self, what: str, reason: LeaseLost) -> None:
        """Abandon the rest of `what` after the lease was lost; the loop asks for the lease again."""
        self._leading_until = 0.0
        log.warning("%s: stood down: %s; abandoning the rest of %s (another monitor may lead now)",
                    self.name, reason, what)

    # -- results steps ----------------------------------------------------------------------------

    def results(self) -> int:
        """Start the results steps that are due (claimed first); return how many were started."""
        self._running = {pk: f for pk, f in self._running.items() if not f.done()}
        # Our steps still run: renew their claims so no other monitor takes them over.
        manager.renew_claims(self._running)
        free = max(self.results_threads, 1) - len(self._running)
        started = 0
        for job in manager.results_due(free, exclude=self._running):
            if not manager.claim_results(job):
                continue
            started += 1
            if self.results_threads <= 0:
                self._run_results(job)
                continue
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.results_threads, thread_name_prefix="jobtower-results")
            self._running[job.pk] = self._pool.submit(self._run_results, job)
        return started

    def _run_results(self, job: Job) -> None:
        try:
            manager.run_results(job)
        except Exception:
            log.exception("%s: the results step of job %s failed", self.name, getattr(job, "pk", "?"))
        finally:
            if self.results_threads > 0:
                connections.close_all()  # this thread's own connections

    def wait_for_results(self, timeout: float | None = None) -> None:
        """Wait until the results steps started so far have ended (tests, shutdown)."""
        for future in list(self._running.values()):
            future.exception(timeout=timeout)

    # -- notifications ----------------------------------------------------------------------------

    def deliver(self) -> int:
        """Send one bounded batch of due notifications from the outbox; return how many were delivered."""
        try:
            return outbox.deliver_due()
        except Exception:
            log.exception("%s: sending notifications failed; going on", self.name)
            return 0

    def _send_loop(self, stop: threading.Event) -> None:
        try:
            while not stop.is_set():
                self.deliver()
                stop.wait(max(self.check_interval, 0.5))
        finally:
            connections.close_all()  # this thread's own connections

    # -- who leads -------------------------------------------------------------------------------

    def lead(self) -> bool:
        """Take or renew the monitors' lease; True while this monitor is the one that polls.

        Several monitors may run (one per host, say); only the lease holder polls, so no job is asked
        about twice in a cycle. The holder renews it every cycle for 1.5 cycles; if it dies or hangs,
        a standby, asking every quarter cycle, takes over within two cycles of its death.
        """
        from jobtower.models import lease

        seconds = self._lease_seconds()
        started = time.monotonic()
        if lease.hold(LEASE, self.name, seconds):
            if not self._leading_until:
                log.info("%s: leading (polling engines) now", self.name)
            self._fenced = True
            # A little short of the lease's own end: never act on a lease that may have run out.
            self._leading_until = started + seconds - self.check_interval
            return True
        if self._leading_until:
            log.warning("%s: another monitor took the lease; standing by", self.name)
        self._leading_until = 0.0
        return False

    def _lease_seconds(self) -> float:
        """How long each take or renewal of the lease lasts: 1.5 cycles plus check_interval."""
        return 1.5 * self.interval + self.check_interval

    # -- the loop ---------------------------------------------------------------------------------

    def run(self, stop: threading.Event | None = None) -> None:
        """Monitor until `stop` is set or SIGTERM/SIGINT."""
        stop = stop or threading.Event()
        _stop_on_signals(stop)
        self.heartbeat.beat(force=True)
        log.info("%s: checking active jobs every %.1f s", self.name, self.interval)
        if conf.get("DASK_SCHEDULER") == "local":
            from jobtower.backends import dask

            # Started once, here, and shared through a file: every process's DASK jobs run on it.
            dask.start_local_cluster()
        next_cycle = 0.0
        if self.delivery_thread:
            self._sender = threading.Thread(
                target=self._send_loop, args=(self._quit,), name="jobtower-outbox", daemon=True
            )
            self._sender.start()
        try:
            while not stop.is_set():
                try:
                    self.heartbeat.beat()
                    if time.monotonic() >= next_cycle:
                        if self.lead():
                            next_cycle = time.monotonic() + self.interval
                            self.cycle()
                        else:
                            # A standby asks four times per cycle: a leader killed just after renewing
                            # is replaced 1.5 cycles + check_interval + at most a quarter cycle later,
                            # within two cycles of the kill.
                            next_cycle = time.monotonic() + self.interval / 4
                    if time.monotonic() < self._leading_until:
                        self.check_requested()
                except Exception:
                    log.exception("%s: a cycle failed; going on", self.name)
                    connections.close_all()
                stop.wait(self.check_interval)
        finally:
            if conf.get("DASK_SCHEDULER") == "local":
                from jobtower.backends import dask

                dask.stop_local_cluster()
            if self._pool is not None:
                # Steps not started yet are handed back; those running keep their claims until the
                # timeout, then another monitor retries them.
                for pk, future in self._running.items():
                    if future.cancel():
                        manager.release_claim(pk)
                self._pool.shutdown(wait=False)
            if self._sender is not None:
                self._quit.set()
                self._sender.join(timeout=4 * float(conf.get("DELIVERY_TIMEOUT")) + 5)
                self._sender = None
            if self._leading_until:
                from jobtower.models import lease

                lease.release(LEASE, self.name)  # a standby takes over at its next look
            self.heartbeat.remove()
            connections.close_all()
