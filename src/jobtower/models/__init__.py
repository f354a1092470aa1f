"""The record: jobs of every type in one table, and their status history."""

from jobtower.models.job import Job, JobEvent, SpecField, Worker
from jobtower.models.outbox import Delivery
from jobtower.models.scheduler import Scheduler, create_condor_scheduler, get_scheduler
from jobtower.models.types import BasicJob, CondorBase, CondorJob, CondorWorkflow, LocalJob
from jobtower.models.workflow import CondorWorkflowJobNode, WorkflowNode

__all__ = [
    "BasicJob", "CondorBase", "CondorJob", "CondorWorkflow", "CondorWorkflowJobNode", "Delivery", "Job", "JobEvent",
    "LocalJob", "Scheduler",
    "SpecField", "Worker", "WorkflowNode", "create_condor_scheduler", "get_scheduler",
]
