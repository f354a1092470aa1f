"""Several monitors: one leads (a lease in the database), a standby takes over when it dies."""

from __future__ import annotations

import datetime
import signal
import subprocess
import sys
import time

from django.utils import timezone

from jobtower.models import Job, Lease, lease
from jobtower.monitor import LEASE, Monitor
from jobtower.statuses import Status
from tests.conftest import wait_for


def test_one_holder_at_a_time_and_an_expired_lease_changes_hands(db) -> None:
    assert lease.hold("x", "a", 60) is True
    assert lease.hold("x", "b", 60) is False  # a holds it
    assert lease.hold("x", "a", 60) is True  # a renews
    assert lease.holder_of("x") == "a"
    Lease.objects.filter(name="x").update(expires=timezone.now() - datetime.timedelta(seconds=1))
    assert lease.holder_of("x") is None
    assert lease.hold("x", "b", 60) is True  # a stopped renewing: b takes over
    assert lease.hold("x", "a", 60) is False  # and a, waking up, does not get it back
    lease.release("x", "a")  # not a's to give
    assert lease.holder_of("x") == "b"
    lease.release("x", "b")
    assert lease.holder_of("x") is None and lease.hold("x", "a", 60) is True


def test_a_standby_monitor_does_not_poll_until_it_holds_the_lease(job_manager, user, memory, db) -> None:
    leader, standby = Monitor(interval=1.0, name="m1"), Monitor(interval=1.0, name="m2")
    assert leader.lead() is True and standby.lead() is False
    Lease.objects.filter(name=LEASE).update(expires=timezone.now() - datetime.timedelta(seconds=1))
    assert standby.lead() is True and leader.lead() is False


def _monitor(env: dict[str, str], name: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "jobtower.cli", "monitor", "--interval", "0.5", "--name", name],
                            env=env)


def test_the_active_monitor_killed_another_takes_over_within_two_cycles(job_manager, user, engine_env) -> None:
    worker = subprocess.Popen([sys.executable, "-m", "jobtower.cli", "worker", "--concurrency", "8"], env=engine_env)
    monitors = {name: _monitor(engine_env, name) for name in ("mon-a", "mon-b")}
    try:
        first = wait_for(lambda: lease.holder_of(LEASE), 30, what="a monitor to lead")
        jobs = [job_manager.create_job(name=f"f{i}", user=user, job_type="LOCAL", command=["sleep", "0.3"])
                for i in range(40)]
        for job in jobs[:20]:
            job.execute()
        monitors[first].send_signal(signal.SIGKILL)
        monitors[first].wait(10)
        killed_at = time.monotonic()
        other = next(name for name in monitors if name != first)
        wait_for(lambda: lease.holder_of(LEASE) == other, 10, interval=0.02, what=f"{other} to take over")
        took = time.monotonic() - killed_at
        assert took <= 2 * 0.5 + 0.5, f"the standby took {took:.2f} s (two cycles are 1 s)"
        for job in jobs[20:]:
            job.execute()
        wait_for(lambda: all(j.status_code.is_terminal for j in Job.objects.filter(pk__in=[x.pk for x in jobs])),
                 60, what="every job to end")
        ended = Job.objects.filter(pk__in=[j.pk for j in jobs])
        assert {j.status_code for j in ended} == {Status.COMPLETE}, [j.status_message for j in ended]
        assert all(j.attempt == 1 for j in ended)
    finally:
        for process in (*monitors.values(), worker):
            if process.poll() is None:
                process.terminate()
        for process in (*monitors.values(), worker):
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
