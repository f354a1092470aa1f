"""The REST API over real HTTP, before and after a change, in the same run: list and create.

    python bench/bench_api.py [--base COMMIT] [--jobs 500] [--requests 200]

"after" is this checkout's src/; "before" is COMMIT (default HEAD~2, the hand-written API) checked out
with `git worktree add` in a temporary folder. Each is served by gunicorn (1 sync worker, tests.settings,
a fresh SQLite file holding one user with --jobs BASIC jobs) on a free loopback port, and timed with
a Bearer token: GET /api/jobs/?page_size=50 and POST /api/jobs/ (a BASIC job, execute false).
Prints the median and p95 per request, and after/before.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import benchlib

ROOT = os.path.dirname(benchlib.HERE)

SETUP = """
import django, os
django.setup()
from django.core.management import call_command
call_command("migrate", verbosity=0)
from django.contrib.auth.models import User
from jobtower.manager import JobManager
from jobtower.web.tokens import make_token
class App: package = "bench"; name = "bench"; workspaces_root = None
user = User.objects.create_user("bench", password="pw")
manager = JobManager(App())
for i in range(int(os.environ["BENCH_JOBS"])):
    manager.create_job(name=f"job {i}", user=user, job_type="BASIC").save()
print(make_token(user))
"""


def serve(src: str, home: str, jobs: int) -> tuple[subprocess.Popen[bytes], int, str]:
    env = {**os.environ, "PYTHONPATH": f"{src}:{ROOT}", "DJANGO_SETTINGS_MODULE": "tests.settings",
           "JOBTOWER_TEST_HOME": home, "BENCH_JOBS": str(jobs), "HOME": home}
    env.pop("JOBTOWER_DATABASE_URL", None)
    token = subprocess.run([sys.executable, "-c", SETUP], env=env, check=True, capture_output=True,
                           text=True, cwd=home).stdout.strip().splitlines()[-1]
    port = benchlib.free_port()
    server = subprocess.Popen([sys.executable, "-m", "gunicorn", "-w", "1", "-b", f"127.0.0.1:{port}",
                               "jobtower.site.wsgi:application"], env=env, cwd=home,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return server, port, token
        except OSError:
            time.sleep(0.05)  # polling for the server to listen, with a deadline
    server.kill()
    raise SystemExit("gunicorn did not start within 30 s")


def timed(port: int, token: str, method: str, path: str, body: bytes | None, expect: int, n: int) -> list[float]:
    conn = http.client.HTTPConnection("127.0.0.1", port)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    times = []
    for _ in range(n):
        start = time.perf_counter()
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        response.read()
        times.append(time.perf_counter() - start)
        if response.status != expect:
            raise SystemExit(f"{method} {path} answered {response.status}, not {expect}")
    conn.close()
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", default="HEAD~2")
    parser.add_argument("--jobs", type=int, default=500)
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="bench-api-")
    base = os.path.join(work, "base")
    subprocess.run(["git", "-C", ROOT, "worktree", "add", "--detach", base, args.base], check=True,
                   capture_output=True)
    results: dict[str, dict[str, list[float]]] = {"before": {"list": [], "create": []},
                                                   "after": {"list": [], "create": []}}
    servers = {}
    try:
        for label, src in (("before", os.path.join(base, "src")), ("after", os.path.join(ROOT, "src"))):
            home = os.path.join(work, label)
            os.makedirs(home)
            servers[label] = serve(src, home, args.jobs)
        create = json.dumps({"job_type": "BASIC", "name": "bench {id}", "execute": False}).encode()
        for _server, port, token in servers.values():
            timed(port, token, "GET", "/api/jobs/?page_size=50", None, 200, 20)  # warm up
        # Interleaved in small batches, so the shared machine's noise falls on both alike.
        for _ in range(max(1, args.requests // 10)):
            for label, (_server, port, token) in servers.items():
                results[label]["list"] += timed(port, token, "GET", "/api/jobs/?page_size=50", None, 200, 10)
                results[label]["create"] += timed(port, token, "POST", "/api/jobs/", create, 201, 10)
    finally:
        for server, _port, _token in servers.values():
            server.terminate()
            server.wait(10)
        subprocess.run(["git", "-C", ROOT, "worktree", "remove", "--force", base], check=False)
    print(f"REST API over HTTP (gunicorn, 1 worker, SQLite, {args.jobs} jobs, {args.requests} requests each)")
    print(f"{'':8} {'before ms (median/p95)':>24} {'after ms (median/p95)':>24} {'after/before':>13}")
    for what in ("list", "create"):
        row = []
        for label in ("before", "after"):
            values = sorted(results[label][what])
            row.append((statistics.median(values) * 1000, values[int(len(values) * 0.95) - 1] * 1000))
        ratio = row[1][0] / row[0][0]
        print(f"{what:8} {row[0][0]:12.2f} / {row[0][1]:8.2f} {row[1][0]:12.2f} / {row[1][1]:8.2f} {ratio:12.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
