"""Fixtures shared by the tests: users, an app, its job manager, the in-memory engine."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

import jobtower
from jobtower.statuses import Status

if TYPE_CHECKING:
    from jobtower.models import Job


class MyFirstApp(jobtower.AppBase):
    """The app of the Jobs API document's samples."""

    package = "my_first_app"
    name = "My First App"


class OtherApp(jobtower.AppBase):
    package = "other_app"
    name = "Other App"


# The fixtures that need an engine outside the test process, and the marker each of their tests carries, so
# that `pytest -m "not condor and not browser"` leaves out exactly the tests that need the pool or Chromium.
ENGINE_FIXTURES = {
    "pool": "condor", "browser_page": "browser", "slurm_cluster": "slurm", "slurm_rest": "slurm",
    "dask_cluster": "dask", "own_dask_cluster": "dask", "postgres": "postgres",
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Refuse a test that uses an engine's fixture without carrying that engine's marker."""
    unmarked = [
        f"{item.nodeid} uses {fixture!r} but is not marked {marker!r}"
        for item in items
        for fixture, marker in ENGINE_FIXTURES.items()
        if fixture in getattr(item, "fixturenames", ()) and item.get_closest_marker(marker) is None
    ]
    if unmarked:
        raise pytest.UsageError("\n".join(unmarked))


@pytest.fixture(autouse=True, scope="session")
def _database_is_what_ci_asked_for(django_db_setup: Any, django_db_blocker: Any) -> Iterator[None]:
    """Fail (never skip) when the run was asked for PostgreSQL and is not on it."""
    from django.db import connection

    wanted = "postgresql" if os.environ.get("JOBTOWER_DATABASE_URL", "").startswith("postgres") else "sqlite"
    with django_db_blocker.unblock():
        assert connection.vendor == wanted, f"tests asked for {wanted} but run on {connection.vendor}"
    yield
    if wanted == "postgresql":
        # A thread or process a test started (a worker, a monitor) may still hold a session on the test
        # database; end them, so that the database is dropped instead of left behind on the server.
        with django_db_blocker.unblock(), connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )


@pytest.fixture
def postgres(transactional_db: Any) -> None:
    """Fail (never skip) unless the test database is PostgreSQL; the SQLite tier deselects `-m "not postgres"`."""
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.fail(
            f"this test needs PostgreSQL and runs on {connection.vendor}: set JOBTOWER_DATABASE_URL="
            "postgresql://USER@HOST:PORT/DB (scripts/test.sh's PostgreSQL tier does), or leave it out with "
            '-m "not postgres"'
        )


@pytest.fixture(autouse=True)
def _own_workspaces(settings: Any, tmp_path: Any) -> None:
    """Give every test its own workspaces: job ids repeat after a rollback, folders must not."""
    settings.JOBTOWER = {**settings.JOBTOWER, "WORKSPACES_ROOT": str(tmp_path / "workspaces")}


@pytest.fixture
def app() -> type[jobtower.AppBase]:
    return MyFirstApp


@pytest.fixture
def job_manager(app: type[jobtower.AppBase]) -> Any:
    return app.get_job_manager()


@pytest.fixture
def user(django_user_model: Any) -> Any:
    return django_user_model.objects.create_user("alice", password="pw-alice")


@pytest.fixture
def other_user(django_user_model: Any) -> Any:
    return django_user_model.objects.create_user("bob", password="pw-bob")


@pytest.fixture
def memory() -> Any:
    from tests.jobtypes import memory_backend

    backend = memory_backend()
    backend.reset()
    yield backend
    backend.reset()


@pytest.fixture
def set_status() -> Any:
    """Force a job's stored status (test set-up only: production code goes through transition())."""

    def force(job: Any, status: jobtower.Status) -> None:
        from jobtower.models import Job

        Job.objects.filter(pk=job.pk).update(_status=status.value)
        job._set(_status=status.value)

    return force


def wait_for(predicate: Any, timeout: float = 30.0, interval: float = 0.05, what: str = "condition") -> Any:
    """Poll `predicate` until it returns something true; fail with `what` after `timeout` seconds."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


# -- waiting for jobs: one monitor cycle at a time, never a fixed sleep ------------------------------


def fresh(job: Job | int) -> Job:
    """Return the job (or job id) as stored now, as its own type's class."""
    from jobtower.models import Job

    return Job.objects.get(pk=job if isinstance(job, int) else job.pk)


def drive(
    job: Job | int,
    done: Callable[[Job], bool],
    timeout: float = 60.0,
    what: str = "",
    *,
    interval: float = 0.2,
    before: Callable[[], object] | None = None,
) -> Job:
    """Run monitor cycles (results steps included) until `done(job)`; return the job as stored.

    `before` runs ahead of each cycle: an engine scripted by the test moves its jobs there.
    """
    from jobtower.monitor import Monitor

    monitor = Monitor(results_threads=0)

    def check() -> Job | None:
        if before is not None:
            before()
        monitor.cycle()
        current = fresh(job)
        return current if done(current) else None

    job_id = job if isinstance(job, int) else job.pk
    return wait_for(check, timeout, interval=interval, what=what or f"job {job_id}")


def ended(job: Job | int, timeout: float = 60.0) -> Job:
    """Let time pass until the job is in a terminal status; return it as stored."""
    job_id = job if isinstance(job, int) else job.pk
    return drive(job, lambda j: j.status_code.is_terminal, timeout, f"job {job_id} to end")


def status_is(job: Job | int, status: Status, timeout: float = 60.0) -> Job:
    """Let time pass until the job is in `status`; return it as stored."""
    job_id = job if isinstance(job, int) else job.pk
    return drive(job, lambda j: j.status_code is status, timeout, f"job {job_id} to be {status.display}")


def gone(pid: int | str) -> bool:
    """Return True when the process has ended (a zombie has ended too: only its exit code is left)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0] in ("Z", "X")
    except OSError:
        return True  # no such process any more


def group_frozen(folder: Path) -> bool:
    """Return True when every live process of a LOCAL attempt's group is stopped (SIGSTOP reached it).

    `folder` is the attempt folder; its supervisor.pid is the group id. Reads /proc: a state, not a
    count of ticks over a fixed wait, so the check can never be true merely because it was read early.
    """
    pgid = (folder / "supervisor.pid").read_text().strip()
    states = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[-1].split()
        except OSError:
            continue  # ended while we looked
        if fields[2] == pgid and fields[0] not in ("Z", "X"):
            states.append(fields[0])
    return bool(states) and all(state == "T" for state in states)


@pytest.fixture
def local_worker(transactional_db: Any) -> Any:
    """A LOCAL worker running in a thread of the test process (jobs are real processes)."""
    import threading

    from jobtower.worker import LocalWorker

    stop = threading.Event()
    worker = LocalWorker(concurrency=4, idle_sleep=0.02)
    thread = threading.Thread(target=worker.run, args=(stop,), daemon=True)
    thread.start()
    yield worker
    stop.set()
    thread.join(timeout=30)
    _kill_local_jobs()


def _kill_local_jobs() -> None:
    """Kill every process group a LOCAL job of this test started, so none outlives the test."""
    import signal

    from jobtower.models import Job

    for job in Job.objects.filter(job_type="LOCAL").exclude(workspace=""):
        for pid_file in job.folder.glob("attempts/*/supervisor.pid"):
            try:
                pgid = int(pid_file.read_text().strip())
                os.killpg(pgid, signal.SIGCONT)  # a paused group must run to die cleanly
                os.killpg(pgid, signal.SIGKILL)
            except (OSError, ValueError):
                continue  # ended already, or never wrote its pid
            wait_for(lambda pgid=pgid: gone(pgid), 10, what=f"the process group {pgid} of job {job.pk} to end")


@pytest.fixture
def engine_env(transactional_db: Any) -> dict[str, str]:
    """Environment for a `jobtower worker`/`monitor` subprocess on the test database."""
    import sys

    from django.conf import settings
    from django.db import connection

    db = connection.settings_dict
    if connection.vendor == "postgresql":
        url = f"postgresql://{db['USER']}@{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}"
    else:
        url = f"sqlite://{db['NAME']}"
    root = str(Path(__file__).resolve().parent.parent)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JOBTOWER_", "DJANGO_"))}
    env.update(
        DJANGO_SETTINGS_MODULE="tests.settings",
        JOBTOWER_DATABASE_URL=url,
        JOBTOWER_TEST_HOME=str(settings.JOBTOWER["HOME"]),
        PYTHONPATH=os.pathsep.join([root, env.get("PYTHONPATH", "")]),
        PATH=os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", ""),
    )
    return env


# -- the loopback HTCondor pool (tests that use it carry the `condor` marker) --------------------------

ENV_FILE = os.environ.get("JOBTOWER_CONDOR_ENV") or os.path.join(
    os.environ.get("ENGINES_DIR", "/var/cache/engines"), "htcondor", "client.env"
)


def _client_env() -> dict[str, str]:
    try:
        lines = Path(ENV_FILE).read_text().splitlines()
    except OSError as exc:
        pytest.fail(f"no HTCondor pool: {ENV_FILE} is missing ({exc}); run scripts/engines/condor.sh up as root")
    return dict(line.split("=", 1) for line in lines if "=" in line and not line.startswith("#"))


@pytest.fixture(scope="session")
def pool() -> dict[str, str]:
    """The loopback pool's client environment, applied to this process; fails when there is no pool."""
    env = _client_env()
    os.environ.update({k: v for k, v in env.items() if not k.startswith("JOBTOWER_")})
    import htcondor

    htcondor.reload_config()
    try:
        htcondor.Schedd().query("false", ["ClusterId"])
    except Exception as exc:  # noqa: BLE001 - whatever it is, the pool is not usable
        pytest.fail(f"the HTCondor pool does not answer ({exc}); run scripts/engines/condor.sh up")
    return env


@pytest.fixture
def workspace(pool: dict[str, str]) -> Any:
    """A workspace the pool's job user can reach (pytest's own tmp dirs are private to root)."""
    import shutil
    import tempfile

    path = Path(tempfile.mkdtemp(prefix="jobtower-condor-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def in_queue(cluster: int) -> list[Any]:
    """Return the ads of a cluster still in the local pool's queue."""
    import htcondor

    return list(htcondor.Schedd().query(f"ClusterId == {cluster}", ["JobStatus", "HoldReason"]))


# -- the loopback Slurm cluster (tests that use it carry the `slurm` marker) ---------------------------


@pytest.fixture(scope="session")
def slurm_cluster() -> str:
    """Check that the Slurm controller and its accounting answer; fail (never skip) when they do not."""
    import shutil
    import subprocess

    if shutil.which("sbatch") is None:
        pytest.fail("no Slurm commands on PATH: run scripts/engines/slurm.sh up as root (or scripts/services.sh)")
    for argv in (["sinfo", "-h", "-o", "%T"], ["sacct", "-n", "-X", "-j", "1"]):
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        if done.returncode != 0:
            pytest.fail(f"the Slurm cluster does not answer {argv[0]} ({done.stderr.strip()}); run "
                        "scripts/engines/slurm.sh up")
    return "/etc/slurm/slurm.conf"


@pytest.fixture(scope="session")
def slurm_rest(slurm_cluster: str) -> dict[str, str]:
    """Return the loopback slurmrestd's URL and API version (from slurm.sh's facts); fail when it is not up."""
    facts = Path(os.environ.get("ENGINES_DIR", "/var/cache/engines"), "slurm", "slurmrestd.env")
    if not facts.is_file():
        pytest.fail(f"no slurmrestd facts at {facts}: run scripts/engines/slurm.sh up (as root)")
    return dict(line.split("=", 1) for line in facts.read_text().splitlines() if "=" in line)


def slurm_token(user: str | None = None, lifespan: int = 3600) -> str:
    """Return a JWT for slurmrestd from `scontrol token` (this process's user by default)."""
    import getpass
    import subprocess

    done = subprocess.run(["scontrol", "token", f"username={user or getpass.getuser()}", f"lifespan={lifespan}"],
                          capture_output=True, text=True, timeout=60)
    token = done.stdout.strip().partition("SLURM_JWT=")[2]
    if done.returncode != 0 or not token:
        pytest.fail(f"scontrol token failed ({done.stderr.strip()}): does slurm.conf say AuthAltTypes=auth/jwt? "
                    "run scripts/engines/slurm.sh up")
    return token


def in_slurm_queue(slurm_id: int) -> list[str]:
    """Return the states of a Slurm job's tasks that are still active in the controller."""
    import subprocess

    out = subprocess.run(["squeue", "-h", "-j", str(slurm_id), "-o", "%T"], capture_output=True, text=True,
                         timeout=60).stdout
    return [s for s in out.split() if s not in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY",
                                                 "NODE_FAIL", "PREEMPTED", "BOOT_FAIL", "DEADLINE")]


class SlurmPath:
    """How a test reaches the loopback Slurm cluster: its commands ("cli") or slurmrestd with a JWT ("rest").

    A "rest" path has a SlurmCluster record named "rest" (the loopback slurmrestd, a JWT of this user) and
    SLURM_CONF pointing nowhere, so a Slurm command the REST path ran by mistake would fail the test.
    """

    def __init__(self, name: str, monkeypatch: pytest.MonkeyPatch, rest_facts: dict[str, str] | None = None) -> None:
        from jobtower.backends import get_backend
        from jobtower.backends.slurm import SlurmBackend
        from jobtower.models import SlurmCluster

        assert name in ("cli", "rest"), name
        self.name = name
        backend = get_backend("jobtower.backends.slurm:SlurmBackend")
        assert isinstance(backend, SlurmBackend)
        self.backend = backend
        #: The `scheduler` setting of this path's jobs (None: the cluster this machine's commands reach).
        self.scheduler: str | None = None
        if self.rest:
            assert rest_facts is not None, "the rest path needs the slurm_rest fixture's facts"
            SlurmCluster.objects.create(name="rest", rest_url=rest_facts["SLURMRESTD_URL"], token=slurm_token())
            self.scheduler = "rest"
            monkeypatch.setenv("SLURM_CONF", "/nonexistent/slurm.conf")

    @property
    def rest(self) -> bool:
        """Return True on the slurmrestd path."""
        return self.name == "rest"

    def __repr__(self) -> str:
        return f"<SlurmPath {self.name}>"

    def client(self) -> Any:
        """Return a slurmrestd client with the "rest" cluster's current token (the rest path only)."""
        from jobtower.backends.slurmrest import SlurmRestClient
        from jobtower.models import SlurmCluster

        assert self.rest, "the cli path has no slurmrestd client"
        return SlurmRestClient(SlurmCluster.objects.get(name="rest"))

    def run(self, job_manager: Any, user: Any, **settings: Any) -> Any:
        """Create and execute a SLURM job on this path."""
        job = job_manager.create_job(name=f"{self.name} {{id}}", user=user, job_type="SLURM",
                                     scheduler=self.scheduler, **settings)
        job.execute()
        return job

    def records(self, slurm_id: int) -> list[dict[str, Any]]:
        """Return the controller's records of a Slurm job, one per task (`squeue --json` or GET job/<id>).

        Both give the same format (slurmrestd's v0.0.38 job records); ended jobs stay for MinJobAge.
        """
        import json
        import subprocess

        if self.rest:
            return list(self.client().job(slurm_id))
        out = subprocess.run(["squeue", "--json"], capture_output=True, text=True, timeout=60, check=True).stdout
        return [r for r in json.loads(out)["jobs"] if slurm_id in (r.get("job_id"), r.get("array_job_id"))]

    def active(self, slurm_id: int) -> list[str]:
        """Return the states of a Slurm job's tasks the controller still runs or will run."""
        from jobtower.backends.slurm import ACTIVE_STATES

        if not self.rest:
            return in_slurm_queue(slurm_id)
        return [str(r["job_state"]) for r in self.records(slurm_id) if r["job_state"] in ACTIVE_STATES]

    def cancel_leftovers(self) -> None:
        """Cancel the Slurm jobs a failed test left behind."""
        from jobtower.models import Job

        for job in Job.objects.filter(job_type="SLURM"):
            slurm_id = (job.engine_data or {}).get("slurm_job_id")
            if slurm_id and self.active(slurm_id):
                if self.rest:
                    self.client().cancel(slurm_id)
                else:
                    self.backend.cancel(job)


@pytest.fixture(params=["cli", "rest"])
def slurm_path(request: pytest.FixtureRequest, slurm_cluster: str, transactional_db: Any,
               monkeypatch: pytest.MonkeyPatch) -> Iterator[SlurmPath]:
    """Each path to the loopback Slurm cluster in turn: its commands ("cli"), then slurmrestd ("rest")."""
    facts = request.getfixturevalue("slurm_rest") if request.param == "rest" else None
    path = SlurmPath(request.param, monkeypatch, facts)
    yield path
    path.cancel_leftovers()


# -- a real Dask cluster: a `dask scheduler` and a `dask worker`, separate processes on 127.0.0.1 ----------


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on now."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class DaskCluster:
    """A scheduler and one worker started with Dask's own command line; restartable, stopped at the end."""

    def __init__(self, tmp: Path) -> None:
        import shutil
        import sys

        self.port, self.dashboard_port = free_port(), free_port()
        self.address = f"tcp://127.0.0.1:{self.port}"
        self.dashboard = f"127.0.0.1:{self.dashboard_port}"
        self.logs = tmp
        found = shutil.which("dask", path=os.path.dirname(sys.executable))
        if found is None:
            pytest.fail(f"no `dask` command next to {sys.executable}: pip install 'jobtower[dask]' (or the test extra)")
        self.dask = found
        root = str(Path(__file__).resolve().parent.parent)
        self.env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
        self.scheduler: Any = None
        self.worker: Any = None

    def _spawn(self, name: str, *argv: str) -> Any:
        import subprocess

        log = open(self.logs / f"{name}.log", "ab")  # noqa: SIM115 - the process owns it until the end
        return subprocess.Popen([self.dask, *argv], stdout=log, stderr=subprocess.STDOUT, env=self.env,
                                start_new_session=True)

    def start(self) -> DaskCluster:
        self.scheduler = self._spawn(
            "scheduler", "scheduler", "--host", "127.0.0.1", "--port", str(self.port),
            "--dashboard-address", self.dashboard,
        )
        self.worker = self._spawn(
            "worker", "worker", self.address, "--nthreads", "4", "--no-nanny", "--host", "127.0.0.1",
            "--no-dashboard", "--death-timeout", "120",
        )
        wait_for(self.ready, 60, interval=0.2, what=f"the Dask scheduler at {self.address} and its worker")
        return self

    def ready(self) -> bool:
        """Return True when the scheduler answers and knows one worker."""
        from jobtower.backends import dask

        for process in (self.scheduler, self.worker):
            if process.poll() is not None:
                pytest.fail(f"a Dask process exited with {process.returncode}: see {self.logs}")
        try:
            info = dask.client_for(self.address).scheduler_info()
        except Exception:  # noqa: BLE001 - not up yet
            return False
        return len(info.get("workers", {})) >= 1

    def restart(self) -> None:
        """Kill the scheduler (a worker without a nanny leaves with it) and start both again on the same port."""
        self.stop()
        self.start()

    def stop(self) -> None:
        for process in (self.worker, self.scheduler):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait()


def _dask_cluster(tmp: Path) -> Any:
    try:
        import distributed  # noqa: F401
    except ImportError as exc:
        pytest.fail(f"the dask tests need dask.distributed ({exc}): pip install 'jobtower[dask]'")
    cluster = DaskCluster(tmp)
    try:
        yield cluster.start()
    finally:
        from jobtower.backends import dask

        cluster.stop()
        dask.close_clients()


@pytest.fixture(scope="session")
def dask_cluster(tmp_path_factory: Any) -> Any:
    """A real Dask cluster shared by the session's dask tests."""
    yield from _dask_cluster(tmp_path_factory.mktemp("dask"))


@pytest.fixture
def own_dask_cluster(tmp_path: Path) -> Any:
    """A Dask cluster of the test's own, for a test that restarts its scheduler."""
    yield from _dask_cluster(tmp_path)
