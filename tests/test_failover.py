"""Several monitors: one leads (a lease in the database), a standby takes over when it dies.

At the end, the whole control plane on PostgreSQL: monitors, web servers and workers as processes,
the leading monitor and a web server killed mid-run (marked `postgres` and `condor`).
"""

from __future__ import annotations

import contextlib
import datetime
import html
import http.cookiejar
import itertools
import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from jobtower.models import Job, JobEvent, Lease, lease
from jobtower.monitor import LEASE, Monitor
from jobtower.statuses import Status, parse_status
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


def test_only_the_holder_passes_the_fence_and_renews_a_lease_nobody_took(db) -> None:
    def expire() -> None:
        Lease.objects.filter(name="x").update(expires=timezone.now() - datetime.timedelta(seconds=1))

    assert lease.hold("x", "a", 60) is True
    assert lease.still_held("x", "a") is True and lease.still_held("x", "b") is False
    assert lease.still_held("y", "a") is False  # no such lease
    expire()
    assert lease.still_held("x", "a") is False  # ran out: no writes under it
    assert lease.renew("x", "a", 60) is True and lease.still_held("x", "a") is True  # nobody took it
    expire()
    assert lease.hold("x", "b", 60) is True
    assert lease.renew("x", "a", 60) is False and lease.holder_of("x") == "b"  # b's now: a stands down


def test_a_standby_monitor_does_not_poll_until_it_holds_the_lease(job_manager, user, memory, db) -> None:
    leader, standby = Monitor(interval=1.0, name="m1"), Monitor(interval=1.0, name="m2")
    assert leader.lead() is True and standby.lead() is False
    Lease.objects.filter(name=LEASE).update(expires=timezone.now() - datetime.timedelta(seconds=1))
    assert standby.lead() is True and leader.lead() is False


# -- fencing: a leader that hung past its lease does not act on it -----------------------------------


def _leader_and_standby() -> tuple[Monitor, Monitor]:
    """Two monitors driven cycle by cycle; the first leads."""
    leader = Monitor(interval=1.0, name="m1", results_threads=0, delivery_thread=False)
    standby = Monitor(interval=1.0, name="m2", results_threads=0, delivery_thread=False)
    assert leader.lead() is True and standby.lead() is False
    return leader, standby


def _running_jobs(job_manager: Any, user: Any, memory: Any, count: int, job_type: str = "MEMORY") -> list[Job]:
    """`count` jobs Submitted in the database that their engine now reports Running."""
    jobs = [job_manager.create_job(name=f"fence {i}", user=user, job_type=job_type) for i in range(count)]
    for job in jobs:
        job.execute()
        memory.set(job, Status.RUNNING)
    return jobs


def _take_over(standby: Monitor) -> None:
    """The leader's lease runs out and the standby takes it (as while the leader hangs)."""
    Lease.objects.filter(name=LEASE).update(expires=timezone.now() - datetime.timedelta(seconds=1))
    assert standby.lead() is True


def test_a_leader_whose_lease_was_taken_over_during_its_poll_writes_nothing(
    job_manager, user, memory, db, caplog, monkeypatch
) -> None:
    jobs = _running_jobs(job_manager, user, memory, 3)
    leader, standby = _leader_and_standby()
    events = JobEvent.objects.filter(job_id__in=[j.pk for j in jobs]).count()
    engine_poll = memory.poll

    def slow_poll(polled):  # noqa: ANN001, ANN202 - the engine's own signature
        answer = engine_poll(polled)
        _take_over(standby)  # the leader hangs here, past its lease; its own clock has not noticed
        return answer

    monkeypatch.setattr(memory, "poll", slow_poll)
    with caplog.at_level(logging.WARNING, logger="jobtower.monitor"):
        assert leader.cycle() == 0
    assert leader.polls == 1  # it polled, and then wrote nothing
    assert {j.status_code for j in Job.objects.filter(pk__in=[j.pk for j in jobs])} == {Status.SUBMITTED}
    assert JobEvent.objects.filter(job_id__in=[j.pk for j in jobs]).count() == events
    said = [r.getMessage() for r in caplog.records if "stood down" in r.getMessage()]
    assert said == ["m1: stood down: another monitor holds its lease now (the lease row says so); "
                    "abandoning the rest of cycle 1 (another monitor may lead now)"], caplog.text
    assert leader.lead() is False and lease.holder_of(LEASE) == "m2"
    monkeypatch.setattr(memory, "poll", engine_poll)
    assert standby.cycle() == 3  # the new leader writes what it saw itself
    assert {j.status_code for j in Job.objects.filter(pk__in=[j.pk for j in jobs])} == {Status.RUNNING}


def test_a_leader_past_its_own_deadline_skips_its_remaining_polls(
    job_manager, user, memory, db, settings, caplog, monkeypatch
) -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from jobtower import manager
    from jobtower.backends import get_backend
    from jobtower.monitor import engines
    from tests.jobtypes import MEMORY_BACKEND

    # A second engine: the memory engine with other options, as settings may choose.
    settings.JOBTOWER = {**settings.JOBTOWER, "BACKENDS": {"MEMORY_NO_HOLD": {
        "BACKEND": MEMORY_BACKEND, "OPTIONS": {"hold": False}}}}
    other = get_backend(MEMORY_BACKEND, {"hold": False})
    other.reset()
    jobs = {"MEMORY": _running_jobs(job_manager, user, memory, 2),
            "MEMORY_NO_HOLD": _running_jobs(job_manager, user, other, 2, "MEMORY_NO_HOLD")}
    order = [t for types in engines().values() for t in types if t in jobs]
    assert len(order) == 2 and order[0] != order[1], f"the two job types should run on two engines: {engines()}"
    first, second = order
    leader, standby = _leader_and_standby()
    written = manager.apply_poll
    after_hang = CaptureQueriesContext(connection)

    def then_hang(*args: Any, **kwargs: Any) -> int:
        moved = written(*args, **kwargs)
        # The leader hangs after writing its first engine's answer, past its lease, by its own clock.
        leader._leading_until = time.monotonic() - 0.01
        after_hang.__enter__()
        return moved

    monkeypatch.setattr(manager, "apply_poll", then_hang)
    with caplog.at_level(logging.WARNING, logger="jobtower.monitor"):
        assert leader.cycle() == 2  # the first engine's two jobs
    after_hang.__exit__(None, None, None)
    monkeypatch.setattr(manager, "apply_poll", written)
    assert leader.polls == 1
    now = {t: {j.status_code for j in Job.objects.filter(pk__in=[x.pk for x in js])} for t, js in jobs.items()}
    assert now == {first: {Status.RUNNING}, second: {Status.SUBMITTED}}, now
    engine = {"MEMORY": memory, "MEMORY_NO_HOLD": other}
    assert ("poll", None) in engine[first].calls and ("poll", None) not in engine[second].calls
    assert [q["sql"] for q in after_hang.captured_queries if "jobtower_lease" in q["sql"]] == [], \
        "the skip is decided by the monotonic clock alone, without a query"
    said = [r.getMessage() for r in caplog.records if "stood down" in r.getMessage()]
    assert said == ["m1: stood down: its lease ran out (by its own clock) before polling memory; "
                    "abandoning the rest of cycle 1 (another monitor may lead now)"], caplog.text
    # Nobody took over: at its next cycle the leader holds its lease again and polls the rest.
    assert standby.lead() is False
    assert leader.lead() is True and leader.cycle() == 2
    assert {j.status_code for js in jobs.values() for j in Job.objects.filter(pk__in=[x.pk for x in js])} == {
        Status.RUNNING}
    other.reset()


def test_a_poll_that_outlasted_the_lease_is_written_when_no_standby_took_over(
    job_manager, user, memory, db, caplog, monkeypatch
) -> None:
    jobs = _running_jobs(job_manager, user, memory, 2)
    leader, standby = _leader_and_standby()
    engine_poll = memory.poll

    def slow_poll(polled):  # noqa: ANN001, ANN202
        answer = engine_poll(polled)
        leader._leading_until = time.monotonic() - 0.01  # a slow engine: the poll outlasted the lease
        Lease.objects.filter(name=LEASE).update(expires=timezone.now() - datetime.timedelta(seconds=1))
        return answer

    monkeypatch.setattr(memory, "poll", slow_poll)
    with caplog.at_level(logging.WARNING, logger="jobtower.monitor"):
        assert leader.cycle() == 2  # nobody else polled meanwhile: what it saw is written
    assert {j.status_code for j in Job.objects.filter(pk__in=[j.pk for j in jobs])} == {Status.RUNNING}
    assert "no other monitor had taken it: renewed it" in caplog.text
    assert lease.holder_of(LEASE) == "m1" and standby.lead() is False


def test_a_fenced_write_keeps_the_lease_from_changing_hands_until_it_commits(transactional_db) -> None:
    from django.db import connections, transaction

    assert lease.hold(LEASE, "m1", 0.6) is True
    checked, order = threading.Event(), []

    def write() -> None:
        try:
            with transaction.atomic():
                assert lease.still_held(LEASE, "m1")
                checked.set()
                time.sleep(1.2)  # the lease runs out meanwhile; the write goes on under the fence
                order.append("m1 committed")
        finally:
            connections.close_all()

    writer = threading.Thread(target=write)
    writer.start()
    assert checked.wait(10), "the fenced transaction did not start"
    time.sleep(0.8)  # past the lease's end: a standby may take it, but only once the write commits
    assert lease.hold(LEASE, "m2", 60) is True
    order.append("m2 took over")
    writer.join(10)
    assert order == ["m1 committed", "m2 took over"]
    assert lease.still_held(LEASE, "m1") is False and lease.still_held(LEASE, "m2") is True


def test_fencing_costs_one_statement_per_write_transaction(job_manager, user, memory, db) -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    def statements(monitor: Monitor) -> list[str]:
        jobs = _running_jobs(job_manager, user, memory, 5)
        with CaptureQueriesContext(connection) as seen:
            assert monitor.cycle() == 5  # one bulk move: one write transaction
        memory.reset()
        Job.objects.filter(pk__in=[j.pk for j in jobs]).delete()
        return [q["sql"] for q in seen.captured_queries]

    alone = statements(Monitor(name="m0", results_threads=0, delivery_thread=False))
    leader, _ = _leader_and_standby()
    fenced = statements(leader)
    extra = [sql for sql in fenced if "jobtower_lease" in sql]
    assert len(fenced) == len(alone) + 1 and len(extra) == 1, (alone, fenced)
    assert extra[0].startswith("SELECT") and '"holder" = ' in extra[0] and '"expires" > ' in extra[0]
    if connection.vendor == "postgresql":
        assert extra[0].endswith("FOR NO KEY UPDATE"), extra[0]  # the takeover waits for the commit


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


def test_each_poll_is_logged_with_its_monitor_cycle_and_job_ids(job_manager, user, memory, db, caplog) -> None:
    from jobtower.monitor import id_ranges

    assert id_ranges([9, 3, 4, 5, 12, 13, 7, 3]) == "3-5,7,9,12-13" and id_ranges([]) == ""
    jobs = [job_manager.create_job(name=f"p{i}", user=user, job_type="MEMORY") for i in range(3)]
    for job in jobs:
        job.execute()
    monitor = Monitor(name="m1", results_threads=0)
    monitor.cycle()
    assert not [r for r in caplog.records if "polled" in r.getMessage()]  # nothing at the default level
    with caplog.at_level(logging.DEBUG, logger="jobtower.monitor"):
        monitor.cycle()
    lines = [r.getMessage() for r in caplog.records if "polled" in r.getMessage()]
    first = jobs[0].pk
    assert lines == [f"m1: cycle 2 polled memory for 3 job(s): {first}-{first + 2}"]


# -- end to end on PostgreSQL: two monitors, two web servers, LOCAL workers and HTCondor -----------------
#
# Every process is a real `jobtower` command on the test database. Mid-run the leading monitor and one
# web server are SIGKILLed (the web server with its gunicorn worker, as when its host dies). The test
# then reads what really happened: each job's own marker file (one line per run), the jobs' history, the
# monitors' debug lines (which monitor polled which jobs, when) and every answer of the other web server.

INTERVAL = 1.0  # the monitors' cycle, in seconds
LOCAL_JOBS, CONDOR_JOBS = 92, 8  # the pool has one execute slot: few, short CONDOR jobs
FAILING = {"LOCAL": {5, 40, 77}, "CONDOR": {3}}  # which jobs (by index) exit with code 3
# Each run of a job appends its pid and attempt to a file in its own folder (two lines: it ran twice),
# waits, and exits with the code asked for. A script, not `sh -c`: HTCondor reads "$$" in arguments as a
# macro of its own.
MARK = """#!/bin/sh
echo "$$ $JOBTOWER_ATTEMPT" >> "$JOBTOWER_JOB_FOLDER/ran"
sleep "$1"
exit "$2"
"""
POLL_LINE = re.compile(
    r"^(\d+\.\d+) DEBUG jobtower\.monitor (\S+): (cycle|check) \d+ polled (\S+) for \d+ job\(s\): (\S*)$"
)


def _spawn(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    """Start a `jobtower` command in a session of its own (so its whole group can be killed)."""
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "jobtower.cli", *argv], env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)


def _end(process: subprocess.Popen) -> None:
    """Stop a process group started by _spawn: SIGTERM, then SIGKILL after 15 s."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            pass
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)  # and whatever of its group is left (gunicorn's worker)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(15)


def _ranges(text: str) -> list[int]:
    """Read back the job ids of a poll's debug line ("3-5,7")."""
    found: list[int] = []
    for part in filter(None, text.split(",")):
        first, _, last = part.partition("-")
        found.extend(range(int(first), int(last or first) + 1))
    return found


def _polls(log: Path) -> list[tuple[float, str, list[int]]]:
    """Return each poll a monitor logged: (wall-clock time, engine, job ids)."""
    found = []
    for line in log.read_text().splitlines():
        match = POLL_LINE.match(line)
        if match:
            found.append((float(match[1]), match[4], _ranges(match[5])))
    return found


class WebClient:
    """A logged-in browser's requests, by urllib: one cookie jar for every web server on 127.0.0.1."""

    def __init__(self) -> None:
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))

    def get(self, url: str) -> tuple[int, bytes]:
        with self.opener.open(url, timeout=10) as answer:
            return answer.status, answer.read()

    def log_in(self, base: str, username: str, password: str) -> None:
        self.get(f"{base}/accounts/login/")
        token = next(c.value for c in self.jar if c.name == "csrftoken")
        form = urllib.parse.urlencode({"username": username, "password": password,
                                       "csrfmiddlewaretoken": token, "next": "/"}).encode()
        request = urllib.request.Request(f"{base}/accounts/login/", data=form, headers={"Referer": f"{base}/"})
        with self.opener.open(request, timeout=10) as answer:
            assert answer.url == f"{base}/", f"logging in as {username} ended at {answer.url}"


class Watcher(threading.Thread):
    """Asks one web server, over and over until stopped, for the Jobs Table, its refresh and the API list."""

    def __init__(self, client: WebClient, base: str) -> None:
        super().__init__(daemon=True)
        self.client, self.base = client, base
        self.ids: list[int] = []  # the jobs whose rows the table refreshes, once there are some
        self.stop = threading.Event()
        self.answered: list[float] = []  # when each request was answered
        self.failures: list[str] = []
        self.last_list: dict[str, Any] = {}

    def ask(self, path: str) -> bytes | None:
        try:
            status, body = self.client.get(self.base + path)
        except Exception as exc:  # noqa: BLE001 - every way a request can fail is a failure here
            self.failures.append(f"{path}: {exc!r}")
            return None
        if status != 200:
            self.failures.append(f"{path}: HTTP {status}")
            return None
        self.answered.append(time.time())
        return body

    def run(self) -> None:
        while not self.stop.is_set():
            page = self.ask("/")
            if page is not None:
                found = re.search(rb'data-config="([^"]+)"', page)
                if found is None:
                    self.failures.append("/: no Jobs Table in the page")
                elif self.ids:
                    config = urllib.parse.quote(html.unescape(found[1].decode()))
                    ids = self.ids[:50]
                    rows = self.ask(f"/jobs-table/rows/?config={config}&ids={','.join(map(str, ids))}")
                    if rows is not None and sorted(map(int, json.loads(rows)["rows"])) != sorted(ids):
                        self.failures.append(f"the table's refresh left out rows: {rows[:200]!r}")
            listed = self.ask("/api/jobs/?page_size=200")
            if listed is not None:
                self.last_list = json.loads(listed)
            self.stop.wait(0.05)


@pytest.mark.postgres
@pytest.mark.condor
def test_monitor_and_web_server_killed_mid_run_every_job_ends_once_in_its_true_status(
    postgres, pool, workspace, job_manager, user, engine_env, tmp_path
) -> None:
    from jobtower.backends import get_backend
    from tests.conftest import _kill_local_jobs, free_port, in_queue

    env = {**engine_env, **{k: v for k, v in pool.items() if not k.startswith("JOBTOWER_")}}
    logs = tmp_path / "logs"
    logs.mkdir()
    processes: dict[str, subprocess.Popen] = {}
    jobs: list[Job] = []
    watcher: Watcher | None = None
    try:
        for name in ("worker-1", "worker-2"):  # workers need no leader: both claim from one queue
            processes[name] = _spawn(["worker", "--concurrency", "4", "--name", name], env, logs / f"{name}.log")
        monitor_env = {**env, "JOBTOWER_LOG_LEVEL": "DEBUG",
                       # A results step the killed monitor had claimed is taken over after 5 s, not 120.
                       "JOBTOWER_TEST_RESULTS_CLAIM_TIMEOUT": "5"}
        for name in ("mon-a", "mon-b"):
            processes[name] = _spawn(["monitor", "--interval", str(INTERVAL), "--name", name], monitor_env,
                                     logs / f"{name}.log")
        bases = {}
        for name in ("web-a", "web-b"):  # each its own home (its own gunicorn control socket), as on two hosts
            home = tmp_path / name
            home.mkdir()
            port = free_port()
            bases[name] = f"http://127.0.0.1:{port}"
            processes[name] = _spawn(["serve", "--no-worker", "--workers", "1", "--port", str(port)],
                                     {**env, "JOBTOWER_TEST_HOME": str(home)}, logs / f"{name}.log")

        def answers(name: str) -> bool:
            assert processes[name].poll() is None, (logs / f"{name}.log").read_text()
            try:
                return WebClient().get(bases[name] + "/accounts/login/")[0] == 200
            except OSError:
                return False

        for name in bases:
            wait_for(lambda name=name: answers(name), 60, interval=0.2, what=f"{name} to answer")
        wait_for(lambda: lease.holder_of(LEASE), 30, what="a monitor to lead")

        # Logged in on web-a; the session is in the database, so web-b serves the same browser.
        client = WebClient()
        client.log_in(bases["web-a"], "alice", "pw-alice")
        for name in bases:
            status, page = client.get(bases[name] + "/")
            assert status == 200 and b"My jobs" in page, f"{name} did not serve alice's Jobs Table"

        script = workspace / "mark.sh"  # where the pool's job user can read it
        script.write_text(MARK)
        script.chmod(0o755)
        for i in range(CONDOR_JOBS):  # first: they take longest, one at a time on the pool's one slot
            code = 3 if i in FAILING["CONDOR"] else 0
            jobs.append(job_manager.create_job(
                name=f"condor {i}", user=user, job_type="CONDOR", workspace=str(workspace),
                command=["sh", str(script), "1", str(code)], environment={"PATH": "/usr/bin:/bin"},
            ))
        for i in range(LOCAL_JOBS):
            code = 3 if i in FAILING["LOCAL"] else 0
            jobs.append(job_manager.create_job(name=f"local {i}", user=user, job_type="LOCAL",
                                               command=["sh", str(script), "0.5", str(code)]))
        watcher = Watcher(client, bases["web-b"])
        watcher.start()
        wait_for(lambda: len(watcher.answered) >= 2, 60, what="web-b to answer the Jobs Table and the API list")
        for job in jobs:
            job.execute()
        ids = [job.pk for job in jobs]  # saved by execute()
        watcher.ids.extend(ids)
        failing = {job.pk for job in jobs
                   if int(job.name.split()[1]) in FAILING["CONDOR" if job.job_type == "CONDOR" else "LOCAL"]}

        def ended_count() -> int:
            return sum(Status(code).is_terminal for code in Job.objects.filter(pk__in=ids).values_list(
                "_status", flat=True))

        # Mid-run: a quarter of the jobs have ended, the rest are running or queued.
        wait_for(lambda: ended_count() >= len(jobs) // 4, 90, interval=0.1, what="a quarter of the jobs to end")
        leader = lease.holder_of(LEASE)
        assert leader in ("mon-a", "mon-b"), f"no monitor leads mid-run (the lease is {leader!r})"
        standby = "mon-b" if leader == "mon-a" else "mon-a"
        killed_at = time.time()
        os.killpg(processes[leader].pid, signal.SIGKILL)
        os.killpg(processes["web-a"].pid, signal.SIGKILL)
        processes[leader].wait(10)
        processes["web-a"].wait(10)
        # The dead leader can renew nothing now: this is when its lease runs out.
        held = Lease.objects.get(name=LEASE)
        assert held.holder == leader, f"{held.holder} took the lease before the test could read {leader}'s"
        lease_ends = held.expires.timestamp()
        active_at_kill = len(jobs) - ended_count()
        condor_at_kill = sum(not Status(code).is_terminal for code in Job.objects.filter(
            pk__in=ids, job_type="CONDOR").values_list("_status", flat=True))
        assert condor_at_kill > 0, "every CONDOR job ended before the kill: HTCondor's polling was not handed over"

        wait_for(lambda: lease.holder_of(LEASE) == standby, 30, interval=0.05, what=f"{standby} to take over")
        wait_for(lambda: ended_count() == len(jobs), 120, interval=0.2, what="every job to end")
        # The standby (now leading) and web-b stay up: the watcher gets the final answers from web-b.
        wait_for(lambda: watcher.last_list.get("count") == len(jobs) and all(
            parse_status(r["status"]).is_terminal for r in watcher.last_list["results"]
        ), 30, what="web-b to list every job as ended")
        watcher.stop.set()
        watcher.join(30)
        _end(processes[standby])  # so its log is complete
    finally:
        if watcher is not None:
            watcher.stop.set()
        for process in processes.values():
            _end(process)
        _kill_local_jobs()
        for job in Job.objects.filter(job_type="CONDOR"):  # what a failed run leaves in the pool's queue
            cluster = (job.engine_data or {}).get("cluster_id")
            if cluster and in_queue(cluster):
                get_backend(job.backend_path).cancel(job)

    ended = {job.pk: job for job in Job.objects.filter(pk__in=ids)}
    wrong = {pk: (job.status_code.display, job.status_message) for pk, job in ended.items()
             if (job.status_code, job.status_message) != (
                 (Status.ERROR, "exit code 3") if pk in failing else (Status.COMPLETE, ""))}
    assert not wrong, f"jobs that did not end in their true status: {wrong}"

    # None ran twice: one attempt, and one line in its marker file, per job.
    runs = {pk: (job.folder / "ran").read_text().splitlines() if (job.folder / "ran").exists() else []
            for pk, job in ended.items()}
    assert {pk: lines for pk, lines in runs.items() if len(lines) != 1} == {}
    assert {pk: job.attempt for pk, job in ended.items() if job.attempt != 1} == {}
    assert all(line.split()[1] == "1" for lines in runs.values() for line in lines)

    # No healthy job was called lost, nor queued again as if its worker had died.
    said = [(e.job_id, e.message) for e in JobEvent.objects.filter(job_id__in=ids)
            if "lost" in e.message or "queued again" in e.message]
    assert said == []

    # The standby took over within two cycles of the dead leader's lease running out, and never
    # polled before it ran out; the dead leader polled nothing after it died.
    polls = {name: _polls(logs / f"{name}.log") for name in (leader, standby)}
    assert polls[leader] and all(at <= killed_at for at, _, _ in polls[leader])
    after = [at for at, _, _ in polls[standby] if at > killed_at]
    assert after, f"{standby} never polled after {leader} was killed: {(logs / f'{standby}.log').read_text()}"
    assert {engine for at, engine, _ in polls[standby] if at > killed_at} == {"HTCondor", "local"}
    assert [at for at, _, _ in polls[standby] if killed_at < at <= lease_ends] == []
    took = after[0] - lease_ends
    assert 0 < took <= 2 * INTERVAL, f"{standby} first polled {took:.2f} s after {leader}'s lease ran out"

    # No job was polled twice in one cycle by two monitors: polls of one job by different monitors are at
    # least a cycle apart (one monitor asks about a job at most once per cycle on its own).
    by_job: dict[int, list[tuple[float, str]]] = {}
    for name, found in polls.items():
        for at, _, job_ids in found:
            for pk in job_ids:
                by_job.setdefault(pk, []).append((at, name))
    twice = [(pk, round(b[0] - a[0], 3), a[1], b[1]) for pk, seen in by_job.items()
             for a, b in itertools.pairwise(sorted(seen)) if a[1] != b[1] and b[0] - a[0] < INTERVAL]
    assert twice == [], f"jobs polled by both monitors within one cycle: {twice[:10]}"
    assert set(by_job) & set(ids), "the monitors' logs name none of the jobs"

    # web-b answered every request, before and after web-a died, and listed every job as it ended.
    assert watcher.failures == [], watcher.failures[:10]
    before, after_kill = sum(at < killed_at for at in watcher.answered), sum(at > killed_at for at in watcher.answered)
    assert before and after_kill, f"web-b answered {before} requests before the kill and {after_kill} after"
    listed = {row["id"]: row["status"] for row in watcher.last_list["results"]}
    assert listed == {pk: job.status_code.display for pk, job in ended.items()}
    print(f"\nfailover: {len(jobs)} jobs, {active_at_kill} active at the kill ({condor_at_kill} CONDOR); "
          f"{standby} polled "
          f"{after[0] - killed_at:.2f} s after the kill, {took:.2f} s after the lease ran out; "
          f"web-b answered {before} + {after_kill} requests (before, after), 0 failed")


WROTE_LINE = re.compile(r"^(\d+\.\d+) DEBUG jobtower\.monitor (\S+): (?:cycle|check) \d+ wrote what (\S+) answered")


def _writes(log: Path) -> list[float]:
    """Return when a monitor logged that it wrote a poll's answer (wall-clock times)."""
    return [float(m[1]) for m in map(WROTE_LINE.match, log.read_text().splitlines()) if m]


def _stopped(pid: int) -> bool:
    """Return True when process `pid` is stopped (SIGSTOP): its state in /proc is T."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.rsplit(")", 1)[1].split()[0] in ("T", "t")


@pytest.mark.postgres
def test_a_leader_stopped_between_its_poll_and_its_write_stands_down_when_it_resumes(
    postgres, job_manager, user, engine_env, tmp_path
) -> None:
    """SIGSTOP the leading monitor with a poll's answer in hand, longer than its lease; a standby takes
    over; SIGCONT: the old leader writes nothing of what it saw, logs that it stood down, polls no more."""
    from tests.conftest import _kill_local_jobs

    interval = 0.5  # the lease: 1.5 cycles + 0.2 s = 0.95 s
    logs = tmp_path / "logs"
    logs.mkdir()
    marker = tmp_path / "stop-after-poll"  # see tests.jobtypes.StoppingLocalBackend
    env = {**engine_env, "JOBTOWER_TEST_LOCAL_BACKEND": "tests.jobtypes:StoppingLocalBackend"}
    processes = {"worker": _spawn(["worker", "--concurrency", "8", "--name", "worker"], env, logs / "worker.log")}
    for name in ("mon-a", "mon-b"):
        processes[name] = _spawn(["monitor", "--interval", str(interval), "--name", name],
                                 {**env, "JOBTOWER_LOG_LEVEL": "DEBUG", "JOBTOWER_TEST_STOP_AFTER_POLL": str(marker)},
                                 logs / f"{name}.log")
    leader = ""
    try:
        leader = wait_for(lambda: lease.holder_of(LEASE), 60, what="a monitor to lead")
        standby = "mon-b" if leader == "mon-a" else "mon-a"
        # Jobs of staggered lengths, so statuses move while the leader is stopped and after.
        jobs = [job_manager.create_job(name=f"fence {i}", user=user, job_type="LOCAL",
                                       command=["sleep", str(0.5 + (i % 6) * 0.5)]) for i in range(24)]
        for job in jobs:
            job.execute()
        ids = [job.pk for job in jobs]
        wait_for(lambda: Job.objects.filter(pk__in=ids, _status=Status.RUNNING.value).count() >= 4, 60,
                 interval=0.05, what="jobs to run")
        marker.touch()  # the leader's next poll stops its process, the answer in hand
        wait_for(lambda: _stopped(processes[leader].pid), 10, interval=0.01, what=f"{leader} to stop mid-cycle")
        stopped_at = time.time()
        assert not marker.exists() and lease.holder_of(LEASE) in (leader, None)
        wait_for(lambda: lease.holder_of(LEASE) == standby, 10, interval=0.02, what=f"{standby} to take over")
        # The standby polls and writes a cycle or more while the old leader is still stopped.
        wait_for(lambda: [at for at in _writes(logs / f"{standby}.log") if at > stopped_at][2:], 10,
                 interval=0.05, what=f"{standby} to write three polls' answers")
        assert _stopped(processes[leader].pid)
        resumed_at = time.time()
        os.kill(processes[leader].pid, signal.SIGCONT)
        wait_for(lambda: "stood down" in (logs / f"{leader}.log").read_text(), 10, interval=0.05,
                 what=f"{leader} to stand down")
        wait_for(lambda: all(Status(code).is_terminal for code in Job.objects.filter(pk__in=ids).values_list(
            "_status", flat=True)), 60, interval=0.1, what="every job to end")
        time.sleep(3 * interval)  # a few more cycles, in which the old leader must stay a standby
        for name in ("mon-a", "mon-b"):
            _end(processes[name])  # so their logs are complete
    finally:
        if leader and processes[leader].poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(processes[leader].pid, signal.SIGCONT)  # a stopped process cannot end
        for process in processes.values():
            _end(process)
        _kill_local_jobs()

    ended = Job.objects.filter(pk__in=ids)
    assert {j.status_code for j in ended} == {Status.COMPLETE}, [(j.pk, j.status_message) for j in ended]
    assert all(j.attempt == 1 for j in ended)
    said = (logs / f"{leader}.log").read_text()
    stood = [line for line in said.splitlines() if "stood down" in line]
    assert len(stood) == 1 and f"{leader}: stood down: its lease ran out before writing what local answered " \
        "and another monitor took it; abandoning the rest of cycle" in stood[0], stood or said[-3000:]
    # The old leader's last poll was the one it stopped in; it wrote none of it, and nothing after.
    polls = {name: _polls(logs / f"{name}.log") for name in (leader, standby)}
    writes = {name: _writes(logs / f"{name}.log") for name in (leader, standby)}
    last_poll = max(at for at, _, _ in polls[leader])
    assert last_poll < stopped_at and all(at < last_poll for at in writes[leader]), (
        f"{leader} polled at {last_poll:.3f}, stopped at {stopped_at:.3f}, wrote at {writes[leader][-3:]}")
    # The standby polled only after the takeover, and each job is asked about (and written) by one
    # monitor at a time: polls of one job by the two monitors are at least the old leader's lease apart.
    stale = set(next(ids_ for at, _, ids_ in polls[leader] if at == last_poll))
    assert stale & set(ids), "the poll the old leader stopped in named none of the jobs"
    later = [(at, job_ids) for at, _, job_ids in polls[standby] if at > stopped_at]
    # (those that ended meanwhile, moved by the worker, were no longer polled)
    assert later and stale & {pk for _, job_ids in later for pk in job_ids}, "the standby never polled them"
    assert [at for at, _, _ in polls[standby] if last_poll - interval < at < stopped_at] == []
    after_resume = [at for at in writes[standby] if at > resumed_at]
    assert after_resume, f"{standby} wrote nothing after {leader} resumed: it should lead on"
    # Each move was made once: no job has two events of the same move.
    events = list(JobEvent.objects.filter(job_id__in=ids).values_list("job_id", "from_status", "to_status"))
    assert len(events) == len(set(events)), sorted(events)
    print(f"\nfencing: {leader} stopped {resumed_at - stopped_at:.2f} s with an answer about {len(stale)} "
          f"job(s) in hand; {standby} polled {len(later)} times meanwhile and after; {leader} stood down")


def test_the_standalone_site_logs_at_the_level_its_environment_asks_for(tmp_path: Path) -> None:
    import jobtower

    def level(value: str) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("JOBTOWER_", "DJANGO_"))}
        env.update(DJANGO_SETTINGS_MODULE="jobtower.site.settings", JOBTOWER_HOME=str(tmp_path),
                   JOBTOWER_LOG_LEVEL=value, PYTHONPATH=str(Path(jobtower.__file__).parents[1]))
        probe = ("import django, logging; django.setup(); "
                 "print(logging.getLogger('jobtower.monitor').getEffectiveLevel())")
        return subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=120)

    assert level("debug").stdout.split() == [str(logging.DEBUG)]
    assert level("").stderr == "" and level("").stdout.split() == [str(logging.INFO)]  # empty: the default
    loud = level("chatty")
    assert loud.returncode != 0 and "JOBTOWER_LOG_LEVEL='chatty': use DEBUG, INFO" in loud.stderr
