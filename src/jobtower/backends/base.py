"""The interface every engine backend implements, and what a poll returns."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

from jobtower.statuses import Status

if TYPE_CHECKING:
    from pathlib import Path

    from jobtower.models import Job


@dataclass(frozen=True)
class Observation:
    """What an engine says about one job: a status and, where useful, why."""

    #: The status the engine reports.
    status: Status
    #: Why, in words a user understands (an exit code, a hold reason); stored as status_message.
    message: str = ""
    #: Percent done, as the running job reported it (None: not reported).
    progress: float | None = None
    #: The job's own words about its progress ("year 15 of 30").
    progress_message: str = ""
    #: What the job returned (JSON), stored as job.result when it completes.
    result: Any = None


class Backend:
    """An engine: submits jobs, reports on many at once, stops, holds and releases them.

    Backends never write job status: they return observations and the manager turns them into
    transitions. Every method may raise; the manager records the reason on the job.
    """

    #: The engine's name, used in messages.
    name = "engine"

    def check(self, job: "Job") -> None:
        """Raise EngineUnavailable when this engine cannot take `job` now (nothing has moved yet)."""

    def submit(self, job: "Job") -> None:
        """Hand the job to the engine; store engine ids in job.engine_data."""
        raise NotImplementedError

    def poll(self, jobs: Sequence["Job"]) -> dict[int, Observation]:
        """Return an observation per job id for the jobs the engine knows about, in one call."""
        raise NotImplementedError

    def cancel(self, job: "Job") -> None:
        """Stop the job on the engine."""
        raise NotImplementedError

    def hold(self, job: "Job") -> None:
        """Pause the job on the engine."""
        raise NotImplementedError

    def release(self, job: "Job") -> Status:
        """Resume a paused job; return the status it is in now (Running, or Submitted if queued)."""
        raise NotImplementedError

    def logs(self, job: "Job") -> dict[str, Any]:
        """Return the job's logs by name."""
        return {}

    def log_files(self, job: "Job") -> dict[str, "Path"]:
        """Return the files that hold the job's logs by name, so large logs are read in pieces."""
        return {}

    def fetch_results(self, job: "Job") -> None:
        """Bring the job's outputs into its folder (before process_results_function runs)."""

    def enforce(self, jobs: Sequence["Job"]) -> None:
        """Apply engine-side limits (such as timeouts) to active jobs; called once per monitor cycle."""
