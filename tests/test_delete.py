"""Every way of deleting jobs stops them and removes their own folders: QuerySet.delete(), a user's cascade."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from jobtower.errors import NotSupported, StopError
from jobtower.models import Job, JobEvent
from jobtower.statuses import Status
from tests import jobtypes  # noqa: F401  (registers the MEMORY and COUNTING job types)
from tests.conftest import wait_for


def ended(pid: int) -> bool:
    """Return True when process `pid` has ended (gone, or a zombie nobody reaped yet)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] == "Z"
    except OSError:
        return True


def running_local_job(job_manager: Any, user: Any, name: str) -> tuple[Job, list[int]]:
    """Start a LOCAL job whose command and a child of it sleep; return it and those two pids."""
    job = job_manager.create_job(
        name=name, user=user, job_type="LOCAL", command=["sh", "-c", "sleep 300 & echo $! > pids; wait"],
    )
    job.execute()
    pids_file = job.folder / "pids"
    wait_for(lambda: Job.objects.get(pk=job.pk).status_code is Status.RUNNING, 30, what=f"{name} to run")
    wait_for(lambda: pids_file.exists() and pids_file.read_text().strip(), 30, what=f"{name}'s child")
    supervisor = int((job.folder / "attempts" / "1" / "supervisor.pid").read_text())
    return Job.objects.get(pk=job.pk), [supervisor, int(pids_file.read_text())]


def test_queryset_delete_stops_running_jobs_and_removes_only_their_folders(job_manager, user,
                                                                          local_worker) -> None:
    (first, first_pids), (second, second_pids) = (running_local_job(job_manager, user, n) for n in ("a", "b"))
    neighbour = job_manager.create_job(name="neighbour", user=user, job_type="BASIC")
    neighbour.save()
    (neighbour.ensure_folder() / "keep.txt").write_text("keep")
    workspace_file = Path(first.workspace) / "user_file.txt"
    workspace_file.write_text("mine")
    folders = [first.folder, second.folder]
    deleted, _ = Job.objects.filter(pk__in=[first.pk, second.pk]).delete()
    assert deleted >= 2 and not Job.objects.filter(pk__in=[first.pk, second.pk]).exists()
    assert not JobEvent.objects.filter(job_id__in=[first.pk, second.pk]).exists()
    for pid in first_pids + second_pids:
        wait_for(lambda pid=pid: ended(pid), 15, what=f"process {pid} of a deleted job to end")
    assert not any(folder.exists() for folder in folders)
    assert (neighbour.folder / "keep.txt").read_text() == "keep" and workspace_file.read_text() == "mine"
    assert Job.objects.filter(pk=neighbour.pk).exists()


def test_deleting_a_user_stops_their_jobs_and_removes_their_folders(job_manager, user, other_user,
                                                                    local_worker) -> None:
    running, pids = running_local_job(job_manager, user, "running")
    done = job_manager.create_job(name="done", user=user, job_type="BASIC")
    done.execute()
    done.status = "Complete"
    (done.ensure_folder() / "out.txt").write_text("out")
    other = job_manager.create_job(name="bob's", user=other_user, job_type="BASIC")
    other.save()
    (other.ensure_folder() / "out.txt").write_text("bob")
    folders = [running.folder, done.folder]
    user.delete()
    assert not Job.objects.filter(pk__in=[running.pk, done.pk]).exists()
    for pid in pids:
        wait_for(lambda pid=pid: ended(pid), 15, what=f"process {pid} of the deleted user's job to end")
    assert not any(folder.exists() for folder in folders)
    assert (other.folder / "out.txt").read_text() == "bob"


def test_a_cascade_whose_engine_cannot_stop_a_job_deletes_nothing(job_manager, user, memory, monkeypatch,
                                                                  transactional_db) -> None:
    job = job_manager.create_job(name="stuck", user=user, job_type="MEMORY")
    job.execute()
    folder = job.ensure_folder()

    def refuse(job: Job) -> None:
        raise ConnectionError("engine down")

    monkeypatch.setattr(memory, "cancel", refuse)
    with pytest.raises(StopError, match="refused, so nothing was deleted.*engine down"):
        user.delete()
    assert Job.objects.get(pk=job.pk).status_code is Status.SUBMITTED
    assert type(user).objects.filter(pk=user.pk).exists() and folder.is_dir()
    with pytest.raises(StopError, match="none was deleted.*engine down"):
        Job.objects.filter(pk=job.pk).delete()
    assert Job.objects.filter(pk=job.pk).exists() and folder.is_dir()
    monkeypatch.undo()
    user.delete()  # once the engine answers, the cascade stops the job and goes through
    assert ("cancel", job.pk) in memory.calls
    assert not Job.objects.filter(pk=job.pk).exists()
    wait_for(lambda: not folder.exists(), 5, what="the folder to go on commit")


def test_a_bulk_delete_of_jobs_whose_engine_cannot_stop_is_refused_before_anything_moves(
    job_manager, user, db, set_status
) -> None:
    stoppable = job_manager.create_job(name="basic", user=user, job_type="BASIC")
    stoppable.execute()
    unstoppable = job_manager.create_job(name="c", user=user, job_type="COUNTING")
    unstoppable.save()
    set_status(unstoppable, Status.RUNNING)
    with pytest.raises(NotSupported, match="cannot stop"):
        Job.objects.filter(user=user).delete()
    assert Job.objects.get(pk=stoppable.pk).status_code is Status.SUBMITTED  # nothing was stopped
    assert Job.objects.filter(user=user).count() == 2
    unstoppable.delete(force=True)  # the one way to drop a job its engine cannot stop
    assert not Job.objects.filter(pk=unstoppable.pk).exists()


def test_finished_jobs_are_deleted_in_bulk_without_asking_their_engine(job_manager, user, memory, set_status,
                                                                       transactional_db) -> None:
    jobs = [job_manager.create_job(name=f"f{i}", user=user, job_type="MEMORY") for i in range(3)]
    for job in jobs:
        job.execute()
        set_status(job, Status.COMPLETE)
        job.ensure_folder()
    memory.calls.clear()
    assert user.jobtower_jobs.all().delete()[0] >= 3
    assert memory.calls == [] and not Job.objects.exists()
    assert not any(job.folder.exists() for job in jobs)
