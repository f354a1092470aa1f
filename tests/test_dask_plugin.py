"""Push for DASK jobs: a real `dask scheduler --preload jobtower.dask_plugin` calls a live jobtower server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from jobtower.models import Job, create_dask_scheduler
from tests.conftest import DaskCluster, wait_for

pytestmark = pytest.mark.dask


class PushCluster(DaskCluster):
    """A scheduler started with the plugin, told the live server's URL, and one worker."""

    def __init__(self, tmp: Path, url: str) -> None:
        super().__init__(tmp)
        self.url = url

    def start(self) -> PushCluster:
        self.scheduler = self._spawn(
            "scheduler", "scheduler", "--host", "127.0.0.1", "--port", str(self.port),
            "--dashboard-address", self.dashboard, "--preload", "jobtower.dask_plugin",
            "--jobtower-callback-url", self.url,
        )
        self.worker = self._spawn(
            "worker", "worker", self.address, "--nthreads", "2", "--no-nanny", "--host", "127.0.0.1",
            "--no-dashboard", "--death-timeout", "120",
        )
        wait_for(self.ready, 60, interval=0.2, what=f"the Dask scheduler at {self.address} with the plugin")
        return self


@pytest.fixture
def push_cluster(live_server: Any, tmp_path: Path) -> Iterator[PushCluster]:
    from jobtower.backends import dask

    cluster = PushCluster(tmp_path, live_server.url)
    try:
        yield cluster.start()
    finally:
        cluster.stop()
        dask.close_clients()


def stored_status(job: Job) -> str:
    """The status column as stored (reading job.status would refresh it from here, not by the callback)."""
    return str(Job.objects.filter(pk=job.pk).values_list("_status", flat=True).get())


def test_the_plugin_calls_the_status_callback_when_a_task_ends_with_no_monitor_running(
    push_cluster: PushCluster, job_manager: Any, user: Any
) -> None:
    create_dask_scheduler(name="push", host=push_cluster.address).save()
    jobs = {}
    for function, args in (("add", [2, 3]), ("boom", [7])):
        job = job_manager.create_job(name="dask_{id}", user=user, job_type="DASK", scheduler="push",
                                     function=f"tests.dask_functions:{function}", args=args)
        job.execute()
        jobs[function] = job
    # Nothing polls here: only the scheduler's callback, through the live server, can move them.
    wait_for(lambda: stored_status(jobs["add"]) == "COM", 60, what="the callback to complete the add job")
    wait_for(lambda: stored_status(jobs["boom"]) == "ERR", 60, what="the callback to end the failing job")
    done = Job.objects.get(pk=jobs["add"].pk)
    assert done.result == 5
    # Used once: the scheduler forgot the paths (and their tokens).
    client = create_dask_scheduler(name="x", host=push_cluster.address).client
    assert client.get_metadata(["jobtower"], default={}) == {}



def test_without_a_base_url_the_scheduler_logs_how_to_give_one_and_runs_without_push(tmp_path: Path) -> None:
    # Dask logs a preload's failure and starts anyway: the jobs are then polled as without the plugin.
    cluster = DaskCluster(tmp_path)
    cluster.env.pop("JOBTOWER_DASK_CALLBACK_URL", None)
    cluster.scheduler = cluster._spawn(
        "scheduler", "scheduler", "--host", "127.0.0.1", "--port", str(cluster.port), "--dashboard-address",
        cluster.dashboard, "--preload", "jobtower.dask_plugin",
    )
    log = tmp_path / "scheduler.log"
    try:
        wait_for(lambda: "pass --jobtower-callback-url http://host:port (or set JOBTOWER_DASK_CALLBACK_URL)"
                 in log.read_text(), 60, what="the scheduler to log the missing base URL")
    finally:
        cluster.stop()
