"""SLURM jobs on the loopback Slurm cluster: submitting N jobs, and what tracking them costs.

    python bench/bench_slurm.py [--jobs 500] [--cycles 5] [--paths cli,rest] [--db-url URL]

Needs the cluster of scripts/engines/slurm.sh (run `scripts/engines/slurm.sh up` as root first), and for
the REST path its slurmrestd (127.0.0.1:6820, a JWT from `scontrol token`).

Each path runs the same steps, one after the other: `cli` with the Slurm commands, `rest` through
slurmrestd (a SlurmCluster with a rest_url and a token).

submit      N SLURM jobs (`sleep 900`, 1 CPU, the default 64 MB) are created, then execute()d one after
            the other; the executes are timed (each is a guarded status move plus one `sbatch`, or one
            POST job/submit). They stay active: the node runs as many as it has CPUs, the rest wait.
cycle       `Monitor().cycle()` with the N jobs active, timed `--cycles` times after a warm-up cycle:
            wall time, controller calls (squeue and sacct, or the jobs and slurmdb GETs; the backend
            counts them) and SQL statements.

There is no peer figure: Tethys Platform 4.6.1 has no Slurm engine. Prints the figures and writes the
raw JSON to bench/results/slurm-<time>.json. Each path's jobs are cancelled (one scancel) at its end.
"""

from __future__ import annotations

import argparse
import getpass
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import benchlib

log = benchlib.logger("bench_slurm")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=500)
    parser.add_argument("--cycles", type=int, default=5)
    parser.add_argument("--paths", default="cli,rest", help="cli (Slurm commands), rest (slurmrestd), or both")
    parser.add_argument("--rest-url", default="http://127.0.0.1:6820", help="slurmrestd's URL (the loopback one)")
    parser.add_argument("--db-url", default=None, help="JOBTOWER_DATABASE_URL (default: SQLite in a temp dir)")
    args = parser.parse_args()
    if subprocess.run(["sinfo", "-h"], capture_output=True).returncode != 0:
        raise SystemExit("the Slurm cluster does not answer: run scripts/engines/slurm.sh up (as root) first")
    home = tempfile.mkdtemp(prefix="jobtower-bench-slurm-")
    workspace = tempfile.mkdtemp(prefix="jobtower-bench-slurm-ws-")
    benchlib.setup_django(home, args.db_url)

    from django.db import connection

    import jobtower
    from jobtower.backends import get_backend
    from jobtower.models import SlurmCluster
    from jobtower.monitor import Monitor

    backend = get_backend("jobtower.backends.slurm:SlurmBackend")
    _, manager, user = benchlib.bench_app("bench_slurm", "Slurm bench")
    results: dict = benchlib.results_head(
        jobs=args.jobs, database=connection.vendor,
        slurm=subprocess.run(["sinfo", "-V"], capture_output=True, text=True).stdout.strip(),
    )
    paths = [p.strip() for p in args.paths.split(",") if p.strip()]
    if "rest" in paths:
        token = subprocess.run(["scontrol", "token", f"username={getpass.getuser()}", "lifespan=7200"],
                               capture_output=True, text=True).stdout.strip().partition("SLURM_JWT=")[2]
        if not token:
            raise SystemExit("scontrol token gave no JWT: run scripts/engines/slurm.sh up (it enables auth/jwt)")
        SlurmCluster.objects.create(name="rest", rest_url=args.rest_url, token=token)

    def run_path(path: str) -> dict:
        figures: dict = {}
        ids: list[int] = []
        try:
            log(f"{path}: creating {args.jobs} SLURM jobs")
            jobs = []
            for i in range(args.jobs):
                job = manager.create_job(name=f"bench_{path}_{i}", user=user, job_type="SLURM", workspace=workspace,
                                         command=["sleep", "900"], scheduler="rest" if path == "rest" else None)
                job.save()
                jobs.append(job)
            log(f"{path}: submitting {args.jobs} jobs")
            start = time.perf_counter()
            for job in jobs:
                job.execute()
                ids.append(job.slurm_job_id)
            submit_s = time.perf_counter() - start
            figures["submit"] = {"seconds": submit_s, "jobs_per_s": args.jobs / submit_s,
                                 "ms_per_job": 1000 * submit_s / args.jobs}
            log(f"{path}: submitted in {submit_s:.2f} s")
            monitor = Monitor()
            # after a warm-up cycle, in which the first jobs start running
            walls, _, queries, statements = benchlib.timed_cycles(
                monitor.cycle, args.cycles, lambda: backend.queries,  # type: ignore[attr-defined]
            )
            active = jobtower.Job.objects.filter(pk__in=[j.pk for j in jobs], _status__in=["SUB", "RUN"]).count()
            figures["cycle"] = {
                "active_jobs": active, "median_ms": 1000 * statistics.median(walls), "max_ms": 1000 * max(walls),
                "controller_calls": max(queries), "sql_statements": max(statements),
                "all_ms": [1000 * w for w in walls],
            }
            log(f"{path}: monitor cycle {figures['cycle']['median_ms']:.1f} ms, {max(queries)} controller calls")
        finally:
            if ids:
                log(f"{path}: cancelling the bench's jobs")
                subprocess.run(["scancel", *[str(i) for i in ids if i]], check=False)
                # the next path's cycles poll only its own jobs
                jobtower.Job.objects.filter(label="bench_slurm").update(_status="ABT")
        return figures

    try:
        for path in paths:
            results[path] = run_path(path)
    finally:
        shutil.rmtree(home, ignore_errors=True)
        shutil.rmtree(workspace, ignore_errors=True)
    print(f"Slurm bench ({results['slurm']}, {results['machine']}, {results['database']}), {args.jobs} jobs")
    how = {"cli": "one sbatch each", "rest": "one POST job/submit each"}
    for path in paths:
        figures = results.get(path, {})
        if "submit" in figures:
            s = figures["submit"]
            print(f"  {path:4} submit {s['jobs_per_s']:8.1f} jobs/s   ({s['ms_per_job']:.1f} ms per execute(), "
                  f"{how[path]})")
        if "cycle" in figures:
            c = figures["cycle"]
            print(f"  {path:4} cycle  {c['median_ms']:8.1f} ms median, {c['max_ms']:.1f} ms max, "
                  f"{c['active_jobs']} active jobs, {c['controller_calls']} controller calls, "
                  f"{c['sql_statements']} SQL statements")
    print("  peer        Tethys Platform 4.6.1 has no Slurm engine: no figure to compare")
    log(f"raw figures: {benchlib.save_results('slurm', results)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
