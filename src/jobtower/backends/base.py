"""The interface every engine backend implements: what it can do, and what a poll returns.

Backends only report. They never write the database and never import the manager: `poll()` returns
observations (and which jobs it could not ask about), and the manager turns them into transitions.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from jobtower.statuses import Status

if TYPE_CHECKING:
    from pathlib import Path

    from jobtower.models import Job


class Capability(str, enum.Enum):
    """Something an engine can do; the table, job page, API, CLI and manager all ask for these."""

    SUBMIT = "submit"  # takes jobs: execute() and resubmit()
    POLL = "poll"  # reports statuses when the monitor asks
    STOP = "stop"  # ends a job it runs: stop(), and delete() of an active job
    HOLD = "hold"  # pauses and resumes a job: pause(), resume()
    LOGS = "logs"  # returns a job's logs: get_logs()
    LOG_FILES = "log_files"  # names the files that hold the logs, so they can be read in pieces
    RESULTS = "results"  # brings outputs back (fetch_results) before process_results_function
    NODES = "nodes"  # reports the states of a workflow's nodes
    CALLBACKS = "callbacks"  # a running job may call the status callback to ask for a re-check
    LIMITS = "limits"  # enforces limits such as timeouts (enforce(), once per monitor cycle)


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
    #: Workflow node name -> that node's status, for engines that run workflows (None: no nodes).
    nodes: Mapping[str, Status] | None = None
    #: Keys to merge into job.engine_data (JSON), e.g. an id the engine assigned late.
    engine_data: Mapping[str, Any] | None = None


@dataclass
class PollResult:
    """A poll's answer: an observation per job the engine reported, and the jobs it could not ask about."""

    observations: dict[int, Observation] = field(default_factory=dict)
    #: Job id -> why the engine could not be asked about it; the monitor marks those jobs stale.
    unreachable: dict[int, str] = field(default_factory=dict)

    @classmethod
    def of(cls, answer: PollResult | Mapping[int, Observation]) -> PollResult:
        """Return `answer` as a PollResult (backends may also return a plain {id: observation})."""
        if isinstance(answer, PollResult):
            return answer
        return cls(observations=dict(answer))


#: What a backend that says nothing else can do: take jobs, report on them, stop them.
CORE = frozenset({Capability.SUBMIT, Capability.POLL, Capability.STOP})


class Backend:
    """An engine: submits jobs, reports on many at once, stops, holds and releases them.

    Backends never write job status: they return observations and the manager turns them into
    transitions. Every method may raise; the manager records the reason on the job. A backend is
    built once per process with the OPTIONS of its `JOBTOWER["BACKENDS"]` entry as keyword arguments.
    """

    #: The engine's name, used in messages.
    name = "engine"
    #: What this engine can do; an action needing anything else is refused with a clear error.
    capabilities: frozenset[Capability] = CORE

    def __init__(self, **options: Any) -> None:
        if options:
            raise TypeError(
                f"the {self.name} backend ({type(self).__name__}) takes no OPTIONS, got: "
                f"{', '.join(sorted(options))}; remove them from JOBTOWER['BACKENDS']"
            )

    def can(self, capability: Capability) -> bool:
        """Return True when this engine declares `capability`."""
        return capability in self.capabilities

    def check(self, job: Job) -> None:
        """Raise EngineUnavailable when this engine cannot take `job` now (nothing has moved yet)."""

    def submit(self, job: Job) -> str | None:
        """Hand the job to the engine; store engine ids in job.engine_data.

        Return a note for the user while the job waits (stored as its status message), or None.
        """
        raise NotImplementedError

    def poll(self, jobs: Sequence[Job]) -> PollResult | dict[int, Observation]:
        """Report on many jobs in one call: an observation per job the engine knows about.

        Return a PollResult to name jobs the engine could not be asked about (their statuses stay,
        marked stale); raising means none of `jobs` could be asked about.
        """
        raise NotImplementedError

    def cancel(self, job: Job) -> None:
        """Stop the job on the engine."""
        raise NotImplementedError

    def hold(self, job: Job) -> None:
        """Pause the job on the engine."""
        raise NotImplementedError

    def release(self, job: Job) -> Status:
        """Resume a paused job; return the status it is in now (Running, or Submitted if queued)."""
        raise NotImplementedError

    def logs(self, job: Job) -> dict[str, Any]:
        """Return the job's logs by name."""
        return {}

    def log_files(self, job: Job) -> dict[str, Path]:
        """Return the files that hold the job's logs by name, so large logs are read in pieces."""
        return {}

    def fetch_results(self, job: Job) -> None:
        """Bring the job's outputs into its folder (before process_results_function runs)."""

    def enforce(self, jobs: Sequence[Job]) -> None:
        """Apply engine-side limits (such as timeouts) to active jobs; called once per monitor cycle."""
