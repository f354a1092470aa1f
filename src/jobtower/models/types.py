"""The built-in job types: thin proxies of Job that add their own settings and engine."""

from __future__ import annotations

from typing import Any

from jobtower.models.job import Job, SpecField
from jobtower.registry import register_job_type


def _paths(value: Any) -> list[str]:
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise TypeError(
            "remote_input_files must be a list or tuple of file paths, "
            f"not {type(value).__name__}"
        )
    return [str(item) for item in value]


def _scheduler_name(value: Any) -> str:
    # Tethys passes a Scheduler record; we store its name (the record arrives with the HTCondor engine).
    return str(getattr(value, "name", value))


@register_job_type("BASIC")
class BasicJob(Job):
    """A job with no engine: the app sets its status itself."""

    class Meta:
        proxy = True
        app_label = "jobtower"


class CondorBase(Job):
    """Settings shared by the HTCondor job types."""

    backend_path = "jobtower.backends.condor:CondorBackend"
    scheduler = SpecField(None, coerce=_scheduler_name)
    remote_input_files = SpecField(list, coerce=_paths)

    class Meta:
        proxy = True
        app_label = "jobtower"


@register_job_type("CONDOR", aliases=("CONDORJOB",))
class CondorJob(CondorBase):
    """One HTCondor job described by a template plus submit-description attributes."""

    attributes = SpecField(dict, coerce=dict)
    condorpy_template_name = SpecField(None, coerce=str)

    class Meta:
        proxy = True
        app_label = "jobtower"

    def set_attribute(self, name: str, value: Any) -> None:
        """Set one submit-description attribute (e.g. "executable")."""
        attributes = dict(self.attributes)
        attributes[name] = value
        self.attributes = attributes

    def get_attribute(self, name: str) -> Any:
        """Return one submit-description attribute, or None when it is not set."""
        return self.attributes.get(name)


@register_job_type("CONDORWORKFLOW")
class CondorWorkflow(CondorBase):
    """An HTCondor DAGMan workflow: its settings (nodes arrive with the DAGMan engine)."""

    max_jobs = SpecField(dict, coerce=dict)
    config = SpecField("", coerce=str)

    class Meta:
        proxy = True
        app_label = "jobtower"
