"""The names a Tethys app imports, in one module: change `tethys_sdk.jobs`, `tethys_sdk.gizmos`,
`tethys_sdk.compute` and `tethys_sdk.app_settings` imports to `jobtower.tethys` (see docs/tethys.rst).

Models and gizmos need Django's app registry, so every name is resolved on first use: importing this
module never touches the database or the settings. `CondorWorkflowJobNode`, `DaskJob` and
`create_dask_scheduler` come with jobtower's DAGMan and Dask engines; until those are installed, the
names exist and using them raises an error that says so.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from django.utils.text import slugify

from jobtower.appbase import AppBase
from jobtower.errors import EngineUnavailable

#: Tethys's app base class: jobtower's AppBase (package, name, get_job_manager, workspaces, get_scheduler).
TethysAppBase = AppBase

if TYPE_CHECKING:
    from jobtower.gizmos import JobsTable
    from jobtower.models import BasicJob, CondorJob, CondorWorkflow
    from jobtower.models import Job as TethysJob
    from jobtower.models.scheduler import create_condor_scheduler, get_scheduler

    # Arriving with the DAGMan and Dask engines (see _ARRIVING).
    CondorWorkflowJobNode: Any
    DaskJob: Any
    create_dask_scheduler: Any

__all__ = [
    "BasicJob", "CondorJob", "CondorWorkflow", "CondorWorkflowJobNode", "CustomJobAction", "DaskJob",
    "JobsTable", "TethysJob", "create_condor_scheduler", "create_dask_scheduler", "create_scheduler",
    "TethysAppBase", "get_scheduler", "list_schedulers",
]

_LAZY = {
    "TethysJob": ("jobtower.models", "Job"),
    "BasicJob": ("jobtower.models", "BasicJob"),
    "CondorJob": ("jobtower.models", "CondorJob"),
    "CondorWorkflow": ("jobtower.models", "CondorWorkflow"),
    "create_condor_scheduler": ("jobtower.models", "create_condor_scheduler"),
    "get_scheduler": ("jobtower.models", "get_scheduler"),
}
_JOBS_TABLE: list[type[JobsTable]] = []
#: Names that arrive with an engine of their own: where they will live, and which engine brings them.
_ARRIVING = {
    "CondorWorkflowJobNode": ("jobtower.models", "HTCondor DAGMan workflows"),
    "DaskJob": ("jobtower.models", "the Dask engine"),
    "create_dask_scheduler": ("jobtower.models", "the Dask engine"),
}


class NotYetAvailable:
    """Stands for a name whose engine is not in this jobtower yet: any use says so."""

    def __init__(self, name: str, engine: str) -> None:
        self._name = name
        self._engine = engine

    def _refuse(self) -> EngineUnavailable:
        return EngineUnavailable(
            f"{self._name} arrives with {self._engine}, which this jobtower does not include yet; "
            f"upgrade jobtower to a release with {self._engine}, or keep this part of the app on Tethys"
        )

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise self._refuse()

    def __getattr__(self, attribute: str) -> Any:
        if attribute.startswith("__"):
            raise AttributeError(attribute)
        raise self._refuse()

    def __repr__(self) -> str:
        return f"<{self._name}: arrives with {self._engine}>"


def __getattr__(name: str) -> Any:
    if name == "JobsTable":  # built on first use: jobtower.gizmos imports the models
        if not _JOBS_TABLE:
            _JOBS_TABLE.append(_jobs_table_class())
        return _JOBS_TABLE[0]
    if name in _LAZY:
        module, attribute = _LAZY[name]
        return getattr(importlib.import_module(module), attribute)
    if name in _ARRIVING:
        module, engine = _ARRIVING[name]
        try:  # the real thing, once its engine has landed
            return getattr(importlib.import_module(module), name)
        except AttributeError:
            return NotYetAvailable(name, engine)
    raise AttributeError(f"module 'jobtower.tethys' has no attribute {name!r}; it offers: {', '.join(__all__)}")


def list_schedulers() -> list[Any]:
    """Return every scheduler, HTCondor's and Dask's (Tethys's `list_schedulers`)."""
    from jobtower.models import DaskScheduler, Scheduler

    return [*Scheduler.objects.all(), *DaskScheduler.objects.all()]


def create_scheduler(name: str, host: str, scheduler_type: str = "condor", **kwargs: Any) -> Any:
    """Return a new, unsaved scheduler of `scheduler_type` ('condor' or 'dask'), as Tethys's does."""
    kind = scheduler_type.lower()
    if kind == "condor":
        from jobtower.models import create_condor_scheduler

        return create_condor_scheduler(name, host, **kwargs)
    if kind == "dask":
        return __getattr__("create_dask_scheduler")(name, host, **kwargs)
    raise ValueError(f'"{scheduler_type}" is not a valid scheduler_type: give "condor" or "dask"')


class CustomJobAction:
    """Tethys's custom Jobs Table action, given to `JobsTable(actions=[...])` or `custom_actions=`.

    `callback_or_url` is a module-level function called with the job (on POST, after the CSRF check), or
    a URL name ("app:view", reversed with the job id); `modal_url` is shown as a link. jobtower decides
    when an action is enabled from the job's status: `enabled_in` (a jobtower extra) lists the status
    codes; Tethys's `enabled_callback` cannot be kept, since rows are refreshed from a signed
    configuration, not from Python objects held by the page.
    """

    def __init__(
        self,
        label: str,
        callback_or_url: str | Callable[[Any], Any] | None = None,
        enabled_callback: Callable[..., bool] | None = None,
        confirmation_message: str | None = None,
        show_overlay: bool = False,
        modal_url: str | None = None,
        job_type: Any = None,
        *,
        enabled_in: Iterable[str] | None = None,
    ) -> None:
        from jobtower.web.actions import CustomAction

        if enabled_callback is not None:
            raise TypeError(
                f"CustomJobAction({label!r}): enabled_callback is not supported; give enabled_in=[status "
                "codes], e.g. enabled_in=['COM'] (see docs/tethys.rst)"
            )
        target = callback_or_url if callback_or_url is not None else modal_url
        if target is None:
            raise ValueError(f'CustomJobAction({label!r}) requires either "callback_or_url" or "modal_url"')
        url_name = function = ""
        if isinstance(target, str) and (":" in target or "/" in target or target is modal_url):
            url_name = target
        elif callable(target):
            qualname = getattr(target, "__qualname__", "")
            if "<" in qualname or not getattr(target, "__module__", None):
                raise ValueError(
                    f"CustomJobAction({label!r}): the callback must be a module-level function (not a "
                    "lambda or a nested function), since the table names it by its dotted path"
                )
            function = f"{target.__module__}:{qualname}"
        else:
            raise ValueError(
                f"CustomJobAction({label!r}): callback_or_url={target!r} names a method of the job; "
                "give a module-level function that takes the job instead"
            )
        options: dict[str, Any] = {"confirm": confirmation_message or ""}
        if enabled_in is not None:
            options["enabled_in"] = tuple(enabled_in)
        self.label = label
        self.show_overlay = show_overlay  # the page reloads after a POST action: there is no overlay to show
        self.action = CustomAction(slugify(label) or "custom", label, url_name=url_name, function=function,
                                   **options)


def _jobs_table_class() -> type[JobsTable]:
    from jobtower.gizmos import JobsTable as Base

    class JobsTable(Base):
        """The Tethys 4.x JobsTable options, with their Tethys meaning, on jobtower's Jobs Table."""

        def __init__(
            self,
            jobs: Any,
            column_fields: Sequence[str | Sequence[str]] = ("id", "name", "description", "creation_time"),
            show_status: bool = True,
            show_actions: bool = True,
            monitor_url: str = "",
            results_url: str = "",
            hover: bool = False,
            striped: bool = False,
            bordered: bool = False,
            condensed: bool = False,
            attributes: dict[str, str] | None = None,
            classes: str = "",
            refresh_interval: int = 5000,
            delay_loading_status: bool = True,
            show_detailed_status: bool = False,
            actions: Sequence[Any] | None = None,
            enable_data_table: bool = False,
            data_table_options: dict[str, Any] | None = None,
            sort: bool | Callable[[Any], Any] = True,
            reverse_sort: bool = False,
            **extra: Any,
        ) -> None:
            names, custom = _tethys_actions(actions, monitor_url, results_url)
            custom += list(extra.pop("custom_actions", ()))
            options = dict(data_table_options or {})
            if enable_data_table and "pageLength" in options:
                extra.setdefault("page_size", int(options["pageLength"]))
            if enable_data_table and options.get("ordering") is False:
                sort = False
            if callable(sort):
                # Tethys sorts a Python list by the key; jobtower sorts in the database by sort_field.
                sort = True
            # Tethys's default order: oldest creation first; jobtower's ids grow with creation time.
            extra.setdefault("sort_field", "creation_time")
            self.delay_loading_status = delay_loading_status  # statuses come with the page, then refresh live
            self.enable_data_table = enable_data_table  # paging, sorting and search are the database's
            self.data_table_options = options
            super().__init__(
                jobs=jobs, column_fields=column_fields, show_status=show_status, show_actions=show_actions,
                actions=names, custom_actions=custom, monitor_url=monitor_url, results_url=results_url,
                hover=hover, striped=striped, bordered=bordered, condensed=condensed,
                attributes=attributes or {}, classes=classes, refresh_interval=refresh_interval,
                show_detailed_status=show_detailed_status, sort=bool(sort), reverse_sort=reverse_sort, **extra,
            )

    JobsTable.__module__ = __name__
    return JobsTable


#: Tethys's default actions (its '|' section breaks left out: jobtower shows buttons, not a menu).
TETHYS_DEFAULT_ACTIONS = ("run", "resubmit", "logs", "monitor", "results", "terminate", "delete")


def _tethys_actions(actions: Sequence[Any] | None, monitor_url: str, results_url: str) -> tuple[list[str], list[Any]]:
    """Return built-in action names and custom actions for Tethys's `actions` list."""
    names: list[str] = []
    custom: list[Any] = []
    for entry in actions or TETHYS_DEFAULT_ACTIONS:
        if entry == "|":
            continue  # a section break in Tethys's dropdown menu; jobtower's row of buttons keeps the order
        if isinstance(entry, CustomJobAction):
            custom.append(entry.action)
        elif isinstance(entry, dict):
            custom.append(CustomJobAction(**entry).action)
        elif isinstance(entry, (tuple, list)):
            custom.append(CustomJobAction(*entry).action)
        else:
            names.append(str(entry))
    # As in Tethys: monitor and results are added when their URL is given, and dropped when it is not.
    for name, url in (("monitor", monitor_url), ("results", results_url)):
        if url and name not in names:
            names.append(name)
        elif not url and name in names:
            names.remove(name)
    return names, custom
