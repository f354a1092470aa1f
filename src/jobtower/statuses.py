"""Job statuses and the legal moves between them, written down as data.

The codes are the ones Tethys stores (so existing data and filters carry over); the display strings are
the ones the Jobs API document shows. This module does no I/O: `jobtower.manager.transition()` applies
the table in a guarded UPDATE.
"""

from __future__ import annotations

import enum


class Status(str, enum.Enum):
    """A job status: the value is the stored code, `.display` the string users see."""

    PENDING = "PEN"  # saved, not yet executed
    SUBMITTED = "SUB"  # handed to the engine, waiting for resources
    RUNNING = "RUN"  # the engine runs it
    VARIOUS = "VAR"  # sub-jobs in different active states (workflows, multi-proc clusters)
    PAUSED = "PAS"  # held by the user; resume() continues it
    RESULTS_READY = "RES"  # the engine finished well; process_results_function is running
    OTHER = "OTH"  # the engine reported a state we have no name for (message says which)
    COMPLETE = "COM"  # finished successfully (terminal)
    VARIOUS_COMPLETE = "VCP"  # every sub-job ended, not all of them successfully (terminal)
    ERROR = "ERR"  # failed; status_message says why (terminal)
    ABORTED = "ABT"  # stopped by a user (terminal)

    @property
    def display(self) -> str:
        """Return the string the Jobs API shows for this status."""
        return _DISPLAY[self]

    @property
    def is_terminal(self) -> bool:
        """Return True when the status never changes again except by resubmit."""
        return self in TERMINAL

    @property
    def is_active(self) -> bool:
        """Return True when an engine may still change this status."""
        return self in ACTIVE

    def __str__(self) -> str:
        return self.display


_DISPLAY: dict[Status, str] = {
    Status.PENDING: "Pending",
    Status.SUBMITTED: "Submitted",
    Status.RUNNING: "Running",
    Status.VARIOUS: "Various",
    Status.PAUSED: "Paused",
    Status.RESULTS_READY: "Results-Ready",
    Status.OTHER: "Other",
    Status.COMPLETE: "Complete",
    Status.VARIOUS_COMPLETE: "Various-Complete",
    Status.ERROR: "Error",
    Status.ABORTED: "Aborted",
}

#: Statuses that never move again, except through an explicit resubmit.
TERMINAL: frozenset[Status] = frozenset(
    {Status.COMPLETE, Status.VARIOUS_COMPLETE, Status.ERROR, Status.ABORTED}
)
#: Statuses an engine (or the app, for BASIC jobs) may still change: the monitor watches these.
ACTIVE: frozenset[Status] = frozenset(
    {
        Status.SUBMITTED,
        Status.RUNNING,
        Status.VARIOUS,
        Status.PAUSED,
        Status.RESULTS_READY,
        Status.OTHER,
    }
)

#: Active statuses an engine is asked about (Results-Ready belongs to the manager, not the engine).
POLLED: frozenset[Status] = ACTIVE - {Status.RESULTS_READY}

_S = Status
#: The legal moves: TRANSITIONS[a] is every status a job in status `a` may move to.
TRANSITIONS: dict[Status, frozenset[Status]] = {
    _S.PENDING: frozenset(
        {_S.SUBMITTED, _S.RUNNING, _S.RESULTS_READY, _S.COMPLETE, _S.ERROR, _S.ABORTED}
    ),
    _S.SUBMITTED: frozenset(
        {_S.RUNNING, _S.VARIOUS, _S.PAUSED, _S.RESULTS_READY, _S.OTHER}
        | TERMINAL
    ),
    _S.RUNNING: frozenset(
        {_S.SUBMITTED, _S.VARIOUS, _S.PAUSED, _S.RESULTS_READY, _S.OTHER} | TERMINAL
    ),
    _S.VARIOUS: frozenset(
        {_S.SUBMITTED, _S.RUNNING, _S.PAUSED, _S.RESULTS_READY, _S.OTHER} | TERMINAL
    ),
    _S.PAUSED: frozenset({_S.SUBMITTED, _S.RUNNING, _S.VARIOUS, _S.ERROR, _S.ABORTED}),
    # Results-Ready ends when process_results_function has run: Complete, or Error if it raised.
    _S.RESULTS_READY: frozenset({_S.COMPLETE, _S.VARIOUS_COMPLETE, _S.ERROR, _S.ABORTED}),
    _S.OTHER: frozenset(
        {_S.SUBMITTED, _S.RUNNING, _S.VARIOUS, _S.PAUSED, _S.RESULTS_READY} | TERMINAL
    ),
    _S.COMPLETE: frozenset(),
    _S.VARIOUS_COMPLETE: frozenset(),
    _S.ERROR: frozenset(),
    _S.ABORTED: frozenset(),
}
del _S

#: Where `resubmit()` may start a new attempt from: anything that is not already waiting to run.
RESUBMITTABLE: frozenset[Status] = frozenset(Status) - {Status.PENDING}


class InvalidStatus(ValueError):
    """A value that is neither a status code nor a display string."""


def parse_status(value: object) -> Status:
    """Return the Status for a code ("COM"), a display string ("Complete") or a Status."""
    if isinstance(value, Status):
        return value
    if isinstance(value, str):
        found = _BY_NAME.get(value) or _BY_NAME.get(value.strip().lower())
        if found is not None:
            return found
    valid = ", ".join(f"{s.display!r} ({s.value!r})" for s in Status)
    raise InvalidStatus(f"{value!r} is not a job status; valid statuses are: {valid}")


_BY_NAME: dict[str, Status] = {}
for _status in Status:
    _BY_NAME[_status.value] = _status
    _BY_NAME[_status.display] = _status
    _BY_NAME[_status.display.lower()] = _status
    _BY_NAME[_status.value.lower()] = _status
del _status


def is_legal(current: Status, new: Status) -> bool:
    """Return True when a job may move from `current` to `new` (resubmit aside)."""
    return new in TRANSITIONS[current]


def sources_of(new: Status) -> frozenset[Status]:
    """Return every status from which a job may move to `new`."""
    return frozenset(s for s, targets in TRANSITIONS.items() if new in targets)


CHOICES: list[tuple[str, str]] = [(s.value, s.display) for s in Status]
