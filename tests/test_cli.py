"""The `jobtower` command: migrate, and serve the standalone site on a production server."""

from __future__ import annotations

import http.cookiejar
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

JOBTOWER = str(Path(sys.executable).with_name("jobtower"))


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JOBTOWER_", "DJANGO_"))}
    env["JOBTOWER_HOME"] = str(home)
    return env


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_migrate_creates_the_sqlite_database(tmp_path: Path) -> None:
    out = subprocess.run([JOBTOWER, "migrate"], env=_env(tmp_path), capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "jobtower.sqlite3").is_file()
    mode = subprocess.run(
        [sys.executable, "-c", f"import sqlite3; print(sqlite3.connect({str(tmp_path / 'jobtower.sqlite3')!r})"
         ".execute('pragma journal_mode').fetchone()[0])"],
        capture_output=True, text=True,
    )
    assert mode.stdout.strip() == "wal"


def test_bad_database_url_is_a_clear_error(tmp_path: Path) -> None:
    env = _env(tmp_path) | {"JOBTOWER_DATABASE_URL": "mysql://x@localhost/db"}
    out = subprocess.run([JOBTOWER, "migrate"], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode != 0
    assert "postgresql://" in out.stderr and "mysql://" in out.stderr


def test_serve_runs_the_site_behind_gunicorn_and_lets_the_first_user_in(tmp_path: Path) -> None:
    port = _free_port()
    log = tmp_path / "serve.log"
    with log.open("w") as handle:
        server = subprocess.Popen(
            [JOBTOWER, "serve", "--port", str(port), "--workers", "1"],
            env=_env(tmp_path), stdout=handle, stderr=subprocess.STDOUT,
        )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                login_page = urllib.request.urlopen(f"{base}/accounts/login/", timeout=5)
                break
            except OSError:
                assert server.poll() is None, log.read_text()
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.2)
        assert login_page.status == 200
        assert login_page.headers["Server"].startswith("gunicorn")
        # gunicorn's control socket is this instance's, in its own home, not shared in the user's.
        control = tmp_path / "run" / "gunicorn.ctl"
        deadline = time.monotonic() + 10
        while not control.is_socket():
            assert time.monotonic() < deadline, f"no control socket at {control}: {log.read_text()}"
            time.sleep(0.1)
        match = re.search(r"created the first user: (\S+) / (\S+)", log.read_text())
        assert match, log.read_text()

        jar = http.cookiejar.CookieJar()
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
        anonymous = opener.open(f"{base}/")
        assert anonymous.url.startswith(f"{base}/accounts/login/")
        token = next(c.value for c in jar if c.name == "csrftoken")
        form = urllib.parse.urlencode(
            {"username": match[1], "password": match[2], "csrfmiddlewaretoken": token, "next": "/"}
        ).encode()
        request = urllib.request.Request(f"{base}/accounts/login/", data=form, headers={"Referer": f"{base}/"})
        page = opener.open(request).read().decode()
        assert "My jobs" in page and "No jobs." in page
        static = urllib.request.urlopen(f"{base}/static/admin/css/base.css", timeout=5)
        assert static.status == 200

        # The same command runs a LOCAL worker and the monitor: a submitted job runs to the end.
        env = _env(tmp_path)
        job_id = _run(env, "submit", "--", "sh", "-c", "echo hello from a job; echo 1>&2 careful").strip()
        waited = subprocess.run([JOBTOWER, "wait", job_id, "--timeout", "60"], env=env,
                                capture_output=True, text=True, timeout=90)
        assert waited.returncode == 0, waited.stderr
        assert f"job {job_id}: Complete" in waited.stderr
        assert _run(env, "logs", job_id) == "hello from a job\n"
        assert _run(env, "logs", job_id, "--stderr") == "careful\n"
        shown = _run(env, "show", job_id)
        assert "Complete" in shown and "SUB -> RUN" in shown and "RUN -> COM" in shown
        assert "engine can: callbacks, hold, limits, log_files, logs, poll, stop, submit" in shown
        assert f"{job_id}  Complete" in _run(env, "list")
        page = opener.open(f"{base}/").read().decode()
        assert f"{job_id}: sh -c echo hello from a job; echo 1&gt;&amp;2 careful" in page

        sleeper = _run(env, "submit", "--timeout", "600", "--", "sleep", "600").strip()
        wait_running = subprocess.run([JOBTOWER, "wait", sleeper, "--timeout", "3"], env=env,
                                      capture_output=True, text=True, timeout=60)
        assert wait_running.returncode == 2 and "still" in wait_running.stderr
        assert _run(env, "stop", sleeper).strip() == f"job {sleeper}: Aborted"
        failed = subprocess.run([JOBTOWER, "wait", sleeper], env=env, capture_output=True, text=True, timeout=60)
        assert failed.returncode == 1 and "Aborted" in failed.stderr
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert "Traceback" not in log.read_text(), log.read_text()


def _run(env: dict[str, str], *args: str) -> str:
    out = subprocess.run([JOBTOWER, *args], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_cli_errors_are_clear(tmp_path: Path) -> None:
    env = _env(tmp_path)
    _run(env, "migrate")
    nobody = subprocess.run([JOBTOWER, "submit", "--", "true"], env=env, capture_output=True, text=True, timeout=60)
    assert nobody.returncode != 0 and "there is no user 'admin'" in nobody.stderr
    missing = subprocess.run([JOBTOWER, "show", "4242"], env=env, capture_output=True, text=True, timeout=60)
    assert missing.returncode != 0 and "there is no job 4242" in missing.stderr


def _children(pid: int, word: str) -> list[int]:
    """Return the live child processes of `pid` whose command line holds `word`."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[-1].split()
            if entry.name.isdigit() and stat[1] == str(pid) and stat[0] != "Z" \
                    and word.encode() in (entry / "cmdline").read_bytes().split(b"\0"):
                found.append(int(entry.name))
        except (OSError, IndexError):
            continue
    return found


def _poll(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
        time.sleep(0.1)
    return value


def test_serve_starts_a_dead_worker_or_monitor_again(tmp_path: Path) -> None:
    import signal

    port = _free_port()
    log = tmp_path / "serve.log"
    with log.open("w") as handle:
        server = subprocess.Popen([JOBTOWER, "serve", "--port", str(port), "--workers", "1"],
                                  env=_env(tmp_path), stdout=handle, stderr=subprocess.STDOUT)
    try:
        (worker,) = _poll(lambda: _children(server.pid, "worker"), 60, "the worker to start")
        (monitor,) = _poll(lambda: _children(server.pid, "monitor"), 60, "the monitor to start")
        os.kill(worker, signal.SIGKILL)
        began = time.monotonic()
        _poll(lambda: (w := _children(server.pid, "worker")) and w != [worker], 10, "the worker to be started again")
        took = time.monotonic() - began
        assert _children(server.pid, "monitor") == [monitor]
        assert f"the worker (pid {worker}) was killed by SIGKILL" in log.read_text(), log.read_text()
        # The new worker runs jobs.
        job_id = _run(_env(tmp_path), "submit", "--", "true").strip()
        waited = subprocess.run([JOBTOWER, "wait", job_id, "--timeout", "60"], env=_env(tmp_path),
                                capture_output=True, text=True, timeout=90)
        assert waited.returncode == 0, waited.stderr
        os.kill(monitor, signal.SIGTERM)
        _poll(lambda: (m := _children(server.pid, "monitor")) and m != [monitor], 10, "the monitor to be started again")
        print(f"worker started again {took:.2f} s after it was killed")
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert "Traceback" not in log.read_text(), log.read_text()


def _jt(env: dict[str, str], *args: str, cwd: Path | None = None,
        timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([JOBTOWER, *args], env=env, capture_output=True, text=True, timeout=timeout, cwd=cwd)


def _one_line_error(out: subprocess.CompletedProcess[str], *words: str) -> str:
    """Return the error line of a failed command, checking it is one line holding `words`, no traceback."""
    assert out.returncode != 0, out
    lines = [line for line in out.stderr.splitlines() if not line.startswith("jobtower: settings ")]
    assert len(lines) == 1, out.stderr
    for word in words:
        assert word in lines[0], out.stderr
    return lines[0]


def _with_admin(tmp_path: Path) -> dict[str, str]:
    env = _env(tmp_path) | {"DJANGO_SUPERUSER_PASSWORD": "not-secret-pw-42"}
    made = _jt(env, "manage", "createsuperuser", "--noinput", "--username", "admin", "--email", "a@example.com")
    assert made.returncode == 0, made.stderr
    return env


def test_the_first_command_on_a_fresh_home_migrates_and_says_what_it_uses(tmp_path: Path) -> None:
    env = _env(tmp_path)
    out = _jt(env, "list", "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == []
    first, second = out.stderr.splitlines()
    assert first == f"jobtower: settings jobtower.site.settings, database SQLite {tmp_path / 'jobtower.sqlite3'}"
    assert second.startswith("jobtower: applying ") and "first use" in second
    again = _jt(env, "list")
    assert again.returncode == 0 and again.stderr.count("\n") == 1 and "applying" not in again.stderr


def test_version_needs_no_database(tmp_path: Path) -> None:
    out = _jt(_env(tmp_path), "--version")
    assert out.returncode == 0 and out.stdout.startswith("jobtower 0.1.0 (Django ")
    assert not (tmp_path / "jobtower.sqlite3").exists()


def test_a_missing_program_is_one_line_and_leaves_no_job(tmp_path: Path) -> None:
    env = _with_admin(tmp_path)
    _one_line_error(_jt(env, "submit", "--", "nonexistent_prog", "x"),
                    "cannot run 'nonexistent_prog'", "no such program on PATH", "Nothing was submitted")
    _one_line_error(_jt(env, "submit", "--", "./missing.sh"), "missing.sh does not exist", "nothing was submitted")
    (tmp_path / "plain.sh").write_text("echo hi\n")
    _one_line_error(_jt(env, "submit", "--", str(tmp_path / "plain.sh")), "is not executable", "chmod +x")
    _one_line_error(_jt(env, "submit", "--env", "NOEQUALS", "--", "true"), "'NOEQUALS' is not NAME=VALUE")
    _one_line_error(_jt(env, "submit"), "give the command after --")
    _one_line_error(_jt(env, "submit", "--user", "nobody", "--", "true"), "there is no user 'nobody'")
    assert json.loads(_jt(env, "list", "--json").stdout) == []
    assert not list((tmp_path / "workspaces").glob("**/attempt*")) if (tmp_path / "workspaces").exists() else True


def test_bad_ids_and_missing_jobs_are_one_line_errors(tmp_path: Path) -> None:
    env = _with_admin(tmp_path)
    for command in ("show", "stop", "logs", "wait"):
        _one_line_error(_jt(env, command, "abc"), f"jobtower {command}:", "'abc' is not a job id", "--help")
        _one_line_error(_jt(env, command, "0"), "'0' is not a job id")
        _one_line_error(_jt(env, command, "4242"), "there is no job 4242")
    _one_line_error(_jt(env, "lisst"), "invalid choice: 'lisst'")
    assert json.loads(_jt(env, "list", "--json").stdout) == []


def test_json_output_and_logs_follow_past_a_megabyte(tmp_path: Path) -> None:
    env = _with_admin(tmp_path)
    lines = 300_000  # 2.7 MB of output, well past the 1 MB a log tail holds
    script = f"import sys\nfor i in range({lines}): sys.stdout.write(f'{{i:08d}}\\n')\n"
    (tmp_path / "big.py").write_text(script)
    submitted = _jt(env, "submit", "--json", "--", sys.executable, str(tmp_path / "big.py"))
    assert submitted.returncode == 0, submitted.stderr
    job = json.loads(submitted.stdout)
    assert job["type"] == "LOCAL" and job["status"] == "Submitted" and job["user"] == "admin"
    follow = subprocess.Popen([JOBTOWER, "logs", "-f", str(job["id"])], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    worker = subprocess.Popen([JOBTOWER, "worker", "--until-idle"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        out, err = follow.communicate(timeout=120)
        assert follow.returncode == 0, err
        assert out == b"".join(f"{i:08d}\n".encode() for i in range(lines))
        assert worker.wait(timeout=60) == 0
    finally:
        for process in (follow, worker):
            if process.poll() is None:
                process.kill()
                process.wait()
    waited = _jt(env, "wait", "--json", str(job["id"]))
    assert waited.returncode == 0 and json.loads(waited.stdout)["status"] == "Complete"
    shown = json.loads(_jt(env, "show", "--json", str(job["id"])).stdout)
    assert [(e["from"], e["to"]) for e in shown["history"]][-1] == ("RUN", "COM")
    listed = json.loads(_jt(env, "list", "--json").stdout)
    assert [j["id"] for j in listed] == [job["id"]]


def test_bash_completion_completes_commands_and_options(tmp_path: Path) -> None:
    script = _jt(_env(tmp_path), "completion", "bash")
    assert script.returncode == 0 and not (tmp_path / "jobtower.sqlite3").exists()
    (tmp_path / "c.sh").write_text(script.stdout)
    probe = ("source c.sh; COMP_WORDS=(jobtower sh); COMP_CWORD=1; _jobtower_complete_jobtower; echo ${COMPREPLY[@]};"
             "COMP_WORDS=(jobtower logs --f); COMP_CWORD=2; _jobtower_complete_jobtower; echo ${COMPREPLY[@]}")
    out = subprocess.run(["bash", "-c", probe], cwd=tmp_path, capture_output=True, text=True, timeout=30)
    assert out.stdout.splitlines() == ["show", "--follow"], out


def test_refuses_the_standalone_site_inside_a_host_project(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "manage.py").write_text("# a host project\n")
    _one_line_error(_jt(_env(tmp_path), "list", cwd=project),
                    "holds manage.py", "python manage.py jobtower COMMAND", "DJANGO_SETTINGS_MODULE")
    assert not (project / ".jobtower").exists() and not (tmp_path / "jobtower.sqlite3").exists()
    explicit = _jt(_env(tmp_path) | {"DJANGO_SETTINGS_MODULE": "jobtower.site.settings"}, "list", cwd=project)
    assert explicit.returncode == 0, explicit.stderr


def test_prune_counts_then_deletes_only_jobs_that_ended_long_ago(tmp_path: Path) -> None:
    env = _with_admin(tmp_path)
    job_id = _jt(env, "submit", "--json", "--", "true").stdout
    job_id = str(json.loads(job_id)["id"])
    _one_line_error(_jt(env, "prune", "--older-than", "ninety"), "'ninety' is not an age", "90d")
    assert json.loads(_jt(env, "prune", "--older-than", "1s", "--dry-run", "--json").stdout) == {
        "deleted": 0, "would_delete": 0}  # not ended yet: nobody ran it
    assert "deleted 0 jobs" in _jt(env, "prune", "--older-than", "90d").stdout
    assert [j["id"] for j in json.loads(_jt(env, "list", "--json").stdout)] == [int(job_id)]


def test_worker_and_monitor_start_without_the_api_pages_and_the_site_keeps_them(tmp_path: Path) -> None:
    # The worker and the monitor serve no pages: django-ninja's app (and its pydantic) is not imported.
    probe = (
        "import sys\n"
        "from jobtower import cli\n"
        "kind = sys.argv[1]\n"
        "setup = cli._setup\n"
        "def set_up(**options):\n"
        "    setup(**options)\n"
        "    import jobtower.monitor\n"
        "    jobtower.monitor.Monitor.run = lambda self, stop=None: None  # set up, not run\n"
        "cli._setup = set_up\n"
        "cli.main([kind, '--until-idle'] if kind == 'worker' else [kind])\n"
        "from django.conf import settings\n"
        "print('ninja' in settings.INSTALLED_APPS, sorted(n for n in ('ninja', 'pydantic') if n in sys.modules))\n"
    )
    env = _env(tmp_path)
    for kind in ("worker", "monitor"):
        out = subprocess.run([sys.executable, "-c", probe, kind], env=env, capture_output=True, text=True,
                             timeout=120)
        assert out.returncode == 0, out.stderr
        assert out.stdout.split("\n")[-2] == "False []", (kind, out.stdout)
    # Every other command (the site's) keeps the app: the API page needs its templates and static files.
    site = subprocess.run(
        [sys.executable, "-c", "import django; django.setup(); from django.conf import settings; "
         "print('ninja' in settings.INSTALLED_APPS)"],
        env={**env, "DJANGO_SETTINGS_MODULE": "jobtower.site.settings"}, capture_output=True, text=True, timeout=120,
    )
    assert site.returncode == 0 and site.stdout.strip() == "True", site.stderr
