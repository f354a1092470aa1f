"""Statuses as data: every legal and illegal pair, applied through the manager's guarded UPDATE."""

from __future__ import annotations

import itertools

import pytest

from jobtower import manager, statuses
from jobtower.errors import InvalidTransition
from jobtower.models import JobEvent
from jobtower.statuses import Status

PAIRS = list(itertools.product(Status, Status))


def test_display_strings_are_the_spec_ones_plus_ours() -> None:
    assert [s.display for s in Status] == [
        "Pending", "Submitted", "Running", "Various", "Paused", "Results-Ready", "Other",
        "Complete", "Various-Complete", "Error", "Aborted",
    ]
    assert {s.value for s in Status} == {
        "PEN", "SUB", "RUN", "VAR", "PAS", "COM", "ERR", "ABT", "VCP", "RES", "OTH"
    }


def test_terminal_statuses_have_no_way_out() -> None:
    for status in statuses.TERMINAL:
        assert statuses.TRANSITIONS[status] == frozenset()
    assert statuses.TERMINAL.isdisjoint(statuses.ACTIVE)
    assert Status.PENDING not in statuses.ACTIVE and Status.PENDING not in statuses.TERMINAL


@pytest.mark.parametrize("value", ["COM", "Complete", "complete", "com", Status.COMPLETE])
def test_parse_status_accepts_codes_and_display_strings(value: object) -> None:
    assert statuses.parse_status(value) is Status.COMPLETE


@pytest.mark.parametrize("value", ["Done", "", None, 3, "Completed"])
def test_parse_status_names_the_valid_values(value: object) -> None:
    with pytest.raises(ValueError) as info:
        statuses.parse_status(value)
    assert "'Complete' ('COM')" in str(info.value) and repr(value) in str(info.value)
    message = str(info.value)
    assert message.startswith(f"{value!r} is not a job status; valid statuses are: 'Pending' ('PEN'), 'Submitted'")
    assert message.endswith(", 'Error' ('ERR'), 'Aborted' ('ABT')")  # every one, readable


# The legal moves written out by hand, NOT read back from statuses.TRANSITIONS: a move added to or dropped
# from the table by mistake must fail here. Row = from, column = to; "x" = legal, "." = refused.
#            PEN SUB RUN VAR PAS RES OTH COM VCP ERR ABT
LEGAL_TEXT = """
PEN           .   x   x   .   .   x   .   x   .   x   x
SUB           .   .   x   x   x   x   x   x   x   x   x
RUN           .   x   .   x   x   x   x   x   x   x   x
VAR           .   x   x   .   x   x   x   x   x   x   x
PAS           .   x   x   x   .   .   .   .   .   x   x
RES           .   .   .   .   .   .   .   x   x   x   x
OTH           .   x   x   x   x   x   .   x   x   x   x
COM           .   .   .   .   .   .   .   .   .   .   .
VCP           .   .   .   .   .   .   .   .   .   .   .
ERR           .   .   .   .   .   .   .   .   .   .   .
ABT           .   .   .   .   .   .   .   .   .   .   .
"""
COLUMNS = ["PEN", "SUB", "RUN", "VAR", "PAS", "RES", "OTH", "COM", "VCP", "ERR", "ABT"]
LEGAL: dict[tuple[str, str], bool] = {
    (row.split()[0], to): mark == "x"
    for row in LEGAL_TEXT.strip().splitlines()
    for to, mark in zip(COLUMNS, row.split()[1:], strict=True)
}
#: Moves that must never happen, whatever else changes: each one was a bug somewhere.
NEVER = [
    ("RES", "RUN"), ("RES", "SUB"), ("RES", "PAS"), ("RES", "PEN"),  # results step running: the engine is done
    ("PEN", "PAS"), ("PEN", "VCP"),  # a job that never ran cannot be paused or partly complete
    ("PAS", "COM"), ("PAS", "RES"),  # a frozen job cannot finish while frozen
    *((end, to) for end in ("COM", "VCP", "ERR", "ABT") for to in COLUMNS),  # terminal is terminal
    *((s, "PEN") for s in COLUMNS),  # only resubmit() starts over, and it is not a transition
]


def test_the_literal_table_has_all_121_pairs() -> None:
    assert len(LEGAL) == 121 and sum(LEGAL.values()) == 51


@pytest.mark.parametrize(("old", "new"), NEVER, ids=[f"{a}->{b}" for a, b in NEVER])
def test_moves_that_must_never_happen_are_refused_by_the_table(old: str, new: str) -> None:
    assert not LEGAL[(old, new)]
    assert not statuses.is_legal(Status(old), Status(new))
    assert Status(old) not in statuses.sources_of(Status(new))


def test_status_groups_are_the_written_ones() -> None:
    assert {s.value for s in statuses.TERMINAL} == {"COM", "VCP", "ERR", "ABT"}
    assert {s.value for s in statuses.ACTIVE} == {"SUB", "RUN", "VAR", "PAS", "RES", "OTH"}
    assert {s.value for s in statuses.POLLED} == {"SUB", "RUN", "VAR", "PAS", "OTH"}
    assert {s.value for s in statuses.RESUBMITTABLE} == set(COLUMNS) - {"PEN"}
    assert [s.value for s in Status if s.is_terminal] == ["COM", "VCP", "ERR", "ABT"]
    assert [s.value for s in Status if s.is_active] == ["SUB", "RUN", "VAR", "PAS", "RES", "OTH"]
    assert {s.value: str(s) for s in Status}["RES"] == "Results-Ready"
    assert statuses.CHOICES[5] == ("RES", "Results-Ready") and len(statuses.CHOICES) == 11
    for new in COLUMNS:
        assert {s.value for s in statuses.sources_of(Status(new))} == {a for a in COLUMNS if LEGAL[(a, new)]}


@pytest.mark.parametrize(("value", "code"), [(" complete ", "COM"), ("results-ready", "RES"), ("res", "RES"),
                                           ("Various-Complete", "VCP"), ("\tPaused\n", "PAS")])
def test_parse_status_accepts_any_case_and_surrounding_blanks(value: str, code: str) -> None:
    assert statuses.parse_status(value) is Status(code)


@pytest.mark.django_db
@pytest.mark.parametrize(("old", "new"), PAIRS, ids=[f"{a.value}->{b.value}" for a, b in PAIRS])
def test_every_pair_moves_exactly_when_the_written_table_allows(job_manager, user, set_status, old, new) -> None:
    job = job_manager.create_job(name="pair", user=user, job_type="BASIC")
    job.save()
    set_status(job, old)
    assert statuses.is_legal(old, new) is LEGAL[(old.value, new.value)]
    if old is new:
        assert manager.transition(job, new, source="test") is False
        assert not JobEvent.objects.filter(job=job).exists()
        return
    if LEGAL[(old.value, new.value)]:
        assert manager.transition(job, new, source="test", message="because") is True
        event = JobEvent.objects.get(job=job)
        assert (event.from_status, event.to_status, event.source) == (old.value, new.value, "test")
        job.refresh_from_db()
        # Complete/Various-Complete of a job with no results step lands directly.
        assert job.status_code is new
    else:
        with pytest.raises(InvalidTransition):
            manager.transition(job, new, source="test")
        assert manager.transition(job, new, source="engine", strict=False) is False
        job.refresh_from_db()
        assert job.status_code is old
        assert not JobEvent.objects.filter(job=job).exists()
