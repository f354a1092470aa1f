"""SLURM jobs: the state map and settings as data, then real jobs on the loopback Slurm cluster, most of
them on both paths (the Slurm commands, "cli", and slurmrestd with a JWT, "rest"), then scripts/engines/slurm.sh.

The integration tests carry the `slurm` marker and fail, never skip, without the cluster
(scripts/engines/slurm.sh up). Jobs here are a few seconds long at most; every test cancels what it left.
What only the REST path has (its request building, tokens, function jobs through it) is in test_slurmrest.py.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.test import Client

from jobtower.backends.condor import rollup as condor_rollup
from jobtower.backends.rollup import rollup
from jobtower.backends.slurm import SLURM_STATES, SlurmBackend, parse_task_string, state_of, wait_status_message
from jobtower.errors import NotSupported
from jobtower.models import Job, SlurmCluster, SlurmJob
from jobtower.models.slurm import array_indices
from jobtower.monitor import Monitor
from jobtower.statuses import Status
from jobtower.web.tokens import make_token
from tests.conftest import SlurmPath, drive, ended, free_port, fresh, in_slurm_queue, wait_for

TIMEOUT = 60.0

# -- as data: no cluster needed --------------------------------------------------------------------


@pytest.mark.parametrize(("state", "code", "status", "message"), [
    ("PENDING", None, Status.SUBMITTED, ""),
    ("RUNNING", None, Status.RUNNING, ""),
    ("SUSPENDED", None, Status.PAUSED, ""),
    ("COMPLETED", 0, Status.COMPLETE, ""),
    ("FAILED", 3, Status.ERROR, "exit code 3"),
    ("CANCELLED by 0", None, Status.ABORTED, "CANCELLED: removed from Slurm"),
    ("TIMEOUT", None, Status.ERROR, "TIMEOUT: it ran past its time limit"),
    ("OUT_OF_MEMORY", None, Status.ERROR, "OUT_OF_MEMORY: it used more memory than it asked for"),
    ("NODE_FAIL", None, Status.ERROR, "NODE_FAIL: its node failed"),
    ("PREEMPTED", None, Status.ERROR, "PREEMPTED: a job of higher priority took its resources"),
    ("SOMETHING_NEW", None, Status.OTHER, "Slurm reports the state 'SOMETHING_NEW', which jobtower does not know"),
])
def test_slurm_states_map_to_statuses_with_the_reason(state: str, code: int | None, status: Status,
                                                      message: str) -> None:
    assert state_of(state, code) == (status, message)


def test_every_state_in_the_map_has_a_status_and_squeue_wait_statuses_are_decoded() -> None:
    assert all(isinstance(status, Status) for status, _ in SLURM_STATES.values())
    assert wait_status_message(768) == (3, "exit code 3")
    assert wait_status_message(9) == (0, "killed by signal 9")
    assert state_of("FAILED", 0, 9) == (Status.ERROR, "killed by signal 9")


def test_array_strings_expand_as_sbatch_reads_them() -> None:
    assert array_indices("0-3") == [0, 1, 2, 3]
    assert array_indices("1,3,5-7") == [1, 3, 5, 6, 7]
    assert array_indices("0-15:4%2") == [0, 4, 8, 12]
    assert parse_task_string("[3-5%2]") == [3, 4, 5]


def test_arrays_roll_up_with_the_function_condor_clusters_use() -> None:
    assert condor_rollup is rollup  # one shared roll-up, re-exported by the HTCondor backend
    states = {0: (Status.COMPLETE, ""), 1: (Status.ERROR, "exit code 3"), 2: (Status.COMPLETE, "")}
    observation = rollup(states, 3, unit="task")
    assert observation.status is Status.VARIOUS_COMPLETE
    assert "task 1: exit code 3" in observation.message


def test_bad_settings_are_refused_before_anything_moves(job_manager: Any, user: Any, db: Any) -> None:
    cases = [
        ({"command": ["true"], "sbatch": {"output": "x"}}, "set by jobtower"),
        ({"command": ["true"], "sbatch": {"no-such-option": 1}}, "not an sbatch option"),
        ({"command": ["true"], "array": "0-x"}, "array must be"),
        ({"command": "echo hi"}, "argv list"),
        ({"command": ["true"], "sbatch": {"mem": "1G\n#SBATCH --uid=0"}}, "one line"),
    ]
    for settings, words in cases:
        with pytest.raises((TypeError, ValueError), match=words):
            job_manager.create_job(name="bad", user=user, job_type="SLURM", **settings)
    job = job_manager.create_job(name="none", user=user, job_type="SLURM")
    with pytest.raises(ValueError, match="exactly one of command"):
        job.execute()
    assert fresh(job).status_code is Status.PENDING
    job = job_manager.create_job(name="gone", user=user, job_type="SLURM", command=["true"], scheduler="nowhere")
    with pytest.raises(ValueError, match="no Slurm cluster named 'nowhere'"):
        job.execute()
    assert fresh(job).status_code is Status.PENDING


def test_a_cluster_token_is_write_only(db: Any) -> None:
    cluster = SlurmCluster.objects.create(name="hpc", slurm_conf="/etc/slurm/slurm.conf", token="eyJsecret")
    assert "eyJsecret" not in repr(cluster) + str(cluster)
    from django.core import serializers

    assert "eyJsecret" not in serializers.serialize("json", [cluster])


def test_the_cluster_admin_never_shows_the_token(admin_client: Any) -> None:
    cluster = SlurmCluster.objects.create(name="hpc", rest_url="https://hpc.example.org:6820", token="eyJ.secret")
    page = admin_client.get(f"/admin/jobtower/slurmcluster/{cluster.pk}/change/")
    assert page.status_code == 200 and b"secret" not in page.content
    form = {"name": "hpc", "slurm_conf": "", "rest_url": "https://hpc.example.org:6820", "description": "",
            "new_token": ""}
    admin_client.post(f"/admin/jobtower/slurmcluster/{cluster.pk}/change/", form)
    assert SlurmCluster.objects.get(pk=cluster.pk).token == "eyJ.secret"  # empty keeps it
    admin_client.post(f"/admin/jobtower/slurmcluster/{cluster.pk}/change/", {**form, "new_token": "eyJ.new"})
    assert SlurmCluster.objects.get(pk=cluster.pk).token == "eyJ.new"
    listing = admin_client.get("/admin/jobtower/slurmcluster/")
    assert listing.status_code == 200 and b"eyJ" not in listing.content


# -- on both paths: the Slurm commands ("cli") and slurmrestd with a JWT ("rest") --------------------
#
# Each test runs once per path (the `slurm_path` fixture of conftest). Where Slurm's REST API (22.05)
# truly does otherwise, the test says what each path gives.


def cycle_until(job: Job, status: Status) -> Job:
    return drive(job, lambda j: j.status_code is status, TIMEOUT, f"job {job.pk} to be {status.display}",
                 interval=0.3)


@pytest.mark.slurm
def test_a_command_runs_in_its_folder_with_only_its_own_environment(
    slurm_path: SlurmPath, job_manager: Any, user: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JOBTOWER_TEST_SERVER_SECRET", "do-not-leak")
    job = slurm_path.run(job_manager, user,
                         command=["/bin/sh", "-c", 'echo "hello $GREETING"; env; pwd; echo oops >&2'],
                         environment={"GREETING": "world"}, sbatch={"mem": "32M", "cpus-per-task": 1})
    assert fresh(job).status_code is Status.SUBMITTED and fresh(job).slurm_job_id > 0
    done = ended(job, TIMEOUT)
    assert done.status_code is Status.COMPLETE, done.status_message
    logs = done.get_logs()
    assert logs["stdout"].startswith("hello world\n"), logs
    assert "do-not-leak" not in logs["stdout"] and f"JOBTOWER_JOB_ID={job.pk}" in logs["stdout"]
    assert str(done.folder) in logs["stdout"].splitlines()
    assert logs["stderr"] == "oops\n"
    assert slurm_path.backend.log_files(done)["stdout"] == done.folder / "attempts" / "1" / "stdout.txt"
    (record,) = slurm_path.records(done.slurm_job_id)
    assert record["memory_per_node"] == 32 and record["comment"] == f"jobtower:{job.pk}:1"


@pytest.mark.slurm
def test_a_failing_command_ends_in_error_with_its_exit_code(slurm_path: SlurmPath, job_manager: Any,
                                                            user: Any) -> None:
    done = ended(slurm_path.run(job_manager, user, command=["/bin/sh", "-c", "exit 3"]), TIMEOUT)
    assert done.status_code is Status.ERROR and done.status_message == "exit code 3"


@pytest.mark.slurm
def test_a_batch_script_with_sbatch_lines_runs_from_the_input_files_with_its_options(
    slurm_path: SlurmPath, job_manager: Any, user: Any, tmp_path: Path
) -> None:
    # sbatch reads the #SBATCH lines itself; the REST path reads them as sbatch would and sends them as fields
    script = tmp_path / "model.sbatch"
    script.write_text("#!/bin/sh\n#SBATCH --mem=16M\n#SBATCH --nice=5\necho \"from the script in $(pwd)\"\n")
    job = slurm_path.run(job_manager, user, script="model.sbatch", remote_input_files=[str(script)],
                         sbatch={"nice": 7})
    (record,) = slurm_path.records(job.slurm_job_id)
    assert record["memory_per_node"] == 16 and record["nice"] == 7  # the job's own options win
    done = ended(job, TIMEOUT)
    assert done.status_code is Status.COMPLETE, done.status_message
    assert done.get_logs()["stdout"] == f"from the script in {done.folder}\n"


@pytest.mark.slurm
def test_an_array_rolls_up_naming_its_failed_task_and_its_tasks_are_found_in_accounting(
    slurm_path: SlurmPath, job_manager: Any, user: Any
) -> None:
    job = slurm_path.run(job_manager, user, array="0-3", command=[
        "/bin/sh", "-c", 'echo "task $SLURM_ARRAY_TASK_ID"; [ "$SLURM_ARRAY_TASK_ID" != 2 ] || exit 3'])
    done = ended(job, TIMEOUT)
    assert done.status_code is Status.VARIOUS_COMPLETE, done.status_message
    assert "task 2: exit code 3" in done.status_message and "3 Complete" in done.status_message
    assert done.get_logs()["stdout"] == {str(t): f"task {t}\n" for t in range(4)}
    assert set(slurm_path.backend.log_files(done)) == {f"{n}[{t}]" for n in ("stdout", "stderr") for t in range(4)}
    # as if the tasks had left the queue (MinJobAge): accounting alone (sacct, or slurmdbd's REST API) must
    # know each of them. slurmdbd hears of an end a moment after the controller: wait for ended states.
    cluster = SlurmCluster.objects.get(name="rest") if slurm_path.rest else None
    found: dict[int, dict[int | None, tuple[Status, str]]] = {}

    def accounted() -> bool:
        found.clear()
        slurm_path.backend._accounting(cluster, [done], found)
        tasks = found.get(done.slurm_job_id, {})
        return len(tasks) == 4 and all(status.is_terminal for status, _ in tasks.values())

    wait_for(accounted, TIMEOUT, interval=0.5, what="accounting to know the four tasks ended")
    tasks = found[done.slurm_job_id]
    assert tasks[0] == tasks[1] == tasks[3] == (Status.COMPLETE, "")
    # sacct keeps the exit code; slurmdbd's REST API of Slurm 22.05 reports every exit as SUCCESS/0, so the
    # REST path knows only that the task FAILED
    assert tasks[2] == (Status.ERROR, "FAILED" if slurm_path.rest else "exit code 3")


@pytest.mark.slurm
def test_stop_cancels_the_job_on_slurm(slurm_path: SlurmPath, job_manager: Any, user: Any) -> None:
    job = cycle_until(slurm_path.run(job_manager, user, command=["sleep", "300"]), Status.RUNNING)
    job.stop()
    assert fresh(job).status_code is Status.ABORTED
    wait_for(lambda: not slurm_path.active(job.slurm_job_id), TIMEOUT, interval=0.2,
             what="scancel (or the DELETE through slurmrestd) to end the job")


@pytest.mark.slurm
def test_pause_holds_a_waiting_job_and_resume_releases_it(slurm_path: SlurmPath, job_manager: Any,
                                                          user: Any) -> None:
    # begin in the future: the job waits in the queue, so pause() holds it (scontrol hold, or hold=true
    # through slurmrestd), which both paths can do
    job = slurm_path.run(job_manager, user, command=["true"], sbatch={"begin": "now+3600"})
    job.pause()
    assert fresh(job).status_code is Status.PAUSED
    assert slurm_path.records(job.slurm_job_id)[0]["priority"] == 0  # held
    assert drive(job, lambda j: True, TIMEOUT, "one cycle").status_code is Status.PAUSED  # JobHeldUser reads Paused
    fresh(job).resume()
    assert fresh(job).status_code is Status.SUBMITTED
    assert slurm_path.records(job.slurm_job_id)[0]["priority"] > 0  # released
    assert drive(job, lambda j: True, TIMEOUT, "one cycle").status_code is Status.SUBMITTED
    fresh(job).stop()


@pytest.mark.slurm
def test_pause_of_a_running_job_suspends_it_with_the_commands_and_is_refused_through_slurmrestd(
    slurm_path: SlurmPath, job_manager: Any, user: Any
) -> None:
    job = cycle_until(slurm_path.run(job_manager, user, command=["sleep", "300"]), Status.RUNNING)
    if slurm_path.rest:
        # Slurm's REST API (22.05) has no suspend: refused (the web API's 409), and nothing changes
        with pytest.raises(NotSupported, match="runs already, and slurmrestd v0.0.38 cannot suspend it"):
            job.pause()
        assert fresh(job).status_code is Status.RUNNING
        owner = {"HTTP_AUTHORIZATION": f"Bearer {make_token(user)}"}
        response = Client().post(f"/api/jobs/{job.pk}/pause/", **owner)
        assert response.status_code == 409 and "cannot suspend it" in response.json()["error"], response.content
        assert [r["job_state"] for r in slurm_path.records(job.slurm_job_id)] == ["RUNNING"]
        assert drive(job, lambda j: True, TIMEOUT, "one cycle").status_code is Status.RUNNING
    else:
        # scontrol suspend (the tests run as root, who may suspend), and resume runs it again
        job.pause()
        assert fresh(job).status_code is Status.PAUSED
        assert [r["job_state"] for r in slurm_path.records(job.slurm_job_id)] == ["SUSPENDED"]
        assert drive(job, lambda j: True, TIMEOUT, "one cycle").status_code is Status.PAUSED
        fresh(job).resume()
        assert fresh(job).status_code is Status.RUNNING
        assert [r["job_state"] for r in slurm_path.records(job.slurm_job_id)] == ["RUNNING"]
    fresh(job).stop()
    wait_for(lambda: not slurm_path.active(job.slurm_job_id), TIMEOUT, interval=0.2, what="the job to end")


@pytest.mark.slurm
def test_one_monitor_cycle_asks_the_controller_at_most_twice_for_many_jobs(
    slurm_path: SlurmPath, job_manager: Any, user: Any
) -> None:
    jobs = [slurm_path.run(job_manager, user, command=["/bin/sh", "-c", f"exit {i % 2}"]) for i in range(4)]
    jobs.append(slurm_path.run(job_manager, user, command=["true"], array="0-2"))
    monitor = Monitor(results_threads=0)

    def all_ended() -> bool:
        before = slurm_path.backend.queries
        monitor.cycle()
        assert slurm_path.backend.queries - before <= 2  # squeue and sacct, or GET jobs and GET slurmdb jobs
        return all(fresh(j).status_code.is_terminal for j in jobs)

    wait_for(all_ended, TIMEOUT, interval=0.3, what="five Slurm jobs to end")
    assert [fresh(j).status_code for j in jobs] == [Status.COMPLETE, Status.ERROR] * 2 + [Status.COMPLETE]


@pytest.mark.slurm
def test_the_daemon_a_path_talks_to_stopping_leaves_a_running_job_stale_then_it_is_answered_for_again(
    slurm_path: SlurmPath, job_manager: Any, user: Any, caplog: pytest.LogCaptureFixture
) -> None:
    # The commands talk to slurmctld; the REST path talks to slurmrestd (which talks to slurmctld).
    daemon = "slurmrestd" if slurm_path.rest else "slurmctld"
    job = cycle_until(slurm_path.run(job_manager, user, command=["sleep", "300"]), Status.RUNNING)
    token = SlurmCluster.objects.get(name="rest").token if slurm_path.rest else None
    pid = int(Path(f"/run/{daemon}.pid").read_text())
    subprocess.run(["kill", "-TERM", str(pid)], check=True)
    try:
        wait_for(lambda: not Path(f"/proc/{pid}").exists(), TIMEOUT, interval=0.1, what=f"{daemon} to stop")
        stale = drive(job, lambda j: j.stale_since is not None, TIMEOUT, "the job to be stale")
        assert stale.status_code is Status.RUNNING
        said = caplog.text
        if slurm_path.rest:
            assert "slurmrestd of Slurm cluster 'rest'" in said and "did not answer" in said, said
            assert token is not None and token not in said
        else:
            assert "the Slurm controller did not answer" in said, said
        # slurm.sh status says what is down, and fails
        status = slurm_sh("status")
        assert status.returncode == 1, status.stdout
        down = "slurmrestd is not running" if slurm_path.rest else "Slurm cluster jobtower does not answer"
        assert down in status.stderr, status.stderr
    finally:
        up = slurm_sh("up")  # from /, as slurm.sh up always starts slurmrestd
        assert up.returncode == 0, up.stderr
    assert slurm_sh("status").returncode == 0
    back = drive(job, lambda j: j.stale_since is None, TIMEOUT, "the job to be answered for")
    assert back.status_code is Status.RUNNING  # slurmd kept it running while the daemon was away
    back.stop()
    wait_for(lambda: not slurm_path.active(job.slurm_job_id), TIMEOUT, interval=0.2, what="the job to end")


# -- on the loopback cluster, with its commands ---------------------------------------------------------


@pytest.fixture
def slurm(slurm_cluster: str, transactional_db: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[SlurmBackend]:
    path = SlurmPath("cli", monkeypatch)
    yield path.backend
    path.cancel_leftovers()  # a failed test may leave jobs behind


def run(job_manager: Any, user: Any, **settings: Any) -> SlurmJob:
    job: SlurmJob = job_manager.create_job(name="slurm {id}", user=user, job_type="SLURM", **settings)
    job.execute()
    return job


@pytest.mark.slurm
def test_jobs_that_left_the_queue_are_read_from_accounting(slurm: SlurmBackend, job_manager: Any, user: Any) -> None:
    job = run(job_manager, user, command=["/bin/sh", "-c", "exit 3"])
    wait_for(lambda: not in_slurm_queue(job.slurm_job_id), TIMEOUT, interval=0.2, what="the job to end")
    # as if it had left squeue (MinJobAge): sacct alone must say how it ended. slurmdbd hears of the end a
    # moment after the controller, so sacct may still say RUNNING at first: wait for an ended state.
    found: dict[int, dict[int | None, tuple[Status, str]]] = {}

    def accounted() -> bool:
        found.clear()
        slurm._accounting(None, [fresh(job)], found)
        state = found.get(job.slurm_job_id, {}).get(None)
        return state is not None and state[0].is_terminal

    wait_for(accounted, TIMEOUT, interval=0.5, what="sacct to know the job ended")
    assert found[job.slurm_job_id][None] == (Status.ERROR, "exit code 3")


@pytest.mark.slurm
def test_a_controller_that_does_not_answer_leaves_statuses_stale(
    slurm: SlurmBackend, job_manager: Any, user: Any, tmp_path: Path
) -> None:
    job = cycle_until(run(job_manager, user, command=["sleep", "300"]), Status.RUNNING)
    dead = tmp_path / "slurm.conf"
    text = Path("/etc/slurm/slurm.conf").read_text()
    dead.write_text(text.replace("\nSlurmUser=", "\nSlurmctldPort=6899\nMessageTimeout=2\nSlurmUser=", 1))
    SlurmCluster.objects.create(name="dead", slurm_conf=str(dead))
    Job.objects.filter(pk=job.pk).update(engine_data={**fresh(job).engine_data, "scheduler": "dead"})
    stale = drive(job, lambda j: j.stale_since is not None, TIMEOUT, "the job to be stale")
    assert stale.status_code is Status.RUNNING
    Job.objects.filter(pk=job.pk).update(engine_data={**fresh(job).engine_data, "scheduler": None})
    back = drive(job, lambda j: j.stale_since is None, TIMEOUT, "the job to be answered for")
    assert back.status_code is Status.RUNNING
    back.stop()


@pytest.mark.slurm
def test_one_definition_on_local_and_slurm_gives_the_same_statuses_and_logs(
    slurm: SlurmBackend, local_worker: Any, job_manager: Any, user: Any
) -> None:
    definition = {"command": ["/bin/sh", "-c", 'echo "out $WHO"; echo "err $WHO" >&2; exit 3'],
                  "environment": {"WHO": "both"}, "timeout": 120}
    done = {}
    for job_type in ("LOCAL", "SLURM"):
        job = job_manager.create_job(name=f"{job_type} {{id}}", user=user, job_type=job_type, **definition)
        job.execute()
        done[job_type] = ended(job, TIMEOUT)
    local, slurm_job = done["LOCAL"], done["SLURM"]
    assert local.status_code is slurm_job.status_code is Status.ERROR
    assert local.status_message.startswith("exit code 3") and slurm_job.status_message == "exit code 3"
    for ended_job in (local, slurm_job):
        # The same path; whether a poll caught it Running before it ended is a matter of timing.
        moves = [e.to_status for e in ended_job.history()]
        assert moves[0] == "SUB" and moves[-1] == "ERR" and set(moves[1:-1]) <= {"RUN"}, moves
    assert local.get_logs() == slurm_job.get_logs() == {"stdout": "out both\n", "stderr": "err both\n"}


@pytest.mark.slurm
def test_a_job_past_its_time_limit_ends_in_error_timeout(slurm: SlurmBackend, job_manager: Any, user: Any) -> None:
    job = cycle_until(run(job_manager, user, command=["sleep", "300"], timeout=30), Status.RUNNING)
    shown = subprocess.run(["scontrol", "show", "job", str(job.slurm_job_id)], capture_output=True, text=True).stdout
    assert "TimeLimit=00:01:00" in shown  # timeout=30 s is sent as a whole minute
    # The shorter path to Slurm's own TIMEOUT: a minute's limit ends a job only after 60 to 90 s, so the
    # limit is brought forward (as an operator may) and the controller ends the job at its next check.
    subprocess.run(["scontrol", "update", f"jobid={job.slurm_job_id}", "TimeLimit=0"], check=True)
    done = ended(job, TIMEOUT)
    assert done.status_code is Status.ERROR and done.status_message == "TIMEOUT: it ran past its time limit"


# -- scripts/engines/slurm.sh: status and up ---------------------------------------------------------

SLURM_SH = Path(__file__).resolve().parent.parent / "scripts" / "engines" / "slurm.sh"
DAEMON_PIDS = ("/run/slurmrestd.pid", "/run/slurmd.pid", "/run/slurmctld.pid", "/run/slurmdbd.pid",
               "/run/munge/munged.pid")


def slurm_sh(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run scripts/engines/slurm.sh from / (as services.sh may) with these environment variables on top."""
    return subprocess.run([str(SLURM_SH), *args], capture_output=True, text=True, timeout=120, cwd="/",
                          env={**{k: v for k, v in os.environ.items() if k != "SLURM_CONF"}, **env})


@pytest.mark.slurm
def test_status_says_the_cluster_and_slurmrestd_answer_and_up_again_restarts_nothing(
    slurm_rest: dict[str, str]
) -> None:
    before = {pid: Path(pid).read_text().strip() for pid in DAEMON_PIDS}
    done = slurm_sh("status")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "Slurm cluster jobtower answers",
        f"slurmrestd answers at {slurm_rest['SLURMRESTD_URL']} (pid {before['/run/slurmrestd.pid']}, "
        f"openapi/{slurm_rest['SLURMRESTD_API']}, JWT authentication)",
    ]
    up = slurm_sh("up")
    assert up.returncode == 0, up.stderr
    assert {pid: Path(pid).read_text().strip() for pid in DAEMON_PIDS} == before  # idempotent: nothing restarted
    assert slurm_sh("status").returncode == 0


@pytest.mark.slurm
def test_status_fails_naming_slurmrestd_when_it_does_not_answer_at_the_url_of_its_facts(
    slurm_rest: dict[str, str], tmp_path: Path
) -> None:
    # Another facts file: slurmrestd expected at a port nothing listens on (the real one is not disturbed).
    (tmp_path / "slurm").mkdir()
    (tmp_path / "slurm" / "slurmrestd.env").write_text(f"SLURMRESTD_URL=http://127.0.0.1:{free_port()}\n"
                                                       f"SLURMRESTD_API={slurm_rest['SLURMRESTD_API']}\n")
    done = slurm_sh("status", ENGINES_DIR=str(tmp_path))
    assert done.returncode == 1 and done.stdout == "Slurm cluster jobtower answers\n"
    assert "slurmrestd (pid" in done.stderr and "runs but does not answer an authenticated ping at " \
        "http://127.0.0.1:" in done.stderr, done.stderr
    # No facts: slurm.sh up never set slurmrestd up here, so it is not expected.
    (tmp_path / "slurm" / "slurmrestd.env").unlink()
    done = slurm_sh("status", ENGINES_DIR=str(tmp_path))
    assert done.returncode == 0 and "slurmrestd: not set up here" in done.stdout, done.stdout + done.stderr
