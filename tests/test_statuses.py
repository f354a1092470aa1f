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


@pytest.mark.django_db
@pytest.mark.parametrize(("old", "new"), PAIRS, ids=[f"{a.value}->{b.value}" for a, b in PAIRS])
def test_every_pair_moves_exactly_when_the_table_allows(job_manager, user, set_status, old, new) -> None:
    job = job_manager.create_job(name="pair", user=user, job_type="BASIC")
    job.save()
    set_status(job, old)
    if old is new:
        assert manager.transition(job, new, source="test") is False
        assert not JobEvent.objects.filter(job=job).exists()
        return
    if new in statuses.TRANSITIONS[old]:
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
