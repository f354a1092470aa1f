"""LOCAL jobs: processes on this machine, each under a small supervisor that records its exit.

Every attempt of a job has its own folder, `<job folder>/attempts/<n>/`, which holds everything the
engine knows, so the outcome survives the death of the worker that started it:

    run.json        what was run (argv, environment names, timeout; a function, args and kwargs)
    supervisor.pid  the supervisor's pid, which is also the process group of the whole job
    stdout.txt      the job's standard output; stderr.txt its standard error
    exit.json       written by the supervisor when the job ends: {"exit_code": n}
    exit.reserved   room for that record, reserved at the start; it holds it when the disk was full
    progress.json   written by the job (jobtower.progress()): {"percent": p, "message": "..."}
    result.json     a function job's return value; error.json the exception it raised
    stopped, paused, timed_out   markers left by stop(), pause() and the timeout

A stop or a timeout sends SIGTERM at once and leaves `<home>/run/stopping/<pgid>.json` with a
deadline; the worker (and the monitor, in enforce()) sends SIGKILL to what is left after it.

The supervisor is a POSIX shell script (/bin/sh: a millisecond or two of CPU, unlike a Python
interpreter) leading the job's own session; the job's current directory is the job folder itself.
"""

from __future__ import annotations

import datetime
import errno
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from django.utils import timezone

from jobtower.backends import functions
from jobtower.backends.base import Backend, Capability, Observation, PollResult
from jobtower.statuses import Status

if TYPE_CHECKING:
    from jobtower.models import Job, LocalJob

#: A POSIX shell script: record our pid (= the job's process group), run the job, record how it ended.
#: Before anything runs, room for the exit record is reserved and the pid is written; if either
#: fails (a full disk) the job is not run at all, because without a pid it would read as never
#: started and be queued again. The error goes to our stderr, a pipe the worker reads (exit 97/98).
#: The job runs in the background so that SIGTERM to the group (stop, timeout) ends the job while
#: the supervisor, whose TERM handler does nothing, lives on to record the exit. SIGKILL ends both.
#: The job's program is exec'd, never run as a shell builtin (["echo", ...] is /usr/bin/echo).
#: When exit.json cannot be written at the end, the record overwrites the reserved bytes in place,
#: which needs no new space. A pause() that came before our pid was written left only its marker:
#: hold() writes the marker then reads the pid, we write the pid then read the marker, so one of us
#: always sees the other and the job never runs while its status says Paused.
SUPERVISOR = r"""
d=$1; shift
printf '%80s\n' '' > "$d/exit.reserved" || exit 97
echo $$ > "$d/supervisor.pid" || exit 98
[ -e "$d/paused" ] && kill -STOP $$
exec 2>/dev/null
trap : TERM
exec "$@" </dev/null >"$d/stdout.txt" 2>"$d/stderr.txt" &
child=$!
wait $child; code=$?
while kill -0 $child 2>/dev/null; do wait $child; code=$?; done
printf '{"exit_code": %d}\n' "$code" > "$d/exit.json" || printf '{"exit_code": %d}\n' "$code" 1<>"$d/exit.reserved"
"""
#: Exit codes of a supervisor that could not write a file before the start: the job never ran.
NOT_STARTED = {97: "exit.reserved", 98: "supervisor.pid"}
#: The supervisor's shell: any POSIX sh. Debian's dash starts and forks in about half the CPU time
#: of bash, which counts when thousands of short jobs run.
SHELL = "/bin/sh"
#: What a job inherits from the worker's environment (and LC_*). Nothing else: the server's secret
#: key and database URLs would let a job's owner forge signatures and read every job.
INHERITED_ENVIRONMENT = frozenset({"PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "TMPDIR"})
#: Seconds a stopped job gets to exit after SIGTERM before SIGKILL.
STOP_GRACE = 5.0
#: Seconds after a claim during which a job without a supervisor is still starting, not lost.
START_GRACE = 30.0
#: A worker whose heartbeat is older than this many seconds is gone (it beats every 5 s).
WORKER_STALE_AFTER = 15
_LIVE_WORKER_SQL = (
    'SELECT 1 FROM "jobtower_worker" WHERE "kind" = \'worker\' AND "heartbeat" >= %s LIMIT 1'
)
NO_WORKER = "no LOCAL worker is running: start `jobtower worker` (or `jobtower serve`) to run this job"
#: How much of the end of each log get_logs() returns.
LOG_TAIL_BYTES = 1_000_000
STDERR_LINES_IN_MESSAGE = 5


def attempt_dir(job: Job) -> Path:
    """Return the folder of the job's current attempt."""
    return job.folder / "attempts" / str(job.attempt)


def read_json(path: str | os.PathLike[str]) -> Any:
    """Return the JSON in `path`, or None when it is missing or not complete yet."""
    try:
        with open(path, "rb") as handle:
            return json.loads(handle.read())
    except (OSError, ValueError):
        return None


def tail(path: Path, limit: int) -> str:
    """Return the last `limit` bytes of a text file (with a note when the start was cut)."""
    try:
        with path.open("rb") as handle:
            size = handle.seek(0, os.SEEK_END)
            handle.seek(max(0, size - limit))
            data = handle.read()
    except OSError:
        return ""
    text = data.decode("utf-8", errors="replace")
    if size > limit:
        text = f"[... {size - limit} earlier bytes not shown ...]\n" + text.split("\n", 1)[-1]
    return text


def _read_pid(folder: str | os.PathLike[str]) -> int | None:
    try:
        with open(os.path.join(folder, "supervisor.pid"), "rb") as handle:
            return int(handle.read())
    except (OSError, ValueError):
        return None


def supervisor_pid(folder: Path) -> int | None:
    """Return the pid of the attempt's supervisor while it runs, else None."""
    pid = _read_pid(folder)
    return pid if pid is not None and _is_our_supervisor(pid, folder) else None


def _is_our_supervisor(pid: int, folder: str | os.PathLike[str]) -> bool:
    # The pid may have been reused: it is ours only if its command line names this attempt's folder.
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            cmdline = handle.read()
    except OSError:
        return False
    return os.fsencode(folder) in cmdline.split(b"\0")


def _signal_group(pgid: int, signum: int) -> None:
    try:
        os.killpg(pgid, signum)
    except (ProcessLookupError, PermissionError):
        pass


def attempt_processes(pgid: int, folder: Path) -> list[int]:
    """Return the live processes of an attempt: its process group and whoever left it.

    A process that calls setsid() leaves the group, but it keeps the environment it was started
    with, and /proc shows that environment even after the process changed it: JOBTOWER_PROGRESS_FILE
    names the attempt. Only a process started with a new environment (env -i) escapes.
    """
    marker = f"JOBTOWER_PROGRESS_FILE={folder / 'progress.json'}".encode()
    ours = _is_our_supervisor(pgid, folder)  # else the group may be a stranger's that reused the id
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            fields = Path(entry.path, "stat").read_text().rsplit(")", 1)[-1].split()
            if fields[0] in ("Z", "X"):
                continue
            if (ours and fields[2] == str(pgid)) or marker in Path(entry.path, "environ").read_bytes().split(b"\0"):
                found.append(int(entry.name))
        except (OSError, IndexError):
            continue
    return found


def _signal_all(pids: Sequence[int], signum: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, signum)
        except (ProcessLookupError, PermissionError):
            pass


def stopping_dir() -> Path:
    """Return the folder of pending stops: one file per attempt that gets SIGKILL at a deadline."""
    from jobtower import conf

    return conf.home() / "run" / "stopping"


def request_end(pgid: int, folder: Path, grace: float | None = None) -> None:
    """End an attempt without waiting: SIGTERM now; escalate_stops() sends SIGKILL after `grace`."""
    grace = STOP_GRACE if grace is None else grace
    pending = stopping_dir()
    pending.mkdir(parents=True, exist_ok=True)
    # A temporary file of our own: two stops of one job (a user's and a timeout's) may race here.
    fd, tmp = tempfile.mkstemp(dir=pending, prefix=f".{pgid}.", suffix=".tmp")
    with os.fdopen(fd, "w") as handle:
        handle.write(json.dumps({"pgid": pgid, "folder": str(folder), "kill_at": time.time() + grace}))
    os.replace(tmp, pending / f"{pgid}.json")
    pids = attempt_processes(pgid, folder)
    _signal_all(pids, signal.SIGTERM)
    _signal_all(pids, signal.SIGCONT)  # a paused job must run to handle SIGTERM


def escalate_stops() -> int:
    """SIGKILL what is left of the attempts whose stop grace has passed; return how many."""
    try:
        entries = list(os.scandir(stopping_dir()))
    except FileNotFoundError:
        return 0
    killed = 0
    now = time.time()
    for entry in entries:
        if not entry.name.endswith(".json"):
            continue
        pending = read_json(Path(entry.path))
        if not isinstance(pending, dict) or now >= pending.get("kill_at", 0):
            if isinstance(pending, dict):
                pgid, folder = int(pending["pgid"]), Path(pending["folder"])
                _signal_all(attempt_processes(pgid, folder), signal.SIGKILL)
                killed += 1
            Path(entry.path).unlink(missing_ok=True)
    return killed


#: The longest path a Unix socket can be bound to is 108 bytes (with its NUL); longer ones are reached
#: through the folder's descriptor, /proc/self/fd/<n>/<name>.
_SOCKET_PATH_MAX = 100


def wakeup_dir() -> Path:
    """Return the folder of the sockets idle workers wait on: one per worker, named after its host."""
    from jobtower import conf

    return conf.home() / "run" / "wake"


def _socket_path(folder: Path, name: str, folder_fd: int | None) -> str:
    path = os.path.join(folder, name)
    if len(os.fsencode(path)) <= _SOCKET_PATH_MAX or folder_fd is None:
        return path
    return f"/proc/self/fd/{folder_fd}/{name}"


class WakeupSocket:
    """A worker's Unix datagram socket in wakeup_dir(): a byte there means a LOCAL job was queued.

    It lets an idle worker claim a job the moment it is executed instead of at its next look at the
    queue. Only processes on this host (which share the home folder) can reach it; a worker without
    one (another host, or the socket could not be made) still finds every job by looking.
    """

    def __init__(self) -> None:
        folder = wakeup_dir()
        folder.mkdir(parents=True, exist_ok=True)
        # Random, so a path is bound once ever: a socket that refuses is gone for good (see wake_workers).
        self.name = f"{socket.gethostname()}.{os.getpid()}.{secrets.token_hex(4)}.sock"
        self.path = folder / self.name
        folder_fd = os.open(folder, os.O_PATH | os.O_DIRECTORY)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            self.sock.setblocking(False)
            self.sock.bind(_socket_path(folder, self.name, folder_fd))
        except OSError:
            self.sock.close()
            raise
        finally:
            os.close(folder_fd)

    def fileno(self) -> int:
        """Return the socket's descriptor (readable when a wake-up came), for select()."""
        return self.sock.fileno()

    def drain(self) -> int:
        """Read every wake-up that came (they all mean the same); return how many."""
        count = 0
        while True:
            try:
                self.sock.recv(64)
            except OSError:  # BlockingIOError: nothing more to read
                return count
            count += 1

    def close(self) -> None:
        """Close the socket and remove its file."""
        self.sock.close()
        self.path.unlink(missing_ok=True)


def wake_workers() -> int:
    """Tell this host's workers that a LOCAL job was queued; return how many were told. Never blocks.

    A socket whose worker is gone refuses the byte and is removed. Sockets of other hosts (a home
    folder on a shared file system) are left alone: their workers find the job by looking.
    """
    folder = wakeup_dir()
    prefix = socket.gethostname() + "."
    try:
        names = [name for name in os.listdir(folder) if name.startswith(prefix) and name.endswith(".sock")]
    except OSError:
        return 0
    if not names:
        return 0
    told = 0
    folder_fd = os.open(folder, os.O_PATH | os.O_DIRECTORY)
    sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        sender.setblocking(False)
        for name in names:
            try:
                sender.sendto(b"!", _socket_path(folder, name, folder_fd))
                told += 1
            except BlockingIOError:
                told += 1  # its queue is full of wake-ups it has not read yet: it is awake
            except ConnectionRefusedError:
                (folder / name).unlink(missing_ok=True)  # its worker is gone (a path is bound only once)
            except OSError:
                pass  # removed meanwhile, or not a socket: it finds the job by looking
    finally:
        sender.close()
        os.close(folder_fd)
    return told


def copy_inputs(job: Job) -> None:
    """Copy the job's remote_input_files into its folder (where it runs), as SLURM does.

    Every file is checked before any is copied: a missing one submits nothing and says which.
    """
    sources = [Path(source) for source in getattr(job, "remote_input_files", None) or ()]
    for path in sources:
        if not path.is_file():
            raise FileNotFoundError(
                f"remote_input_files: {path} is not a file; nothing was submitted (fix the path and "
                "call execute() again)"
            )
    for path in sources:
        shutil.copy2(path, job.folder / path.name)


def run_argv(job: LocalJob) -> list[str]:
    """Return what the supervisor runs for a job: its command, or the runner of its function."""
    if job.command:
        return list(job.command)
    return [sys.executable, "-m", "jobtower.backends.function_runner", str(attempt_dir(job))]


def inherited_environment() -> dict[str, str]:
    """Return what a job inherits from our environment: INHERITED_ENVIRONMENT and LC_*."""
    environ = os.environ
    # By name: reading every variable's value (as items() does) costs more than the spawn's own work.
    env = {name: value for name in INHERITED_ENVIRONMENT if (value := environ.get(name)) is not None}
    env.update((name, environ[name]) for name in environ if name.startswith("LC_"))
    return env


def spawn(job: LocalJob, *, extra_env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Start the job's supervisor in a new session and return it (the caller reaps it)."""
    folder = attempt_dir(job)
    folder.mkdir(parents=True, exist_ok=True)
    env = inherited_environment()
    if job.function:
        # A function job imports what the server that accepted it could import.
        env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(p for p in sys.path if p and os.path.isdir(p)))
    env.update(job.environment or {})
    env.update(
        JOBTOWER_JOB_ID=str(job.pk),
        JOBTOWER_ATTEMPT=str(job.attempt),
        JOBTOWER_JOB_FOLDER=str(job.folder),
        JOBTOWER_PROGRESS_FILE=str(folder / "progress.json"),
        **(extra_env or {}),
    )
    spec = {
        "argv": run_argv(job),
        "function": job.function,
        "args": job.args,
        "kwargs": job.kwargs,
        "environment": sorted((job.environment or {}).keys()),
        "timeout": job.timeout,
        "started": timezone.now().isoformat(),
    }
    (folder / "run.json").write_text(json.dumps(spec, indent=1))
    return subprocess.Popen(
        [SHELL, "-c", SUPERVISOR, "jobtower-supervisor", str(folder), *spec["argv"]],
        cwd=job.folder,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,  # says why the start failed; closed by the supervisor once started
        start_new_session=True,
        close_fds=True,
    )


def start_failure(job: Job, process: subprocess.Popen[bytes]) -> str | None:
    """Return why an ended supervisor could not start its job (it never ran), else None."""
    said = process.stderr.read().decode(errors="replace").strip() if process.stderr else ""
    if process.stderr:
        process.stderr.close()
    name = NOT_STARTED.get(process.returncode)
    if name is None:
        return None
    # The shell says "<where>: <what>: <reason>"; the last part is the reason.
    reason = said.rsplit(": ", 1)[-1] or f"exit code {process.returncode}"
    folder = attempt_dir(job)
    if reason == "I/O error":
        # dash reports a failed write without its errno; a disk with no free block is the usual cause.
        try:
            if os.statvfs(folder).f_bavail == 0:
                reason = os.strerror(errno.ENOSPC)
        except OSError:
            pass
    return f"could not write {name} in {folder}: {reason}"


def _timed_out(job: LocalJob) -> str:
    return f"timed out: it ran longer than its timeout of {job.timeout:g} s"


def _exit_message(code: int, folder: Path) -> str:
    if code > 128:
        try:
            how = f"killed by {signal.Signals(code - 128).name}"
        except ValueError:
            how = f"exit code {code}"
    elif code == 127:
        how = "exit code 127 (program not found)"
    else:
        how = f"exit code {code}"
    lines = tail(folder / "stderr.txt", 64_000).rstrip().splitlines()[-STDERR_LINES_IN_MESSAGE:]
    return how + (": " + "\n".join(lines) if lines else "")


class LocalBackend(Backend):
    """Runs LOCAL jobs as supervised processes; `jobtower worker` starts them, files tell how they end."""

    name = "local"
    capabilities = frozenset({
        Capability.SUBMIT, Capability.POLL, Capability.STOP, Capability.HOLD, Capability.LOGS,
        Capability.LOG_FILES, Capability.CALLBACKS, Capability.LIMITS,
    })

    def submit(self, job: Job) -> str | None:
        """Prepare the attempt's folder; a worker claims the Submitted job and starts it.

        With no live worker, the job still waits in the queue, but its status message says why.
        """
        from django.db import connection, transaction

        attempt_dir(job).mkdir(parents=True, exist_ok=True)
        copy_inputs(job)
        horizon = timezone.now() - datetime.timedelta(seconds=WORKER_STALE_AFTER)
        # Plain SQL: this runs once per submission, and the ORM would spend more building the query
        # than the database spends answering it.
        with connection.cursor() as cursor:
            cursor.execute(_LIVE_WORKER_SQL, [connection.ops.adapt_datetimefield_value(horizon)])
            alive = cursor.fetchone() is not None
        if alive:
            # Once the move to Submitted is committed (now, or when the caller's transaction is).
            transaction.on_commit(wake_workers, robust=True)
        return None if alive else NO_WORKER

    def observe_one(self, job: LocalJob, folder: str | None = None) -> Observation | None:
        """Return what the attempt's files and processes say about one job (None: nothing new).

        `folder` is the attempt's folder as a string, when the caller has it (poll() builds them fast).
        """
        # Plain strings, not Path objects: a cycle reads the folders of thousands of jobs, and joining
        # Paths cost more than the reads themselves (bench/bench_scale.py).
        folder = folder or os.fspath(attempt_dir(job))
        sep = os.sep
        progress = read_json(folder + sep + "progress.json") or {}
        percent = progress.get("percent") if isinstance(progress, dict) else None
        extra: dict[str, Any] = {}
        if isinstance(percent, (int, float)):
            # As the job wrote it: the manager bounds it (a huge or infinite number is dropped).
            extra = {"progress": percent, "progress_message": str(progress.get("message", ""))}
        # The supervisor writes supervisor.pid, runs the job, writes exit.json, then exits. Reading in
        # the opposite order (was it started? is it alive? did it end?) leaves no gap in which a
        # healthy job looks lost: a supervisor found gone has written exit.json before it went.
        pid = _read_pid(folder)  # None also while the file exists but is not written yet
        started = pid is not None
        alive = pid is not None and _is_our_supervisor(pid, folder)
        ended = read_json(folder + sep + "exit.json")
        if started and not alive and not isinstance(ended, dict):
            ended = read_json(folder + sep + "exit.reserved")  # the disk was full when it ended
        exists = os.path.exists
        if isinstance(ended, dict) and "exit_code" in ended:
            code = int(ended["exit_code"])
            if exists(folder + sep + "stopped"):
                return Observation(Status.ABORTED, "stopped by a user", **extra)
            if exists(folder + sep + "timed_out"):
                return Observation(Status.ERROR, _timed_out(job), **extra)
            if code == 0:
                done = Observation(Status.COMPLETE, "", **extra)
            else:
                done = Observation(Status.ERROR, _exit_message(code, Path(folder)), **extra)
            # A function's result or exception, read as on every engine (untrusted, bounded, JSON only).
            return functions.outcome(job, done) if job.function else done
        if alive:
            paused = exists(folder + sep + "paused")
            return Observation(Status.PAUSED if paused else Status.RUNNING, "", **extra)
        if exists(folder + sep + "stopped"):
            return Observation(Status.ABORTED, "stopped by a user")
        if exists(folder + sep + "timed_out"):
            return Observation(Status.ERROR, _timed_out(job))
        if not started:
            if job.status_code in (Status.SUBMITTED, Status.PAUSED):
                return None  # waiting for a worker to claim it
            claimed = job.start_time
            if claimed is not None and (timezone.now() - claimed).total_seconds() < START_GRACE:
                return None  # claimed a moment ago: its supervisor is starting
            # Claimed, but its worker died before starting it: it never ran, so it queues again.
            return Observation(Status.SUBMITTED, "queued again: its worker stopped before starting it")
        return Observation(
            Status.ERROR,
            "lost: the job's supervisor is gone and left no exit code "
            "(the machine restarted, or the process was killed from outside)",
        )

    def poll(self, jobs: Sequence[Job]) -> PollResult:
        """Read every job's attempt folder once; no engine to call.

        A job whose workspace is not there is reported unreachable, not observed: an unmounted file
        system would otherwise read as "never started" and the job would be queued, and run, again.
        """
        answer = PollResult()
        found = answer.observations
        mounted: dict[str, bool] = {}  # one stat per workspace, not one per job
        prefixes: dict[str, str] = {}  # workspace -> how attempt_dir() spells it, with a separator
        sep = os.sep
        for job in cast("Sequence[LocalJob]", jobs):
            try:
                if job.workspace and job.workspace not in mounted:
                    mounted[job.workspace] = os.path.isdir(job.workspace)
                if job.workspace and not mounted[job.workspace]:
                    answer.unreachable[job.pk] = (
                        f"its workspace {job.workspace} is not there (is the file system mounted?)"
                    )
                    continue
                prefix = prefixes.get(job.workspace)
                if prefix is None:
                    spelled = os.fspath(Path(job.workspace))  # as Job.folder normalizes it
                    prefix = prefixes[job.workspace] = "" if spelled == "." else spelled.rstrip(sep) + sep
                folder = f"{prefix}job_{job.pk}{sep}attempts{sep}{job.attempt}"
                observation = self.observe_one(job, folder)
            except Exception as exc:
                # What a job writes is untrusted: one unreadable folder ends that job, not the poll.
                observation = Observation(
                    Status.ERROR, f"could not read the job's state files: {type(exc).__name__}: {exc}"
                )
            if observation is not None:
                found[job.pk] = observation
        return answer

    def enforce(self, jobs: Sequence[Job]) -> None:
        """End the jobs that ran past their timeout (the exit then reads as Error: timed out).

        Also sends SIGKILL to stopped jobs whose grace has passed (those are no longer active).
        """
        now = timezone.now()
        for job in cast("Sequence[LocalJob]", jobs):
            if not job.timeout or job.start_time is None or job.status_code is not Status.RUNNING:
                continue
            if (now - job.start_time).total_seconds() < job.timeout:
                continue
            folder = attempt_dir(job)
            pid = supervisor_pid(folder)
            if pid is None:
                continue
            marker = folder / "timed_out"
            if not marker.exists():
                marker.touch()
                request_end(pid, folder)
        escalate_stops()

    def cancel(self, job: Job) -> None:
        """Mark the attempt stopped and send SIGTERM; the worker sends SIGKILL after the grace."""
        folder = attempt_dir(job)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "stopped").touch()
        pid = supervisor_pid(folder)
        if pid is not None:
            request_end(pid, folder)  # never wait here: a web request is waiting for us

    def hold(self, job: Job) -> None:
        """Stop the job's processes where they are (SIGSTOP to the group)."""
        folder = attempt_dir(job)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "paused").touch()
        pid = supervisor_pid(folder)
        if pid is not None:
            _signal_group(pid, signal.SIGSTOP)

    def release(self, job: Job) -> Status:
        """Let a paused job go on (SIGCONT); one that never started goes back to the queue."""
        folder = attempt_dir(job)
        (folder / "paused").unlink(missing_ok=True)
        pid = supervisor_pid(folder)
        if pid is None:
            return Status.SUBMITTED
        _signal_group(pid, signal.SIGCONT)
        return Status.RUNNING

    def log_files(self, job: Job) -> dict[str, Path]:
        """Return the current attempt's stdout and stderr files."""
        folder = attempt_dir(job)
        return {"stdout": folder / "stdout.txt", "stderr": folder / "stderr.txt"}

    def logs(self, job: Job) -> dict[str, Any]:
        """Return the end of the current attempt's stdout and stderr."""
        folder = attempt_dir(job)
        return {
            "stdout": tail(folder / "stdout.txt", LOG_TAIL_BYTES),
            "stderr": tail(folder / "stderr.txt", LOG_TAIL_BYTES),
        }
