"""jobtower inside a host project made by `django-admin startproject`: `manage.py jobtower ...` uses its database."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

DJANGO_ADMIN = str(Path(sys.executable).with_name("django-admin"))

HOST_CODE = """
import sys
import jobtower
from django.contrib.auth.models import User

class HostApp(jobtower.AppBase):
    package = "host_app"
    name = "Host app"

user = User.objects.create_user("alice")
job = HostApp.get_job_manager().create_job(
    name="from the host", user=user, job_type="LOCAL",
    command=[sys.executable, "-c", "print('made by the host')"],
)
job.execute()
print(job.pk)
"""


@pytest.fixture
def host(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """Return a fresh startproject project with jobtower installed, and its environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JOBTOWER_", "DJANGO_"))}
    made = subprocess.run([DJANGO_ADMIN, "startproject", "hostsite", str(tmp_path)], env=env,
                          capture_output=True, text=True, timeout=60)
    assert made.returncode == 0, made.stderr
    settings = tmp_path / "hostsite" / "settings.py"
    settings.write_text(settings.read_text().replace(
        "INSTALLED_APPS = [", "INSTALLED_APPS = [\n    'jobtower',"
    ) + f"\nJOBTOWER = {{'HOME': {str(tmp_path / 'jobs')!r}}}\n")
    return tmp_path, env


def _manage(project: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "manage.py", *args], cwd=project, env=env,
                          capture_output=True, text=True, timeout=120)


def test_a_host_projects_local_job_runs_with_manage_py_jobtower(host: tuple[Path, dict[str, str]]) -> None:
    project, env = host
    # Before the host migrates: one line that says how, and no table made behind its back.
    early = _manage(project, env, "jobtower", "list")
    assert early.returncode == 1 and "Traceback" not in early.stderr, early.stderr
    assert early.stderr.strip().startswith("jobtower: the database lacks ")
    assert early.stderr.strip().endswith("run `python manage.py migrate` first")
    # The standalone command refuses to fall back to its own site here.
    standalone = subprocess.run([str(Path(sys.executable).with_name("jobtower")), "list"], cwd=project, env=env,
                                capture_output=True, text=True, timeout=60)
    assert standalone.returncode == 1 and "python manage.py jobtower COMMAND" in standalone.stderr
    assert not (project / ".jobtower").exists()

    migrated = _manage(project, env, "migrate")
    assert migrated.returncode == 0, migrated.stderr
    created = _manage(project, env, "shell", "-c", HOST_CODE)
    assert created.returncode == 0, created.stderr
    job_id = created.stdout.strip().splitlines()[-1]
    worker = subprocess.Popen([sys.executable, "manage.py", "jobtower", "worker"], cwd=project, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    monitor = subprocess.Popen([sys.executable, "manage.py", "jobtower", "monitor", "--interval", "0.5"],
                               cwd=project, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        waited = _manage(project, env, "jobtower", "wait", "--json", "--timeout", "90", job_id)
        assert waited.returncode == 0, waited.stderr
        job = json.loads(waited.stdout)
        assert job["status"] == "Complete" and job["app"] == "host_app" and job["user"] == "alice"
        logs = _manage(project, env, "jobtower", "logs", job_id)
        assert logs.stdout == "made by the host\n"
        listed = json.loads(_manage(project, env, "jobtower", "list", "--json").stdout)
        assert [j["id"] for j in listed] == [int(job_id)]
    finally:
        for process in (worker, monitor):
            process.terminate()
        for process in (worker, monitor):
            process.wait(timeout=30)
    assert (project / "db.sqlite3").is_file() and (project / "jobs" / "workspaces").is_dir()
    assert not (project / ".jobtower").exists()
    for process in (worker, monitor):
        assert process.stderr is not None
        assert "Traceback" not in process.stderr.read().decode()


def test_manage_py_jobtower_shares_the_cli_parser(host: tuple[Path, dict[str, str]]) -> None:
    project, env = host
    version = _manage(project, env, "jobtower", "--version")
    assert version.returncode == 0 and version.stdout.startswith("jobtower 0.1.0 (Django ")
    helped = _manage(project, env, "jobtower", "--help")
    for command in ("worker", "monitor", "submit", "list", "show", "logs", "wait", "stop", "token", "completion"):
        assert command in helped.stdout
    assert "serve" not in helped.stdout.split("positional arguments")[1].split("options")[0]
    bad = _manage(project, env, "jobtower", "show", "abc")
    assert bad.returncode != 0 and "'abc' is not a job id" in bad.stderr and "Traceback" not in bad.stderr
    completion = _manage(project, env, "jobtower", "completion", "bash")
    assert completion.returncode == 0 and "complete -o default -F" in completion.stdout
