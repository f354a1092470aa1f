"""LOCAL jobs under stress: a full disk, a stop the job ignores, its environment, no worker."""

from __future__ import annotations

import os
import subprocess
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from jobtower.backends import local
from jobtower.models import Job
from jobtower.monitor import Monitor
from jobtower.statuses import Status
from jobtower.worker import LocalWorker
from tests.conftest import gone, wait_for

PAGE = 4096  # tmpfs counts space in pages


@pytest.fixture
def small_disk(tmp_path: Path, settings) -> Path:
    """A 1 MB tmpfs holding the workspaces, unmounted after the test."""
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], check=True)
    settings.JOBTOWER = {**settings.JOBTOWER, "WORKSPACES_ROOT": str(mount / "workspaces")}
    yield mount
    if subprocess.run(["umount", str(mount)], check=False).returncode != 0:
        subprocess.run(["umount", "-l", str(mount)], check=True)  # a straggler still has a file open


def fill(disk: Path, free_pages: int) -> None:
    """Fill `disk` so that exactly `free_pages` pages are left."""
    keep = [disk / f"keep{i}" for i in range(free_pages)]
    for path in keep:
        path.write_bytes(b"k" * PAGE)
    with (disk / "filler").open("wb", buffering=0) as handle:
        try:
            while True:
                handle.write(b"f" * PAGE)
        except OSError:
            pass  # full
    for path in keep:
        path.unlink()
    assert os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize == free_pages * PAGE


def run_until_ended(worker: LocalWorker, job: Job, timeout: float = 30.0) -> Job:
    """Step `worker` until the job has ended; return it fresh."""
    def ended() -> bool:
        worker.step()
        return Job.objects.get(pk=job.pk).status_code.is_terminal

    wait_for(ended, timeout, what=f"job {job.pk} to end")
    return Job.objects.get(pk=job.pk)


@pytest.mark.root
def test_a_job_whose_pid_cannot_be_written_never_runs_and_says_why(
    job_manager, user, transactional_db, small_disk, tmp_path
) -> None:
    ran = tmp_path / "ran"
    job = job_manager.create_job(
        name="full", user=user, job_type="LOCAL", command=["sh", "-c", f"echo run >> {ran}"]
    )
    job.execute()
    fill(small_disk, free_pages=2)  # room for run.json and the exit record's reservation, not for the pid
    done = run_until_ended(LocalWorker(concurrency=1), job)
    folder = local.attempt_dir(done)
    assert done.status_code is Status.ERROR
    assert done.status_message == f"could not write supervisor.pid in {folder}: No space left on device"
    assert not ran.exists()
    # Long after its claim, the monitor still leaves it alone: it is not queued again.
    Job.objects.filter(pk=job.pk).update(start_time=timezone.now() - timedelta(seconds=local.START_GRACE + 1))
    Monitor().cycle()
    assert Job.objects.get(pk=job.pk).status_code is Status.ERROR
    assert [(e.from_status, e.to_status) for e in done.history()] == [("PEN", "SUB"), ("SUB", "RUN"), ("RUN", "ERR")]


@pytest.mark.root
def test_a_job_that_fills_the_disk_still_ends_with_its_exit_code_and_runs_once(
    job_manager, user, transactional_db, small_disk, tmp_path
) -> None:
    ran = tmp_path / "ran"
    job = job_manager.create_job(
        name="filler", user=user, job_type="LOCAL",
        command=["sh", "-c", f"echo run >> {ran}; cat /dev/zero > fill; exit 3"],
    )
    job.execute()
    done = run_until_ended(LocalWorker(concurrency=1), job)
    assert done.status_code is Status.ERROR and done.status_message == "exit code 3", done.status_message
    Job.objects.filter(pk=job.pk).update(start_time=timezone.now() - timedelta(seconds=local.START_GRACE + 1))
    Monitor().cycle()
    assert Job.objects.get(pk=job.pk).status_message == "exit code 3"
    assert ran.read_text() == "run\n"


SERVER_SECRETS = {
    "JOBTOWER_SECRET_KEY": "server-secret", "JOBTOWER_DATABASE_URL": "postgresql://u:pw@db/jobs",
    "DJANGO_SETTINGS_MODULE": "jobtower.site.settings", "REPLICA_DATABASE_URL": "postgresql://u:pw@replica/j",
    "AWS_SECRET_ACCESS_KEY": "aws-secret",
}


def test_a_job_sees_a_minimal_environment_and_no_secret_of_the_server(
    job_manager, user, local_worker, monkeypatch
) -> None:
    locale = {"LANG": "C.UTF-8", "LC_NUMERIC": "C", "TZ": "UTC", "TMPDIR": "/tmp"}
    for name, value in {**SERVER_SECRETS, **locale}.items():
        monkeypatch.setenv(name, value)
    job = job_manager.create_job(
        name="env", user=user, job_type="LOCAL", command=["env"], environment={"OMP_NUM_THREADS": "2"}
    )
    job.execute()
    done = wait_for(lambda: (j := Job.objects.get(pk=job.pk)).status_code.is_terminal and j, 30, what="the job to end")
    assert done.status_code is Status.COMPLETE, done.status_message
    seen = dict(line.split("=", 1) for line in done.get_logs()["stdout"].splitlines())
    assert not set(SERVER_SECRETS) & set(seen)
    assert "server-secret" not in done.get_logs()["stdout"]
    assert {name: seen[name] for name in [*locale, "OMP_NUM_THREADS"]} == {**locale, "OMP_NUM_THREADS": "2"}
    assert seen["PATH"] == os.environ["PATH"] and seen["HOME"] == os.environ["HOME"]
    assert seen["JOBTOWER_JOB_ID"] == str(job.pk)
    assert seen["JOBTOWER_PROGRESS_FILE"].endswith("/attempts/1/progress.json")
    allowed = local.INHERITED_ENVIRONMENT | {"OMP_NUM_THREADS", "PWD", "SHLVL", "_"}
    assert {n for n in seen if not n.startswith(("LC_", "JOBTOWER_"))} <= allowed, sorted(seen)
    assert {n for n in seen if n.startswith("JOBTOWER_")} == {
        "JOBTOWER_JOB_ID", "JOBTOWER_ATTEMPT", "JOBTOWER_JOB_FOLDER", "JOBTOWER_PROGRESS_FILE"
    }


def test_a_function_job_still_imports_its_function_without_the_server_environment(
    job_manager, user, local_worker, monkeypatch
) -> None:
    for name, value in SERVER_SECRETS.items():
        monkeypatch.setenv(name, value)
    job = job_manager.create_job(
        name="fn-env", user=user, job_type="LOCAL", function="tests.local_functions:environment_names"
    )
    job.execute()
    done = wait_for(lambda: (j := Job.objects.get(pk=job.pk)).status_code.is_terminal and j, 30, what="the job to end")
    assert done.status_code is Status.COMPLETE, done.status_message
    assert "PYTHONPATH" in done.result and not set(SERVER_SECRETS) & set(done.result)


def test_stop_returns_at_once_and_what_ignores_sigterm_is_killed_after_the_grace(
    job_manager, user, local_worker, monkeypatch
) -> None:
    import time

    monkeypatch.setattr(local, "STOP_GRACE", 1.0)
    job = job_manager.create_job(
        name="stubborn", user=user, job_type="LOCAL",
        # Both children ignore SIGTERM (inherited); one leaves the job's session and process group.
        command=["bash", "-c",
                 "trap '' TERM; setsid sleep 600 & echo $! > escaped; sleep 600 & echo $! > stubborn; wait"],
    )
    job.execute()
    running = wait_for(lambda: (j := Job.objects.get(pk=job.pk)).status_code is Status.RUNNING and j, 30,
                       what="Running")
    files = [running.folder / "escaped", running.folder / "stubborn"]
    pids = wait_for(lambda: all(f.exists() and f.read_text().strip() for f in files)
                    and [int(f.read_text()) for f in files])
    pgid = local.supervisor_pid(local.attempt_dir(running))
    wait_for(lambda: Path(f"/proc/{pids[0]}/stat").read_text().rsplit(")", 1)[-1].split()[3] != str(pgid),
             5, what="the escaped child to leave the job's session")
    began = time.monotonic()
    running.stop()
    took = time.monotonic() - began
    assert took < 0.5, f"stop() took {took:.2f} s"
    assert Job.objects.get(pk=job.pk).status_code is Status.ABORTED
    assert not any(gone(pid) for pid in pids)  # SIGTERM alone ends neither
    for pid in pids:
        wait_for(lambda pid=pid: gone(pid), local.STOP_GRACE + 3, what=f"process {pid} to be killed")
    print(f"stop() returned in {took * 1000:.1f} ms; both gone {time.monotonic() - began:.2f} s after it")


def test_executing_a_local_job_with_no_worker_running_says_so(job_manager, user, transactional_db) -> None:
    from jobtower.models import Worker

    Worker.objects.create(name="long gone", kind="worker", host="h", pid=1,
                          heartbeat=timezone.now() - timedelta(seconds=local.WORKER_STALE_AFTER + 1))
    alone = job_manager.create_job(name="alone", user=user, job_type="LOCAL", command=["true"])
    alone.execute()
    assert alone.status_code is Status.SUBMITTED
    assert alone.status_message == Job.objects.get(pk=alone.pk).status_message == local.NO_WORKER
    assert "start `jobtower worker`" in local.NO_WORKER

    worker = LocalWorker(concurrency=1)
    worker.heartbeat.beat(force=True)
    served = job_manager.create_job(name="served", user=user, job_type="LOCAL", command=["true"])
    served.execute()
    assert Job.objects.get(pk=served.pk).status_message == ""
    # Once a worker runs the first job, the warning is gone with its claim.
    for job in (alone, served):
        assert run_until_ended(worker, job).status_message == ""
