"""Property: random sequences of engine observations never move a terminal status nor break the table."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jobtower import manager, statuses
from jobtower.backends.base import Observation
from jobtower.models import Job, JobEvent
from jobtower.statuses import Status


@pytest.mark.django_db
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    start=st.sampled_from(list(Status)),
    observed=st.lists(st.sampled_from(list(Status)), min_size=1, max_size=12),
)
def test_observations_respect_the_table(job_manager, user, set_status, start, observed) -> None:
    job = job_manager.create_job(name="prop", user=user, job_type="BASIC")
    job.save()
    set_status(job, start)
    current = start
    for status in observed:
        moved = manager.observe(job, Observation(status, "seen"))
        stored = Status(Job.objects.values_list("_status", flat=True).get(pk=job.pk))
        if current.is_terminal:
            assert not moved and stored is current
        elif moved:
            assert status in statuses.TRANSITIONS[current]
            assert stored is status
        else:
            assert stored is current
            assert status is current or status not in statuses.TRANSITIONS[current]
        current = stored
    events = list(JobEvent.objects.filter(job=job).order_by("id"))
    # The history chains: each move starts where the previous one ended, and each is legal.
    previous = start
    for event in events:
        assert event.from_status == previous.value
        assert Status(event.to_status) in statuses.TRANSITIONS[previous]
        previous = Status(event.to_status)
    assert previous is current
