"""SLURM jobs on a Slurm cluster, through its commands (sbatch, squeue, sacct, scancel, scontrol) or slurmrestd.

Where things go: each attempt of a job runs in the job's own folder (``--chdir``), which the cluster's
nodes must see at the same path (a shared file system), and writes ``attempts/<n>/stdout.txt`` and
``stderr.txt`` there (``stdout_<task>.txt`` per array task), so a resubmit keeps earlier attempts'
files. A job gets only its own environment: the few variables of
:data:`jobtower.backends.local.INHERITED_ENVIRONMENT`, its `environment`, and JOBTOWER_JOB_ID,
JOBTOWER_ATTEMPT, JOBTOWER_JOB_FOLDER; never the server's (no secret reaches a job). Jobs run as the OS
user that runs jobtower.

Tracking costs at most two calls per cluster per poll, whatever the number of jobs: one
``squeue --json`` for everything the controller still holds, then one ``sacct`` for the jobs that left
it. A controller that does not answer leaves the jobs' statuses as they were, marked stale.

A cluster whose :class:`~jobtower.models.SlurmCluster` record has a `rest_url` is reached through
slurmrestd with the record's JWT instead (:mod:`jobtower.backends.slurmrest`): the same job fields,
files and environment, one ``GET /slurm/v0.0.38/jobs`` and one ``GET /slurmdb/v0.0.38/jobs`` per poll,
and the same reading of what Slurm says (the state map, the array roll-up, stale marking).
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import re
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jobtower.backends import functions
from jobtower.backends.base import Backend, Capability, Observation, PollResult
from jobtower.backends.local import INHERITED_ENVIRONMENT, LOG_TAIL_BYTES, tail
from jobtower.backends.rollup import rollup
from jobtower.backends.slurmrest import (
    REST_API,
    SlurmRestClient,
    SlurmRestError,
    command_script,
    rest_job_fields,
    script_options,
)
from jobtower.errors import EngineUnavailable, NotSupported
from jobtower.statuses import Status

if TYPE_CHECKING:
    from jobtower.models import Job, SlurmCluster, SlurmJob

log = logging.getLogger("jobtower.slurm")

#: Slurm job states -> jobtower statuses, and the reason a user reads ("" for none; {code} is the exit
#: code). States not here read as Other, naming the state.
SLURM_STATES: dict[str, tuple[Status, str]] = {
    "PENDING": (Status.SUBMITTED, ""),
    "CONFIGURING": (Status.SUBMITTED, ""),
    "REQUEUED": (Status.SUBMITTED, "requeued by Slurm"),
    "REQUEUE_FED": (Status.SUBMITTED, "requeued by Slurm"),
    "REQUEUE_HOLD": (Status.PAUSED, "requeued and held by Slurm"),
    "RESV_DEL_HOLD": (Status.PAUSED, "held: its reservation was deleted"),
    "RUNNING": (Status.RUNNING, ""),
    "COMPLETING": (Status.RUNNING, ""),
    "SIGNALING": (Status.RUNNING, ""),
    "STAGE_OUT": (Status.RUNNING, ""),
    "RESIZING": (Status.RUNNING, ""),
    "SUSPENDED": (Status.PAUSED, ""),
    "STOPPED": (Status.PAUSED, "stopped by Slurm (SIGSTOP)"),
    "COMPLETED": (Status.COMPLETE, ""),
    "FAILED": (Status.ERROR, "exit code {code}"),
    "TIMEOUT": (Status.ERROR, "TIMEOUT: it ran past its time limit"),
    "OUT_OF_MEMORY": (Status.ERROR, "OUT_OF_MEMORY: it used more memory than it asked for"),
    "NODE_FAIL": (Status.ERROR, "NODE_FAIL: its node failed"),
    "BOOT_FAIL": (Status.ERROR, "BOOT_FAIL: its node did not boot"),
    "PREEMPTED": (Status.ERROR, "PREEMPTED: a job of higher priority took its resources"),
    "DEADLINE": (Status.ERROR, "DEADLINE: it could not end before its deadline"),
    "SPECIAL_EXIT": (Status.ERROR, "SPECIAL_EXIT: exit code {code}"),
    "CANCELLED": (Status.ABORTED, "CANCELLED: removed from Slurm"),
    "REVOKED": (Status.ABORTED, "REVOKED: removed from this cluster by a federation"),
}
#: States of a job the controller still runs or will run (squeue lists ended jobs only with --states).
ACTIVE_STATES = frozenset({
    "PENDING", "CONFIGURING", "REQUEUED", "REQUEUE_FED", "REQUEUE_HOLD", "RESV_DEL_HOLD", "RUNNING", "COMPLETING",
    "SIGNALING", "STAGE_OUT", "RESIZING", "SUSPENDED", "STOPPED",
})
RUNNING_STATES = frozenset({"RUNNING", "CONFIGURING", "COMPLETING"})
#: Pending reasons that mean someone held the job (pause() holds with scontrol hold).
HELD_REASONS = {"JobHeldUser": "", "JobHeldAdmin": "held by a Slurm administrator"}
#: What sacct reports about each job that left the queue.
SACCT_FIELDS = "JobID,JobName,State,ExitCode"
#: Seconds a Slurm command may take before the controller counts as not answering.
COMMAND_TIMEOUT = 30.0
#: Seconds after submission during which a job Slurm does not know yet is not lost.
SUBMIT_GRACE = 60.0
#: A program the command runs through: sbatch needs a script, and this one passes argv as it is.
ARGV_SCRIPT = '#!/bin/sh\n# written by jobtower: runs the job\'s command as given (argv), no shell parsing\nexec "$@"\n'
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def wait_status_message(raw: int) -> tuple[int, str]:
    """Return the exit code and its reason from squeue's exit_code (a raw wait status: 768 = exit 3)."""
    signal, code = raw & 0x7F, (raw >> 8) & 0xFF
    return code, (f"killed by signal {signal}" if signal else f"exit code {code}")


def state_of(state: str, code: int | None = None, signal: int = 0) -> tuple[Status, str]:
    """Map a Slurm state ("FAILED", "CANCELLED by 0") and exit code to a status and a reason."""
    name = state.split()[0].rstrip("+") if state.strip() else ""
    known = SLURM_STATES.get(name)
    if known is None:
        return Status.OTHER, f"Slurm reports the state {state!r}, which jobtower does not know"
    status, message = known
    if name == "FAILED" and signal:
        return status, f"killed by signal {signal}"
    if name == "FAILED" and code is None:
        return status, "FAILED"
    return status, message.format(code=code)


def parse_task_string(text: str) -> list[int]:
    """Return the indices of a task string from squeue or sacct ("3-9%2", "1,4,7-8", "[3-9]")."""
    from jobtower.models.slurm import array_indices

    text = text.strip().strip("[]").split("%", 1)[0]
    return array_indices(text) if text else []


class SlurmError(RuntimeError):
    """A Slurm command failed; its message is what the command said."""


#: What Slurm says about our jobs: {slurm id: {task (None: not an array): (status, reason)}}.
Found = dict[int, dict[int | None, tuple[Status, str]]]


def read_queue(records: list[dict[str, Any]], wanted: dict[int, Job]) -> Found:
    """Read the controller's job records (``squeue --json`` and slurmrestd's jobs, the same format)."""
    found: Found = {}
    for record in records:
        array_id = int(record.get("array_job_id") or 0)
        base = array_id or int(record.get("job_id") or 0)
        job = wanted.get(base)
        # Our own tag guards against ids a reinstalled controller hands out again.
        if job is None or record.get("comment") != f"jobtower:{job.pk}:{job.attempt}":
            continue
        state = str(record.get("job_state") or "")
        reason = str(record.get("state_reason") or "")
        raw = record.get("exit_code")
        code, how = wait_status_message(int(raw)) if isinstance(raw, int) else (None, "")
        status, message = state_of(state, code)
        if state == "FAILED" and how:
            message = how
        if status is Status.SUBMITTED and reason in HELD_REASONS:
            status, message = Status.PAUSED, HELD_REASONS[reason]
        if not array_id:
            found.setdefault(base, {})[None] = (status, message)
            continue
        pending = str(record.get("array_task_string") or "")
        task = record.get("array_task_id")
        indices = parse_task_string(pending) if pending else ([int(task)] if isinstance(task, int) else [])
        for index in indices:
            found.setdefault(base, {})[index] = (status, message)
    return found


def add_accounted(found: Found, names: dict[int | None, Any], base: int, indices: list[int | None], job_name: str,
                  state: str, code: int | None, signal: int) -> None:
    """Add one accounting record (sacct's line or slurmdbd's record) about a job that left the queue."""
    if base not in names or (names[base] and job_name != names[base]):
        return
    status, message = state_of(state, code, signal)
    for index in indices:
        # The queue's word is newer than the accounting's: keep it where both speak.
        found.setdefault(base, {}).setdefault(index, (status, message))


def read_accounting_record(record: dict[str, Any]) -> tuple[int, list[int | None], str, str, int | None, int]:
    """Return (base id, tasks, name, state, exit code, signal) of one slurmdbd job record (REST)."""
    array = record.get("array") or {}
    base = int(array.get("job_id") or 0) or int(record.get("job_id") or 0)
    task = array.get("task_id")
    pending = array.get("task")
    indices: list[int | None]
    if array.get("job_id") and isinstance(task, int):
        indices = [task]
    elif array.get("job_id") and pending:
        indices = list(parse_task_string(str(pending)))
    else:
        indices = [None]
    state = str((record.get("state") or {}).get("current") or "")
    exit_code = record.get("exit_code") or {}
    how = exit_code.get("status")
    code: int | None = None
    signal = 0
    if how == "SIGNALED":
        signal = int((exit_code.get("signal") or {}).get("signal_id") or 0)
    elif how == "ERROR":
        code = int(exit_code.get("return_code") or 0)
    elif how == "SUCCESS" and state.split()[0:1] == ["COMPLETED"]:
        code = 0
    # Else: slurmdbd's REST API of Slurm 22.05 reports every normal exit as SUCCESS with code 0, whatever the
    # code was: the code is unknown, and a FAILED job reads "FAILED".
    return base, indices, str(record.get("name") or ""), state, code, signal


class SlurmBackend(Backend):
    """Submits, tracks, holds, suspends, releases and cancels SLURM jobs with the Slurm commands."""

    name = "Slurm"
    capabilities = frozenset({
        Capability.SUBMIT, Capability.POLL, Capability.STOP, Capability.HOLD, Capability.LOGS,
        Capability.LOG_FILES,
    })

    def __init__(self) -> None:
        super().__init__()
        #: Controller calls made by poll() (squeue and sacct), for tests and benchmarks.
        self.queries = 0

    # -- running the commands ---------------------------------------------------------------------

    @staticmethod
    def _command_env(cluster: SlurmCluster | None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k in INHERITED_ENVIRONMENT or k.startswith("LC_")}
        for key in ("SLURM_CONF", "MUNGE_SOCKET"):
            if key in os.environ:
                env[key] = os.environ[key]
        if cluster is not None and cluster.slurm_conf:
            env["SLURM_CONF"] = cluster.slurm_conf
        return env

    def _run(self, argv: list[str], cluster: SlurmCluster | None, *, env: dict[str, str] | None = None,
             cwd: Path | None = None) -> str:
        """Run a Slurm command and return its stdout; SlurmError with what it said when it fails."""
        if shutil.which(argv[0], path=os.environ.get("PATH")) is None:
            raise EngineUnavailable(
                f"the Slurm command {argv[0]!r} is not on PATH: install Slurm's client commands "
                "(Debian: apt-get install slurm-client) on the machine that runs jobtower"
            )
        try:
            done = subprocess.run(
                argv, env=env if env is not None else self._command_env(cluster), cwd=cwd,
                capture_output=True, text=True, timeout=COMMAND_TIMEOUT, stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired:
            raise SlurmError(f"{argv[0]} got no answer within {COMMAND_TIMEOUT:g} s") from None
        if done.returncode != 0:
            said = (done.stderr or done.stdout).strip().splitlines()
            raise SlurmError(f"{argv[0]} failed (exit {done.returncode}): {' '.join(said[-3:]) or 'no message'}")
        return done.stdout

    # -- checks and submission --------------------------------------------------------------------

    @staticmethod
    def rest(cluster: SlurmCluster | None) -> SlurmRestClient | None:
        """Return a slurmrestd client for a cluster reached through its rest_url (None: the commands)."""
        if cluster is None or not cluster.rest_url:
            return None
        return SlurmRestClient(cluster)

    def check(self, job: Job) -> None:
        """Refuse a job when sbatch is not on this machine, or its slurmrestd token is unusable."""
        cluster = job.get_scheduler()  # type: ignore[attr-defined]
        if cluster is not None and cluster.rest_url:
            # a missing, malformed or expired token is refused before anything moves (the job stays
            # Pending, to run once the cluster has a token that works), as is an option slurmrestd refuses
            try:
                self.rest(cluster)
            except SlurmRestError as exc:
                raise EngineUnavailable(f"SLURM job {job.pk} cannot run: {exc}") from None
            rest_job_fields(dict(job.sbatch or {}))  # type: ignore[attr-defined]
            return
        if shutil.which("sbatch", path=os.environ.get("PATH")) is None:
            raise EngineUnavailable(
                f"SLURM job {job.pk} cannot run: the Slurm command 'sbatch' is not on PATH. Install "
                "Slurm's client commands (Debian: apt-get install slurm-client) and its munge key"
            )

    @staticmethod
    def attempt_folder(job: Job) -> Path:
        """Return the folder of the job's current attempt."""
        return job.folder / "attempts" / str(job.attempt)

    def _job_env(self, job: SlurmJob) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k in INHERITED_ENVIRONMENT or k.startswith("LC_")}
        for name in job.environment or {}:
            if not _NAME.match(name):
                raise ValueError(f"environment variable name {name!r} is not valid: use letters, digits and _")
        env.update(job.environment or {})
        env.update(JOBTOWER_JOB_ID=str(job.pk), JOBTOWER_ATTEMPT=str(job.attempt),
                   JOBTOWER_JOB_FOLDER=str(job.folder))
        return env

    def submit(self, job: Job) -> None:
        """Submit the job's current attempt (sbatch, or slurmrestd's job/submit); its Slurm id goes to engine_data."""
        from jobtower.models import SlurmJob

        assert isinstance(job, SlurmJob), f"the Slurm backend runs SLURM jobs, not {job.job_type}"
        job.clean_spec()
        cluster = job.get_scheduler()
        folder = job.folder
        attempt = self.attempt_folder(job)
        attempt.mkdir(parents=True, exist_ok=True)
        for source in job.remote_input_files:
            path = Path(source)
            if not path.is_file():
                raise FileNotFoundError(f"remote_input_files: {source} is not a file; nothing was submitted")
            shutil.copy2(path, folder / path.name)
        tasks = job.tasks()
        suffix = "_%a" if tasks else ""
        stdout, stderr = attempt / f"stdout{suffix}.txt", attempt / f"stderr{suffix}.txt"
        options = dict(job.sbatch or {})
        name = str(options.pop("job-name", "") or f"jobtower-{job.pk}")
        options.pop("time", None)
        env = self._job_env(job)
        if job.function:
            python_is_ours = functions.interpreter(job.job_type)[1]
            env.update(functions.environment(job, python_is_ours))
        client = self.rest(cluster)
        if client is not None:
            slurm_id = self._submit_rest(client, job, name, options, env, stdout, stderr)
        else:
            slurm_id = self._submit_sbatch(job, cluster, name, options, env, stdout, stderr)
        job.engine_data = {
            "slurm_job_id": slurm_id,
            "attempt": job.attempt,
            "scheduler": cluster.name if cluster is not None else None,
            "tasks": tasks or None,
            "job_name": name,
            "stdout": str(stdout),
            "stderr": str(stderr),
            "submitted": datetime.datetime.now(datetime.UTC).isoformat(),
        }
        log.info("job %s attempt %s: Slurm job %s%s%s", job.pk, job.attempt, slurm_id,
                 f" (array {job.array})" if job.array else "", " through slurmrestd" if client else "")

    def _script_path(self, job: SlurmJob) -> Path:
        path = Path(str(job.script))
        path = path if path.is_absolute() else job.folder / path
        if not path.is_file():
            raise FileNotFoundError(
                f"script {job.script!r} is not a file (looked for {path}); put it in the job's folder "
                "(remote_input_files copies files there) or give its full path"
            )
        return path

    def rest_submission(self, job: SlurmJob, name: str, options: dict[str, Any], env: dict[str, str],
                        stdout: Path, stderr: Path) -> tuple[str, dict[str, Any]]:
        """Return the script and job fields of slurmrestd's job/submit: what sbatch gets on the CLI path."""
        fields: dict[str, Any] = {
            "name": name, "current_working_directory": str(job.folder), "standard_output": str(stdout),
            "standard_error": str(stderr), "environment": env, "comment": f"jobtower:{job.pk}:{job.attempt}",
        }
        if job.command or job.function:
            attempt = self.attempt_folder(job)
            script = command_script(list(job.command or functions.prepare(job, attempt)))
            (attempt / "run.sh").write_text(script)
        else:
            script = self._script_path(job).read_text()
            # sbatch reads the script's #SBATCH lines and slurmrestd does not: they go as fields, and
            # the job's own options override them, as sbatch's command line does.
            fields = {**rest_job_fields(script_options(script)), **fields}
        limit = job.time_limit()
        if limit:
            fields["time_limit"] = limit
        if job.array:
            fields["array"] = job.array
        fields.update(rest_job_fields(options))
        return script, fields

    def _submit_rest(self, client: SlurmRestClient, job: SlurmJob, name: str, options: dict[str, Any],
                     env: dict[str, str], stdout: Path, stderr: Path) -> int:
        script, fields = self.rest_submission(job, name, options, env, stdout, stderr)
        return client.submit(script, fields)

    def _submit_sbatch(self, job: SlurmJob, cluster: SlurmCluster | None, name: str, options: dict[str, Any],
                       env: dict[str, str], stdout: Path, stderr: Path) -> int:
        folder = job.folder
        argv = [
            "sbatch", "--parsable", f"--job-name={name}", f"--chdir={folder}", f"--output={stdout}",
            f"--error={stderr}", f"--export={','.join(sorted(env))}", f"--comment=jobtower:{job.pk}:{job.attempt}",
        ]
        limit = job.time_limit()
        if limit:
            argv.append(f"--time={limit}")
        if job.array:
            argv.append(f"--array={job.array}")
        argv += [f"--{key}" if value is True else f"--{key}={value}" for key, value in sorted(options.items())]
        if job.command or job.function:
            attempt = self.attempt_folder(job)
            script = attempt / "run.sh"
            script.write_text(ARGV_SCRIPT)
            argv += [str(script), *(job.command or functions.prepare(job, attempt))]
        else:
            argv.append(str(self._script_path(job)))
        # sbatch reads the values of the --export names from its own environment: give it only those.
        submit_env = {**env, **{k: v for k, v in self._command_env(cluster).items() if k not in env}}
        reply = self._run(argv, cluster, env=submit_env, cwd=folder).strip()
        try:
            return int(reply.split(";", 1)[0])
        except ValueError:
            raise SlurmError(f"sbatch answered {reply!r}, which is not a job id") from None

    # -- tracking -----------------------------------------------------------------------------------

    @staticmethod
    def _slurm_id(job: Job) -> int | None:
        """Return the Slurm job id of the job's current attempt, or None before it was submitted."""
        data = job.engine_data or {}
        if not data.get("slurm_job_id") or data.get("attempt") != job.attempt:
            return None
        return int(data["slurm_job_id"])

    @staticmethod
    def _tasks(job: Job) -> list[int]:
        return [int(t) for t in (job.engine_data or {}).get("tasks") or []]

    def poll(self, jobs: Sequence[Job]) -> PollResult:
        """Ask each cluster about all its jobs at once: squeue, then sacct for those that left it."""
        from jobtower.models import SlurmCluster

        groups: dict[str | None, list[Job]] = {}
        for job in jobs:
            if job.status_code is Status.RESULTS_READY or self._slurm_id(job) is None:
                continue
            groups.setdefault((job.engine_data or {}).get("scheduler"), []).append(job)
        names = [name for name in groups if name]
        records = {c.name: c for c in SlurmCluster.objects.filter(name__in=names)} if names else {}
        answer = PollResult()
        for name, members in groups.items():
            cluster = records.get(name) if name else None
            where = f"Slurm cluster {name}" if name else "the Slurm controller"
            try:
                if name and cluster is None:
                    raise LookupError(f"the Slurm cluster record {name!r} was deleted")
                found = self._queue(cluster, members)
            except Exception as exc:
                # slurmrestd's errors name the cluster and what to do already
                said = str(exc) if isinstance(exc, SlurmRestError) else f"{where} did not answer: {exc}"
                answer.unreachable.update((job.pk, said) for job in members)
                continue
            missing = [job for job in members if set(found.get(self._slurm_id(job) or 0, {})) != self._expected(job)]
            if missing:
                try:
                    self._accounting(cluster, missing, found)
                except Exception as exc:
                    said = str(exc) if isinstance(exc, SlurmRestError) else \
                        f"Slurm accounting (sacct) for {where} did not answer: {exc}"
                    answer.unreachable.update((job.pk, said) for job in missing)
                    missing_ids = {job.pk for job in missing}
                    members = [job for job in members if job.pk not in missing_ids]
            for job in members:
                observation = self._observe(job, found)
                if observation is not None and getattr(job, "function", None) and observation.status.is_terminal:
                    observation = functions.outcome(job, observation)
                if observation is not None:
                    answer.observations[job.pk] = observation
        return answer

    def _expected(self, job: Job) -> set[int | None]:
        tasks = self._tasks(job)
        return set(tasks) if tasks else {None}

    def _queue(self, cluster: SlurmCluster | None, jobs: list[Job]) -> Found:
        """Return {slurm id: {task (None: not an array): state}} for our jobs the controller holds."""
        wanted = {self._slurm_id(job) or 0: job for job in jobs}
        self.queries += 1
        client = self.rest(cluster)
        if client is not None:
            return read_queue(client.jobs(), wanted)
        try:
            reply = json.loads(self._run(["squeue", "--json"], cluster))
        except ValueError as exc:
            raise SlurmError(f"squeue --json did not answer JSON: {exc}") from None
        # squeue --json exits 0 even when the controller did not answer: the errors say so.
        errors = reply.get("errors") or []
        if errors:
            said = "; ".join(
                ": ".join(str(e[k]) for k in ("description", "error") if e.get(k)) if isinstance(e, dict) else str(e)
                for e in errors
            )
            raise SlurmError(f"squeue --json: {said} (is slurmctld up? `scontrol ping` tells)")
        return read_queue(reply.get("jobs") or [], wanted)

    def _accounting(self, cluster: SlurmCluster | None, jobs: list[Job], found: Found) -> None:
        """Add what accounting says about jobs that left the queue to `found` (one call for all of them)."""
        names: dict[int | None, Any] = {self._slurm_id(job): (job.engine_data or {}).get("job_name") for job in jobs}
        ids = sorted(i for i in names if i is not None)
        self.queries += 1
        client = self.rest(cluster)
        if client is not None:
            for record in client.accounting(ids):
                add_accounted(found, names, *read_accounting_record(record))
            return
        out = self._run(["sacct", "-X", "-P", "-n", "-o", SACCT_FIELDS, "-j", ",".join(map(str, ids))], cluster)
        for line in out.splitlines():
            parts = line.split("|")
            if len(parts) != 4:
                continue
            job_id, job_name, state, exit_code = parts
            base_text, _, task_text = job_id.partition("_")
            try:
                base = int(base_text.split("+")[0])
            except ValueError:
                continue
            code_text, _, signal_text = exit_code.partition(":")
            code = int(code_text) if code_text.isdigit() else None
            signal = int(signal_text) if signal_text.isdigit() else 0
            indices: list[int | None] = list(parse_task_string(task_text)) if task_text else [None]
            add_accounted(found, names, base, indices, job_name, state, code, signal)

    def _observe(self, job: Job, found: Found) -> Observation | None:
        slurm_id = self._slurm_id(job)
        seen = found.get(slurm_id, {})  # type: ignore[arg-type]
        data = job.engine_data or {}
        if not seen:
            submitted = data.get("submitted")
            age = (datetime.datetime.now(datetime.UTC) - datetime.datetime.fromisoformat(submitted)).total_seconds() \
                if submitted else SUBMIT_GRACE
            if age < SUBMIT_GRACE:
                return None  # accounting records arrive a little after the job
            return Observation(Status.ERROR, f"lost: Slurm has no record of job {slurm_id}, neither in the "
                                             "queue nor in its accounting (sacct)")
        tasks = self._tasks(job)
        if not tasks:
            return rollup({0: seen.get(None) or next(iter(seen.values()))}, 1)
        lost = (Status.ERROR, "lost: Slurm has no record of this task")
        states = {task: seen.get(task, lost) for task in tasks}
        return rollup(states, len(tasks), unit="task")

    # -- actions ------------------------------------------------------------------------------------

    def _require_id(self, job: Job, action: str) -> int:
        slurm_id = self._slurm_id(job)
        if slurm_id is None:
            raise RuntimeError(f"job {job.pk} has not reached Slurm yet: there is nothing to {action}")
        return slurm_id

    def _states(self, job: Job, slurm_id: int) -> list[str]:
        """Return the states of the job's tasks the controller still holds (one squeue or REST call)."""
        cluster = job.get_scheduler()  # type: ignore[attr-defined]
        client = self.rest(cluster)
        if client is not None:
            return [str(r.get("job_state") or "") for r in client.job(slurm_id)
                    if str(r.get("job_state") or "") in ACTIVE_STATES]
        out = self._run(["squeue", "-h", "-j", str(slurm_id), "-o", "%T"], cluster)
        return [line.strip() for line in out.splitlines() if line.strip()]

    def cancel(self, job: Job) -> None:
        """scancel (or DELETE through slurmrestd) the job, every task of an array; an ended job is fine."""
        slurm_id = self._slurm_id(job)
        if slurm_id is None:
            return
        cluster = job.get_scheduler()  # type: ignore[attr-defined]
        client = self.rest(cluster)
        try:
            if client is not None:
                client.cancel(slurm_id)
            else:
                self._run(["scancel", str(slurm_id)], cluster)
        except (SlurmError, SlurmRestError) as exc:
            if "Invalid job id" in str(exc) or "already completing or completed" in str(exc):
                return
            raise

    def hold(self, job: Job) -> None:
        """Hold what waits, and suspend what runs already (suspend needs root or an operator, and the CLI)."""
        slurm_id = self._require_id(job, "pause")
        cluster = job.get_scheduler()  # type: ignore[attr-defined]
        client = self.rest(cluster)
        if client is not None:
            # Slurm's REST API has no suspend: a job that has started is refused, and nothing changes.
            if any(state in RUNNING_STATES for state in self._states(job, slurm_id)):
                raise NotSupported(
                    f"job {job.pk} runs already, and slurmrestd {REST_API} cannot suspend it (Slurm's REST "
                    "API has no suspend): nothing was changed; stop it, or let it finish",
                    job_id=job.pk, action="pause", capability=Capability.HOLD.value,
                )
            client.update(slurm_id, {"hold": True})
            return
        try:
            self._run(["scontrol", "hold", str(slurm_id)], cluster)
        except SlurmError as exc:
            if "no longer pending" not in str(exc) and "Job is not pending" not in str(exc):
                raise
        # A job that started just before the hold is not held by it: suspend it.
        if any(state in RUNNING_STATES for state in self._states(job, slurm_id)):
            try:
                self._run(["scontrol", "suspend", str(slurm_id)], cluster)
            except SlurmError as exc:
                raise SlurmError(
                    f"job {job.pk} runs already and Slurm would not suspend it ({exc}); suspending needs "
                    "root or a Slurm operator (sacctmgr modify user <name> set adminlevel=operator)"
                ) from None

    def release(self, job: Job) -> Status:
        """Release what is held and resume what is suspended; return Running if anything runs."""
        slurm_id = self._require_id(job, "resume")
        cluster = job.get_scheduler()  # type: ignore[attr-defined]
        client = self.rest(cluster)
        states = self._states(job, slurm_id)
        if not states:
            raise RuntimeError(f"Slurm job {slurm_id} has ended: there is nothing to resume")
        if client is not None:
            if "SUSPENDED" in states:
                raise NotSupported(
                    f"Slurm job {slurm_id} is suspended, and slurmrestd {REST_API} cannot resume it (Slurm's "
                    f"REST API has no resume): `scontrol resume {slurm_id}` on the cluster does",
                    job_id=job.pk, action="resume", capability=Capability.HOLD.value,
                )
            if "PENDING" in states:
                client.update(slurm_id, {"hold": False})
            return Status.RUNNING if "RUNNING" in states else Status.SUBMITTED
        if "SUSPENDED" in states:
            self._run(["scontrol", "resume", str(slurm_id)], cluster)
        if "PENDING" in states:
            try:
                self._run(["scontrol", "release", str(slurm_id)], cluster)
            except SlurmError as exc:
                if "SUSPENDED" not in states:
                    raise
                log.info("Slurm job %s: release after resume: %s", slurm_id, exc)
        return Status.RUNNING if "SUSPENDED" in states or "RUNNING" in states else Status.SUBMITTED

    # -- files --------------------------------------------------------------------------------------

    def log_files(self, job: Job) -> dict[str, Path]:
        """Return the current attempt's stdout and stderr files ("stdout[3]" per array task)."""
        data = job.engine_data or {}
        if self._slurm_id(job) is None:
            return {}
        tasks = self._tasks(job)
        files: dict[str, Path] = {}
        for name in ("stdout", "stderr"):
            pattern = str(data.get(name) or "")
            if not pattern:
                continue
            if not tasks:
                files[name] = Path(pattern)
            for task in tasks:
                files[f"{name}[{task}]"] = Path(pattern.replace("%a", str(task)))
        return files

    def logs(self, job: Job) -> dict[str, Any]:
        """Return the end of stdout and stderr of the current attempt (a dict by task for an array)."""
        data = job.engine_data or {}
        if self._slurm_id(job) is None:
            return {}
        tasks = self._tasks(job)
        logs: dict[str, Any] = {}
        for name in ("stdout", "stderr"):
            pattern = str(data.get(name) or "")
            if not tasks:
                logs[name] = tail(Path(pattern), LOG_TAIL_BYTES) if pattern else ""
            else:
                logs[name] = {str(task): tail(Path(pattern.replace("%a", str(task))), LOG_TAIL_BYTES)
                              for task in tasks}
        return logs
