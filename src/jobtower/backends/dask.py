"""DASK: tasks on a dask.distributed cluster, kept alive there after the submitting process exits.

What the engine keeps, per attempt, in `job.engine_data` (plain JSON):

    key        the task's key on the cluster (a string; a list stands for a tuple key)
    dataset    the name it is published under (jobtower-<job id>-<attempt>)
    address    the scheduler it was sent to (tcp://host:port), with timeout and heartbeat_interval
    exception  the task's exception text and traceback, once it failed

The task is *published* (`client.publish_dataset`): the scheduler holds it for us, so it runs on, and
its result waits in the workers' memory, when the web process that submitted it exits. The monitor asks
each scheduler once per cycle about every active key (one `run_on_scheduler` call); a scheduler that
no longer knows a key was restarted, and the job ends in Error saying so, never Running forever. A
finished task's value comes back through Dask's own protocol and is stored as JSON in the database
(bounded at 1 MB by the manager): nothing is ever unpickled from the database. The results step
unpublishes the task, so the cluster forgets it.

The functions sent to the scheduler and the workers are built inside functions, so cloudpickle sends
them by value: the scheduler needs no jobtower installed, and the workers only the job's own module.

`dask[distributed]` is optional: `pip install jobtower[dask]`; nothing here imports it at import time.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jobtower.backends.base import Backend, Capability, Observation, PollResult
from jobtower.statuses import Status

if TYPE_CHECKING:
    from jobtower.models import Job
    from jobtower.models.dask import DaskJob, DaskScheduler

log = logging.getLogger("jobtower.dask")

#: A dask.distributed Client (the library is optional, so it is not named in our types).
Client = Any

INSTALL = "pip install 'jobtower[dask]'"
DEFAULT_PORT = 8786
#: Seconds to wait for a scheduler when its record says 0.
DEFAULT_TIMEOUT = 10
#: Seconds during which a scheduler that could not be reached is not tried again (a poll stays fast).
RETRY_AFTER = 5.0
#: How much of each task's printed output a worker keeps, and for how many tasks.
OUTPUT_LIMIT = 64_000
OUTPUT_TASKS = 1000
TRACEBACK_LIMIT = 20_000
#: Dask's task states that mean "waiting to run".
WAITING = frozenset({"released", "waiting", "queued", "no-worker"})


def require_dask() -> Any:
    """Import and return `distributed`, or raise ImportError naming the extra to install."""
    try:
        import distributed
    except ImportError as exc:
        raise ImportError(f"DASK jobs need dask.distributed, which is not installed ({exc}): {INSTALL}") from None
    return distributed


def normalize_address(host: str) -> str:
    """Return a scheduler address as Dask writes it: tcp://host:port (port 8786 when none is given)."""
    host = host.strip()
    scheme, sep, rest = host.partition("://")
    if not sep:
        scheme, rest = "tcp", host
    if rest.rsplit("]", 1)[-1].count(":") == 0:
        rest = f"{rest}:{DEFAULT_PORT}"
    return f"{scheme}://{rest}"


# -- clients: one per process and scheduler, made on first use and reused ---------------------------

_clients: dict[str, tuple[int, Client]] = {}
_unreachable: dict[str, tuple[float, str]] = {}
_lock = threading.Lock()


def client_for(address: str, *, timeout: int = 0, heartbeat_interval: int = 0) -> Client:
    """Return this process's Client of the scheduler at `address`; ConnectionError when it cannot be reached.

    One Client per process and address, never a new cluster: a forked process makes its own, and a
    Client that closed (its scheduler went away for longer than its timeout) is replaced.
    """
    distributed = require_dask()
    address = normalize_address(address)
    with _lock:
        pid, client = _clients.get(address, (0, None))
        if client is not None and pid == os.getpid() and client.status in ("running", "connecting", "newly-created"):
            return client
        if client is not None and pid == os.getpid():
            _close_quietly(client)
        failed = _unreachable.get(address)
        if failed is not None and time.monotonic() - failed[0] < RETRY_AFTER:
            raise ConnectionError(failed[1])
        try:
            client = distributed.Client(
                address,
                timeout=f"{timeout or DEFAULT_TIMEOUT}s",
                heartbeat_interval=f"{heartbeat_interval}s" if heartbeat_interval else None,
                set_as_default=False,
            )
        except Exception as exc:
            reason = (
                f"cannot reach the Dask scheduler at {address}: {type(exc).__name__}: {exc}. Is it running "
                f"(`dask scheduler`), and is the address right?"
            )
            _unreachable[address] = (time.monotonic(), reason)
            raise ConnectionError(reason) from None
        _unreachable.pop(address, None)
        _clients[address] = (os.getpid(), client)
        return client


def _close_quietly(client: Client) -> None:
    try:
        client.close(timeout=2)
    except Exception:  # noqa: BLE001 - it is being replaced anyway
        log.debug("closing a Dask client failed", exc_info=True)


def close_clients() -> None:
    """Close this process's Clients (tests; a process that exits closes them itself)."""
    with _lock:
        for pid, client in _clients.values():
            if pid == os.getpid():
                _close_quietly(client)
        _clients.clear()
        _unreachable.clear()


# -- which scheduler ---------------------------------------------------------------------------------

LOCAL = "local"
NO_SCHEDULER = (
    "names no Dask scheduler, and JOBTOWER['DASK_SCHEDULER'] is not set: pass scheduler=<a DaskScheduler "
    "or its name> to create_job(), or set JOBTOWER['DASK_SCHEDULER'] to a scheduler's name, an address "
    "such as 'tcp://127.0.0.1:8786', or 'local'"
)


def scheduler_for(name: str | None) -> DaskScheduler | None:
    """Return the DaskScheduler record a job names (or the default names); None for an address or "local".

    ValueError says what is missing and how to fix it.
    """
    from jobtower import conf
    from jobtower.models.dask import get_dask_scheduler

    if name:
        found = get_dask_scheduler(name)
        if found is None:
            raise ValueError(
                f"there is no Dask scheduler named {name!r}; create it with "
                "jobtower.create_dask_scheduler(name, host='127.0.0.1:8786').save()"
            )
        return found
    default = conf.get("DASK_SCHEDULER")
    if not default:
        raise ValueError(f"this DASK job {NO_SCHEDULER}")
    if default == LOCAL or ":" in default:
        return None
    found = get_dask_scheduler(default)
    if found is None:
        raise ValueError(
            f"JOBTOWER['DASK_SCHEDULER'] is {default!r}, but there is no Dask scheduler of that name: create "
            f"it with jobtower.create_dask_scheduler({default!r}, host=...).save(), or set the setting to an "
            "address or 'local'"
        )
    return found


def target(name: str | None) -> tuple[str, int, int]:
    """Return (address, timeout, heartbeat_interval) of the scheduler a job names, or of the default."""
    from jobtower import conf

    record = scheduler_for(name)
    if record is not None:
        return record.address, record.timeout, record.heartbeat_interval
    default = str(conf.get("DASK_SCHEDULER"))
    if default == LOCAL:
        return local_cluster_address(), 0, 0
    return normalize_address(default), 0, 0


def client_of(name: str | None) -> Client:
    """Return this process's Client of the scheduler a job names (or of the default)."""
    address, timeout, heartbeat = target(name)
    return client_for(address, timeout=timeout, heartbeat_interval=heartbeat)


# -- the LocalCluster of JOBTOWER["DASK_SCHEDULER"] = "local": started once, by the monitor ----------

_local: list[Any] = []


def local_cluster_file() -> Path:
    """Return the file in which the monitor shares its LocalCluster's address with the other processes."""
    from jobtower import conf

    return conf.home() / "run" / "dask-local.json"


def local_cluster_address() -> str:
    """Return the address of the LocalCluster the monitor started; ConnectionError when there is none."""
    try:
        return str(json.loads(local_cluster_file().read_text())["address"])
    except (OSError, ValueError, KeyError, TypeError):
        raise ConnectionError(
            "JOBTOWER['DASK_SCHEDULER'] is 'local', but no monitor has started the local Dask cluster: start "
            "`jobtower monitor` (it starts the cluster once and every process shares it)"
        ) from None


def start_local_cluster() -> str | None:
    """Start the LocalCluster when the settings ask for one (once per process); return its address."""
    from jobtower import conf

    if conf.get("DASK_SCHEDULER") != LOCAL:
        return None
    if not _local:
        distributed = require_dask()
        options = {"processes": True, "dashboard_address": ":0", **(conf.get("DASK_LOCAL_CLUSTER") or {})}
        cluster = distributed.LocalCluster(**options)
        _local.append(cluster)
        path = local_cluster_file()
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"address": cluster.scheduler_address, "dashboard": cluster.dashboard_link}))
        tmp.replace(path)
        log.info("started a local Dask cluster at %s", cluster.scheduler_address)
    return str(_local[0].scheduler_address)


def stop_local_cluster() -> None:
    """Close the LocalCluster this process started, if any (its jobs' tasks go with it)."""
    while _local:
        cluster = _local.pop()
        local_cluster_file().unlink(missing_ok=True)
        cluster.close()


# -- keys -----------------------------------------------------------------------------------------------


def _as_key(value: Any) -> Any:
    return tuple(_as_key(item) for item in value) if isinstance(value, list) else value


def stored_key(engine_data: dict[str, Any] | None) -> Any:
    """Return the task key recorded in a job's engine data (tuples come back as tuples), or None."""
    return _as_key((engine_data or {}).get("key"))


def check_task(task: Any) -> None:
    """Raise TypeError unless `task` is something a DASK job can run: a Delayed (or collection) or a Future."""
    distributed = require_dask()
    from dask.base import is_dask_collection

    if not (isinstance(task, distributed.Future) or is_dask_collection(task)):
        raise TypeError(
            f"execute() takes a dask Delayed (dask.delayed(f)(...)) or a distributed Future "
            f"(client.submit(f, ...)), not {type(task).__name__}"
        )


# -- what runs on the scheduler and the workers (sent by value) ----------------------------------------


def _make_states() -> Callable[..., list[Any]]:
    def states(keys: list[Any], dask_scheduler: Any = None) -> list[Any]:
        found: list[Any] = []
        for key in keys:
            ts = dask_scheduler.tasks.get(key)
            if ts is None or ts.state == "forgotten":
                found.append(None)
                continue
            state = ts.state
            if state in ("released", "waiting", "queued", "no-worker") and any(
                dep.state in ("processing", "memory") for dep in ts.dependencies
            ):
                state = "processing"  # part of its graph runs already
            blame = ts.exception_blame or ts
            found.append((state, str(blame.exception_text or ""), str(blame.traceback_text or ""), str(blame.key)))
        return found

    return states


def _make_runner() -> Callable[..., Any]:
    def run_function(path: str, args: list[Any], kwargs: dict[str, Any]) -> Any:
        import importlib
        import io
        import sys
        import threading

        from distributed import get_worker
        from distributed.worker import thread_state  # type: ignore[attr-defined]

        limit = 64_000
        capture = getattr(sys, "_jobtower_capture", None)
        if capture is None:
            # Each task's prints go to its own buffer too (by thread), and on to the worker's streams.
            capture = threading.local()

            class Tee:
                def __init__(self, stream: Any) -> None:
                    self.stream = stream

                def write(self, text: str) -> int:
                    buffer = getattr(capture, "buffer", None)
                    if buffer is not None and buffer.tell() < limit:
                        buffer.write(text)
                    return int(self.stream.write(text))

                def __getattr__(self, name: str) -> Any:
                    return getattr(self.stream, name)

            sys.stdout, sys.stderr = Tee(sys.stdout), Tee(sys.stderr)
            sys._jobtower_capture = capture  # type: ignore[attr-defined]
        module_name, _, attr = path.partition(":")
        target: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            target = getattr(target, part)
        capture.buffer = io.StringIO()
        try:
            return target(*args, **kwargs)
        finally:
            text, capture.buffer = capture.buffer.getvalue(), None
            outputs = get_worker().__dict__.setdefault("_jobtower_output", {})
            outputs[str(thread_state.key)] = text[:limit]
            while len(outputs) > 1000:
                outputs.pop(next(iter(outputs)))

    return run_function


def _make_output_reader() -> Callable[..., Any]:
    def output(key: str, dask_worker: Any = None) -> Any:
        return dask_worker.__dict__.get("_jobtower_output", {}).get(key)

    return output


_STATES = _make_states()
_RUNNER = _make_runner()
_OUTPUT = _make_output_reader()


def _not_json(value: Any) -> str | None:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError, RecursionError) as exc:
        return (
            f"the task returned a {type(value).__name__}, which is not plain JSON ({exc}): return numbers, "
            "strings, lists and dicts (e.g. float(x), array.tolist()), or write large outputs to a file in "
            "the job's folder and return its name"
        )
    return None


def announce_callback(data: dict[str, Any], path: str) -> None:
    """Store a task's status-callback path on its scheduler, where jobtower.dask_plugin looks it up.

    Never raises: without it the job is still polled.
    """
    try:
        client = client_for(str(data["address"]), timeout=int(data.get("timeout") or 0),
                            heartbeat_interval=int(data.get("heartbeat_interval") or 0))
        client.set_metadata(["jobtower", str(stored_key(data))], path)
    except Exception:  # noqa: BLE001 - push is optional; the poll finds the end anyway
        log.warning("could not give the Dask scheduler the status callback of task %s", data.get("key"),
                    exc_info=True)


class DaskBackend(Backend):
    """Runs DASK jobs as published tasks on dask.distributed schedulers; one scheduler call per cycle."""

    name = "dask"
    capabilities = frozenset({
        Capability.SUBMIT, Capability.POLL, Capability.STOP, Capability.LOGS, Capability.RESULTS,
    })

    def submit(self, job: Job) -> str | None:
        """Send the job's task to its scheduler, publish it (so it outlives us) and record its key."""
        distributed = require_dask()
        dask_job: DaskJob = job  # type: ignore[assignment]
        address, timeout, heartbeat = target(dask_job.scheduler)
        client = client_for(address, timeout=timeout, heartbeat_interval=heartbeat)
        task = job.__dict__.get("_dask_task")
        if task is None:
            key = f"jobtower-{job.pk}-{job.attempt}-{uuid.uuid4().hex[:12]}"
            future = client.submit(
                _RUNNER, dask_job.function, list(dask_job.args), dict(dask_job.kwargs), key=key, pure=False
            )
        elif isinstance(task, distributed.Future):
            future = task
        else:
            future = client.compute(task)
        owner = future.client
        dataset = f"jobtower-{job.pk}-{job.attempt}"
        owner.publish_dataset(future, name=dataset, override=True)
        key = future.key
        job.engine_data = {
            "key": list(key) if isinstance(key, tuple) else key,
            "dataset": dataset,
            "address": str(owner.scheduler.address),
            "timeout": timeout,
            "heartbeat_interval": heartbeat,
        }
        return None

    @staticmethod
    def _client(data: dict[str, Any]) -> Client:
        return client_for(
            str(data["address"]), timeout=int(data.get("timeout") or 0),
            heartbeat_interval=int(data.get("heartbeat_interval") or 0),
        )

    def poll(self, jobs: Sequence[Job]) -> PollResult:
        """Ask each scheduler once about every active key; gather the values of those that finished."""
        answer = PollResult()
        groups: dict[str, list[Job]] = defaultdict(list)
        for job in jobs:
            if (job.engine_data or {}).get("key") is not None:
                groups[str(job.engine_data["address"])].append(job)
            # A job without a key is being submitted right now: nothing to ask yet.
        for address, group in groups.items():
            try:
                client = self._client(group[0].engine_data)
                found = client.run_on_scheduler(_STATES, [stored_key(job.engine_data) for job in group])
            except Exception as exc:
                reason = f"the Dask scheduler at {address} did not answer: {type(exc).__name__}: {exc}"
                answer.unreachable.update({job.pk: reason for job in group})
                continue
            finished = []
            for job, seen in zip(group, found, strict=True):
                if seen is None:
                    answer.observations[job.pk] = Observation(
                        Status.ERROR,
                        f"the Dask scheduler at {address} no longer knows task {stored_key(job.engine_data)!r}: "
                        "it was restarted (or the task was cancelled on the cluster), so the job's work and "
                        "result are lost. Resubmit the job to run it again.",
                    )
                    continue
                state, exception, traceback, culprit = seen
                if state == "memory":
                    finished.append(job)
                elif state == "erred":
                    where = "" if culprit == str(stored_key(job.engine_data)) else f" (in task {culprit})"
                    answer.observations[job.pk] = Observation(
                        Status.ERROR, f"the task raised{where}: {exception}",
                        engine_data={"exception": exception, "traceback": traceback[-TRACEBACK_LIMIT:]},
                    )
                elif state == "processing":
                    answer.observations[job.pk] = Observation(Status.RUNNING)
                elif state == "no-worker":
                    answer.observations[job.pk] = Observation(
                        Status.SUBMITTED, "waiting: no Dask worker can run it (are workers running?)"
                    )
                else:
                    answer.observations[job.pk] = Observation(Status.SUBMITTED)
            if finished:
                answer.observations.update(self._gather(client, finished))
            erred = [job for job in group if answer.observations.get(job.pk, Observation(Status.RUNNING)).status
                     is Status.ERROR]
            self._forget(client, erred)
        return answer

    def _gather(self, client: Client, jobs: list[Job]) -> dict[int, Observation]:
        """Return Complete (with the value) for each finished job, in one gather when all go well."""
        distributed = require_dask()
        # The poll saw them in memory; saying so lets gather() fetch them at once (a bare Future waits
        # for news from the scheduler that a key we did not submit never brings).
        futures = [distributed.Future(stored_key(job.engine_data), client, state="memory") for job in jobs]
        try:
            values = client.gather(futures)
        except Exception:  # noqa: BLE001 - one bad value: ask one by one, so it ends only its own job
            values = []
            for future in futures:
                try:
                    values.append(client.gather(future))
                except Exception as exc:  # noqa: BLE001 - reported on the job
                    values.append(exc)
        found = {}
        for job, value in zip(jobs, values, strict=True):
            if isinstance(value, Exception):
                found[job.pk] = Observation(
                    Status.ERROR, f"the task finished, but its value could not be fetched: {type(value).__name__}: "
                    f"{value}",
                )
                continue
            problem = _not_json(value)
            found[job.pk] = (
                Observation(Status.ERROR, problem) if problem else Observation(Status.COMPLETE, result=value)
            )
        return found

    def _forget(self, client: Client, jobs: Sequence[Job]) -> None:
        """Unpublish the tasks of `jobs`, so the cluster lets them go (their facts are recorded)."""
        for job in jobs:
            dataset = (job.engine_data or {}).get("dataset")
            if dataset:
                try:
                    client.unpublish_dataset(dataset)
                except KeyError:
                    pass  # not published any more
                except Exception:  # noqa: BLE001 - the cluster forgets it on its next restart anyway
                    log.warning("could not unpublish %s of job %s", dataset, job.pk, exc_info=True)

    def fetch_results(self, job: Job) -> None:
        """The value is stored already (the poll gathered it): let the cluster forget the task."""
        data = job.engine_data or {}
        if data.get("dataset"):
            try:
                self._forget(self._client(data), [job])
            except ConnectionError:
                log.warning("job %s: its Dask scheduler is gone; nothing left to release", job.pk)

    def cancel(self, job: Job) -> None:
        """Cancel the task on the cluster and unpublish it (a running Python function is not interrupted)."""
        data = job.engine_data or {}
        key = stored_key(data)
        if key is None:
            return
        distributed = require_dask()
        client = self._client(data)
        client.cancel([distributed.Future(key, client)], force=True)
        self._forget(client, [job])

    def logs(self, job: Job) -> dict[str, Any]:
        """Return the task's printed output (function jobs), exception and traceback."""
        data = job.engine_data or {}
        found: dict[str, Any] = {
            "stdout": "", "exception": data.get("exception", ""), "traceback": data.get("traceback", ""),
        }
        key = stored_key(data)
        if key is None:
            return found
        try:
            client = self._client(data)
            outputs = client.run(_OUTPUT, str(key))
            found["stdout"] = "".join(text for text in outputs.values() if text)
            if not found["exception"]:
                seen = client.run_on_scheduler(_STATES, [key])[0]
                if seen is not None and seen[0] == "erred":
                    found["exception"], found["traceback"] = seen[1], seen[2]
        except Exception as exc:  # noqa: BLE001 - the stored facts are still worth showing
            found["stdout"] = f"[the Dask cluster at {data.get('address')} did not answer: {type(exc).__name__}: {exc}]"
        return found
