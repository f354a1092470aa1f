"""Function jobs on any engine: what a job runs, and reading back what it left (untrusted input).

A function job names a Python function (``function="pkg.module:name"``) with JSON ``args`` and
``kwargs``. LOCAL, CONDOR and SLURM run it the same way: the runner
(:mod:`jobtower.backends.function_runner`, standard library only) runs in the job's folder, reads the
attempt's ``run.json``, and leaves ``result.json`` (the return value) or ``error.json`` (the
exception) in the attempt's folder. The server reads them back as JSON only, from a regular file of
bounded size, never following a link the job may have put there; nothing a job wrote is unpickled or
run on the server.

Which Python runs the function on CONDOR and SLURM: ``JOBTOWER["FUNCTION_PYTHON"]``, a path (or a dict
of job type to path); by default the server's own interpreter (``sys.executable``), which the cluster's
nodes must then reach at the same path. LOCAL always uses the worker's interpreter.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import stat
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jobtower.backends import function_runner
from jobtower.backends.base import Observation
from jobtower.statuses import Status

if TYPE_CHECKING:
    from jobtower.models import Job

#: The runner's name in an attempt's folder (CONDOR and SLURM run this copy).
RUNNER_NAME = "jobtower_function.py"
#: At most this many bytes of result.json are read (the stored result is at most 1 MB of JSON).
MAX_RESULT_FILE = 1_100_000
#: At most this many bytes of error.json are read (the message is cut to what a status message holds).
MAX_ERROR_FILE = 64_000
_PATH = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*(:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*)?$")


def function_setting(value: Any) -> str:
    """Return a function job's dotted path, checked for its form only (it is imported where it runs)."""
    if not isinstance(value, str):
        raise TypeError(f"function must be a dotted path 'pkg.module:function', not {type(value).__name__}")
    path = value.strip()
    if not _PATH.match(path) or (":" not in path and "." not in path):
        raise ValueError(f"function {value!r} is not a dotted path; write it as 'pkg.module:function'")
    return path


def interpreter(job_type: str) -> tuple[str, bool]:
    """Return the Python that runs a job type's functions, and whether it is the server's own."""
    from jobtower import conf

    configured = conf.get("FUNCTION_PYTHON")
    if isinstance(configured, dict):
        configured = configured.get(job_type)
    if not configured:
        return sys.executable, True
    path = str(configured)
    if not os.path.isabs(path):
        raise ValueError(
            f"JOBTOWER['FUNCTION_PYTHON'] for {job_type} jobs must be an absolute path such as "
            f"'/usr/bin/python3', not {path!r}"
        )
    # The same path only: a virtual environment's python and the one it links to import differently.
    return path, os.path.normpath(path) == os.path.normpath(sys.executable)


def server_import_path() -> str:
    """Return the folders this process imports from, as a PYTHONPATH value."""
    return os.pathsep.join(dict.fromkeys(p for p in sys.path if p and os.path.isdir(p)))


def environment(job: Job, python_is_ours: bool) -> dict[str, str]:
    """Return a function job's own environment: with the server's import path when it runs our Python.

    The job's `environment` wins: a PYTHONPATH there is the whole import path of the function.
    """
    own = dict(getattr(job, "environment", None) or {})
    if python_is_ours and "PYTHONPATH" not in own:
        own["PYTHONPATH"] = server_import_path()
    return own


def prepare(job: Job, attempt_folder: Path) -> list[str]:
    """Write run.json and the runner into the attempt's folder; return the command that runs them.

    Both are readable by anyone: HTCondor runs the job as another user than the server.
    """
    python, _ = interpreter(job.job_type)
    attempt_folder.mkdir(parents=True, exist_ok=True)
    spec = {
        "function": job.function,  # type: ignore[attr-defined]
        "args": list(job.args),  # type: ignore[attr-defined]
        "kwargs": dict(job.kwargs),  # type: ignore[attr-defined]
        "python": python,
    }
    run = attempt_folder / "run.json"
    run.write_text(json.dumps(spec, indent=1))
    runner = attempt_folder / RUNNER_NAME
    shutil.copyfile(function_runner.__file__, runner)
    for path in (run, runner):
        path.chmod(0o644)
    return [python, str(runner), str(attempt_folder)]


def command(job: Job, attempt_folder: str) -> list[str]:
    """Return the command a function job's attempt runs (what prepare() writes is there by then)."""
    python, _ = interpreter(job.job_type)
    return [python, os.path.join(attempt_folder, RUNNER_NAME), attempt_folder]


class UntrustedFile(ValueError):
    """A file a job wrote cannot be taken: not a regular file, too large, or not the JSON expected."""


def read_untrusted(job_folder: str | os.PathLike[str], attempt: int, name: str, limit: int) -> Any:
    """Return the JSON in attempts/<attempt>/<name> of a job's folder; None when it is not there.

    The job may have written anything there: every step below the job's folder is opened without
    following links, the file must be a regular one of at most `limit` bytes (a FIFO or a device
    never blocks the reader), and the content must be JSON (no NaN); else UntrustedFile says why.
    """
    nofollow = os.O_NOFOLLOW | os.O_CLOEXEC
    fds: list[int] = []
    try:
        try:
            fds.append(os.open(job_folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC))
            for step in ("attempts", str(attempt)):
                fds.append(os.open(step, os.O_RDONLY | os.O_DIRECTORY | nofollow, dir_fd=fds[-1]))
            fd = os.open(name, os.O_RDONLY | os.O_NONBLOCK | nofollow, dir_fd=fds[-1])
        except FileNotFoundError:
            return None
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                raise UntrustedFile(f"{name} of attempt {attempt} is reached through a link; it is not read") from None
            raise
        fds.append(fd)
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise UntrustedFile(f"{name} is not a regular file")
        if info.st_size > limit:
            raise UntrustedFile(f"{name} is {info.st_size:,} bytes; at most {limit:,} are read")
        with os.fdopen(os.dup(fd), "rb") as handle:
            data = handle.read(limit + 1)
    finally:
        for opened in fds:
            os.close(opened)
    if len(data) > limit:
        raise UntrustedFile(f"{name} grew past {limit:,} bytes while it was read")
    try:
        return json.loads(data, parse_constant=_no_constant)
    except (ValueError, RecursionError) as exc:
        raise UntrustedFile(f"{name} is not JSON: {str(exc)[:200]}") from None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def outcome(job: Job, observation: Observation) -> Observation:
    """Return the observation of an ended function job with its result, or its exception as the reason.

    Complete takes the value of result.json, which must hold {"value": ...} (none: the function left by
    sys.exit(0), and the job has no result); Error is told by error.json when the function raised (the
    reason reads "ValueError: model diverged"), else it keeps the engine's reason.
    """
    if observation.status not in (Status.COMPLETE, Status.ERROR):
        return observation
    folder, attempt = job.folder, job.attempt
    try:
        if observation.status is Status.COMPLETE:
            found = read_untrusted(folder, attempt, function_runner.RESULT_FILE, MAX_RESULT_FILE)
            if found is None:
                return observation  # it ended well without a value (sys.exit(0) inside the function)
            if not isinstance(found, dict) or "value" not in found:
                return Observation(Status.ERROR, 'the function ended well but result.json must hold {"value": ...}',
                                   progress=observation.progress, progress_message=observation.progress_message)
            return Observation(Status.COMPLETE, observation.message, progress=observation.progress,
                               progress_message=observation.progress_message, result=found["value"],
                               engine_data=observation.engine_data)
        error = read_untrusted(folder, attempt, function_runner.ERROR_FILE, MAX_ERROR_FILE)
    except (UntrustedFile, OSError) as exc:
        return Observation(Status.ERROR, f"could not read what the function left: {exc}")
    if not isinstance(error, dict) or not isinstance(error.get("message"), str):
        return observation
    kind, said = error.get("type"), error["message"]
    if not isinstance(kind, str) or not kind:
        reason = said
    else:
        reason = f"{kind}: {said}" if said else kind  # as Python's traceback ends
    return Observation(Status.ERROR, reason, progress=observation.progress,
                       progress_message=observation.progress_message, engine_data=observation.engine_data)
