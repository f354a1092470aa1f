"""DASK jobs and Dask schedulers: Python work on a dask.distributed cluster.

A DASK job runs either a Delayed or a Future an app built itself (Tethys's form, `job.execute(delayed)`)
or, with no Dask code at all, a function named by its dotted path (`function="pkg.models:run"`, with
`args` and `kwargs`). Either way the job records the task's key; the task is kept alive on the
cluster (a published dataset), so it runs on, and its result waits, after the process that submitted
it exits. `dask[distributed]` is an optional extra: `pip install jobtower[dask]`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from django.db import models

from jobtower.models.job import Job, SpecField
from jobtower.registry import register_job_type

if TYPE_CHECKING:
    from jobtower.backends.dask import Client


class DaskScheduler(models.Model):
    """A named dask.distributed scheduler: where DASK jobs run."""

    name = models.CharField(max_length=255, unique=True)
    host = models.CharField(
        max_length=1024, help_text="the scheduler's address: tcp://host:port or host:port (8786 is Dask's default)"
    )
    timeout = models.PositiveIntegerField(
        default=0, help_text="seconds to wait when connecting to the scheduler (0: 10 seconds)"
    )
    heartbeat_interval = models.PositiveIntegerField(
        default=0, help_text="seconds between the client's heartbeats to the scheduler (0: Dask's default)"
    )
    dashboard = models.CharField(
        max_length=1024, blank=True, default="", help_text="the dashboard's address, linked from the job page"
    )
    description = models.TextField(blank=True, default="")

    class Meta:
        app_label = "jobtower"
        ordering = ["name"]
        verbose_name = "Dask scheduler"

    @property
    def address(self) -> str:
        """Return the scheduler's address as Dask writes it (tcp://host:port)."""
        from jobtower.backends.dask import normalize_address

        return normalize_address(self.host)

    @property
    def dashboard_url(self) -> str:
        """Return the dashboard as a link (http:// added when no scheme is given), or ""."""
        url = self.dashboard if "://" in self.dashboard else f"http://{self.dashboard}"
        # Only web links: the page shows it as a link, and a javascript: URL would run in it.
        return url if self.dashboard and url.split("://", 1)[0].lower() in ("http", "https") else ""

    @property
    def client(self) -> Client:
        """Return this process's Client of the scheduler (made once per process and address, then reused)."""
        from jobtower.backends.dask import client_for

        return client_for(self.address, timeout=self.timeout, heartbeat_interval=self.heartbeat_interval)

    def __str__(self) -> str:
        return f"{self.name} ({self.host})"


def create_dask_scheduler(
    name: str,
    host: str,
    timeout: int | None = None,
    heartbeat_interval: int | None = None,
    dashboard: str | None = None,
    *,
    description: str = "",
) -> DaskScheduler:
    """Return a new, unsaved Dask scheduler record (as Tethys's does); save() it to use it.

    `host` is the scheduler's address ("127.0.0.1:8786" or "tcp://..."); `timeout` and
    `heartbeat_interval` are seconds (0 or None: Dask's defaults); `dashboard` is shown on the job page.
    """
    if not name or not host:
        raise ValueError("a Dask scheduler needs a name and the address of its scheduler, e.g. host='127.0.0.1:8786'")
    for what, value in (("timeout", timeout), ("heartbeat_interval", heartbeat_interval)):
        if value is not None and (isinstance(value, bool) or int(value) != value or value < 0):
            raise ValueError(f"{what} must be a whole number of seconds (0 for Dask's default), got {value!r}")
    return DaskScheduler(
        name=name, host=host.strip(), timeout=int(timeout or 0), heartbeat_interval=int(heartbeat_interval or 0),
        dashboard=(dashboard or "").strip(), description=description,
    )


def get_dask_scheduler(name: str) -> DaskScheduler | None:
    """Return the Dask scheduler called `name`, or None when there is none."""
    return DaskScheduler.objects.filter(name=name).first()


def _scheduler_name(value: Any) -> str:
    # Tethys passes the record; the job stores its name.
    return str(getattr(value, "name", value))


def _function(value: Any) -> str:
    from jobtower.dotted import function_path

    return function_path(value)


@register_job_type("DASK")
class DaskJob(Job):
    """A task on a dask.distributed cluster: a Delayed or Future given to execute(), or a named function."""

    backend_path = "jobtower.backends.dask:DaskBackend"
    #: The name of a DaskScheduler record; None uses JOBTOWER["DASK_SCHEDULER"].
    scheduler = SpecField(None, coerce=_scheduler_name)
    #: "package.module:function" run on a worker with `args` and `kwargs` (no Dask code needed).
    function = SpecField(None, coerce=_function)
    args = SpecField(list, coerce=list)
    kwargs = SpecField(dict, coerce=dict)

    class Meta:
        proxy = True
        app_label = "jobtower"

    # -- where it runs ---------------------------------------------------------------------------

    def get_scheduler(self) -> DaskScheduler | None:
        """Return the job's DaskScheduler record, or None when it uses JOBTOWER["DASK_SCHEDULER"]."""
        from jobtower.backends.dask import scheduler_for

        return scheduler_for(self.scheduler)

    @property
    def client(self) -> Client:
        """Return this process's Client of the job's scheduler (made once per process, then reused)."""
        from jobtower.backends.dask import client_of

        return client_of(self.scheduler)

    @property
    def key(self) -> Any:
        """Return the key of the task of the current attempt on the cluster (None before it is submitted)."""
        from jobtower.backends.dask import stored_key

        return stored_key(self.engine_data)

    @property
    def dashboard_url(self) -> str:
        """Return the link to the dashboard of the job's scheduler, or ""."""
        try:
            record = self.get_scheduler()
        except ValueError:
            return ""
        return record.dashboard_url if record is not None else ""

    # -- running -----------------------------------------------------------------------------------

    def clean_spec(self) -> None:
        """Check that the job has something to run and a scheduler to run it on."""
        task = self.__dict__.get("_dask_task")
        if task is None and not self.function:
            raise ValueError(
                f"DASK job {self.pk or ''} has nothing to run: call job.execute(delayed_or_future), or create it "
                "with function='package.module:function' (and args=[...], kwargs={...})"
            )
        if task is not None and self.function:
            raise ValueError(
                f"DASK job {self.pk or ''} was created with function={self.function!r}: call execute() "
                "without a Delayed or Future, or create the job without `function`"
            )
        if task is not None:
            from jobtower.backends.dask import check_task

            check_task(task)
        self.get_scheduler()

    def execute(self, future_or_delayed: Any = None, *args: Any, **kwargs: Any) -> None:
        """Submit the job: a Delayed or Future (Tethys's form), or, with none, the job's `function`."""
        self.__dict__["_dask_task"] = future_or_delayed
        try:
            super().execute()
        finally:
            self.__dict__.pop("_dask_task", None)
        self._announce_callback()

    def resubmit(self, future_or_delayed: Any = None) -> None:
        """Run the job again: its `function`, or the Delayed or Future given (a new one: Dask forgot the old)."""
        self.__dict__["_dask_task"] = future_or_delayed
        try:
            self.clean_spec()  # refused before anything moves
            super().resubmit()
        finally:
            self.__dict__.pop("_dask_task", None)
        self._announce_callback()

    def _announce_callback(self) -> None:
        """Tell the scheduler the job's signed callback path, for jobtower.dask_plugin (push; polling stays).

        One set_metadata call; a scheduler without the plugin keeps it unused until the task is
        forgotten. A failure only costs the push: it is logged, and the monitor's poll finds the end.
        """
        from django.urls import reverse

        from jobtower import manager
        from jobtower.backends.dask import announce_callback

        data = self.engine_data or {}
        if data.get("key") is None or self.pk is None:
            return
        path = f"{reverse('jobtower:update-job-status', args=[self.pk])}?token={manager.callback_token(self.pk)}"
        announce_callback(data, path)

    # -- results -----------------------------------------------------------------------------------

    @property
    def process_results_function(self) -> Callable[[Job], Any] | None:
        """Return the results step: Tethys's process_results_function(result), whose return is the result."""
        path = self._process_results_function
        if not path:
            return None
        from jobtower.dotted import resolve_function

        function = resolve_function(path)

        def process(job: Job) -> None:
            from jobtower import manager

            processed = function(job.result)
            if processed is not None:
                manager.store_result(job, processed)

        return process

    @process_results_function.setter
    def process_results_function(self, value: Callable[..., Any] | str | None) -> None:
        from jobtower.dotted import function_path

        self._process_results_function = function_path(value) if value else ""
