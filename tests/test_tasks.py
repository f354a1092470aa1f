"""Django's Tasks framework on jobtower: @task functions enqueue as LOCAL jobs run by a real worker."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from jobtower.gizmos import JobsTable
from jobtower.manager import JobManager
from jobtower.models import Job
from jobtower.statuses import Status
from jobtower.tasks import RUNNER, InvalidTaskError, TaskResultDoesNotExist, TaskResultStatus
from tests import task_functions
from tests.conftest import ended
from tests.test_api import bearer
from tests.test_jobs_table import ids_in, render


def test_task_runs_as_a_local_job_and_its_result_reads_through_django(user, local_worker, client) -> None:
    result = task_functions.add.enqueue(2, 3, scale=10)
    assert result.status == TaskResultStatus.READY and result.backend == "default"
    job = Job.objects.get(pk=int(result.id))
    assert job.job_type == "LOCAL" and job.user == user and job.label == "tasks" and job.name == "add"
    assert job.spec["function"] == RUNNER and job.args == ["tests.task_functions.add", [2, 3], {"scale": 10}]
    with pytest.raises(ValueError, match="not finished"):
        _ = result.return_value

    done = ended(job)
    assert done.status_code is Status.COMPLETE, done.status_message
    result.refresh()
    assert result.status == TaskResultStatus.SUCCESSFUL and result.return_value == {"sum": 50}
    again = task_functions.add.get_result(result.id)
    assert again.return_value == {"sum": 50} and again.args == [2, 3] and again.kwargs == {"scale": 10}
    assert again.finished_at is not None and again.errors == []

    response = client.get(f"/api/jobs/{job.pk}/", **bearer(user))  # the same job in the REST API
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "Complete"
    manager = JobManager(SimpleNamespace(package="tasks"))  # and in the host's Jobs Table
    assert ids_in(render(JobsTable(jobs=manager.list_jobs(user)), user)) == [job.pk]


def test_failing_task_gives_its_exception_and_traceback(user, local_worker) -> None:
    result = task_functions.diverge.enqueue("too hot")
    ended(int(result.id))
    result.refresh()
    assert result.status == TaskResultStatus.FAILED
    with pytest.raises(ValueError, match="failed"):
        _ = result.return_value
    [error] = result.errors
    assert error.exception_class is ArithmeticError
    assert "model diverged: too hot" in error.traceback and "Traceback" in error.traceback


def test_non_json_argument_is_refused_and_nothing_is_left(user) -> None:
    with pytest.raises(InvalidTaskError, match="JSON.*an id, not a model instance"):
        task_functions.add.enqueue({1, 2}, 3)
    with pytest.raises(InvalidTaskError, match="keyword arguments"):
        task_functions.add.enqueue(1, 2, scale=user)
    assert not Job.objects.exists()


def test_unknown_ids_and_a_missing_owner_are_clear_errors(db, settings) -> None:
    with pytest.raises(TaskResultDoesNotExist, match="job ids"):
        task_functions.add.get_result("abc")
    with pytest.raises(TaskResultDoesNotExist, match="no task job 999"):
        task_functions.add.get_result("999")
    with pytest.raises(InvalidTaskError, match="no such user"):
        task_functions.add.enqueue(1, 2)  # alice does not exist in this test
    assert not Job.objects.exists()
