"""CONDOR jobs on an HTCondor pool, through the official `htcondor` bindings (jobtower[condor]).

Where things go:

- The local pool (``scheduler=None``) is the one this machine's HTCondor configuration names
  (``CONDOR_CONFIG``). The job's initial directory is its own folder; each attempt writes
  ``attempts/<n>/stdout.txt``, ``stderr.txt`` and the job event log ``condor.log`` there (with a proc
  number when the cluster has several), so a resubmit keeps the files of earlier attempts. Output
  files come back into the folder when the job ends.
- A named :class:`~jobtower.models.Scheduler` is reached through its pool's collector, with its own
  IDTOKEN when it has one. Such jobs (and the ``remote_transfer_files`` template) are submitted with
  spool: inputs travel with the submission, and outputs are fetched back into the job's folder before
  ``process_results_function`` runs, so no shared file system is needed.

A ``function`` job (a Python function with JSON arguments) runs jobtower's runner, copied into the
attempt's folder, with ``JOBTOWER["FUNCTION_PYTHON"]`` (by default the server's own interpreter) in its
folder on the shared file system of the local pool, without file transfer; the poll reads its
``result.json`` (or ``error.json``) back as on LOCAL and SLURM (:mod:`jobtower.backends.functions`).

HTCondor does not run jobs as root. When jobtower runs as root, the schedd maps it to the identity it
authenticated with (an IDTOKEN), and jobs run as that user: the job's folder is given to that user
before a local-pool submission, and a folder that user cannot reach is refused with the reason.

Tracking costs at most two schedd queries per schedd per poll, whatever the number of jobs: the
queue for all active clusters, then the history for those that left it.
"""

from __future__ import annotations

import contextlib
import datetime
import grp
import logging
import os
import pwd
import stat
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from jobtower.backends import functions
from jobtower.backends.base import Backend, Capability, Observation, PollResult
from jobtower.backends.condor_templates import HOLD_JOB_DURATION_EXCEEDED, attempt_folder, expand
from jobtower.backends.local import LOG_TAIL_BYTES, copy_inputs, tail
from jobtower.backends.rollup import rollup  # shared with Slurm arrays; re-exported here
from jobtower.errors import EngineUnavailable
from jobtower.statuses import Status

if TYPE_CHECKING:
    from jobtower.models import CondorJob, Job, Scheduler

log = logging.getLogger("jobtower.condor")

INSTALL_HINT = "pip install jobtower[condor]"

# HTCondor's JobStatus values.
IDLE, RUNNING, REMOVED, COMPLETED, HELD, TRANSFERRING_OUTPUT, SUSPENDED = 1, 2, 3, 4, 5, 6, 7
# HoldReasonCode values that are not failures.
HOLD_USER_REQUEST, HOLD_SUBMITTED_ON_HOLD, HOLD_SPOOLING_INPUT = 1, 15, 16
#: The hold reason of pause(); a user's own condor_hold also reads as Paused.
PAUSE_REASON = "jobtower: paused by a user"
STOP_REASON = "jobtower: stopped by a user"
#: What a poll asks the schedd about each proc.
PROJECTION = [
    "ClusterId", "ProcId", "JobStatus", "ExitCode", "ExitBySignal", "ExitSignal", "HoldReason",
    "HoldReasonCode", "RemoveReason", "JobtowerJobId", "JobtowerAttempt", "AllowedJobDuration",
]
#: Seconds a located remote schedd is reused before the collector is asked again.
LOCATE_TTL = 300.0


def bindings() -> Any:
    """Return the htcondor module, or raise EngineUnavailable saying how to install it."""
    try:
        import htcondor
    except ImportError as exc:
        raise EngineUnavailable(
            f"CONDOR jobs need HTCondor's Python bindings, which are not installed ({exc}): "
            f"{INSTALL_HINT}"
        ) from exc
    return htcondor


def condor_error(exc: BaseException) -> BaseException:
    """Return the HTCondor exception inside a failed call (the bindings sometimes wrap it)."""
    while isinstance(exc, SystemError) and exc.__cause__ is not None:
        exc = exc.__cause__
    return exc


def reraise(exc: BaseException) -> NoReturn:
    """Raise the HTCondor exception inside `exc` (or `exc` itself), so its own message shows."""
    inner = condor_error(exc)
    if inner is exc:
        raise exc
    raise inner from exc


def _value(ad: Any, key: str) -> Any:
    """Return an attribute of a ClassAd as a Python value (None when undefined)."""
    value = ad.get(key)
    return None if type(value).__name__ == "Value" else value  # classad.Value.Undefined / Error


def proc_status(ad: Any) -> tuple[Status, str]:
    """Map one proc's JobStatus/HoldReason/ExitCode to a status and the reason a user reads."""
    state = _value(ad, "JobStatus")
    if state in (0, IDLE):
        return Status.SUBMITTED, ""
    if state in (RUNNING, TRANSFERRING_OUTPUT):
        return Status.RUNNING, ""
    if state == SUSPENDED:
        return Status.RUNNING, "suspended by the execute machine"
    if state == REMOVED:
        reason = _value(ad, "RemoveReason") or "no reason given"
        return Status.ABORTED, f"removed from HTCondor: {reason}"
    if state == COMPLETED:
        if _value(ad, "ExitBySignal"):
            return Status.ERROR, f"killed by signal {_value(ad, 'ExitSignal')}"
        code = _value(ad, "ExitCode")
        if code == 0:
            return Status.COMPLETE, ""
        return Status.ERROR, "ended without an exit code" if code is None else f"exit code {code}"
    if state == HELD:
        code = _value(ad, "HoldReasonCode")
        reason = _value(ad, "HoldReason") or "no reason given"
        if code == HOLD_SPOOLING_INPUT:
            return Status.SUBMITTED, ""
        if code == HOLD_JOB_DURATION_EXCEEDED:
            limit = _value(ad, "AllowedJobDuration")
            return Status.ERROR, (
                "timed out: it ran longer than its timeout"
                + (f" of {limit} s" if limit is not None else "")
            )
        if code in (HOLD_USER_REQUEST, HOLD_SUBMITTED_ON_HOLD):
            return Status.PAUSED, "" if reason.startswith(PAUSE_REASON) else f"held: {reason}"
        return Status.ERROR, f"held by HTCondor: {reason}"
    return Status.OTHER, f"HTCondor reports JobStatus {state!r}, which jobtower does not know"


def _owner_ids(user: str) -> tuple[int, set[int]]:
    entry = pwd.getpwnam(user)
    groups = {entry.pw_gid} | {g.gr_gid for g in grp.getgrall() if user in g.gr_mem}
    return entry.pw_uid, groups


def _can_enter(st: os.stat_result, uid: int, gids: set[int]) -> bool:
    if st.st_uid == uid:
        return bool(st.st_mode & stat.S_IXUSR)
    if st.st_gid in gids:
        return bool(st.st_mode & stat.S_IXGRP)
    return bool(st.st_mode & stat.S_IXOTH)


class CondorBackend(Backend):
    """Submits, tracks, holds, releases and removes CONDOR jobs on HTCondor schedds."""

    name = "HTCondor"
    capabilities = frozenset({
        Capability.SUBMIT, Capability.POLL, Capability.STOP, Capability.HOLD, Capability.LOGS,
        Capability.RESULTS, Capability.CALLBACKS,
    })

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._located: dict[str, tuple[float, Any]] = {}
        self._identity: dict[str, str] = {}
        #: Schedd queries made by poll() (queue and history), for tests and benchmarks.
        self.queries = 0

    # -- reaching a schedd ------------------------------------------------------------------------

    @contextlib.contextmanager
    def _security(self, scheduler: Scheduler | None) -> Iterator[None]:
        """Authenticate this thread's HTCondor calls with the scheduler's own IDTOKEN, if it has one."""
        if scheduler is None or not scheduler.token:
            yield
            return
        htcondor = bindings()
        with htcondor.SecMan() as sec:
            sec.setToken(htcondor.Token(scheduler.token))
            sec.setConfig("SEC_CLIENT_AUTHENTICATION_METHODS", "IDTOKENS")
            yield

    def _schedd(self, scheduler: Scheduler | None) -> Any:
        """Return the Schedd of the local pool or of a scheduler record (located via its collector)."""
        htcondor = bindings()
        if scheduler is None:
            return htcondor.Schedd()
        with self._lock:
            cached = self._located.get(scheduler.name)
        if cached is not None and time.monotonic() - cached[0] < LOCATE_TTL:
            return htcondor.Schedd(cached[1])
        collector = htcondor.Collector(scheduler.host)
        if scheduler.schedd_name:
            ad = collector.locate(htcondor.DaemonTypes.Schedd, scheduler.schedd_name)
        else:
            ads = collector.locateAll(htcondor.DaemonTypes.Schedd)
            if len(ads) != 1:
                names = ", ".join(sorted(str(a.get("Name")) for a in ads)) or "none"
                raise LookupError(
                    f"scheduler {scheduler.name!r}: the collector at {scheduler.host} knows "
                    f"{len(ads)} schedds ({names}); set schedd_name to one of them"
                )
            ad = ads[0]
        with self._lock:
            self._located[scheduler.name] = (time.monotonic(), ad)
        return htcondor.Schedd(ad)

    def _forget(self, scheduler: Scheduler | None) -> None:
        # A restarted schedd listens at a new address, and knows none of our security sessions:
        # locate it again next time, and authenticate afresh.
        if scheduler is not None:
            with self._lock:
                self._located.pop(scheduler.name, None)
        with contextlib.suppress(Exception):
            bindings().SecMan().invalidateAllSessions()

    def _identity_of(self, schedd: Any, key: str) -> str:
        """Return the user the schedd maps us to (jobs run as that user), asked once per process."""
        with self._lock:
            known = self._identity.get(key)
        if known:
            return known
        reply = bindings().SecMan().ping(schedd.location.address, "WRITE")
        user = str(reply.get("MyRemoteUserName") or "").split("@")[0]
        if not user or user == "unauthenticated":
            raise PermissionError(f"the schedd did not authenticate us (it answered {reply!r})")
        with self._lock:
            self._identity[key] = user
        return user

    # -- checks and submission --------------------------------------------------------------------

    def check(self, job: Job) -> None:
        """Refuse what cannot run: a missing htcondor."""
        bindings()

    def _prepare_folder(self, job: CondorJob, schedd: Any, attempt_dir: Path) -> None:
        """Let the job's user write the job's folder (jobs never run as root); refuse unreachable ones."""
        if os.geteuid() != 0:
            return  # our jobs run as us: the folder is ours already
        user = self._identity_of(schedd, "local")
        try:
            uid, gids = _owner_ids(user)
        except KeyError:
            raise PermissionError(
                f"the schedd runs this job as {user!r}, who has no account on this machine: its "
                "folder cannot be given to it"
            ) from None
        folder = job.folder
        for parent in reversed(folder.parents):
            st = parent.stat()
            if not _can_enter(st, uid, gids):
                raise PermissionError(
                    f"HTCondor runs this job as {user!r}, who cannot enter {parent} (mode "
                    f"{stat.filemode(st.st_mode)}, owner uid {st.st_uid}), so it cannot reach the job's "
                    f"folder {folder}. Put the workspace where {user!r} may enter (o+x), or run "
                    f"jobtower as {user!r}."
                )
        entry = pwd.getpwuid(uid)
        for path in (folder, folder / "attempts", attempt_dir):
            os.chown(path, uid, entry.pw_gid)

    def submit(self, job: Job) -> None:
        """Submit one cluster for the job's current attempt; the cluster id goes to engine_data."""
        htcondor = bindings()
        description = job.submit_description()  # type: ignore[attr-defined]
        scheduler = job.get_scheduler()  # type: ignore[attr-defined]
        attempt_dir = Path(attempt_folder(job.folder, job.attempt))
        attempt_dir.mkdir(parents=True, exist_ok=True)
        if getattr(job, "function", None):
            # The job's folder is shared with the execute machine: inputs are copied in, as on LOCAL.
            copy_inputs(job)
            functions.prepare(job, attempt_dir)
        submit = htcondor.Submit(description.commands)

        def prepare(schedd: Any) -> None:
            if not description.spool:
                self._prepare_folder(job, schedd, attempt_dir)  # type: ignore[arg-type]

        cluster = self._submit_cluster(scheduler, submit, procs=description.procs, spool=description.spool,
                                       prepare=prepare)
        job.engine_data = {
            "cluster_id": cluster,
            "procs": description.procs,
            "attempt": job.attempt,
            "scheduler": scheduler.name if scheduler is not None else None,
            "spool": description.spool,
            "log": description.log,
            "output": description.output,
            "error": description.error,
            "submitted": datetime.datetime.now(datetime.UTC).isoformat(),
        }
        log.info("job %s attempt %s: HTCondor cluster %s (%s procs)%s", job.pk, job.attempt, cluster,
                 description.procs, f" on {scheduler.name}" if scheduler is not None else "")

    def _submit_cluster(
        self, scheduler: Scheduler | None, submit: Any, *, procs: int, spool: bool,
        prepare: Callable[[Any], None] | None = None,
    ) -> int:
        """Submit one cluster to the scheduler's schedd (`prepare(schedd)` first); return its id.

        With `spool`, the input files the description names are sent with it (a cluster whose files
        could not be sent is removed again), and its outputs wait in the schedd's spool for retrieve().
        """
        htcondor = bindings()
        with self._security(scheduler):
            for retry in (False, True):
                try:
                    schedd = self._schedd(scheduler)
                    if prepare is not None:
                        prepare(schedd)
                    result = schedd.submit(submit, count=procs, spool=spool)
                    break
                except Exception as exc:
                    self._forget(scheduler)
                    # Nothing was submitted when the schedd could not be reached: a restarted schedd
                    # (a new address, our old security sessions unknown to it) is reached on a second try.
                    if retry or "Failed to connect" not in str(condor_error(exc)):
                        reraise(exc)
                    log.info("could not reach the schedd of %s; trying once more (%s)",
                             scheduler.name if scheduler is not None else "the local pool", condor_error(exc))
            cluster = int(result.cluster())
            if spool:
                try:
                    schedd.spool(list(submit.jobs(count=procs, clusterid=cluster)))
                except Exception as exc:
                    with contextlib.suppress(Exception):
                        schedd.act(htcondor.JobAction.Remove, f"ClusterId == {cluster}",
                                   reason="jobtower: sending the input files failed")
                    reraise(exc)
        return cluster

    def _retrieve(self, scheduler: Scheduler | None, cluster: int, *, states: Sequence[int] = (COMPLETED,),
                  release: bool = True) -> None:
        """Bring a spooled cluster's outputs back (procs in `states` only); `release` lets it leave the queue."""
        which = " || ".join(f"JobStatus == {state}" for state in states)
        with self._security(scheduler):
            try:
                schedd = self._schedd(scheduler)
                schedd.retrieve(f"ClusterId == {cluster} && ({which})")
                if release:
                    # Retrieved: the schedd may let the job leave its queue now.
                    schedd.edit(f"ClusterId == {cluster}", "LeaveJobInQueue", "false")
            except Exception as exc:
                self._forget(scheduler)
                reraise(exc)

    # -- tracking -----------------------------------------------------------------------------------

    @staticmethod
    def _cluster(job: Job) -> int | None:
        """Return the cluster of the job's current attempt, or None before it reached a schedd."""
        data = job.engine_data or {}
        if not data.get("cluster_id") or data.get("attempt") != job.attempt:
            return None
        return int(data["cluster_id"])

    def poll(self, jobs: Sequence[Job]) -> PollResult:
        """Ask each schedd about all its jobs at once: the queue, then the history of those gone.

        A schedd that does not answer is reported: its jobs keep their statuses, marked stale.
        """
        answer = PollResult()
        for scheduler, members, ads in self._schedd_answers(jobs, answer):
            failed_holds: list[int] = []
            for job in members:
                observation, held = self._observe(job, ads)
                if getattr(job, "function", None) and observation.status.is_terminal:
                    observation = functions.outcome(job, observation)
                answer.observations[job.pk] = observation
                # Once the whole job has ended: a held proc removed earlier would read as Aborted.
                if held and observation.status.is_terminal:
                    failed_holds.append(self._cluster(job))  # type: ignore[arg-type]
            if failed_holds:
                self._remove_failed_holds(scheduler, failed_holds)
        return answer

    def _schedd_answers(
        self, jobs: Sequence[Job], answer: PollResult
    ) -> Iterator[tuple[Scheduler | None, list[Job], dict[int, dict[int, Any]]]]:
        """Ask each schedd once about its jobs; yield (scheduler, its jobs, their ads).

        The jobs of a schedd that does not answer go to `answer.unreachable` instead.
        """
        from jobtower.models import Scheduler

        groups: dict[str | None, list[Job]] = {}
        for job in jobs:
            # Results-Ready ends when its results are processed, not when the engine says Complete.
            if job.status_code is Status.RESULTS_READY or self._cluster(job) is None:
                continue
            groups.setdefault((job.engine_data or {}).get("scheduler"), []).append(job)
        names = [name for name in groups if name]
        records = {s.name: s for s in Scheduler.objects.filter(name__in=names)} if names else {}
        for name, members in groups.items():
            scheduler = records.get(name) if name else None
            try:
                if name and scheduler is None:
                    raise LookupError(f"the scheduler {name!r} was deleted")
                ads = self._ads(scheduler, members)
            except Exception as exc:
                self._forget(scheduler)
                reason = f"HTCondor schedd {name or '(local pool)'} did not answer: {condor_error(exc)}"
                answer.unreachable.update((job.pk, reason) for job in members)
                continue
            yield scheduler, members, ads

    def _ads(self, scheduler: Scheduler | None, jobs: list[Job]) -> dict[int, dict[int, Any]]:
        """Return {cluster: {proc: ad}} for the jobs' clusters: one queue query, one history query."""
        wanted: dict[int, Job] = {}
        for job in jobs:
            cluster = self._cluster(job)
            if cluster is not None:
                wanted[cluster] = job
        procs = {cluster: int((job.engine_data or {}).get("procs") or 1) for cluster, job in wanted.items()}
        low, high = min(wanted), max(wanted)
        found: dict[int, dict[int, Any]] = {}

        def keep(ad: Any) -> None:
            cluster = _value(ad, "ClusterId")
            job = wanted.get(cluster)
            # Our own tag on the ad guards against cluster ids a reinstalled schedd hands out again.
            if job is not None and _value(ad, "JobtowerJobId") == job.pk:
                found.setdefault(cluster, {})[int(_value(ad, "ProcId") or 0)] = ad

        constraint = f"ClusterId >= {low} && ClusterId <= {high}"
        also = self._also_ask(jobs)
        if also:
            constraint = f"({constraint}) || {also}"
        with self._security(scheduler):
            schedd = self._schedd(scheduler)
            self.queries += 1
            for ad in schedd.query(f"JobtowerJobId =!= undefined && ({constraint})", PROJECTION + self.also_project):
                if _value(ad, "ClusterId") in wanted:
                    keep(ad)
                else:
                    self._keep_other(ad, found)
            gone = [c for c, n in procs.items() if len(found.get(c, {})) < n]
            if gone:
                self.queries += 1
                clusters = ", ".join(str(c) for c in sorted(gone))
                # Procs seen in the queue may have left it since: room for every proc of these
                # clusters, so the scan stops early only when none can be missing.
                for ad in schedd.history(f"member(ClusterId, {{{clusters}}})", PROJECTION,
                                         match=sum(procs[c] for c in gone)):
                    keep(ad)
        return found

    #: More attributes the queue query asks for (a subclass's own).
    also_project: list[str] = []

    def _also_ask(self, jobs: Sequence[Job]) -> str:
        """Return a constraint for more ads the same queue query should bring (none here)."""
        return ""

    def _keep_other(self, ad: Any, found: dict[int, dict[int, Any]]) -> None:
        """Keep an ad of the queue query that is none of the jobs' clusters (ignored here)."""

    def _observe(self, job: Job, ads: dict[int, dict[int, Any]]) -> tuple[Observation, bool]:
        """Return the job's observation, and whether HTCondor held a proc of it for a failure."""
        cluster = self._cluster(job)
        procs = int((job.engine_data or {}).get("procs") or 1)
        seen = ads.get(cluster, {})  # type: ignore[arg-type]
        states = {proc: proc_status(ad) for proc, ad in seen.items()}
        for proc in range(procs):
            states.setdefault(proc, (
                Status.ERROR,
                f"lost: HTCondor has no record of {cluster}.{proc}, neither in the queue nor in its "
                "history (was the schedd reinstalled?)",
            ))
        failed_hold = any(
            _value(ad, "JobStatus") == HELD and states[proc][0] is Status.ERROR for proc, ad in seen.items()
        )
        return rollup(states, procs), failed_hold

    def _remove_failed_holds(self, scheduler: Scheduler | None, clusters: list[int]) -> None:
        """Remove procs HTCondor held for a failure: they are in Error now, and would wait forever."""
        htcondor = bindings()
        which = " || ".join(f"ClusterId == {c}" for c in sorted(set(clusters)))
        constraint = (f"JobStatus == {HELD} && HoldReasonCode =!= {HOLD_USER_REQUEST} && "
                      f"HoldReasonCode =!= {HOLD_SUBMITTED_ON_HOLD} && HoldReasonCode =!= "
                      f"{HOLD_SPOOLING_INPUT} && ({which})")
        try:
            with self._security(scheduler):
                self._schedd(scheduler).act(
                    htcondor.JobAction.Remove, constraint,
                    reason="jobtower: held for a failure, the job is in Error (resubmit() runs it again)",
                )
        except Exception as exc:  # the next poll sees them held again and tries again
            log.warning("could not remove held HTCondor clusters %s: %s", clusters, condor_error(exc))

    # -- actions ------------------------------------------------------------------------------------

    def _act(self, job: Job, action: str, reason: str, *, missing_ok: bool) -> None:
        cluster = self._cluster(job)
        if cluster is None:
            if missing_ok:
                return
            raise RuntimeError(f"job {job.pk} has not reached HTCondor yet: there is nothing to {action.lower()}")
        htcondor = bindings()
        scheduler = job.get_scheduler()  # type: ignore[attr-defined]
        with self._security(scheduler):
            try:
                reply = self._schedd(scheduler).act(
                    getattr(htcondor.JobAction, action), f"ClusterId == {cluster}", reason=reason
                )
            except Exception as exc:
                self._forget(scheduler)
                reraise(exc)
        done = int(reply.get("TotalSuccess", 0)) + int(reply.get("TotalAlreadyDone", 0))
        if not done and not missing_ok:
            raise RuntimeError(
                f"HTCondor has no proc of cluster {cluster} to {action.lower()} in its queue: the job has ended"
            )

    def cancel(self, job: Job) -> None:
        """Remove the cluster from the queue (condor_rm); a cluster that has ended already is fine."""
        self._act(job, "Remove", STOP_REASON, missing_ok=True)

    def hold(self, job: Job) -> None:
        """Hold the cluster (condor_hold): a running proc is stopped and will start over on release."""
        self._act(job, "Hold", PAUSE_REASON, missing_ok=False)

    def release(self, job: Job) -> Status:
        """Release the cluster (condor_release): it queues again, and runs when matched."""
        self._act(job, "Release", "jobtower: resumed by a user", missing_ok=False)
        return Status.SUBMITTED

    # -- files --------------------------------------------------------------------------------------

    def logs(self, job: Job) -> dict[str, Any]:
        """Return stdout, stderr (per proc when there are several) and the event log of this attempt."""
        data = job.engine_data or {}
        cluster = self._cluster(job)
        if cluster is None:
            return {}
        procs = int(data.get("procs") or 1)

        def read(pattern: str | None, proc: int) -> str:
            return tail(Path(expand(pattern, cluster, proc)), LOG_TAIL_BYTES) if pattern else ""

        logs: dict[str, Any] = {}
        for name, key in (("stdout", "output"), ("stderr", "error")):
            if procs == 1:
                logs[name] = read(data.get(key), 0)
            else:
                logs[name] = {str(proc): read(data.get(key), proc) for proc in range(procs)}
        logs["log"] = read(data.get("log"), 0)
        return logs

    def fetch_results(self, job: Job) -> None:
        """Bring a spooled job's outputs into its folder (local-pool outputs are there already)."""
        data = job.engine_data or {}
        cluster = self._cluster(job)
        if cluster is None or not data.get("spool"):
            return
        self._retrieve(job.get_scheduler(), cluster)  # type: ignore[attr-defined]
