"""SLURM jobs through slurmrestd with a JWT: the request building as data, then real jobs on the loopback
cluster's slurmrestd (scripts/engines/slurm.sh starts it on 127.0.0.1:6820).

The integration tests carry the `slurm` marker and fail, never skip, without slurmrestd. They run with
SLURM_CONF pointing nowhere, so a Slurm command the REST path ran by mistake would fail them. What both
paths do is tested once per path (the `slurm_path` fixture) in test_slurm.py.
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.core.exceptions import ValidationError

from jobtower.backends.slurm import SlurmBackend, read_accounting_record
from jobtower.backends.slurmrest import (
    REST_UNSUPPORTED,
    SBATCH_TO_REST,
    SlurmRestClient,
    SlurmRestError,
    command_script,
    rest_job_fields,
    rest_url_problem,
    script_options,
    token_claims,
)
from jobtower.errors import EngineUnavailable, SubmitError
from jobtower.models import Job, SlurmCluster, SlurmJob
from jobtower.models.slurm import SBATCH_OPTIONS
from jobtower.statuses import Status
from tests.conftest import SlurmPath, ended, fresh

TIMEOUT = 60.0


def jwt(claims: dict[str, Any]) -> str:
    """A JWT-shaped string with these claims and a signature no controller accepts."""
    part = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    return f"eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.{part}.c2lnbmF0dXJl"


# -- as data: no cluster needed --------------------------------------------------------------------


def test_every_sbatch_option_maps_to_a_rest_field_or_is_refused_by_name() -> None:
    assert set(SBATCH_TO_REST) | REST_UNSUPPORTED == SBATCH_OPTIONS
    assert not set(SBATCH_TO_REST) & REST_UNSUPPORTED
    assert rest_job_fields({"mem": "32M", "cpus-per-task": "2", "exclusive": True, "requeue": True}) == {
        "memory_per_node": "32M", "cpus_per_task": "2", "exclusive": "exclusive", "requeue": True,
    }
    with pytest.raises(ValueError, match="'network' cannot go through slurmrestd v0.0.38"):
        rest_job_fields({"network": "x"})


def test_a_command_becomes_a_script_that_runs_its_argv_word_for_word(tmp_path: Path) -> None:
    argv = ["printf", "%s|", "two words", "it's", "$HOME", "`id`", "a\nb"]
    script = tmp_path / "run.sh"
    script.write_text(command_script(argv))
    done = subprocess.run(["/bin/sh", str(script)], capture_output=True, text=True, check=True)
    assert done.stdout == "two words|it's|$HOME|`id`|a\nb|"


def test_sbatch_lines_of_a_script_are_read_as_sbatch_reads_them() -> None:
    script = ("#!/bin/sh\n#SBATCH --mem=16M\n#SBATCH -p debug -c2\n#SBATCH --exclusive  # whole node\n"
              "#SBATCH --output=mine.txt -J mine\n# a comment\n\n#SBATCH --time 5\necho hi\n#SBATCH --qos=late\n")
    assert script_options(script) == {"mem": "16M", "partition": "debug", "cpus-per-task": "2", "exclusive": True,
                                      "time": "5"}
    for line, words in [("#SBATCH --network=x", "--network cannot go through slurmrestd"),
                        ("#SBATCH --array=0-3", "--array cannot go through slurmrestd"),
                        ("#SBATCH --mem", "--mem needs a value"),
                        ("#SBATCH mem=1G", "'mem=1G' is not an sbatch option")]:
        with pytest.raises(ValueError, match=words):
            script_options(f"#!/bin/sh\n{line}\ntrue\n")


def test_the_submission_carries_the_same_settings_as_sbatch_and_only_the_jobs_environment(
    job_manager: Any, user: Any, db: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JOBTOWER_TEST_SERVER_SECRET", "do-not-leak")
    job: SlurmJob = job_manager.create_job(
        name="r", user=user, job_type="SLURM", command=["echo", "hi there"], environment={"GREETING": "hello"},
        array="0-3", timeout=90, sbatch={"mem": "32M", "partition": "debug", "job-name": "mine"},
    )
    job.save()
    backend = SlurmBackend()
    attempt = backend.attempt_folder(job)
    attempt.mkdir(parents=True)
    env = backend._job_env(job)
    script, fields = backend.rest_submission(job, "mine", {"mem": "32M", "partition": "debug"}, env,
                                             attempt / "stdout_%a.txt", attempt / "stderr_%a.txt")
    assert script == command_script(["echo", "hi there"]) == (attempt / "run.sh").read_text()
    assert fields == {
        "name": "mine", "current_working_directory": str(job.folder), "environment": env,
        "standard_output": str(attempt / "stdout_%a.txt"), "standard_error": str(attempt / "stderr_%a.txt"),
        "comment": f"jobtower:{job.pk}:1", "time_limit": "2", "array": "0-3", "memory_per_node": "32M",
        "partition": "debug",
    }
    assert env["GREETING"] == "hello" and env["JOBTOWER_JOB_ID"] == str(job.pk)
    assert "JOBTOWER_TEST_SERVER_SECRET" not in env


def test_the_token_is_write_only_and_names_its_user(db: Any) -> None:
    token = jwt({"sun": "alice", "exp": 4_102_444_800})
    assert token_claims(token)["sun"] == "alice"
    cluster = SlurmCluster.objects.create(name="hpc", rest_url="https://hpc.example.org:6820", token=token)
    client = SlurmRestClient(cluster)
    assert client.user == "alice"
    assert token not in repr(client) + repr(cluster) + str(cluster)
    from django.core import serializers

    assert token not in serializers.serialize("json", [cluster])


@pytest.mark.parametrize(("token", "words"), [
    ("", "has a rest_url .* but no token: issue one on the cluster with `scontrol token"),
    ("not-a-jwt", "the token of Slurm cluster 'hpc' is not a Slurm JWT.*scontrol token"),
    (jwt({"exp": 4_102_444_800}), "names no user.*scontrol token"),
    (jwt({"sun": "alice", "exp": 1_000_000_000}), "expired on 2001-09-09.*scontrol token username=alice"),
])
def test_an_unusable_token_is_refused_before_anything_moves(job_manager: Any, user: Any, db: Any, token: str,
                                                             words: str) -> None:
    SlurmCluster.objects.create(name="hpc", rest_url="https://hpc.example.org:6820", token=token)
    job = job_manager.create_job(name="r", user=user, job_type="SLURM", command=["true"], scheduler="hpc")
    with pytest.raises(EngineUnavailable, match=words) as caught:
        job.execute()
    assert not token or token not in str(caught.value)
    assert fresh(job).status_code is Status.PENDING


def test_an_option_slurmrestd_refuses_is_refused_before_anything_moves(job_manager: Any, user: Any, db: Any) -> None:
    SlurmCluster.objects.create(name="hpc", rest_url="https://hpc.example.org:6820",
                                token=jwt({"sun": "alice", "exp": 4_102_444_800}))
    job = job_manager.create_job(name="r", user=user, job_type="SLURM", command=["true"], scheduler="hpc",
                                 sbatch={"overcommit": True})
    with pytest.raises(ValueError, match="'overcommit' cannot go through slurmrestd"):
        job.execute()
    assert fresh(job).status_code is Status.PENDING


def test_a_redirect_is_not_followed_so_the_token_goes_nowhere_else(db: Any) -> None:
    import http.server
    import threading

    seen: list[str] = []

    class Elsewhere(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            seen.append(str(self.headers.get("X-SLURM-USER-TOKEN")))
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b'{"jobs": []}')

        def log_message(self, *args: Any) -> None:
            pass

    elsewhere = http.server.HTTPServer(("127.0.0.1", 0), Elsewhere)

    class Redirecting(Elsewhere):
        def do_GET(self) -> None:  # noqa: N802
            self.send_response(302)
            self.send_header("Location", f"http://127.0.0.1:{elsewhere.server_port}{self.path}")
            self.end_headers()

    redirecting = http.server.HTTPServer(("127.0.0.1", 0), Redirecting)
    for server in (elsewhere, redirecting):
        threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        token = jwt({"sun": "alice", "exp": 4_102_444_800})
        cluster = SlurmCluster.objects.create(name="hpc", rest_url=f"http://127.0.0.1:{redirecting.server_port}",
                                              token=token)
        with pytest.raises(SlurmRestError, match="HTTP 302.*follows none") as caught:
            SlurmRestClient(cluster).jobs()
        assert token not in str(caught.value)
        assert seen == []
    finally:
        for server in (elsewhere, redirecting):
            server.shutdown()
            server.server_close()


@pytest.mark.parametrize("url", [
    "https://hpc.example.org:6820", "https://10.0.0.5", "http://127.0.0.1:6820", "http://127.9.8.7:6820/",
    "http://[::1]:6820", "http://localhost:6820", "http://LocalHost.:6820", "http://api.localhost",
    "http://[::ffff:127.0.0.1]:6820", "",
])
def test_a_rest_url_may_carry_the_token_over_tls_or_on_loopback(url: str) -> None:
    assert rest_url_problem("hpc", url) == ""


@pytest.mark.parametrize(("url", "words"), [
    ("http://hpc.example.org:6820", "plain http:// to hpc.example.org, which is not this machine's loopback"),
    ("http://10.0.0.5:6820", "plain http:// to 10.0.0.5"),
    ("http://0.0.0.0:6820", "plain http:// to 0.0.0.0"),
    ("http://[::ffff:10.0.0.5]:6820", "plain http:// to ::ffff:10.0.0.5"),
    ("http://localhost.example.org", "plain http:// to localhost.example.org"),
    ("HTTP://128.0.0.1", "plain http:// to 128.0.0.1"),
    ("hpc.example.org:6820", "is not an http.s. URL with a host"),
    ("ftp://hpc.example.org", "is not an http.s. URL with a host"),
    ("https://", "is not an http.s. URL with a host"),
])
def test_a_rest_url_that_would_send_the_token_in_clear_is_refused_naming_the_fix(url: str, words: str) -> None:
    problem = rest_url_problem("hpc", url)
    assert re.search(words, problem), problem
    assert problem.startswith(f"Slurm cluster 'hpc': rest_url {url!r}")
    if "plain http" in words:
        assert "in clear: use https://" in problem and "loopback address (127.0.0.1, ::1, localhost)" in problem


CLEAR = "http://hpc.example.org:6820"


def test_a_cluster_record_with_a_clear_rest_url_is_refused_by_clean_and_save(db: Any) -> None:
    token = jwt({"sun": "alice", "exp": 4_102_444_800})
    cluster = SlurmCluster(name="hpc", rest_url=CLEAR, token=token)
    with pytest.raises(ValidationError) as caught:
        cluster.full_clean()
    (message,) = caught.value.message_dict["rest_url"]
    assert f"Slurm cluster 'hpc': rest_url '{CLEAR}'" in message and "use https://" in message
    assert token not in message
    with pytest.raises(ValueError, match=f"Slurm cluster 'hpc': rest_url '{CLEAR}' is plain http://.*use https://"):
        SlurmCluster.objects.create(name="hpc", rest_url=CLEAR, token=token)
    assert not SlurmCluster.objects.exists()
    SlurmCluster(name="tunnel", rest_url="http://127.0.0.1:6820", token=token).full_clean()
    SlurmCluster.objects.create(name="tunnel", rest_url="http://127.0.0.1:6820", token=token)
    SlurmCluster.objects.create(name="tls", rest_url="https://hpc.example.org:6820", token=token)
    assert SlurmCluster.objects.count() == 2


def test_the_cluster_admin_refuses_a_clear_rest_url_on_its_field(admin_client: Any) -> None:
    cluster = SlurmCluster.objects.create(name="hpc", rest_url="https://hpc.example.org:6820", token="eyJ.secret")
    form = {"name": "hpc", "slurm_conf": "", "rest_url": CLEAR, "description": "", "new_token": ""}
    page = admin_client.post(f"/admin/jobtower/slurmcluster/{cluster.pk}/change/", form)
    assert page.status_code == 200  # the form again, with the error: nothing saved
    errors = page.context["adminform"].form.errors
    assert "rest_url" in errors and "use https://" in errors["rest_url"][0], errors
    assert SlurmCluster.objects.get(pk=cluster.pk).rest_url == "https://hpc.example.org:6820"


def test_the_system_check_names_clusters_whose_rest_url_is_in_clear(db: Any) -> None:
    from django.core.management import call_command
    from django.core.management.base import SystemCheckError

    from jobtower.checks import check_slurm_clusters

    SlurmCluster.objects.create(name="hpc", rest_url="https://hpc.example.org:6820")
    SlurmCluster.objects.create(name="tunnel", rest_url="http://localhost:6820")
    assert check_slurm_clusters(databases=["default"]) == []
    SlurmCluster.objects.filter(name="hpc").update(rest_url=CLEAR)  # around save(), as old records may be
    assert check_slurm_clusters() == []  # a database check: only when Django is given a database
    (error,) = check_slurm_clusters(databases=["default"])
    assert error.id == "jobtower.E002" and f"Slurm cluster 'hpc': rest_url '{CLEAR}'" in error.msg
    assert "admin (Slurm clusters > hpc)" in str(error.hint)
    with pytest.raises(SystemCheckError, match="jobtower.E002"):
        call_command("check", databases=["default"])


def test_the_backend_refuses_a_clear_rest_url_before_it_sends_the_token(
    job_manager: Any, user: Any, db: Any, caplog: pytest.LogCaptureFixture
) -> None:
    token = jwt({"sun": "alice", "exp": 4_102_444_800})
    SlurmCluster.objects.create(name="hpc", rest_url="https://hpc.example.org:6820", token=token)
    SlurmCluster.objects.filter(name="hpc").update(rest_url=CLEAR)  # around save()
    cluster = SlurmCluster.objects.get(name="hpc")
    with pytest.raises(SlurmRestError, match="rest_url .* is plain http://.*use https://"):
        SlurmRestClient(cluster)
    job = job_manager.create_job(name="r", user=user, job_type="SLURM", command=["true"], scheduler="hpc")
    with pytest.raises(EngineUnavailable, match=r"SLURM job \d+ cannot run: Slurm cluster 'hpc': rest_url"):
        job.execute()
    assert fresh(job).status_code is Status.PENDING
    # a job submitted before the URL changed is not asked about through it: it goes stale, saying why
    Job.objects.filter(pk=job.pk).update(engine_data={"slurm_job_id": 7, "attempt": job.attempt, "scheduler": "hpc"})
    answer = SlurmBackend().poll([fresh(job)])
    assert answer.observations == {} and "is plain http:// to hpc.example.org" in answer.unreachable[job.pk]
    assert token not in answer.unreachable[job.pk] + caplog.text


def test_slurmdbd_records_read_as_sacct_lines_do() -> None:
    def record(state: str, exit_code: dict[str, Any], array: dict[str, Any] | None = None) -> dict[str, Any]:
        return {"job_id": 41, "name": "n", "state": {"current": state}, "exit_code": exit_code,
                "array": array or {"job_id": 0, "task_id": None, "task": None}}

    assert read_accounting_record(record("COMPLETED", {"status": "SUCCESS", "return_code": 0})) == \
        (41, [None], "n", "COMPLETED", 0, 0)
    # Slurm 22.05's slurmdbd REST API says SUCCESS/0 for every normal exit: a FAILED job's code is unknown.
    assert read_accounting_record(record("FAILED", {"status": "SUCCESS", "return_code": 0}))[4] is None
    assert read_accounting_record(record("FAILED", {"status": "SIGNALED", "signal": {"signal_id": 9}}))[4:] == (None, 9)
    assert read_accounting_record(record("FAILED", {"status": "ERROR", "return_code": 3}))[4] == 3
    assert read_accounting_record(record("COMPLETED", {"status": "SUCCESS"}, {"job_id": 40, "task_id": 2}))[:2] == \
        (40, [2])
    assert read_accounting_record(record("CANCELLED", {}, {"job_id": 40, "task_id": None, "task": "3-5"}))[:2] == \
        (40, [3, 4, 5])


# -- on the loopback cluster's slurmrestd -------------------------------------------------------------
#
# What both paths do (commands, scripts, arrays, stop, pause, the two calls per cycle, a daemon going down)
# is tested once per path in test_slurm.py; here is what only the REST path has.


@pytest.fixture
def rest(slurm_rest: dict[str, str], transactional_db: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[SlurmPath]:
    path = SlurmPath("rest", monkeypatch, slurm_rest)
    yield path
    path.cancel_leftovers()


@pytest.mark.slurm
def test_a_function_job_runs_through_slurmrestd_and_returns_its_result(
    rest: SlurmPath, job_manager: Any, user: Any, tmp_path: Path
) -> None:
    root = Path(__file__).resolve().parents[1]
    (tmp_path / "input.txt").write_text("hello\n")
    job = rest.run(job_manager, user, function="tests.engine_functions:shout", args=["input.txt"], kwargs={"who": "me"},
              remote_input_files=[str(tmp_path / "input.txt")],
              environment={"WHO": "everyone", "PYTHONPATH": f"{root / 'src'}:{root}"})
    done = ended(job, TIMEOUT)
    assert done.status_code is Status.COMPLETE, done.status_message
    assert done.result == {"shouted": "HELLO\n", "who": "me", "cwd": str(done.folder)}
    assert done.get_logs()["stdout"] == "read 6 bytes for me and everyone\n"


@pytest.mark.slurm
def test_a_token_the_controller_refuses_ends_the_submission_with_how_to_fix_it(
    rest: SlurmPath, job_manager: Any, user: Any
) -> None:
    real = SlurmCluster.objects.get(name="rest").token
    head, claims, _ = real.split(".")
    forged = f"{head}.{claims}.{base64.urlsafe_b64encode(b'not the signature').decode().rstrip('=')}"
    SlurmCluster.objects.filter(name="rest").update(token=forged)
    job = job_manager.create_job(name="bad token", user=user, job_type="SLURM", scheduler="rest", command=["true"])
    with pytest.raises(SubmitError) as caught:
        job.execute()
    message = str(caught.value)
    assert "Slurm cluster 'rest'" in message and "refused the token" in message, message
    assert "scontrol token username=" in message and "new token" in message
    assert forged not in message and real not in message
    kept = fresh(job)  # the record survives, in Error with the reason
    assert kept.status_code is Status.ERROR and "refused the token" in kept.status_message
    assert forged not in kept.status_message
