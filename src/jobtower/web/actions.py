"""The Jobs Table's actions, as data: which statuses enable each one and what it does.

Whether the job's engine can do an action (pause on an engine that cannot hold, say) is asked of
the manager (`manager.supports`), the same place the REST API, the CLI and the manager itself ask.

POST actions change a job through the manager; link actions lead to a page. Nothing here is looked up
by a name taken from a URL except through this table (or a custom action the table was configured
with, whose configuration the server signed).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from jobtower import manager, statuses
from jobtower.backends import Capability
from jobtower.models import Job
from jobtower.statuses import Status

ALL = frozenset(Status)


@dataclass(frozen=True)
class TableAction:
    """One button of a Jobs Table row."""

    name: str
    label: str
    enabled_in: frozenset[Status]
    #: What a POST does (None for a link).
    perform: Callable[[Job], Any] | None = None
    #: A question the browser asks first ("" = none); {name} is the job's name.
    confirm: str = ""
    #: CSS modifier: "danger" for destructive actions.
    style: str = ""
    #: The manager's name for what it does ("stop" for the table's "terminate"), which decides the
    #: engine capability it needs; "" for actions that need none.
    verb: str = ""

    @property
    def is_link(self) -> bool:
        """Return True when the action is a link to a page, not a POST."""
        return self.perform is None

    def enabled_for(self, job: Job, capabilities: frozenset[Capability] | None = None) -> bool:
        """Return True when the job's status allows the action and its engine can do it."""
        return not self.refusal(job, capabilities)

    def refusal(self, job: Job, capabilities: frozenset[Capability] | None = None) -> str:
        """Return why the action is not possible for the job now ("" when it is)."""
        if self.verb and not manager.supports(job, self.verb, capabilities):
            return f"{self.label} is not possible for job {job.pk}: its engine does not support it"
        if job.status_code not in self.enabled_in:
            return f"{self.label} is not possible while job {job.pk} is {job.status_code.display}"
        return ""


def _delete(job: Job) -> None:
    job.delete()


BUILTIN: dict[str, TableAction] = {
    action.name: action
    for action in (
        TableAction("run", "Run", frozenset({Status.PENDING}), manager.execute, verb="execute"),
        TableAction(
            "resubmit", "Resubmit", statuses.TERMINAL, manager.resubmit,
            confirm="Run job {name} again as a new attempt?", verb="resubmit",
        ),
        TableAction(
            "pause", "Pause", statuses.sources_of(Status.PAUSED) - {Status.PENDING}, manager.pause, verb="pause",
        ),
        TableAction("resume", "Resume", frozenset({Status.PAUSED}), manager.resume, verb="resume"),
        TableAction(
            "terminate", "Stop", statuses.ACTIVE, manager.stop,
            confirm="Stop job {name}? It cannot be continued, only resubmitted.", style="danger", verb="stop",
        ),
        TableAction(
            "delete", "Delete", ALL, _delete,
            confirm="Delete job {name} and its files? This cannot be undone.", style="danger",
        ),
        TableAction("logs", "Logs", ALL - {Status.PENDING}, verb="logs"),
        TableAction("monitor", "Monitor", statuses.ACTIVE),
        TableAction("results", "Results", frozenset({Status.COMPLETE, Status.VARIOUS_COMPLETE})),
    )
}

#: The actions a table shows when it is not told (Tethys's defaults, plus pause/resume).
DEFAULT_ACTIONS = ("run", "resubmit", "pause", "resume", "logs", "terminate", "delete")


@dataclass(frozen=True)
class CustomAction:
    """An app's own action: a URL name (a link reversed with job_id) or a function run on POST.

    The function is given by dotted path ("myapp.actions:archive") and called as function(job).
    """

    name: str
    label: str
    url_name: str = ""
    function: str = ""
    enabled_in: tuple[str, ...] = tuple(s.value for s in Status)
    confirm: str = ""

    def __post_init__(self) -> None:
        if bool(self.url_name) == bool(self.function):
            raise ValueError(f"custom action {self.name!r} needs exactly one of url_name= or function=")
        if self.name in BUILTIN:
            raise ValueError(f"custom action {self.name!r} would hide the built-in action of that name")
        if self.function:
            from jobtower.dotted import function_path

            function_path(self.function)

    def as_action(self) -> TableAction:
        """Return the TableAction this custom action behaves as."""
        perform = None
        if self.function:
            from jobtower.dotted import resolve_function

            perform = resolve_function(self.function)
        return TableAction(
            self.name, self.label, frozenset(Status(s) for s in self.enabled_in), perform, self.confirm
        )

    def to_config(self) -> dict[str, Any]:
        """Return the action as plain data (signed into the page)."""
        return {"name": self.name, "label": self.label, "url_name": self.url_name, "function": self.function,
                "enabled_in": list(self.enabled_in), "confirm": self.confirm}
