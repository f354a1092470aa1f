"""CONDOR jobs: the template mapping (no pool needed), then real jobs on the loopback HTCondor pool.

The pool is started by scripts/services.sh (scripts/engines/condor.sh), which writes the client
environment to /var/cache/engines/htcondor/client.env (or $JOBTOWER_CONDOR_ENV). Without a pool the
integration tests fail; they never skip. They carry the `condor` marker (`pytest -m "not condor"`
leaves them out); the tests above them need no pool and run in every tier.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import jobtower
from jobtower.backends import condor_templates as templates
from jobtower.backends import get_backend
from jobtower.models import CondorJob, Job, JobEvent, Scheduler, create_condor_scheduler, get_scheduler
from jobtower.monitor import Monitor
from jobtower.statuses import Status
from tests import results_functions
from tests.conftest import ended, fresh, in_queue, status_is, wait_for

BACKEND_PATH = "jobtower.backends.condor:CondorBackend"


# -- the template mapping (pure: no pool, no database) ------------------------------------------


def describe(**overrides: Any) -> templates.Description:
    options: dict[str, Any] = dict(
        template_name="vanilla_transfer_files", attributes={"executable": "/bin/true"},
        folder="/ws/job_7", workspace="/ws", attempt=1, job_id=7, name="run 7",
    )
    options.update(overrides)
    return templates.describe(**options)


def test_every_template_maps_to_defaults_and_runs_in_the_job_folder() -> None:
    assert set(templates.TEMPLATES) == {
        "base", "vanilla_base", "vanilla_transfer_files", "vanilla_nfs", "vanilla_nfs_workspace",
        "remote_transfer_files",
    }
    base = describe(template_name=None).commands
    assert "universe" not in base and "should_transfer_files" not in base
    transfer = describe().commands
    assert transfer["universe"] == "vanilla" and transfer["should_transfer_files"] == "YES"
    assert transfer["when_to_transfer_output"] == "ON_EXIT_OR_EVICT" and transfer["transfer_executable"] == "true"
    assert transfer["initialdir"] == "/ws/job_7"
    assert describe(template_name="vanilla_nfs").commands["should_transfer_files"] == "NO"
    assert describe(template_name="vanilla_nfs_workspace").commands["initialdir"] == "/ws"
    assert not describe().spool and describe(template_name="remote_transfer_files").spool
    assert describe(remote=True).spool  # a named scheduler always goes through the spool


def test_each_attempt_has_its_own_log_files_and_the_job_is_tagged() -> None:
    first, third = describe(attempt=1), describe(attempt=3)
    assert first.commands["output"] == "/ws/job_7/attempts/1/stdout.txt"
    assert first.commands["error"] == "/ws/job_7/attempts/1/stderr.txt"
    assert third.commands["log"] == third.log == "/ws/job_7/attempts/3/condor.log"
    assert first.commands["+JobtowerJobId"] == "7" and third.commands["+JobtowerAttempt"] == "3"
    assert first.commands["batch_name"] == "run_7"
    many = describe(procs=4)
    assert many.procs == 4 and many.output == "/ws/job_7/attempts/1/stdout.$(Process).txt"
    assert templates.expand(many.output, 12, 3) == "/ws/job_7/attempts/1/stdout.3.txt"


def test_attributes_override_defaults_in_any_spelling_and_none_removes_one() -> None:
    d = describe(attributes={
        "Executable": "/bin/echo", "WHEN_TO_TRANSFER_OUTPUT": "ON_EXIT", "request_cpus": 2,
        "stream_output": True, "transfer_output_files": ["a.txt", "b.txt"], "transfer_executable": None,
        "output": "mine.out", "+ProjectName": '"hydro"',
    }).commands
    assert d["Executable"] == "/bin/echo" and "executable" not in d
    assert d["WHEN_TO_TRANSFER_OUTPUT"] == "ON_EXIT" and "when_to_transfer_output" not in d
    assert d["request_cpus"] == "2" and d["stream_output"] == "true"
    assert d["transfer_output_files"] == "a.txt, b.txt" and "transfer_executable" not in d
    assert d["output"] == "mine.out" and d["+ProjectName"] == '"hydro"'
    assert describe(attributes={"executable": "/bin/true", "output": "mine.out"}).output == "/ws/job_7/mine.out"


def test_executable_and_inputs_follow_the_tethys_sample() -> None:
    d = describe(
        attributes={"executable": "my_script.py", "arguments": "input_1 input_2",
                    "transfer_input_files": "extra.dat"},
        remote_input_files=["/ws/my_script.py", "/ws/input_1", "/ws/input_2"],
    ).commands
    assert d["executable"] == "/ws/my_script.py"  # found among the inputs, sent once
    assert d["transfer_input_files"] == "extra.dat, /ws/input_1, /ws/input_2"
    assert describe(attributes={"executable": "bin/run.sh"}).commands["executable"] == "/ws/job_7/bin/run.sh"
    nfs = describe(template_name="vanilla_nfs", remote_input_files=["/ws/in"]).commands
    assert "transfer_input_files" not in nfs  # a shared file system reads inputs in place


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"template_name": "vanilla_nope"}, "valid templates are: base, remote_transfer_files, vanilla_base"),
        ({"attributes": {}}, "needs an executable"),
        ({"attributes": {"executable": "/bin/true", "arguments": "a\nqueue 99"}}, "cannot span lines"),
        ({"procs": 0}, "at least 1"),
    ],
)
def test_bad_descriptions_are_refused_before_submission(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        describe(**options)


def test_unknown_template_leaves_the_job_pending(job_manager, user) -> None:
    job = job_manager.create_job(name="t", user=user, job_type="CONDOR", condorpy_template_name="vanilla_typo",
                                 attributes={"executable": "/bin/true"})
    with pytest.raises(ValueError, match="unknown condorpy_template_name 'vanilla_typo'; valid templates are"):
        job.execute()
    assert Job.objects.get(pk=job.pk).status_code is Status.PENDING
    assert not JobEvent.objects.filter(job=job).exists()


def test_missing_scheduler_and_missing_bindings_leave_the_job_pending(job_manager, user, monkeypatch) -> None:
    job = job_manager.create_job(name="s", user=user, job_type="CONDOR", scheduler="nowhere",
                                 attributes={"executable": "/bin/true"})
    with pytest.raises(ValueError, match="no HTCondor scheduler named 'nowhere'"):
        job.execute()
    job.scheduler = None
    job.save()
    monkeypatch.setitem(sys.modules, "htcondor", None)  # import htcondor now raises ImportError
    with pytest.raises(jobtower.EngineUnavailable, match=r"pip install jobtower\[condor\]"):
        job.execute()
    assert Job.objects.get(pk=job.pk).status_code is Status.PENDING


def test_schedulers_keep_their_token_to_themselves(db) -> None:
    from django.core import serializers

    scheduler = create_condor_scheduler("remote", "cm.example.org", 9618, schedd_name="submit1",
                                        token="eyJ.secret.token")
    assert scheduler.pk is None and scheduler.host == "cm.example.org:9618"  # unsaved, as in Tethys
    scheduler.save()
    assert get_scheduler("remote") == scheduler and get_scheduler("other") is None
    assert jobtower.get_scheduler("remote").has_token
    for text in (str(scheduler), repr(scheduler), serializers.serialize("json", [scheduler])):
        assert "secret" not in text
    with pytest.raises(TypeError, match="SSH settings, and jobtower does not use SSH"):
        create_condor_scheduler("ssh", "host", username="me", private_key_path="~/.ssh/id_rsa")


def test_scheduler_admin_never_shows_the_token(admin_client) -> None:
    scheduler = Scheduler.objects.create(name="pool", host="127.0.0.1:9618", token="eyJ.secret.token")
    page = admin_client.get(f"/admin/jobtower/scheduler/{scheduler.pk}/change/")
    assert page.status_code == 200 and b"secret" not in page.content
    form = {"name": "pool", "host": "127.0.0.1:9618", "schedd_name": "", "description": "", "new_token": ""}
    admin_client.post(f"/admin/jobtower/scheduler/{scheduler.pk}/change/", form)
    assert Scheduler.objects.get(pk=scheduler.pk).token == "eyJ.secret.token"  # empty keeps it
    admin_client.post(f"/admin/jobtower/scheduler/{scheduler.pk}/change/", {**form, "new_token": "eyJ.new"})
    assert Scheduler.objects.get(pk=scheduler.pk).token == "eyJ.new"
    listing = admin_client.get("/admin/jobtower/scheduler/")
    assert listing.status_code == 200 and b"eyJ" not in listing.content


# -- what HTCondor says, read as statuses (ads as dicts: no pool) ------------------------------------


@pytest.mark.parametrize(
    ("ad", "expected"),
    [
        ({"JobStatus": 1}, (Status.SUBMITTED, "")),
        ({"JobStatus": 2}, (Status.RUNNING, "")),
        ({"JobStatus": 6}, (Status.RUNNING, "")),
        ({"JobStatus": 4, "ExitCode": 0, "ExitBySignal": False}, (Status.COMPLETE, "")),
        ({"JobStatus": 4, "ExitCode": 3, "ExitBySignal": False}, (Status.ERROR, "exit code 3")),
        ({"JobStatus": 4, "ExitBySignal": True, "ExitSignal": 9}, (Status.ERROR, "killed by signal 9")),
        ({"JobStatus": 5, "HoldReasonCode": 1, "HoldReason": "jobtower: paused by a user (by user ciuser)"},
         (Status.PAUSED, "")),
        ({"JobStatus": 5, "HoldReasonCode": 1, "HoldReason": "via condor_hold (by user ciuser)"},
         (Status.PAUSED, "held: via condor_hold (by user ciuser)")),
        ({"JobStatus": 5, "HoldReasonCode": 16, "HoldReason": "Spooling input data files"}, (Status.SUBMITTED, "")),
        ({"JobStatus": 5, "HoldReasonCode": 13, "HoldReason": "Transfer input files failure"},
         (Status.ERROR, "held by HTCondor: Transfer input files failure")),
        ({"JobStatus": 3, "RemoveReason": "via condor_rm (by user ciuser)"},
         (Status.ABORTED, "removed from HTCondor: via condor_rm (by user ciuser)")),
        ({"JobStatus": 9}, (Status.OTHER, "HTCondor reports JobStatus 9, which jobtower does not know")),
    ],
)
def test_proc_states_map_to_statuses(ad: dict[str, Any], expected: tuple[Status, str]) -> None:
    from jobtower.backends.condor import proc_status

    assert proc_status(ad) == expected


def test_procs_roll_up_to_various_and_various_complete() -> None:
    from jobtower.backends.condor import rollup

    ok, run, bad = (Status.COMPLETE, ""), (Status.RUNNING, ""), (Status.ERROR, "exit code 2")
    assert rollup({0: ok, 1: ok}, 2).status is Status.COMPLETE
    assert rollup({0: run, 1: ok}, 2).status is Status.VARIOUS
    various = rollup({0: ok, 1: bad, 2: ok}, 3)
    assert various.status is Status.VARIOUS_COMPLETE and various.message == "2 Complete, 1 Error; proc 1: exit code 2"
    assert rollup({0: bad, 1: bad}, 2).status is Status.ERROR
    assert rollup({0: ok, 1: (Status.PAUSED, "")}, 2).status is Status.PAUSED  # so resume() applies


class FakeSchedd:
    """A schedd whose procs leave the queue between the queue query and the history query."""

    def __init__(self, queue: list[dict[str, Any]], history: list[dict[str, Any]]) -> None:
        self.queue, self.history_ads, self.calls = queue, history, []

    def query(self, constraint: str, projection: list[str]) -> list[dict[str, Any]]:
        self.calls.append("query")
        return self.queue

    def history(self, constraint: str, projection: list[str], match: int = -1) -> list[dict[str, Any]]:
        self.calls.append("history")
        return self.history_ads[:match] if match >= 0 else self.history_ads


def test_a_poll_finds_procs_that_left_the_queue_meanwhile_with_two_queries(monkeypatch) -> None:
    from types import SimpleNamespace

    from jobtower.backends.condor import CondorBackend

    def ad(proc: int, state: int, **more: Any) -> dict[str, Any]:
        return {"ClusterId": 40, "ProcId": proc, "JobStatus": state, "JobtowerJobId": 9, **more}

    # At the queue query procs 0 and 1 run; by the history query proc 1 has ended too, and the
    # history lists it before proc 2 (newest first).
    fake = FakeSchedd([ad(0, 2), ad(1, 2)], [ad(1, 4, ExitCode=0), ad(2, 4, ExitCode=0)])
    backend = CondorBackend()
    monkeypatch.setattr(backend, "_schedd", lambda scheduler: fake)
    job = SimpleNamespace(pk=9, attempt=1, engine_data={"cluster_id": 40, "procs": 3, "attempt": 1})
    found = backend._ads(None, [job])
    assert sorted(found[40]) == [0, 1, 2] and fake.calls == ["query", "history"]
    assert backend._observe(job, found)[0].status is Status.VARIOUS
    stranger = FakeSchedd([{**ad(0, 2), "JobtowerJobId": 10}], [])  # a cluster id handed out again
    monkeypatch.setattr(backend, "_schedd", lambda scheduler: stranger)
    lost = backend._observe(job, backend._ads(None, [job]))[0]
    assert lost.status is Status.ERROR and "lost: HTCondor has no record of 40.0" in lost.message


# -- the real pool -----------------------------------------------------------------------------------


@pytest.fixture
def backend(pool) -> Any:
    return get_backend(BACKEND_PATH)


def write(path: Path, text: str, mode: int = 0o644) -> Path:
    path.write_text(text)
    path.chmod(mode)
    return path


def condor_tool(pool: dict[str, str], *args: str) -> str:
    """Run an HTCondor command-line tool as the pool's administrator (root, not the job user)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("_CONDOR_SEC")}
    env["PATH"] = os.pathsep.join([pool["JOBTOWER_CONDOR_BIN"], pool["JOBTOWER_CONDOR_SBIN"], env.get("PATH", "")])
    out = subprocess.run(list(args), env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout


def sleeper(job_manager, user, workspace: Path, seconds: int = 300, **options: Any) -> CondorJob:
    job = job_manager.create_job(
        name="sleeper", user=user, job_type="CONDOR", workspace=str(workspace),
        condorpy_template_name="vanilla_base",
        attributes={"executable": "/bin/sleep", "arguments": str(seconds)}, **options,
    )
    job.execute()
    return job


@pytest.mark.condor
def test_transfer_job_completes_with_outputs_then_results_are_processed(
    job_manager, user, workspace, backend, transactional_db
) -> None:
    write(workspace / "my_script.py", "#!/usr/bin/python3\n"
          "import sys\n"
          "text = ''.join(open(name).read() for name in sys.argv[1:])\n"
          "open('output.txt', 'w').write(text.upper())\n"
          "print('read', len(sys.argv) - 1, 'inputs')\n", 0o755)
    write(workspace / "input_1", "one\n")
    write(workspace / "input_2", "two\n")
    results_functions.CALLS.clear()
    job = job_manager.create_job(
        name="myjob_{id}", user=user, job_type="CONDOR", workspace=str(workspace),
        attributes=dict(request_cpus=1, arguments="input_1 input_2"),
        condorpy_template_name="vanilla_transfer_files",
        remote_input_files=(str(workspace / "my_script.py"), str(workspace / "input_1"), str(workspace / "input_2")),
        process_results_function=results_functions.record,
    )
    job.set_attribute("executable", "my_script.py")
    job.execute()
    submitted = fresh(job)
    assert submitted.status_code is Status.SUBMITTED and submitted.cluster_id > 0
    assert submitted.engine_data["attempt"] == 1 and submitted.engine_data["spool"] is False
    done = ended(job)
    assert done.status_code is Status.COMPLETE, done.status_message
    assert (done.folder / "output.txt").read_text() == "ONE\nTWO\n"
    assert (done.folder / "processed.txt").exists() and results_functions.CALLS == [job.pk]
    moves = [(e.from_status, e.to_status) for e in done.history()]
    assert moves[0] == ("PEN", "SUB") and moves[-2:] == [(moves[-2][0], "RES"), ("RES", "COM")]
    logs = done.get_logs()
    assert logs["stdout"] == "read 2 inputs\n" and logs["stderr"] == ""
    assert "Job submitted from host" in logs["log"] and "Job terminated" in logs["log"]
    assert (done.folder / "attempts" / "1" / "condor.log").exists()


@pytest.mark.condor
def test_failing_executable_ends_in_error_with_its_exit_code(job_manager, user, workspace, backend,
                                                            transactional_db) -> None:
    job = job_manager.create_job(
        name="bad", user=user, job_type="CONDOR", workspace=str(workspace), condorpy_template_name="vanilla_base",
        attributes={"executable": "/bin/sh", "arguments": "\"-c 'echo oops >&2; exit 3'\""},
    )
    job.execute()
    done = ended(job)
    assert done.status_code is Status.ERROR and done.status_message == "exit code 3"
    assert done.get_logs()["stderr"] == "oops\n"


@pytest.mark.condor
def test_held_job_ends_in_error_with_the_hold_reason(job_manager, user, workspace, backend,
                                                     transactional_db) -> None:
    missing = workspace / "not_there.dat"
    job = job_manager.create_job(
        name="held", user=user, job_type="CONDOR", workspace=str(workspace),
        condorpy_template_name="vanilla_transfer_files", remote_input_files=[str(missing)],
        attributes={"executable": "/bin/true"},
    )
    job.execute()
    done = ended(job)
    assert done.status_code is Status.ERROR
    assert done.status_message.startswith("held by HTCondor: ") and "not_there.dat" in done.status_message
    # In Error it would wait in the queue forever: it was removed.
    wait_for(lambda: not in_queue(done.cluster_id), 20, what="the held cluster to leave the queue")


@pytest.mark.condor
def test_description_htcondor_rejects_leaves_error_with_its_message(job_manager, user, workspace, backend,
                                                                   transactional_db) -> None:
    job = job_manager.create_job(
        name="nonsense", user=user, job_type="CONDOR", workspace=str(workspace),
        attributes={"executable": "/bin/true", "universe": "nonsense"},
    )
    with pytest.raises(jobtower.SubmitError):
        job.execute()
    stored = fresh(job)
    assert stored.status_code is Status.ERROR
    assert "I don't know about the 'nonsense' universe" in stored.status_message


@pytest.mark.condor
def test_folder_the_job_user_cannot_reach_is_refused_with_the_reason(job_manager, user, backend,
                                                                     transactional_db, tmp_path) -> None:
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    job = job_manager.create_job(name="p", user=user, job_type="CONDOR", workspace=str(private),
                                 attributes={"executable": "/bin/true"})
    with pytest.raises(jobtower.SubmitError):
        job.execute()
    message = fresh(job).status_message
    assert "who cannot enter" in message and "o+x" in message


@pytest.mark.condor
def test_stop_removes_the_cluster(job_manager, user, workspace, backend, transactional_db) -> None:
    job = sleeper(job_manager, user, workspace)
    running = status_is(job, Status.RUNNING)
    running.stop()
    stopped = fresh(job)
    assert stopped.status_code is Status.ABORTED and stopped.status_message == "stopped by a user"
    wait_for(lambda: not in_queue(stopped.cluster_id), 20, what="the cluster to leave the queue")


@pytest.mark.condor
def test_pause_holds_and_resume_releases(job_manager, user, workspace, backend, transactional_db) -> None:
    job = sleeper(job_manager, user, workspace)
    running = status_is(job, Status.RUNNING)
    running.pause()
    assert fresh(job).status_code is Status.PAUSED
    assert [ad["JobStatus"] for ad in in_queue(running.cluster_id)] == [5]
    Monitor(results_threads=0).cycle()  # the hold reads as Paused, not as an error
    assert fresh(job).status_code is Status.PAUSED
    paused = fresh(job)
    paused.resume()
    assert fresh(job).status_code in (Status.SUBMITTED, Status.RUNNING)
    status_is(job, Status.RUNNING)
    fresh(job).stop()


@pytest.mark.condor
def test_resubmit_makes_a_new_cluster_and_keeps_the_old_files(job_manager, user, workspace, backend,
                                                              transactional_db) -> None:
    job = job_manager.create_job(
        name="again", user=user, job_type="CONDOR", workspace=str(workspace), condorpy_template_name="vanilla_base",
        attributes={"executable": "/bin/sh", "arguments": "\"-c 'echo attempt $JOBTOWER_ATTEMPT'\"",
                    "environment": "JOBTOWER_ATTEMPT=1"},
    )
    job.execute()
    first = ended(job)
    assert first.status_code is Status.COMPLETE, first.status_message
    first_cluster = first.cluster_id
    first.set_attribute("environment", "JOBTOWER_ATTEMPT=2")
    first.save()
    first.resubmit()
    second = ended(job)
    assert second.status_code is Status.COMPLETE and second.attempt == 2
    assert second.cluster_id > first_cluster
    attempts = second.folder / "attempts"
    assert (attempts / "1" / "stdout.txt").read_text() == "attempt 1\n"
    assert (attempts / "2" / "stdout.txt").read_text() == "attempt 2\n"
    assert second.get_logs()["stdout"] == "attempt 2\n"


@pytest.mark.condor
def test_procs_of_a_cluster_roll_up(job_manager, user, workspace, backend, transactional_db) -> None:
    job = job_manager.create_job(
        name="many", user=user, job_type="CONDOR", workspace=str(workspace), condorpy_template_name="vanilla_base",
        attributes={"executable": "/bin/sh", "arguments": "\"-c 'echo proc $0; test $0 != 1' $(Process)\""},
    )
    job.execute(queue=3)
    done = ended(job)
    assert done.num_jobs == 3 and done.engine_data["procs"] == 3
    assert done.status_code is Status.VARIOUS_COMPLETE
    ended_well = done.history().get(to_status=Status.RESULTS_READY.value).message
    assert ended_well == "2 Complete, 1 Error; proc 1: exit code 1"
    logs = done.get_logs()
    assert logs["stdout"] == {"0": "proc 0\n", "1": "proc 1\n", "2": "proc 2\n"}


@pytest.mark.condor
def test_one_monitor_cycle_asks_the_schedd_at_most_twice(job_manager, user, workspace, backend,
                                                         transactional_db) -> None:
    quick = job_manager.create_job(name="quick", user=user, job_type="CONDOR", workspace=str(workspace),
                                   attributes={"executable": "/bin/true"})
    quick.execute()
    ended(quick)  # now in the history
    quick_again = job_manager.create_job(name="quick2", user=user, job_type="CONDOR", workspace=str(workspace),
                                         attributes={"executable": "/bin/true"})
    quick_again.execute()
    sleepers = [sleeper(job_manager, user, workspace) for _ in range(5)]
    wait_for(lambda: not in_queue(quick_again.cluster_id) or None, 60, what="quick2 to leave the queue")
    before = backend.queries
    Monitor(results_threads=0).cycle()
    assert backend.queries - before == 2  # the queue for six jobs, then the history for the one gone
    assert fresh(quick_again).status_code is Status.COMPLETE
    for job in sleepers:
        job.stop()


@pytest.mark.condor
def test_unanswering_schedd_leaves_statuses_stale_not_error(pool, job_manager, user, workspace, backend,
                                                            transactional_db) -> None:
    job = sleeper(job_manager, user, workspace, seconds=4)
    status_is(job, Status.RUNNING)
    condor_tool(pool, "condor_off", "-schedd")
    try:
        wait_for(lambda: subprocess.run(
            [pool["JOBTOWER_CONDOR_BIN"] + "/condor_q", "-af", "ClusterId"], capture_output=True,
            env={**os.environ}).returncode != 0, 30, interval=0.3, what="the schedd to stop")
        Monitor(results_threads=0).cycle()
        stale = fresh(job)
        assert stale.status_code is Status.RUNNING and stale.stale_since is not None
        assert stale.update_status() is False  # library mode: no error either
        assert fresh(job).status_code is Status.RUNNING
    finally:
        condor_tool(pool, "condor_on", "-schedd")
    done = ended(job, 90)
    assert done.status_code is Status.COMPLETE, done.status_message
    assert done.stale_since is None
    assert not JobEvent.objects.filter(job=job, to_status=Status.ERROR.value).exists()


@pytest.mark.condor
def test_named_scheduler_spools_files_and_fetches_outputs(pool, job_manager, user, backend, transactional_db,
                                                          tmp_path) -> None:
    # A root-only workspace: with spool, jobtower sends and fetches the files itself.
    private = tmp_path / "private_ws"
    private.mkdir(mode=0o700)
    write(private / "data.txt", "spooled\n")
    token = Path(pool["JOBTOWER_CONDOR_TOKEN_FILE"]).read_text().strip()
    import htcondor

    schedd_name = htcondor.Collector().locate(htcondor.DaemonTypes.Schedd)["Name"]
    create_condor_scheduler("loopback", "127.0.0.1", 9618, schedd_name=schedd_name, token=token).save()
    job = job_manager.create_job(
        name="remote", user=user, job_type="CONDOR", workspace=str(private), scheduler=get_scheduler("loopback"),
        condorpy_template_name="vanilla_transfer_files", remote_input_files=[str(private / "data.txt")],
        attributes={"executable": "/bin/sh", "arguments": "\"-c 'tr a-z A-Z < data.txt > result.txt; echo done'\""},
        process_results_function=results_functions.record,
    )
    job.execute()
    assert fresh(job).engine_data["spool"] is True and fresh(job).engine_data["scheduler"] == "loopback"
    done = ended(job)
    assert done.status_code is Status.COMPLETE, done.status_message
    assert (done.folder / "result.txt").read_text() == "SPOOLED\n"
    assert (done.folder / "processed.txt").exists()
    assert done.get_logs()["stdout"] == "done\n"
