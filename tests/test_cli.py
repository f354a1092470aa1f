"""The `jobtower` command: migrate, and serve the standalone site on a production server."""

from __future__ import annotations

import http.cookiejar
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
