"""The record: jobs of every type in one table, and their status history."""

from jobtower.models.dask import DaskJob, DaskScheduler, create_dask_scheduler, get_dask_scheduler
from jobtower.models.job import Job, JobEvent, SpecField, Worker
from jobtower.models.lease import Lease
from jobtower.models.outbox import Delivery
from jobtower.models.scheduler import Scheduler, create_condor_scheduler, get_scheduler
from jobtower.models.slurm import SlurmCluster, SlurmJob
from jobtower.models.types import BasicJob, CondorBase, CondorJob, CondorWorkflow, LocalJob
from jobtower.models.workflow import CondorWorkflowJobNode, WorkflowNode

__all__ = [
    "BasicJob", "CondorBase", "CondorJob", "CondorWorkflow", "CondorWorkflowJobNode", "DaskJob", "DaskScheduler",
    "Delivery", "Job", "JobEvent", "Lease", "LocalJob", "Scheduler", "SlurmCluster", "SlurmJob", "SpecField", "Worker",
    "WorkflowNode", "create_condor_scheduler", "create_dask_scheduler", "get_dask_scheduler", "get_scheduler",
]
