"""DASK jobs on a real Dask cluster: a `dask scheduler` and a `dask worker` started as processes."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from typing import Any

import pytest
from django.urls import reverse

from jobtower import manager
from jobtower.backends import dask as dask_backend
from jobtower.errors import SubmitError
from jobtower.models import DaskJob, create_dask_scheduler
from jobtower.statuses import Status
from tests import dask_functions
from tests.conftest import ended, fresh, status_is, wait_for

pytestmark = pytest.mark.dask


@pytest.fixture
def lab(dask_cluster: Any, db: Any) -> Any:
    """A saved scheduler record of the session's cluster."""
    record = create_dask_scheduler(name="lab", host=dask_cluster.address.removeprefix("tcp://"), timeout=10,
                                   heartbeat_interval=5, dashboard=dask_cluster.dashboard)
    record.save()
    return record


def run(job_manager: Any, user: Any, function: str, *args: Any, **more: Any) -> DaskJob:
    job: DaskJob = job_manager.create_job(
        name="dask_{id}", user=user, job_type="DASK", scheduler="lab",
        function=f"tests.dask_functions:{function}", args=list(args), **more,
    )
    job.execute()
    return job


def test_a_function_job_completes_with_its_value_as_the_result(lab: Any, job_manager: Any, user: Any) -> None:
    job = run(job_manager, user, "add", 2, 3)
    assert job.key.startswith(f"jobtower-{job.pk}-1-")
    done = ended(job, 60)
    assert done.status_code is Status.COMPLETE, done.status_message
    assert done.result == 5
    assert "adding 2 and 3" in done.get_logs()["stdout"]
    # The results step let the cluster forget the task.
    assert f"jobtower-{job.pk}-1" not in lab.client.list_datasets()


def test_an_exception_ends_in_error_with_its_text_and_the_traceback_in_the_logs(
    lab: Any, job_manager: Any, user: Any
) -> None:
    done = ended(run(job_manager, user, "boom", 7), 60)
    assert done.status_code is Status.ERROR
    assert "the model diverged at year 7" in done.status_message
    logs = done.get_logs()
    assert "the model diverged at year 7" in logs["exception"]
    assert "boom" in logs["traceback"] and "starting the model" in logs["stdout"]


def test_a_value_that_is_not_json_or_too_big_ends_in_error_saying_so(lab: Any, job_manager: Any, user: Any) -> None:
    odd = ended(run(job_manager, user, "not_json"), 60)
    assert odd.status_code is Status.ERROR and "not plain JSON" in odd.status_message, odd.status_message
    huge = ended(run(job_manager, user, "big", 2_000_000), 60)
    assert huge.status_code is Status.ERROR and "at most 1,000,000" in huge.status_message, huge.status_message


def test_stop_cancels_a_running_task_on_the_cluster(lab: Any, job_manager: Any, user: Any) -> None:
    job = run(job_manager, user, "long_task", 300)
    running = status_is(job, Status.RUNNING, 60)
    key = running.key
    running.stop()
    assert fresh(job).status_code is Status.ABORTED
    states = dask_backend._STATES
    wait_for(lambda: lab.client.run_on_scheduler(states, [key])[0] is None, 30, what="the scheduler to forget it")


def test_resubmit_runs_a_new_task(lab: Any, job_manager: Any, user: Any) -> None:
    first = ended(run(job_manager, user, "add", 1, 1), 60)
    old_key = first.key
    first.resubmit()
    second = ended(first, 60)
    assert second.status_code is Status.COMPLETE and second.attempt == 2 and second.result == 2
    assert second.key != old_key and second.key.startswith(f"jobtower-{first.pk}-2-")


def test_a_process_results_function_that_fails_ends_in_error_never_complete(
    lab: Any, job_manager: Any, user: Any
) -> None:
    job = run(job_manager, user, "add", 1, 2, process_results_function=dask_functions.explode_result)
    done = ended(job, 60)
    assert done.status_code is Status.ERROR
    assert "cannot convert 3" in done.status_message


def test_no_scheduler_named_uses_the_default_else_a_clear_error(
    dask_cluster: Any, job_manager: Any, user: Any, settings: Any, db: Any
) -> None:
    job = job_manager.create_job(name="x", user=user, job_type="DASK", function="tests.dask_functions:add",
                                 args=[1, 2])
    with pytest.raises(ValueError, match=r"JOBTOWER\['DASK_SCHEDULER'\] is not set"):
        job.execute()
    assert fresh(job).status_code is Status.PENDING
    settings.JOBTOWER = {**settings.JOBTOWER, "DASK_SCHEDULER": dask_cluster.address}
    job.execute()
    assert ended(job, 60).result == 3


def test_nothing_to_run_is_refused_before_anything_moves(lab: Any, job_manager: Any, user: Any) -> None:
    job = job_manager.create_job(name="x", user=user, job_type="DASK", scheduler=lab)
    with pytest.raises(ValueError, match="has nothing to run"):
        job.execute()
    with pytest.raises(TypeError, match="takes a dask Delayed"):
        job.execute("not a task")
    assert fresh(job).status_code is Status.PENDING


def test_an_unknown_scheduler_address_fails_the_submit_saying_how_to_fix_it(
    job_manager: Any, user: Any, settings: Any, db: Any
) -> None:
    from tests.conftest import free_port

    settings.JOBTOWER = {**settings.JOBTOWER, "DASK_SCHEDULER": f"tcp://127.0.0.1:{free_port()}"}
    create_dask_scheduler("nowhere", f"127.0.0.1:{free_port()}", timeout=1).save()
    job = job_manager.create_job(name="x", user=user, job_type="DASK", scheduler="nowhere",
                                 function="tests.dask_functions:add", args=[1, 2])
    with pytest.raises(SubmitError, match="cannot reach the Dask scheduler"):
        job.execute()
    assert fresh(job).status_code is Status.ERROR


def test_the_result_is_read_after_the_submitting_process_exited(
    dask_cluster: Any, engine_env: dict[str, str], transactional_db: Any, user: Any
) -> None:
    create_dask_scheduler("lab", dask_cluster.address).save()
    script = textwrap.dedent(f"""
        import django; django.setup()
        from django.contrib.auth import get_user_model
        from tests.conftest import MyFirstApp
        job = MyFirstApp.get_job_manager().create_job(
            name="orphan", user=get_user_model().objects.get(pk={user.pk}), job_type="DASK", scheduler="lab",
            function="tests.dask_functions:long_task", args=[1.5])
        job.execute()
        print(job.pk)
    """)
    out = subprocess.run([sys.executable, "-c", script], env=engine_env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    job_id = int(out.stdout.strip().splitlines()[-1])
    done = ended(job_id, 60)  # the submitter is gone: the published task ran on, and its value waited
    assert done.status_code is Status.COMPLETE, done.status_message
    assert done.result == "done"


def test_a_restarted_scheduler_ends_its_jobs_in_error_saying_so(
    own_dask_cluster: Any, job_manager: Any, user: Any, db: Any
) -> None:
    create_dask_scheduler("lab", own_dask_cluster.address).save()
    job = run(job_manager, user, "long_task", 300)
    status_is(job, Status.RUNNING, 60)
    own_dask_cluster.restart()
    done = ended(job, 60)
    assert done.status_code is Status.ERROR
    assert "no longer knows task" in done.status_message and "restarted" in done.status_message


def test_the_tethys_form_sample_of_the_issue(dask_cluster: Any, job_manager: Any, user: Any, db: Any,
                                             settings: Any) -> None:
    # The issue's sample, with only its imports changed (and the test cluster's ports).
    import dask

    from jobtower import create_dask_scheduler
    from tests.dask_functions import convert_to_dollars, model_run

    request = type("Request", (), {"user": user})()
    settings.JOBTOWER = {**settings.JOBTOWER, "STATUS_REFRESH_INTERVAL": 0}
    host = dask_cluster.address.removeprefix("tcp://")

    scheduler = create_dask_scheduler(name="lab", host=host, timeout=10,
                                      heartbeat_interval=5, dashboard=dask_cluster.dashboard)
    scheduler.save()
    job = job_manager.create_job(name="dask_{id}", user=request.user, job_type="DASK", scheduler=scheduler,
                                 process_results_function=convert_to_dollars)
    client = scheduler.client                  # or job.client
    delayed = dask.delayed(model_run)(30)
    job.execute(delayed)                        # a Delayed or a Future; the job records its key
    seen = wait_for(lambda: job.status in ("Complete", "Error") and job.status, 60, what="the sample job to end")
    assert seen == "Complete", job.status_message
    assert job.result == "$45.00"               # the value, after process_results_function

    assert client is job.client is scheduler.client  # one Client per process, reused
    assert job.key.startswith("model_run-")
    assert job.dashboard_url == f"http://{dask_cluster.dashboard}"
    future = client.submit(model_run, 2)
    second = job_manager.create_job(name="f", user=user, job_type="DASK", scheduler=scheduler)
    second.execute(future)
    assert ended(second, 60).result == 3.0


def test_import_jobtower_never_imports_dask_and_a_missing_dask_names_the_extra() -> None:
    code = textwrap.dedent("""
        import sys
        sys.modules["distributed"] = None  # as if it were not installed
        import jobtower
        assert "dask" not in sys.modules and "jobtower.backends.dask" not in sys.modules
        from jobtower.backends import dask
        try:
            dask.require_dask()
        except ImportError as exc:
            print(exc)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "pip install 'jobtower[dask]'" in out.stdout


def test_the_backend_declares_what_it_can_do(db: Any, job_manager: Any, user: Any) -> None:
    job = job_manager.create_job(name="x", user=user, job_type="DASK", function="tests.dask_functions:add")
    assert manager.supports(job, "stop") and manager.supports(job, "logs")
    assert not manager.supports(job, "pause")


def test_the_dashboard_link_is_only_ever_a_web_link(db: Any) -> None:
    assert create_dask_scheduler("a", "h:1", dashboard="127.0.0.1:8787").dashboard_url == "http://127.0.0.1:8787"
    assert create_dask_scheduler("b", "h:1", dashboard="https://d.example/status").dashboard_url.startswith("https")
    assert create_dask_scheduler("c", "h:1", dashboard="javascript://%0aalert(1)").dashboard_url == ""
    assert create_dask_scheduler("d", "h:1").dashboard_url == ""


def test_the_job_page_links_the_dashboard(lab: Any, job_manager: Any, user: Any, client: Any) -> None:
    job = run(job_manager, user, "add", 1, 1)
    client.force_login(user)
    page = client.get(reverse("jobtower:job-detail", args=[job.pk])).content.decode()
    assert f'href="http://{lab.dashboard}"' in page, page[:2000]
