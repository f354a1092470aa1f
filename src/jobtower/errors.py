"""The exceptions jobtower raises; each message says what was wrong and how to fix it."""

from __future__ import annotations


class JobError(Exception):
    """Base class of jobtower's errors about a job."""


class InvalidTransition(JobError, ValueError):
    """A status move the transition table forbids, or one that lost a race to another writer."""

    def __init__(self, message: str, *, job_id: int | None = None, current: str = "", new: str = ""):
        super().__init__(message)
        self.job_id = job_id
        self.current = current
        self.new = new


class AlreadyExecuted(InvalidTransition):
    """execute() on a job that is no longer Pending: it was executed once already."""


class EngineUnavailable(JobError):
    """The job's engine cannot take the job (not installed, not reachable, not available yet)."""


class SubmitError(JobError):
    """The engine refused or failed the submission; the job is now in Error with the reason."""


class StopError(JobError):
    """The engine could not stop the job; nothing was changed or deleted."""


class NotSupported(JobError):
    """The job's engine cannot do what was asked (pause on an engine that cannot hold, say)."""

    def __init__(self, message: str, *, job_id: int | None = None, action: str = "", capability: str = ""):
        super().__init__(message)
        self.job_id = job_id
        self.action = action
        self.capability = capability


class LeaseLost(Exception):
    """A process that acts under a lease (the leading monitor) no longer holds it: it must stop acting."""
