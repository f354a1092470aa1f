"""The worker and the monitor as real processes: crashes, two workers, batched polls, callbacks.

Webhooks and e-mail, which the monitor delivers from the outbox, are tested in test_outbox.py.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

from jobtower import manager
from jobtower.models import Job, JobEvent
from jobtower.monitor import Monitor
from jobtower.statuses import Status
from tests.conftest import wait_for


def start(kind: str, env: dict[str, str], *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "jobtower.cli", kind, *args], env=env)


def statuses_of(ids: list[int]) -> Counter:
    return Counter(Job.objects.filter(pk__in=ids).values_list("_status", flat=True))


def test_crash_of_worker_and_monitor_loses_no_job_and_runs_none_twice(job_manager, user, engine_env) -> None:
    jobs = []
    for i in range(50):
        # Each run appends to runs.txt in its own folder; every fifth job fails with exit code 7.
        code = 7 if i % 5 == 0 else 0
        job = job_manager.create_job(
            name=f"crash_{i}", user=user, job_type="LOCAL",
            command=["sh", "-c", f"echo run >> runs.txt; sleep {1 + i % 3}; exit {code}"],
        )
        job.execute()
        jobs.append((job, code))
    ids = [job.pk for job, _ in jobs]
    worker = start("worker", engine_env, "--concurrency", "50")
    monitor = start("monitor", engine_env, "--interval", "0.5")
    try:
        wait_for(lambda: statuses_of(ids)["RUN"] == 50, 60, what="all 50 jobs claimed")
        wait_for(lambda: all((job.folder / "attempts" / "1" / "supervisor.pid").exists() for job, _ in jobs),
                 60, what="all 50 supervisors started")
        for process in (worker, monitor):
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=10)
        # While nothing watches, the jobs go on under their supervisors and end.
        wait_for(lambda: all((job.folder / "attempts" / "1" / "exit.json").exists() for job, _ in jobs),
                 30, what="every supervisor to record an exit")
        assert statuses_of(ids)["RUN"] == 50  # nobody recorded anything meanwhile
        worker = start("worker", engine_env, "--concurrency", "50")
        monitor = start("monitor", engine_env, "--interval", "0.5")
        wait_for(lambda: statuses_of(ids)["RUN"] == 0, 60, what="the restarted monitor to finish every job")
    finally:
        for process in (worker, monitor):
            process.terminate()
            process.wait(timeout=30)
    for job, code in jobs:
        final = Job.objects.get(pk=job.pk)
        expected = Status.ERROR if code else Status.COMPLETE
        assert final.status_code is expected, (final.pk, final.status_code, final.status_message)
        if code:
            assert final.status_message.startswith("exit code 7")
        assert (final.folder / "runs.txt").read_text() == "run\n"  # ran exactly once
        assert JobEvent.objects.filter(job=final, from_status="SUB", to_status="RUN").count() == 1


def test_two_workers_never_run_the_same_job(job_manager, user, engine_env, tmp_path: Path) -> None:
    ledger = tmp_path / "ledger"
    ids = []
    for i in range(120):
        job = job_manager.create_job(
            name=f"t{i}", user=user, job_type="LOCAL",
            command=["sh", "-c", f'echo "$JOBTOWER_JOB_ID $PPID" >> {ledger}'],
        )
        job.execute()
        ids.append(job.pk)
    workers = [start("worker", engine_env, "--concurrency", "4", "--name", f"w{n}") for n in range(2)]
    try:
        wait_for(lambda: statuses_of(ids)["COM"] == 120, 120, what="120 jobs to complete")
    finally:
        for process in workers:
            process.terminate()
            process.wait(timeout=30)
    runs = Counter(line.split()[0] for line in ledger.read_text().splitlines())
    assert sorted(int(job_id) for job_id in runs) == sorted(ids)
    assert set(runs.values()) == {1}
    sources = JobEvent.objects.filter(job_id__in=ids, to_status="RUN").count()
    assert sources == 120


def test_monitor_polls_each_engine_once_per_cycle(job_manager, user, memory, transactional_db) -> None:
    jobs = [job_manager.create_job(name=f"m{i}", user=user, job_type="MEMORY") for i in range(25)]
    for job in jobs:
        job.execute()
    for job in jobs[:10]:
        memory.set(job, Status.RUNNING)
    memory.calls.clear()
    monitor = Monitor(results_threads=0)
    assert monitor.cycle() == 10
    assert [c for c in memory.calls if c[0] == "poll"] == [("poll", None)]
    assert statuses_of([j.pk for j in jobs]) == Counter({"RUN": 10, "SUB": 15})
    for job in jobs:
        memory.set(job, Status.COMPLETE)
    memory.calls.clear()
    assert monitor.cycle() == 25
    assert len([c for c in memory.calls if c[0] == "poll"]) == 1
    assert statuses_of([j.pk for j in jobs]) == Counter({"COM": 25})
    assert JobEvent.objects.filter(to_status="COM").count() == 25


def test_unanswering_engine_leaves_statuses_alone(job_manager, user, memory, transactional_db) -> None:
    job = job_manager.create_job(name="d", user=user, job_type="MEMORY")
    job.execute()
    memory.fail_poll = ConnectionError("engine down")
    assert Monitor(results_threads=0).cycle() == 0
    assert Job.objects.get(pk=job.pk).status_code is Status.SUBMITTED


def test_callback_burst_with_a_monitor_costs_one_check(client, job_manager, user, memory, rf, transactional_db) -> None:
    monitor = Monitor(results_threads=0)
    monitor.heartbeat.beat(force=True)
    manager._monitor_seen[:] = [0.0, 0.0]
    job = job_manager.create_job(name="cb", user=user, job_type="MEMORY")
    job.execute()
    memory.set(job, Status.RUNNING)
    memory.calls.clear()
    url = job_manager.get_job_status_callback_url(rf.get("/"), job.pk)
    for _ in range(20):
        assert client.get(url).json() == {"success": True}
    assert memory.calls == []  # the requests only flag the job
    assert Job.objects.get(pk=job.pk).check_requested is not None
    assert monitor.check_requested() == 1
    assert memory.calls == [("poll", None)]
    assert Job.objects.get(pk=job.pk).status_code is Status.RUNNING
    assert monitor.check_requested() == 0 and memory.calls == [("poll", None)]
    monitor.heartbeat.remove()
    manager._monitor_seen[:] = [0.0, 0.0]


def test_a_job_deleted_while_it_ends_does_not_stop_the_worker(job_manager, user, local_worker) -> None:
    job = job_manager.create_job(name="gone", user=user, job_type="LOCAL", command=["sleep", "0.5"])
    job.execute()
    wait_for(lambda: Job.objects.get(pk=job.pk).status_code is Status.RUNNING, 20, what="running")
    Job.objects.filter(pk=job.pk).delete()  # a bulk delete, behind the worker's back
    later = job_manager.create_job(name="later", user=user, job_type="LOCAL", command=["true"])
    later.execute()
    wait_for(lambda: Job.objects.get(pk=later.pk).status_code is Status.COMPLETE, 30, what="the next job to run")


def test_site_and_api_need_a_permission_to_run_programs(client, user, transactional_db) -> None:
    from django.contrib.auth.models import Permission

    client.force_login(user)
    assert client.post("/submit/", {"command": "true"}).status_code == 403
    assert "Run a command" not in client.get("/").content.decode()
    api = client.post("/api/jobs/", {"job_type": "LOCAL", "name": "x", "command": ["true"]},
                      content_type="application/json")
    assert api.status_code == 403 and "jobtower.add_job" in api.json()["error"]
    basic = client.post("/api/jobs/", {"job_type": "BASIC", "name": "b"}, content_type="application/json")
    assert basic.status_code == 201
    user.user_permissions.add(Permission.objects.get(codename="add_job", content_type__app_label="jobtower"))
    assert client.post("/submit/", {"command": "true"}).status_code == 302
    assert Job.objects.filter(job_type="LOCAL", user=user).count() == 1


def test_callback_fast_path_flags_once_and_still_404s_unknown_ids(client, job_manager, user, rf,
                                                                  transactional_db) -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    monitor = Monitor(results_threads=0)
    monitor.heartbeat.beat(force=True)
    manager._monitor_seen[:] = [0.0, 0.0]
    try:
        job = job_manager.create_job(name="fast", user=user, job_type="BASIC")
        job.execute()
        url = job_manager.get_job_status_callback_url(rf.get("/"), job.pk)
        assert client.get(url).json() == {"success": True}
        with CaptureQueriesContext(connection) as queries:
            assert client.get(url).json() == {"success": True}
        writes = [q["sql"] for q in queries if q["sql"].startswith("UPDATE") and "check_requested" in q["sql"]]
        assert len(writes) == 1  # an UPDATE that matches nothing: the flag is set already
        assert Job.objects.get(pk=job.pk).check_requested is not None
        ghost = url.replace(f"/{job.pk}/", "/987654/").split("?")[0] + f"?token={manager.callback_token(987654)}"
        assert client.get(ghost).status_code == 404
    finally:
        monitor.heartbeat.remove()
        manager._monitor_seen[:] = [0.0, 0.0]
