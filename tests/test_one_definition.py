"""One job definition on any engine: LOCAL, CONDOR and SLURM with only `job_type` changed.

The definition is a command (argv, no shell), or a Python function with its arguments, with input
files, an environment and a timeout; each engine must give the same status, the same output file in
the job's folder, the same logs and, for a function, the same result. These
tests need the HTCondor pool and the Slurm cluster and carry both markers; they fail, never skip,
without them. The submit-description mapping is also checked as data, without a pool.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from jobtower.backends import condor_templates as templates
from jobtower.backends.condor import proc_status
from jobtower.models import Job
from jobtower.statuses import Status
from tests.conftest import ended, in_queue, in_slurm_queue

TIMEOUT = 90.0
ENGINES = ("LOCAL", "CONDOR", "SLURM")

SCRIPT = """\
import os, sys
text = open(sys.argv[1]).read()
open("output.txt", "w").write(text.upper())
print("read", len(text), "bytes for", os.environ["WHO"], "with", repr(sys.argv[2]))
print("a warning", file=sys.stderr)
sys.exit(int(os.environ.get("EXIT_WITH", "0")))
"""


# -- as data -----------------------------------------------------------------------------------------


def describe(**settings: Any) -> templates.Description:
    return templates.describe(template_name=None, attributes=settings.pop("attributes", {}), folder="/ws/job_7",
                              workspace="/ws", attempt=1, job_id=7, **settings)


def test_a_command_becomes_executable_and_arguments_in_htcondor_syntax() -> None:
    found = describe(command=["python3", "model.py", "two words", "it's", 'say "hi"', "$(Cluster)", ""],
                     remote_input_files=["/data/model.py"])
    commands = found.commands
    assert commands["executable"].endswith("/python3") and commands["transfer_executable"] == "false"
    assert commands["arguments"] == (
        "\"'model.py' 'two words' 'it''s' 'say \"\"hi\"\"' '$(DOLLAR)(Cluster)' ''\""
    )
    assert commands["should_transfer_files"] == "YES" and commands["transfer_input_files"] == "/data/model.py"


def test_runs_of_dollars_are_escaped_for_condor_submit_and_the_schedd() -> None:
    arguments = describe(command=["true", "x$$y", "$", "a$$$b", "$$$$"]).commands["arguments"]
    assert arguments == (
        "\"'x$$(DOLLARDOLLAR)y' '$(DOLLAR)' 'a$$(DOLLARDOLLAR)$(DOLLAR)b' '$$(DOLLARDOLLAR)$$(DOLLARDOLLAR)'\""
    )


def test_the_environment_is_the_jobs_own_and_the_timeout_is_allowed_job_duration() -> None:
    commands = describe(command=["true"], environment={"WHO": "a b", "COST": "$5"}, timeout=2.5).commands
    assert commands["environment"] == (
        "\"'WHO=a b' 'COST=$(DOLLAR)5' 'JOBTOWER_JOB_ID=7' 'JOBTOWER_ATTEMPT=1' 'JOBTOWER_JOB_FOLDER=/ws/job_7'\""
    )
    assert "getenv" not in commands and commands["allowed_job_duration"] == "3"


def test_a_command_and_the_attributes_it_replaces_are_refused_together() -> None:
    with pytest.raises(ValueError, match="either command"):
        describe(command=["true"], attributes={"Executable": "/bin/true"})
    with pytest.raises(ValueError, match="either timeout"):
        describe(command=["true"], timeout=5, attributes={"allowed_job_duration": 9})
    with pytest.raises(ValueError, match="line break"):
        describe(command=["echo", "a\nb"])
    with pytest.raises(ValueError, match="not found on PATH"):
        describe(command=["no-such-program-here"])


def test_a_job_held_for_its_duration_reads_as_timed_out() -> None:
    ad = {"JobStatus": 5, "HoldReasonCode": templates.HOLD_JOB_DURATION_EXCEEDED, "AllowedJobDuration": 30,
          "HoldReason": "The job exceeded allowed job duration of 30"}
    assert proc_status(ad) == (Status.ERROR, "timed out: it ran longer than its timeout of 30 s")


# -- on the real engines -----------------------------------------------------------------------------


def definition(workspace: Path, exit_with: int) -> dict[str, Any]:
    inputs = workspace / "inputs"
    inputs.mkdir(exist_ok=True)
    (inputs / "script.py").write_text(SCRIPT)
    (inputs / "input.txt").write_text("hello\n")
    return {
        # Dollars in every form a shell or HTCondor could take for its own, passed through untouched.
        "command": ["python3", "script.py", "input.txt", "two words $$ $HOME $(x) $$$"],
        "remote_input_files": [str(inputs / "script.py"), str(inputs / "input.txt")],
        # The same PATH everywhere: a bare "python3" is the same program on every engine.
        "environment": {"WHO": "every$$one", "EXIT_WITH": str(exit_with), "PATH": "/usr/bin:/bin"},
        "timeout": 600,
    }


def run_everywhere(job_manager: Any, user: Any, workspace: Path, settings: dict[str, Any] | int) -> dict[str, Job]:
    """Run one definition (a command's exit code, or a whole definition) on each engine; return them ended."""
    if isinstance(settings, int):
        settings = definition(workspace, settings)
    done: dict[str, Job] = {}
    jobs = {}
    for job_type in ENGINES:
        (workspace / job_type).mkdir(mode=0o755)
        job = job_manager.create_job(name=f"{job_type} {{id}}", user=user, job_type=job_type,
                                     workspace=str(workspace / job_type), **settings)
        job.execute()
        jobs[job_type] = job
    for job_type, job in jobs.items():
        done[job_type] = ended(job, TIMEOUT)
    return done


@pytest.fixture
def engines(pool: Any, slurm_cluster: str, local_worker: Any, workspace: Path) -> Any:
    yield workspace
    from jobtower.backends import get_backend

    for job in Job.objects.filter(job_type__in=("CONDOR", "SLURM")):  # what a failed test leaves
        data = job.engine_data or {}
        if (data.get("cluster_id") and in_queue(data["cluster_id"])) or (
            data.get("slurm_job_id") and in_slurm_queue(data["slurm_job_id"])
        ):
            get_backend(job.backend_path).cancel(job)


@pytest.mark.condor
@pytest.mark.slurm
def test_one_definition_gives_the_same_output_status_and_logs_on_every_engine(
    engines: Path, job_manager: Any, user: Any
) -> None:
    done = run_everywhere(job_manager, user, engines, 0)
    for job_type, job in done.items():
        assert job.status_code is Status.COMPLETE, f"{job_type}: {job.status_message}"
        assert (job.folder / "output.txt").read_text() == "HELLO\n", job_type
        logs = job.get_logs()
        assert {k: logs[k] for k in ("stdout", "stderr")} == {
            "stdout": "read 6 bytes for every$$one with 'two words $$ $HOME $(x) $$$'\n", "stderr": "a warning\n",
        }, job_type
        moves = [e.to_status for e in job.history()]
        assert moves[0] == "SUB" and moves[-1] == "COM", (job_type, moves)


@pytest.mark.condor
@pytest.mark.slurm
def test_a_failing_definition_ends_in_error_with_exit_code_3_on_every_engine(
    engines: Path, job_manager: Any, user: Any
) -> None:
    done = run_everywhere(job_manager, user, engines, 3)
    for job_type, job in done.items():
        assert job.status_code is Status.ERROR, f"{job_type}: {job.status_code} {job.status_message}"
        assert job.status_message.startswith("exit code 3"), (job_type, job.status_message)
        assert job.get_logs()["stderr"] == "a warning\n", job_type


@pytest.mark.condor
def test_a_condor_job_past_its_timeout_ends_in_error_timed_out(
    pool: Any, workspace: Path, job_manager: Any, user: Any, transactional_db: Any
) -> None:
    job = job_manager.create_job(name="slow", user=user, job_type="CONDOR", workspace=str(workspace),
                                 command=["/bin/sleep", "300"], timeout=2)
    job.execute()
    try:
        done = ended(job, TIMEOUT)
        assert done.status_code is Status.ERROR, done.status_message
        assert done.status_message == "timed out: it ran longer than its timeout of 2 s"
    finally:
        from jobtower.backends import get_backend

        get_backend(job.backend_path).cancel(job)  # a removed cluster is fine; one left behind is not


# -- a function job: the same on every engine ---------------------------------------------------------

#: Where the test functions are imported from: this checkout (tests.local_functions imports jobtower).
ROOT = Path(__file__).resolve().parents[1]
IMPORT_PATH = f"{ROOT / 'src'}:{ROOT}"
#: The Python that runs CONDOR functions: HTCondor runs jobs as its own user, who cannot reach the
#: server's interpreter here (under /root); SLURM jobs run as the server's user, with its interpreter.
CONDOR_PYTHON = "/usr/bin/python3"


def function_definition(workspace: Path, function: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
    inputs = workspace / "inputs"
    inputs.mkdir(exist_ok=True)
    (inputs / "input.txt").write_text("hello\n")
    return {
        "function": function, "args": list(args), "kwargs": kwargs,
        "remote_input_files": [str(inputs / "input.txt")],
        "environment": {"WHO": "everyone", "PYTHONPATH": IMPORT_PATH},  # importable for every engine's user
        "timeout": 600,
    }


@pytest.fixture
def function_python(settings: Any) -> str:
    settings.JOBTOWER = {**getattr(settings, "JOBTOWER", {}), "FUNCTION_PYTHON": {"CONDOR": CONDOR_PYTHON}}
    return CONDOR_PYTHON


@pytest.mark.condor
@pytest.mark.slurm
def test_one_function_definition_gives_the_same_result_status_and_logs_on_every_engine(
    engines: Path, function_python: str, job_manager: Any, user: Any
) -> None:
    import sys

    settings = function_definition(engines, "tests.engine_functions:shout", "input.txt", who="me")
    done = run_everywhere(job_manager, user, engines, settings)
    for job_type, job in done.items():
        assert job.status_code is Status.COMPLETE, f"{job_type}: {job.status_message}"
        assert job.result == {"shouted": "HELLO\n", "who": "me", "cwd": str(job.folder)}, job_type
        assert (job.folder / "output.txt").read_text() == "HELLO\n", job_type
        logs = job.get_logs()
        assert {k: logs[k] for k in ("stdout", "stderr")} == {
            "stdout": "read 6 bytes for me and everyone\n", "stderr": "a warning\n",
        }, job_type
        moves = [e.to_status for e in job.history()]
        assert moves[0] == "SUB" and moves[-1] == "COM", (job_type, moves)
    # CONDOR ran the configured interpreter; SLURM, configured with none, the server's own.
    ran = {job_type: json.loads((job.folder / "attempts" / "1" / "run.json").read_text())
           for job_type, job in done.items() if job_type != "LOCAL"}
    assert ran["CONDOR"]["python"] == function_python and ran["SLURM"]["python"] == sys.executable


@pytest.mark.condor
@pytest.mark.slurm
def test_a_function_that_raises_ends_in_error_with_its_exception_on_every_engine(
    engines: Path, function_python: str, job_manager: Any, user: Any
) -> None:
    settings = function_definition(engines, "tests.engine_functions:fail", "dt too big")
    done = run_everywhere(job_manager, user, engines, settings)
    for job_type, job in done.items():
        assert job.status_code is Status.ERROR, f"{job_type}: {job.status_code} {job.status_message}"
        assert job.status_message == "ValueError: model diverged: dt too big", (job_type, job.status_message)
        assert job.result is None, job_type
        stderr = job.get_logs()["stderr"]
        assert stderr.startswith("Traceback") and stderr.endswith("ValueError: model diverged: dt too big\n"), \
            (job_type, stderr)


# -- a function job as data, and who may create one -----------------------------------------------------


@pytest.mark.django_db
def test_a_condor_function_runs_the_runner_in_its_shared_folder(job_manager: Any, user: Any, settings: Any) -> None:
    settings.JOBTOWER = {**getattr(settings, "JOBTOWER", {}), "FUNCTION_PYTHON": "/opt/py/bin/python3"}
    job = job_manager.create_job(name="f", user=user, job_type="CONDOR", function="models.run:main", args=[1],
                                 remote_input_files=["/data/in.txt"], environment={"WHO": "me"})
    job.save()
    commands = job.submit_description().commands
    attempt = f"{job.folder}/attempts/1"
    assert commands["executable"] == "/opt/py/bin/python3"
    assert commands["arguments"] == f"\"'{attempt}/jobtower_function.py' '{attempt}'\""
    assert commands["should_transfer_files"] == "NO" and commands["transfer_executable"] == "false"
    assert "transfer_input_files" not in commands and "when_to_transfer_output" not in commands
    # A configured interpreter is not the server's: the server's import path is not passed to it.
    assert commands["environment"] == (
        f"\"'WHO=me' 'JOBTOWER_JOB_ID={job.pk}' 'JOBTOWER_ATTEMPT=1' 'JOBTOWER_JOB_FOLDER={job.folder}'\""
    )


@pytest.mark.django_db
@pytest.mark.parametrize(("job_type", "settings_", "words"), [
    ("CONDOR", {"command": ["true"]}, "either command"),
    ("CONDOR", {"attributes": {"executable": "/bin/true"}}, "or the 'executable' attribute"),
    ("CONDOR", {"num_jobs": 2}, "num_jobs must be 1"),
    ("CONDOR", {"condorpy_template_name": "remote_transfer_files"}, "execute machines share"),
    ("SLURM", {"command": ["true"]}, "exactly one of"),
    ("SLURM", {"array": "0-3"}, "give no array"),
])
def test_a_function_job_that_cannot_run_as_one_is_refused_before_it_moves(
    job_manager: Any, user: Any, job_type: str, settings_: dict[str, Any], words: str
) -> None:
    job = job_manager.create_job(name="f", user=user, job_type=job_type, function="models.run:main", **settings_)
    with pytest.raises(ValueError, match=words):
        job.clean_spec()


def test_a_function_path_is_checked_for_its_form_only() -> None:
    from jobtower.backends.functions import function_setting

    assert function_setting(" pkg.mod:Class.method ") == "pkg.mod:Class.method"
    assert function_setting("pkg.mod.func") == "pkg.mod.func"  # never imported on the server
    for bad in ("func", "pkg.mod:", "pkg mod:f", "pkg.mod:f()", ""):
        with pytest.raises(ValueError, match="not a dotted path"):
            function_setting(bad)


@pytest.mark.django_db
@pytest.mark.parametrize("job_type", ["CONDOR", "SLURM"])
def test_only_people_who_may_add_engine_jobs_create_function_jobs(
    client: Any, user: Any, other_user: Any, job_type: str
) -> None:
    from django.contrib.auth.models import Permission

    from tests.test_api import bearer, error_of, post_json

    user.user_permissions.add(Permission.objects.get(codename="add_job", content_type__app_label="jobtower"))
    body = {"job_type": job_type, "name": "fn", "function": "tests.local_functions:add", "args": [1, 2],
            "kwargs": {"scale": 3}, "execute": False}
    refused = post_json(client, "/api/jobs/", body, **bearer(other_user))
    assert refused.status_code == 403 and "jobtower.add_job" in error_of(refused)
    assert not Job.objects.exists()
    created = post_json(client, "/api/jobs/", body, **bearer(user))
    assert created.status_code == 201, created.content
    spec = created.json()["spec"]
    assert (spec["function"], spec["args"], spec["kwargs"]) == ("tests.local_functions:add", [1, 2], {"scale": 3})


def test_the_runner_copy_imports_from_the_jobs_folder_and_says_what_is_not_json(tmp_path: Path) -> None:
    import shutil
    import subprocess
    import sys

    from jobtower.backends import function_runner

    attempt = tmp_path / "attempts" / "1"
    attempt.mkdir(parents=True)
    shutil.copyfile(function_runner.__file__, attempt / "jobtower_function.py")
    (tmp_path / "model.py").write_text("def run(n, *, k):\n    return {'n': n * k}\n\ndef odd():\n    return {1}\n")

    def run(function: str, *args: Any, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        (attempt / "run.json").write_text(json.dumps({"function": function, "args": args, "kwargs": kwargs}))
        # As CONDOR and SLURM run it: the copy, in the job's folder, which is not on PYTHONPATH.
        return subprocess.run([sys.executable, str(attempt / "jobtower_function.py"), str(attempt)],
                              cwd=tmp_path, capture_output=True, text=True, check=False, env={"PATH": "/usr/bin:/bin"})

    done = run("model:run", 2, k=5)
    assert done.returncode == 0, done.stderr
    assert json.loads((attempt / "result.json").read_text()) == {"value": {"n": 10}}
    failed = run("model:odd")
    assert failed.returncode == 1 and "TypeError" in failed.stderr
    said = json.loads((attempt / "error.json").read_text())
    assert said["type"] == "TypeError" and "the return value of model:odd is a set" in said["message"]


@pytest.mark.django_db
def test_on_the_servers_interpreter_a_function_imports_what_the_server_imports(job_manager: Any, user: Any) -> None:
    import sys

    from jobtower.backends.functions import server_import_path

    job = job_manager.create_job(name="f", user=user, job_type="CONDOR", function="tests.local_functions:add")
    job.save()
    commands = job.submit_description().commands
    assert commands["executable"] == sys.executable
    assert f"'PYTHONPATH={server_import_path()}'" in commands["environment"]
    job.environment = {"PYTHONPATH": "/srv/models"}  # the job's own wins
    assert "'PYTHONPATH=/srv/models' 'JOBTOWER_JOB_ID" in job.submit_description().commands["environment"]
