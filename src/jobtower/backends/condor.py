"""HTCondor: the job records are complete; running them on a pool arrives with the HTCondor engine."""

from __future__ import annotations

from typing import TYPE_CHECKING

from jobtower.backends.base import Backend
from jobtower.errors import EngineUnavailable

if TYPE_CHECKING:
    from jobtower.models import Job


class CondorBackend(Backend):
    """Refuses to run jobs until the HTCondor engine is in place, so nothing fakes a success."""

    name = "HTCondor"

    def check(self, job: "Job") -> None:
        """Refuse the job with an error that says why; it stays Pending and keeps its settings."""
        raise EngineUnavailable(
            f"{job.job_type} job {job.pk} was saved but cannot run yet: this version of jobtower "
            "stores HTCondor jobs but does not submit them to a pool. The job stays Pending with "
            "all its settings; run it again once the HTCondor engine is installed."
        )
