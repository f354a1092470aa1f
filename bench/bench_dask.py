"""DASK jobs on a real local Dask cluster: submitting N jobs, and what tracking them costs, vs Tethys 4.6.1.

    python bench/bench_dask.py [--jobs 1000] [--cycles 5] [--nthreads 1] [--db-url URL] [--no-peer]

The bench starts its own cluster, as the tests' `dask_cluster` fixture does: `dask scheduler` and one
`dask worker --nthreads N --no-nanny` (separate processes on 127.0.0.1, free ports), and kills both
at the end (the tasks go with them).

submit      N DASK jobs `create_job(job_type="DASK", scheduler="bench", function="time:sleep",
            args=[3600])` are created and saved, then execute()d one after the other; the executes are
            timed (each: a guarded status move, `client.submit`, `publish_dataset`, the key recorded).
            The worker runs `--nthreads` of them; the rest stay queued: N active keys.
cycle       `Monitor().cycle()` with the N jobs active, timed `--cycles` times after a warm-up cycle:
            wall and CPU time of this process (which includes the Dask client's event-loop thread),
            scheduler calls (run_on_scheduler / gather / unpublish_dataset / cancel / run, counted on
            distributed.Client) and SQL statements.
peer        Tethys Platform 4.6.1's DaskJob status path over the same N keys, in the same run, under the
            Tethys venv (bench/peer/setup_tethys_venv.sh; dask.distributed comes with tethys-platform):
            the same dask.distributed release is installed there once (tethys-platform does not
            depend on it); bench/peer/tethys_dask_status.py loads the N DaskJob rows and calls `_update_status()` on
            each (one Client opened and closed per job). ratio = Tethys time / jobtower cycle time.

Prints the figures and writes the raw JSON to bench/results/dask-<time>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

import benchlib

COUNTED = ("run_on_scheduler", "gather", "unpublish_dataset", "cancel", "run", "submit", "publish_dataset")

log = benchlib.logger("bench_dask")


class Cluster:
    """A `dask scheduler` and one `dask worker`, started with Dask's own command line and killed at the end."""

    def __init__(self, logs: str, nthreads: int) -> None:
        found = shutil.which("dask", path=os.path.dirname(sys.executable))
        if found is None:
            raise SystemExit(f"no `dask` command next to {sys.executable}: pip install 'jobtower[dask]'")
        self.dask, self.logs, self.nthreads = found, logs, nthreads
        self.address = f"tcp://127.0.0.1:{benchlib.free_port()}"
        self.processes: list[subprocess.Popen[bytes]] = []

    def _spawn(self, name: str, *argv: str) -> None:
        out = open(os.path.join(self.logs, f"{name}.log"), "ab")  # noqa: SIM115 - the process owns it
        self.processes.append(subprocess.Popen([self.dask, *argv], stdout=out, stderr=subprocess.STDOUT,
                                               start_new_session=True))

    def start(self) -> None:
        port = self.address.rsplit(":", 1)[1]
        self._spawn("scheduler", "scheduler", "--host", "127.0.0.1", "--port", port, "--dashboard-address", ":0")
        self._spawn("worker", "worker", self.address, "--nthreads", str(self.nthreads), "--no-nanny",
                    "--host", "127.0.0.1", "--no-dashboard", "--death-timeout", "120")
        from jobtower.backends import dask

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            for process in self.processes:
                if process.poll() is not None:
                    raise SystemExit(f"a Dask process exited with {process.returncode}: see {self.logs}")
            try:
                if dask.client_for(self.address).scheduler_info().get("workers"):
                    return
            except Exception:  # noqa: BLE001 - not up yet
                pass
            time.sleep(0.2)
        raise SystemExit(
            f"the Dask scheduler at {self.address} and its worker were not up within 60 s: see {self.logs}"
        )

    def stop(self) -> None:
        for process in reversed(self.processes):
            if process.poll() is None:
                process.kill()
                process.wait()


def count_client_calls() -> dict[str, int]:
    """Wrap distributed.Client's calls to the scheduler with counters; return the live counts."""
    import distributed

    calls = dict.fromkeys(COUNTED, 0)
    for name in COUNTED:
        real = getattr(distributed.Client, name)

        def counted(self: Any, *a: Any, _real: Any = real, _name: str = name, **k: Any) -> Any:
            calls[_name] += 1
            return _real(self, *a, **k)

        setattr(distributed.Client, name, counted)
    return calls


def tethys_peer(address: str, keys: list[str], scratch: str) -> dict[str, Any]:
    """Run Tethys's DaskJob status path over `keys` under the Tethys venv; return its figures."""
    python = benchlib.tethys_python()
    import distributed

    # tethys-platform does not depend on dask: the peer gets the same release as this side, once.
    probe = subprocess.run([python, "-c", "import distributed; print(distributed.__version__)"],
                           capture_output=True, text=True)
    if probe.stdout.strip() != distributed.__version__:
        log(f"installing dask[distributed]=={distributed.__version__} into the Tethys venv")
        pip = subprocess.run([python, "-m", "pip", "install", "-q", f"dask[distributed]=={distributed.__version__}"],
                             capture_output=True, text=True)
        if pip.returncode != 0:
            raise RuntimeError(f"could not install dask[distributed] into the Tethys venv: {pip.stderr[-2000:]}")
    keys_file = os.path.join(scratch, "keys.json")
    with open(keys_file, "w") as handle:
        json.dump(keys, handle)
    workspace = os.path.join(scratch, "tethys-ws")
    os.makedirs(workspace, exist_ok=True)
    ran = subprocess.run(
        [python, os.path.join(benchlib.HERE, "peer", "tethys_dask_status.py"), "--address", address, "--keys-file",
         keys_file, "--db", f"sqlite:{os.path.join(scratch, 'tethys', 'tethys.sqlite3')}", "--workspace", workspace],
        capture_output=True, text=True, timeout=1800,
    )
    if ran.returncode != 0:
        raise RuntimeError(f"the Tethys status run failed ({ran.returncode}): {ran.stderr[-3000:]}")
    return dict(json.loads(ran.stdout.strip().splitlines()[-1]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--cycles", type=int, default=5)
    parser.add_argument("--nthreads", type=int, default=1, help="the worker's threads: tasks running at once")
    parser.add_argument("--db-url", default=None, help="JOBTOWER_DATABASE_URL (default: SQLite in a temp dir)")
    parser.add_argument("--no-peer", action="store_true", help="skip the Tethys 4.6.1 figure")
    args = parser.parse_args()
    scratch = tempfile.mkdtemp(prefix="jobtower-bench-dask-")
    home = os.path.join(scratch, "home")
    workspace = os.path.join(scratch, "ws")
    os.makedirs(workspace)
    benchlib.setup_django(home, args.db_url, quiet={**benchlib.QUIET_LOGGERS, "distributed": "ERROR"})

    import distributed
    from django.db import connection

    import jobtower
    from jobtower.backends import dask as dask_backend
    from jobtower.models import create_dask_scheduler
    from jobtower.monitor import Monitor

    cluster = Cluster(scratch, args.nthreads)
    results: dict[str, Any] = benchlib.results_head(
        jobs=args.jobs, database=connection.vendor, distributed=distributed.__version__, nthreads=args.nthreads,
    )
    failed = False
    try:
        log(f"starting a Dask scheduler and worker at {cluster.address}")
        cluster.start()
        create_dask_scheduler("bench", host=cluster.address, timeout=10).save()
        _, manager, user = benchlib.bench_app("bench_dask", "Dask bench")
        log(f"creating {args.jobs} DASK jobs")
        jobs = []
        for i in range(args.jobs):
            job = manager.create_job(name=f"bench_{i}", user=user, job_type="DASK", scheduler="bench",
                                     workspace=workspace, function="time:sleep", args=[3600])
            job.save()
            jobs.append(job)
        calls = count_client_calls()
        log(f"submitting {args.jobs} jobs")
        wall0, cpu0 = time.perf_counter(), time.process_time()
        for job in jobs:
            job.execute()
        submit_s, submit_cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        results["submit"] = {"seconds": submit_s, "cpu_s": submit_cpu, "jobs_per_s": args.jobs / submit_s,
                             "ms_per_job": 1000 * submit_s / args.jobs, "client_calls": dict(calls)}
        log(f"submitted in {submit_s:.2f} s")
        monitor = Monitor()
        # after a warm-up cycle, in which the first tasks start and the client's caches fill
        walls, cpus, scheduler_calls, statements = benchlib.timed_cycles(
            monitor.cycle, args.cycles, lambda: sum(calls.values()),
        )
        active = jobtower.Job.objects.filter(label="bench_dask", _status__in=["SUB", "RUN"]).count()
        results["cycle"] = {
            "active_jobs": active, "median_ms": 1000 * statistics.median(walls), "max_ms": 1000 * max(walls),
            "cpu_median_ms": 1000 * statistics.median(cpus), "scheduler_calls": max(scheduler_calls),
            "sql_statements": max(statements), "all_ms": [1000 * w for w in walls],
        }
        log(f"monitor cycle: {results['cycle']['median_ms']:.1f} ms, {max(scheduler_calls)} scheduler calls")
        if not args.no_peer:
            keys = [str(dask_backend.stored_key(job.engine_data)) for job in
                    jobtower.Job.objects.filter(label="bench_dask").order_by("id")]
            log(f"Tethys 4.6.1: DaskJob._update_status() over the same {len(keys)} keys")
            try:
                results["tethys"] = tethys_peer(cluster.address, keys, scratch)
            except Exception as exc:  # noqa: BLE001 - reported, and the run fails
                results["tethys_error"] = str(exc)
                failed = True
    finally:
        dask_backend.close_clients()
        cluster.stop()
        shutil.rmtree(scratch, ignore_errors=True)
    print(f"Dask bench (distributed {results['distributed']}, {results['machine']}, {results['database']}), "
          f"{args.jobs} jobs, worker with {args.nthreads} thread(s)")
    if "submit" in results:
        s = results["submit"]
        print(f"  submit      {s['jobs_per_s']:8.1f} jobs/s   ({s['ms_per_job']:.2f} ms per execute(), "
              f"{s['cpu_s'] * 1000 / args.jobs:.2f} ms CPU)")
    if "cycle" in results:
        c = results["cycle"]
        print(f"  cycle       {c['median_ms']:8.1f} ms median ({c['cpu_median_ms']:.1f} ms CPU), "
              f"{c['max_ms']:.1f} ms max, {c['active_jobs']} active jobs, {c['scheduler_calls']} scheduler calls, "
              f"{c['sql_statements']} SQL statements")
    if "tethys" in results:
        t = results["tethys"]
        print(f"  tethys      {t['wall_s'] * 1000:8.1f} ms ({t['cpu_s'] * 1000:.1f} ms CPU) for {t['jobs']} "
              f"DaskJob._update_status() calls, {t['clients_opened']} Dask clients opened, "
              f"{t['sql_statements']} SQL statements; statuses {t['statuses']} (Tethys {t['version']})")
        if "cycle" in results:
            ratio = t["wall_s"] * 1000 / results["cycle"]["median_ms"]
            cpu_ratio = t["cpu_s"] * 1000 / results["cycle"]["cpu_median_ms"]
            results["ratio"], results["cpu_ratio"] = ratio, cpu_ratio
            print(f"  ratio       {ratio:8.1f}x  (Tethys's status pass / jobtower's monitor cycle, wall; "
                  f"{cpu_ratio:.1f}x CPU)")
    elif "tethys_error" in results:
        print(f"  tethys      n/a: {results['tethys_error']}")
    log(f"raw figures: {benchlib.save_results('dask', results)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
