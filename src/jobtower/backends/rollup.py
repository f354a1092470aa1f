"""One status for a job made of many engine jobs: HTCondor clusters with many procs, Slurm arrays."""

from __future__ import annotations

from collections import Counter

from jobtower.backends.base import Observation
from jobtower.statuses import Status


def rollup(states: dict[int, tuple[Status, str]], procs: int, *, unit: str = "proc") -> Observation:
    """Return one observation for a cluster from its procs' (Various / Various-Complete for a mix).

    `states` maps each proc (or array task) to its status and reason; problems are named by `unit`
    and index ("proc 3: exit code 1", "task 3: exit code 3").
    """
    if procs == 1 and len(states) == 1:
        return Observation(*next(iter(states.values())))
    kinds = Counter(status for status, _ in states.values())
    problems = [f"{unit} {proc}: {message}" for proc, (status, message) in sorted(states.items())
                if status in (Status.ERROR, Status.ABORTED, Status.OTHER) and message]
    ordered = sorted(kinds.items(), key=lambda item: item[0].display)
    summary = ", ".join(f"{count} {status.display}" for status, count in ordered)
    message = summary + ("; " + "; ".join(problems[:5]) if problems else "")
    if len(kinds) == 1:
        only = next(iter(kinds))
        return Observation(only, "" if only in (Status.COMPLETE, Status.SUBMITTED, Status.RUNNING) else message)
    if all(status.is_terminal for status in kinds):
        return Observation(Status.VARIOUS_COMPLETE, message)
    if all(status.is_terminal or status is Status.PAUSED for status in kinds):
        return Observation(Status.PAUSED, message)  # what is left is held: resume() releases it
    return Observation(Status.VARIOUS, message)
