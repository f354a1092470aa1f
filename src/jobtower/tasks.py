"""A backend for Django's Tasks framework: a host project's ``@task`` functions run as jobtower jobs.

Django 6 has the framework as ``django.tasks``; on Django 5.2 the ``django-tasks`` backport provides it
(``pip install 'jobtower[tasks]'``). Configure it in the host's settings::

    TASKS = {"default": {"BACKEND": "jobtower.tasks.JobtowerBackend",
                         "OPTIONS": {"USER": "tasks"}}}

Each enqueued task becomes a LOCAL function job owned by the user named in OPTIONS["USER"]: it shows in
the Jobs Table and the REST API like any job, a worker runs it, and ``get_result(result_id)`` reads the
job back (the result id is the job id). Arguments, keyword arguments and the return value must be JSON.
"""

from __future__ import annotations

import json
import os
import re
import sys
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jobtower.jsoncheck import NotJSON, check_json
from jobtower.statuses import Status

if TYPE_CHECKING:  # mypy checks against the backport, which Django 6's django.tasks copies
    from django_tasks import TaskResult, TaskResultStatus
    from django_tasks.backends.base import BaseTaskBackend
    from django_tasks.base import Task, TaskError
    from django_tasks.exceptions import InvalidTaskError, TaskResultDoesNotExist
else:
    try:  # Django 6
        from django.tasks import TaskResult, TaskResultStatus
        from django.tasks.backends.base import BaseTaskBackend
        from django.tasks.base import Task, TaskError
        from django.tasks.exceptions import InvalidTask as InvalidTaskError
        from django.tasks.exceptions import TaskResultDoesNotExist
    except ImportError:  # Django 5.2 with the backport
        try:
            from django_tasks import TaskResult, TaskResultStatus
            from django_tasks.backends.base import BaseTaskBackend
            from django_tasks.base import Task, TaskError
            from django_tasks.exceptions import InvalidTaskError, TaskResultDoesNotExist
        except ImportError as exc:
            raise ImportError(
                "jobtower.tasks needs Django 6's django.tasks or, on Django 5.2, the django-tasks backport: "
                "pip install 'jobtower[tasks]'"
            ) from exc

#: The function every task job runs: it imports the task and calls its function.
RUNNER = "jobtower.tasks:run_task"
#: What the runner writes (in the attempt folder) when a task raises: the exception's class and traceback.
ERROR_FILE = "task_error.json"
_ERROR_FILE_LIMIT = 256 * 1024
_DOTTED = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+$")

_STATUS = {
    Status.PENDING: TaskResultStatus.READY,
    Status.SUBMITTED: TaskResultStatus.READY,
    Status.COMPLETE: TaskResultStatus.SUCCESSFUL,
    Status.ERROR: TaskResultStatus.FAILED,
    Status.ABORTED: TaskResultStatus.FAILED,
    Status.VARIOUS_COMPLETE: TaskResultStatus.FAILED,
}  # everything else (Running, Paused, Results-Ready, ...) is RUNNING


class TaskJobError(Exception):
    """The class a TaskError names when the job ended without an exception of the task's own to report
    (stopped by a user, timed out, lost), or when the task's exception class is not importable here."""


class _TasksApp:
    """The app a task job belongs to: its `package` is the jobs' label."""

    def __init__(self, label: str) -> None:
        self.package = label


class JobtowerBackend(BaseTaskBackend):
    """Run Django tasks as jobtower LOCAL function jobs.

    OPTIONS: ``USER`` (required) the username that owns the jobs; ``LABEL`` the jobs' app label
    (default ``"tasks"``); ``JOB_TYPE`` (default ``"LOCAL"``); ``TIMEOUT`` seconds (default none);
    ``ENVIRONMENT`` a dict of extra environment variables for the task's process (stored with the job:
    put no secrets there). ``DJANGO_SETTINGS_MODULE`` is set to the enqueuing process's settings module.
    """

    supports_defer = False
    supports_async_task = False
    supports_get_result = True
    supports_priority = False

    def __init__(self, alias: str, params: dict[str, Any]) -> None:
        super().__init__(alias, params)
        self.label = str(self.options.get("LABEL", "tasks"))
        self.job_type = str(self.options.get("JOB_TYPE", "LOCAL"))

    # -- enqueue ---------------------------------------------------------------------------------------
    def validate_task(self, task: Task[Any, Any]) -> None:
        super().validate_task(task)
        if task.takes_context:
            raise InvalidTaskError(
                f"task {task.module_path} takes a context, which the jobtower backend does not give yet: "
                "drop takes_context=True (the job id is in the JOBTOWER_JOB_ID environment variable)"
            )

    def _user(self) -> Any:
        from django.contrib.auth import get_user_model

        username = self.options.get("USER")
        if not username:
            raise InvalidTaskError(
                f"the jobtower task backend {self.alias!r} needs OPTIONS['USER']: the username that owns "
                f"its jobs, e.g. TASKS = {{{self.alias!r}: {{'BACKEND': 'jobtower.tasks.JobtowerBackend', "
                "'OPTIONS': {'USER': 'tasks'}}}"
            )
        model = get_user_model()
        try:
            return model._default_manager.get_by_natural_key(username)
        except model.DoesNotExist:
            raise InvalidTaskError(
                f"the jobtower task backend {self.alias!r}: OPTIONS['USER'] is {username!r}, and there is no "
                f"such user; create it (manage.py createsuperuser, or a plain user) or name an existing one"
            ) from None

    def enqueue(self, task: Task[Any, Any], args: Any, kwargs: Any) -> TaskResult[Any]:
        from django.conf import settings

        from jobtower.manager import JobManager

        self.validate_task(task)
        args, kwargs = list(args), dict(kwargs)
        try:
            check_json(args, f"the arguments of task {task.module_path}")
            check_json(kwargs, f"the keyword arguments of task {task.module_path}")
        except NotJSON as exc:
            raise InvalidTaskError(
                f"{exc}; a jobtower task runs in another process and gets its arguments as JSON: pass "
                "numbers, strings, lists and dicts (an id, not a model instance)"
            ) from None
        environment = {str(k): str(v) for k, v in dict(self.options.get("ENVIRONMENT", {})).items()}
        module = getattr(settings, "SETTINGS_MODULE", None) or os.environ.get("DJANGO_SETTINGS_MODULE")
        if module:
            environment.setdefault("DJANGO_SETTINGS_MODULE", module)
        options: dict[str, Any] = {
            "function": RUNNER,
            "args": [task.module_path, args, kwargs],
            "environment": environment,
            "extended_properties": {
                "django_task": {"task": task.module_path, "backend": self.alias, "queue": task.queue_name}
            },
        }
        if self.options.get("TIMEOUT"):
            options["timeout"] = int(self.options["TIMEOUT"])
        job = JobManager(_TasksApp(self.label)).create_job(
            name=task.name, user=self._user(), job_type=self.job_type, **options
        )
        job.execute()
        return self._result(job, task)

    # -- results ---------------------------------------------------------------------------------------
    def get_result(self, result_id: str) -> TaskResult[Any]:
        from jobtower.models import Job

        try:
            pk = int(result_id)
        except (TypeError, ValueError):
            raise TaskResultDoesNotExist(
                f"{result_id!r} is not a jobtower task result id: the ids are job ids (integers)"
            ) from None
        job = Job.objects.filter(pk=pk, label=self.label).first()  # from_db gives the job its own class
        if job is None or (job.spec or {}).get("function") != RUNNER:
            raise TaskResultDoesNotExist(f"there is no task job {pk} with label {self.label!r}")
        path = str(((job.spec or {}).get("args") or [""])[0])
        from django.utils.module_loading import import_string

        try:
            task = import_string(path)
        except ImportError as exc:
            raise TaskResultDoesNotExist(f"job {pk} ran task {path!r}, which cannot be imported here: {exc}") from exc
        if not isinstance(task, Task):
            raise TaskResultDoesNotExist(f"job {pk} ran {path!r}, which is not a task (no @task decorator)")
        return self._result(job, task)

    def _result(self, job: Any, task: Task[Any, Any]) -> TaskResult[Any]:
        status = _STATUS.get(Status(job.status_code), TaskResultStatus.RUNNING)
        _, args, kwargs = (list(job.args) + [[], {}])[:3] if job.args else (None, [], {})
        result: TaskResult[Any] = TaskResult(
            task=task.using(backend=self.alias) if task.backend != self.alias else task,
            id=str(job.pk),
            status=status,
            enqueued_at=job.execute_time or job.creation_time,
            started_at=job.start_time,
            finished_at=job.completion_time if status in (TaskResultStatus.SUCCESSFUL, TaskResultStatus.FAILED)
            else None,
            last_attempted_at=job.start_time,
            args=list(args),
            kwargs=dict(kwargs),
            backend=self.alias,
            errors=self._errors(job) if status == TaskResultStatus.FAILED else [],
            worker_ids=[],
        )
        if status == TaskResultStatus.SUCCESSFUL:
            object.__setattr__(result, "_return_value", job.result)
        return result

    def _errors(self, job: Any) -> list[TaskError]:
        """Return the task's exception as the runner recorded it, else the job's status message."""
        fallback = TaskError(
            exception_class_path=f"{__name__}.{TaskJobError.__name__}",
            traceback=job.status_message or f"job {job.pk} ended {Status(job.status_code).display}",
        )
        try:
            path = Path(job.workspace) / f"job_{job.pk}" / "attempts" / str(job.attempt) / ERROR_FILE
            with path.open("rb") as handle:  # written by the job: untrusted, read bounded, checked
                data = json.loads(handle.read(_ERROR_FILE_LIMIT))
            class_path, text = data["exception_class_path"], data["traceback"]
            if not isinstance(class_path, str) or not isinstance(text, str):
                return [fallback]
        except (OSError, ValueError, KeyError, TypeError):
            return [fallback]
        module = class_path.rpartition(".")[0]
        if not _DOTTED.match(class_path) or module not in sys.modules:
            # Reading a result imports nothing the job named: keep the name in the text instead.
            text = f"{class_path} (not imported in this process)\n{text}"
            class_path = fallback.exception_class_path
        return [TaskError(exception_class_path=class_path, traceback=text)]


def run_task(path: str, args: list[Any], kwargs: dict[str, Any]) -> Any:
    """Run the task `path` in a task job's process: set Django up, call the task's function.

    When the function raises, write its exception class and traceback to ERROR_FILE in the attempt
    folder (the worker's runner then records the job as Error with the traceback's end).
    """
    if os.environ.get("DJANGO_SETTINGS_MODULE"):
        import django
        from django.apps import apps

        if not apps.ready:
            django.setup()
    from django.utils.module_loading import import_string

    task = import_string(path)
    function = task.func if isinstance(task, Task) else task
    try:
        return function(*args, **kwargs)
    except Exception as exc:
        progress_file = os.environ.get("JOBTOWER_PROGRESS_FILE")
        if progress_file:
            record = {
                "exception_class_path": f"{type(exc).__module__}.{type(exc).__qualname__}",
                "traceback": "".join(traceback.format_exception(exc)),
            }
            target = Path(progress_file).parent / ERROR_FILE
            tmp = target.with_suffix(".tmp")
            tmp.write_text(json.dumps(record))
            tmp.replace(target)
        raise
