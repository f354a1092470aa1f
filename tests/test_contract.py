"""The contract every engine backend keeps: written once, run against each engine.

As Django's SessionTestsMixin: `BackendContract` holds the tests, and each engine is one subclass that
names a job type running on it and supplies a few hooks: the create_job() settings of a job that
succeeds, fails or runs long; how to let time pass; how to make the engine unreachable and reachable
again; what shows a job's work on the engine, and when that work has really stopped. Adding an engine
is adding one subclass.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.test import Client

from jobtower import manager
from jobtower.backends import Backend, Capability, backend_for, get_backend, local
from jobtower.backends.memory import MemoryBackend
from jobtower.errors import NotSupported
from jobtower.models import Job
from jobtower.registry import job_class
from jobtower.statuses import Status
from jobtower.web.tokens import make_token
from tests import results_functions
from tests.conftest import drive, free_port, fresh, gone, in_queue, in_slurm_queue, slurm_token, wait_for
from tests.jobtypes import MEMORY_BACKEND, memory_backend

#: How each action of manager.NEEDS is asked for over the API: method and path under /api/jobs/<id>/.
API_ACTIONS = {
    "execute": ("post", "run/"), "resubmit": ("post", "resubmit/"), "stop": ("post", "stop/"),
    "pause": ("post", "pause/"), "resume": ("post", "resume/"), "logs": ("get", "logs/"),
}
#: Each action of manager.NEEDS as the manager performs it ("logs" has no action: only its check).
MANAGER_ACTIONS: dict[str, Callable[[Job], object]] = {
    "execute": manager.execute, "resubmit": manager.resubmit, "stop": manager.stop,
    "pause": manager.pause, "resume": manager.resume, "logs": lambda job: manager.require(job, "logs"),
}


class BackendContract:
    """What every engine does. Subclasses name a job type on their engine and supply the hooks."""

    job_type: str | None = None  # subclasses must specify: a job type that runs on the engine under test
    #: Seconds the engine gets for each thing asked of it (to start a job, to end it, to answer).
    timeout = 30.0

    # -- hooks --------------------------------------------------------------------------------------

    @pytest.fixture
    def engine(self) -> Any:
        """Make the engine ready for one test, and clean up after it; subclasses must specify."""
        raise NotImplementedError("subclasses must specify the engine fixture")

    def options(self, kind: str) -> dict[str, Any]:
        """Return the create_job() settings of a job that "succeeds", "fails" or runs "long"."""
        raise NotImplementedError

    def let_time_pass(self, job: Job, done: Callable[[Job], bool], what: str) -> Job:
        """Let the engine work (monitor cycles) until `done(job)`; return the job as stored."""
        return drive(job, done, self.timeout, what)

    def make_unreachable(self, job: Job) -> None:
        """Make the engine unable to answer about `job`."""
        raise NotImplementedError

    def make_reachable(self, job: Job) -> None:
        """Undo make_unreachable()."""
        raise NotImplementedError

    def work_of(self, job: Job) -> Any:
        """Return what shows an active job's work on the engine (a process group, a cluster)."""
        return job.pk

    def work_gone(self, work: Any) -> bool:
        """Return True once the work named by work_of() has really stopped."""
        return True

    def is_running(self, job: Job) -> bool:
        """Return True when the stored job runs, as far as the engine's own state shows too."""
        return job.status_code is Status.RUNNING

    # -- helpers ------------------------------------------------------------------------------------

    @pytest.fixture(autouse=True)
    def _contract(self, engine: Any, job_manager: Any, user: Any) -> None:
        self.job_manager, self.user = job_manager, user

    def engine_backend(self) -> Backend:
        backend = backend_for(job_class(str(self.job_type)))
        assert backend is not None, f"{self.job_type} jobs have no engine"
        return backend

    def can(self, capability: Capability) -> bool:
        return self.engine_backend().can(capability)

    def create(self, kind: str, **more: Any) -> Job:
        job: Job = self.job_manager.create_job(
            name=f"{kind} {{id}}", user=self.user, job_type=self.job_type, **self.options(kind), **more
        )
        return job

    def start(self, kind: str, **more: Any) -> Job:
        job = self.create(kind, **more)
        job.execute()
        return job

    def ended(self, job: Job) -> Job:
        return self.let_time_pass(job, lambda j: j.status_code.is_terminal, f"job {job.pk} to end")

    def running(self, job: Job) -> Job:
        return self.let_time_pass(job, self.is_running, f"job {job.pk} to run")

    def one_cycle(self, job: Job) -> Job:
        return self.let_time_pass(job, lambda j: True, "one monitor cycle")

    def stop_and_wait(self, job: Job) -> Job:
        """Stop an active job; wait until its work has really stopped; return it as stored."""
        work = self.work_of(fresh(job))
        fresh(job).stop()
        wait_for(lambda: self.work_gone(work), self.timeout, interval=0.1, what=f"the work of job {job.pk} to stop")
        return fresh(job)

    def api(self, method: str, job: Job, path: str) -> Any:
        """Ask the REST API about `job` as its owner."""
        headers = {"HTTP_AUTHORIZATION": f"Bearer {make_token(self.user)}"}
        return getattr(Client(), method)(f"/api/jobs/{job.pk}/{path}", **headers)

    def refused(self, job: Job, action: str) -> None:
        """Check that the manager and the API refuse `action` on `job`, which stays as it is."""
        before = fresh(job).status_code
        with pytest.raises(NotSupported) as refusal:
            MANAGER_ACTIONS[action](fresh(job))
        assert refusal.value.action == action and refusal.value.capability == manager.NEEDS[action].value
        method, path = API_ACTIONS[action]
        response = self.api(method, job, path)
        assert response.status_code == 409, (action, response.content[:300])
        assert "does not support it" in response.json()["error"], response.json()
        assert fresh(job).status_code is before

    # -- the contract -------------------------------------------------------------------------------

    def test_a_job_that_succeeds_ends_complete(self) -> None:
        done = self.ended(self.start("succeeds"))
        assert done.status_code is Status.COMPLETE, done.status_message
        assert done.completion_time is not None and done.stale_since is None

    def test_a_job_that_fails_ends_in_error_saying_why(self) -> None:
        done = self.ended(self.start("fails"))
        assert done.status_code is Status.ERROR, done.status_message
        assert done.status_message.strip()

    def test_stop_aborts_a_long_job_and_its_work_really_stops(self) -> None:
        running = self.running(self.start("long"))
        stopped = self.stop_and_wait(running)
        assert stopped.status_code is Status.ABORTED and stopped.status_message == "stopped by a user"

    def test_pause_then_resume_where_the_engine_can_hold_else_both_are_refused(self) -> None:
        running = self.running(self.start("long"))
        if not self.can(Capability.HOLD):
            self.refused(running, "pause")
            self.refused(running, "resume")
        else:
            running.pause()
            assert fresh(running).status_code is Status.PAUSED
            assert self.one_cycle(running).status_code is Status.PAUSED  # the engine reads its hold as Paused
            fresh(running).resume()
            assert fresh(running).status_code in (Status.SUBMITTED, Status.RUNNING)
            self.running(running)
        assert self.stop_and_wait(running).status_code is Status.ABORTED

    def test_resubmit_runs_attempt_2_to_complete(self) -> None:
        first = self.ended(self.start("succeeds"))
        assert first.status_code is Status.COMPLETE, first.status_message
        first.resubmit()
        assert fresh(first).attempt == 2
        second = self.let_time_pass(first, lambda j: j.status_code.is_terminal, f"attempt 2 of job {first.pk} to end")
        assert second.status_code is Status.COMPLETE and second.attempt == 2, second.status_message
        assert {e.attempt for e in second.history()} == {1, 2}

    def test_get_logs_returns_a_dict_with_stdout_where_the_engine_gives_logs(self) -> None:
        done = self.ended(self.start("succeeds"))
        logs = done.get_logs()
        assert isinstance(logs, dict)
        response = self.api("get", done, "logs/")
        if self.can(Capability.LOGS):
            assert "stdout" in logs, logs
            assert response.status_code == 200 and "stdout" in response.json()
        else:
            assert logs == {}
            assert response.status_code == 409

    def test_process_results_function_runs_once_then_the_job_is_complete(self) -> None:
        results_functions.CALLS.clear()
        job = self.start("succeeds", process_results_function=results_functions.record)
        done = self.ended(job)
        assert done.status_code is Status.COMPLETE, done.status_message
        moves = [e.to_status for e in done.history()]
        assert moves[-2:] == [Status.RESULTS_READY.value, Status.COMPLETE.value], moves
        assert (done.folder / "processed.txt").read_text() == f"{job.pk}\n"
        self.one_cycle(done)
        assert results_functions.CALLS == [job.pk]

    def test_an_unreachable_engine_leaves_the_status_stale_not_changed(self) -> None:
        running = self.running(self.start("long"))
        self.make_unreachable(running)
        try:
            stale = self.let_time_pass(running, lambda j: j.stale_since is not None, f"job {running.pk} to be stale")
            assert stale.status_code is Status.RUNNING, stale.status_message
            still = self.one_cycle(running)
            assert still.status_code is Status.RUNNING and still.stale_since == stale.stale_since  # marked once
        finally:
            self.make_reachable(running)
        back = self.let_time_pass(running, lambda j: j.stale_since is None, f"job {running.pk} to be answered for")
        assert back.status_code is Status.RUNNING, back.status_message
        assert self.stop_and_wait(running).status_code is Status.ABORTED

    def test_actions_the_engine_does_not_declare_are_refused_by_the_manager_and_the_api(self) -> None:
        declared = self.engine_backend().capabilities
        job = self.create("long")
        undeclared = [action for action, need in manager.NEEDS.items() if need not in declared]
        for action, need in manager.NEEDS.items():
            assert manager.supports(job, action) is (need in declared), action
        if not undeclared:
            return
        if Capability.SUBMIT in declared:
            job.execute()
            job = self.running(job)
        for action in undeclared:
            self.refused(job, action)
        if fresh(job).status_code.is_active and Capability.STOP in declared:
            self.stop_and_wait(job)


# -- the in-memory engine: the test scripts what it reports ------------------------------------------


class MemoryContract(BackendContract):
    """Both memory engines: a submitted job reports what its kind says on the next cycle."""

    timeout = 10.0
    #: What the engine reports for each kind of job once it was submitted.
    SCRIPT = {"succeeds": (Status.COMPLETE, ""), "fails": (Status.ERROR, "exit code 3: oops"),
              "long": (Status.RUNNING, "")}
    memory: MemoryBackend

    def options(self, kind: str) -> dict[str, Any]:
        return {"extended_properties": {"script": kind}}

    def play(self) -> None:
        """Move every freshly submitted job (each new attempt too) as its kind says."""
        for job_id, observation in list(self.memory.states.items()):
            if observation.status is Status.SUBMITTED:
                kind = Job.objects.get(pk=job_id).extended_properties["script"]
                self.memory.set(job_id, *self.SCRIPT[kind])

    def let_time_pass(self, job: Job, done: Callable[[Job], bool], what: str) -> Job:
        return drive(job, done, self.timeout, what, interval=0.01, before=self.play)

    def make_unreachable(self, job: Job) -> None:
        self.memory.unreachable.add(job.pk)

    def make_reachable(self, job: Job) -> None:
        self.memory.unreachable.discard(job.pk)

    def work_gone(self, work: Any) -> bool:
        return ("cancel", work) in self.memory.calls and self.memory.states[work].status is Status.ABORTED


class TestMemory(MemoryContract):
    job_type = "MEMORY"

    @pytest.fixture
    def engine(self, memory: MemoryBackend, db: Any) -> None:
        self.memory = memory


class TestMemoryWithoutHold(MemoryContract):
    """The memory engine configured as one that cannot pause: settings choose its OPTIONS."""

    job_type = "MEMORY_NO_HOLD"

    @pytest.fixture
    def engine(self, settings: Any, db: Any) -> Iterator[None]:
        options = {"hold": False}
        settings.JOBTOWER = {
            **settings.JOBTOWER,
            "BACKENDS": {self.job_type: {"BACKEND": MEMORY_BACKEND, "OPTIONS": options}},
        }
        backend = get_backend(MEMORY_BACKEND, options)
        assert isinstance(backend, MemoryBackend) and backend is not memory_backend()
        assert not backend.can(Capability.HOLD)
        backend.reset()
        self.memory = backend
        yield
        backend.reset()


# -- LOCAL: real processes, started by a worker thread -----------------------------------------------


class TestLocal(BackendContract):
    job_type = "LOCAL"
    COMMANDS = {"succeeds": ["true"], "fails": ["sh", "-c", "echo oops >&2; exit 3"], "long": ["sleep", "300"]}

    @pytest.fixture
    def engine(self, local_worker: Any) -> None:
        pass

    def options(self, kind: str) -> dict[str, Any]:
        return {"command": self.COMMANDS[kind]}

    def let_time_pass(self, job: Job, done: Callable[[Job], bool], what: str) -> Job:
        return drive(job, done, self.timeout, what, interval=0.05)

    def is_running(self, job: Job) -> bool:
        # Claimed is Running already; wait for the process itself, so a pause or stop finds it.
        return job.status_code is Status.RUNNING and local.supervisor_pid(local.attempt_dir(job)) is not None

    def make_unreachable(self, job: Job) -> None:
        # As an unmounted file system: the workspace is not there.
        Path(job.workspace).rename(job.workspace + ".away")

    def make_reachable(self, job: Job) -> None:
        Path(job.workspace + ".away").rename(job.workspace)

    def work_of(self, job: Job) -> Any:
        folder = local.attempt_dir(job)
        pgid = wait_for(lambda: local.supervisor_pid(folder), self.timeout, what=f"the supervisor of job {job.pk}")
        return pgid, folder

    def work_gone(self, work: Any) -> bool:
        pgid, folder = work
        return gone(pgid) and not local.attempt_processes(pgid, folder)


# -- CONDOR: the loopback HTCondor pool (one execute slot: every test removes what it started) --------


@pytest.mark.condor
class TestCondor(BackendContract):
    job_type = "CONDOR"
    timeout = 90.0
    PROGRAMS = {"succeeds": ["/bin/true"], "fails": ["/bin/false"], "long": ["/bin/sleep", "300"]}
    NO_SUCH_SCHEDULER = "no-such-scheduler"

    @pytest.fixture
    def engine(self, pool: dict[str, str], workspace: Path, transactional_db: Any) -> Iterator[None]:
        import htcondor

        self.workspace = workspace
        yield
        # A failed test may leave its clusters behind; the next test needs the slot.
        for data in Job.objects.filter(job_type=self.job_type).values_list("engine_data", flat=True):
            cluster = (data or {}).get("cluster_id")
            if cluster and in_queue(cluster):
                htcondor.Schedd().act(htcondor.JobAction.Remove, f"ClusterId == {int(cluster)}")

    def options(self, kind: str) -> dict[str, Any]:
        executable, *arguments = self.PROGRAMS[kind]
        attributes = {"executable": executable, **({"arguments": " ".join(arguments)} if arguments else {})}
        return {"workspace": str(self.workspace), "condorpy_template_name": "vanilla_base", "attributes": attributes}

    def let_time_pass(self, job: Job, done: Callable[[Job], bool], what: str) -> Job:
        return drive(job, done, self.timeout, what, interval=0.3)

    def make_unreachable(self, job: Job) -> None:
        data = fresh(job).engine_data
        self.scheduler = data.get("scheduler")
        Job.objects.filter(pk=job.pk).update(engine_data={**data, "scheduler": self.NO_SUCH_SCHEDULER})

    def make_reachable(self, job: Job) -> None:
        data = fresh(job).engine_data
        Job.objects.filter(pk=job.pk).update(engine_data={**data, "scheduler": self.scheduler})

    def work_of(self, job: Job) -> Any:
        return int(job.engine_data["cluster_id"])

    def work_gone(self, work: Any) -> bool:
        return not in_queue(work)


# -- SLURM: the loopback Slurm cluster (a few CPUs: jobs run side by side) ----------------------------


@pytest.mark.slurm
class TestSlurm(BackendContract):
    job_type = "SLURM"
    timeout = 60.0
    COMMANDS = {"succeeds": ["true"], "fails": ["sh", "-c", "echo oops >&2; exit 3"], "long": ["sleep", "300"]}
    DEAD = "dead-controller"

    @pytest.fixture
    def engine(self, slurm_cluster: str, transactional_db: Any, tmp_path: Path) -> Iterator[None]:
        from jobtower.models import SlurmCluster

        # A cluster record whose controller does not answer: a copy of slurm.conf with a closed port.
        dead = tmp_path / "dead-slurm.conf"
        text = Path(slurm_cluster).read_text()
        dead.write_text(text.replace("\nSlurmUser=", "\nSlurmctldPort=6899\nMessageTimeout=2\nSlurmUser=", 1))
        SlurmCluster.objects.create(name=self.DEAD, slurm_conf=str(dead))
        yield
        backend = self.engine_backend()
        for job in Job.objects.filter(job_type=self.job_type):
            slurm_id = (job.engine_data or {}).get("slurm_job_id")
            if slurm_id and in_slurm_queue(slurm_id):
                Job.objects.filter(pk=job.pk).update(engine_data={**job.engine_data, "scheduler": None})
                backend.cancel(fresh(job))

    def options(self, kind: str) -> dict[str, Any]:
        return {"command": self.COMMANDS[kind]}

    def let_time_pass(self, job: Job, done: Callable[[Job], bool], what: str) -> Job:
        return drive(job, done, self.timeout, what, interval=0.3)

    def make_unreachable(self, job: Job) -> None:
        data = fresh(job).engine_data
        Job.objects.filter(pk=job.pk).update(engine_data={**data, "scheduler": self.DEAD})

    def make_reachable(self, job: Job) -> None:
        data = fresh(job).engine_data
        Job.objects.filter(pk=job.pk).update(engine_data={**data, "scheduler": None})

    def work_of(self, job: Job) -> Any:
        return int(job.engine_data["slurm_job_id"])

    def work_gone(self, work: Any) -> bool:
        return not in_slurm_queue(work)


@pytest.mark.slurm
class TestSlurmRest(TestSlurm):
    """The same contract through slurmrestd with a JWT: a SlurmCluster with a rest_url and a token."""

    REST = "rest"

    @pytest.fixture
    def engine(self, slurm_rest: dict[str, str], transactional_db: Any, tmp_path: Path) -> Iterator[None]:
        from jobtower.models import SlurmCluster

        token = slurm_token()
        SlurmCluster.objects.create(name=self.REST, rest_url=slurm_rest["SLURMRESTD_URL"], token=token)
        # A cluster record whose slurmrestd does not answer: a port nothing listens on.
        SlurmCluster.objects.create(name=self.DEAD, rest_url=f"http://127.0.0.1:{free_port()}", token=token)
        yield
        backend = self.engine_backend()
        for job in Job.objects.filter(job_type=self.job_type):
            slurm_id = (job.engine_data or {}).get("slurm_job_id")
            if slurm_id and in_slurm_queue(slurm_id):
                Job.objects.filter(pk=job.pk).update(engine_data={**job.engine_data, "scheduler": self.REST})
                backend.cancel(fresh(job))

    def options(self, kind: str) -> dict[str, Any]:
        return {"command": self.COMMANDS[kind], "scheduler": self.REST}

    def make_reachable(self, job: Job) -> None:
        data = fresh(job).engine_data
        Job.objects.filter(pk=job.pk).update(engine_data={**data, "scheduler": self.REST})

    def test_pause_then_resume_where_the_engine_can_hold_else_both_are_refused(self) -> None:
        # Slurm's REST API holds what waits but cannot suspend what runs: pause() of a running job is
        # refused, saying so, and the job runs on; a waiting job is held and released.
        running = self.running(self.start("long"))
        with pytest.raises(NotSupported, match="cannot suspend it"):
            running.pause()
        response = self.api("post", running, "pause/")
        assert response.status_code == 409 and "cannot suspend it" in response.json()["error"], response.content
        assert self.one_cycle(running).status_code is Status.RUNNING
        assert self.stop_and_wait(running).status_code is Status.ABORTED
        waiting = self.start("long", sbatch={"begin": "now+3600"})
        waiting.pause()
        assert self.one_cycle(waiting).status_code is Status.PAUSED
        fresh(waiting).resume()
        assert self.one_cycle(waiting).status_code is Status.SUBMITTED
        assert self.stop_and_wait(waiting).status_code is Status.ABORTED


# -- DASK: a real `dask scheduler` and `dask worker` (separate processes) ------------------------------


@pytest.mark.dask
class TestDask(BackendContract):
    job_type = "DASK"
    FUNCTIONS = {"succeeds": ("add", [1, 2]), "fails": ("boom", [3]), "long": ("long_task", [300])}

    @pytest.fixture
    def engine(self, dask_cluster: Any, db: Any) -> None:
        from jobtower.models import create_dask_scheduler

        self.cluster = dask_cluster
        create_dask_scheduler("contract", dask_cluster.address).save()

    def options(self, kind: str) -> dict[str, Any]:
        function, args = self.FUNCTIONS[kind]
        return {"scheduler": "contract", "function": f"tests.dask_functions:{function}", "args": args}

    def let_time_pass(self, job: Job, done: Callable[[Job], bool], what: str) -> Job:
        return drive(job, done, self.timeout, what, interval=0.05)

    def make_unreachable(self, job: Job) -> None:
        from tests.conftest import free_port

        data = fresh(job).engine_data
        self.address = data["address"]
        # Nothing listens there: the scheduler cannot be asked (timeout 1 s keeps the cycle short).
        Job.objects.filter(pk=job.pk).update(
            engine_data={**data, "address": f"tcp://127.0.0.1:{free_port()}", "timeout": 1}
        )

    def make_reachable(self, job: Job) -> None:
        data = fresh(job).engine_data
        Job.objects.filter(pk=job.pk).update(engine_data={**data, "address": self.address, "timeout": 0})

    def work_of(self, job: Job) -> Any:
        return fresh(job).engine_data["key"]

    def work_gone(self, work: Any) -> bool:
        from jobtower.backends import dask

        return dask.client_for(self.cluster.address).run_on_scheduler(dask._STATES, [work])[0] is None

    def test_process_results_function_runs_once_then_the_job_is_complete(self) -> None:
        # DASK keeps Tethys's form: process_results_function(result), whose return becomes the result.
        results_functions.CALLS.clear()
        job = self.start("succeeds", process_results_function=results_functions.record_value)
        done = self.ended(job)
        assert done.status_code is Status.COMPLETE, done.status_message
        moves = [e.to_status for e in done.history()]
        assert moves[-2:] == [Status.RESULTS_READY.value, Status.COMPLETE.value], moves
        assert done.result == {"processed": 3}
        self.one_cycle(done)
        assert results_functions.CALLS == [3]
@pytest.mark.condor
class TestCondorWorkflow(TestCondor):
    """A one-node DAGMan workflow of each kind: the contract holds for workflows as for single jobs."""

    job_type = "CONDORWORKFLOW"
    timeout = 120.0

    def options(self, kind: str) -> dict[str, Any]:
        return {"workspace": str(self.workspace)}

    def create(self, kind: str, **more: Any) -> Job:
        job = super().create(kind, **more)
        executable, *arguments = self.PROGRAMS[kind]
        attributes = {"executable": executable, **({"arguments": " ".join(arguments)} if arguments else {})}
        job.add_node(name="only", condorpy_template_name="vanilla_base", attributes=attributes)  # type: ignore[attr-defined]
        return job

    def work_gone(self, work: Any) -> bool:
        import htcondor

        # DAGMan and the node jobs it submitted (their ads carry DAGManJobId).
        nodes = htcondor.Schedd().query(f"DAGManJobId == {int(work)}", ["ClusterId"])
        return not in_queue(work) and not list(nodes)
