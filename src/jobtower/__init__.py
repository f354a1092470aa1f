"""jobtower: the Jobs API for scientific web apps (Tethys-compatible, on Django)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from jobtower.appbase import AppBase, Workspace
from jobtower.errors import (
    AlreadyExecuted,
    EngineUnavailable,
    InvalidTransition,
    JobError,
    StopError,
    SubmitError,
)
from jobtower.progress import progress
from jobtower.registry import job_types, register_job_type
from jobtower.statuses import Status

if TYPE_CHECKING:
    from jobtower.gizmos import JobsTable
    from jobtower.manager import JobManager
    from jobtower.models import BasicJob, CondorJob, CondorWorkflow, Job, JobEvent, LocalJob, Scheduler
    from jobtower.models.dask import DaskJob, DaskScheduler, create_dask_scheduler, get_dask_scheduler
    from jobtower.models.scheduler import create_condor_scheduler, get_scheduler
    from jobtower.models.workflow import CondorWorkflowJobNode

__version__ = "0.1.0"

__all__ = [
    "AlreadyExecuted",
    "AppBase",
    "BasicJob",
    "CondorJob",
    "CondorWorkflow",
    "CondorWorkflowJobNode",
    "DaskJob",
    "DaskScheduler",
    "EngineUnavailable",
    "InvalidTransition",
    "Job",
    "JobError",
    "JobEvent",
    "JobManager",
    "JobsTable",
    "LocalJob",
    "Scheduler",
    "Status",
    "StopError",
    "SubmitError",
    "Workspace",
    "create_condor_scheduler",
    "create_dask_scheduler",
    "get_dask_scheduler",
    "get_scheduler",
    "job_types",
    "progress",
    "register_job_type",
]

# Models need Django's app registry: they are imported on first use, never by `import jobtower`.
_LAZY = {
    "JobManager": "jobtower.manager",
    "Job": "jobtower.models",
    "JobEvent": "jobtower.models",
    "BasicJob": "jobtower.models",
    "CondorJob": "jobtower.models",
    "CondorWorkflow": "jobtower.models",
    "CondorWorkflowJobNode": "jobtower.models",
    "LocalJob": "jobtower.models",
    "Scheduler": "jobtower.models",
    "create_condor_scheduler": "jobtower.models",
    "get_scheduler": "jobtower.models",
    "DaskJob": "jobtower.models",
    "DaskScheduler": "jobtower.models",
    "create_dask_scheduler": "jobtower.models",
    "get_dask_scheduler": "jobtower.models",
    "JobsTable": "jobtower.gizmos",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'jobtower' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
