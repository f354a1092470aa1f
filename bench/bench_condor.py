"""CONDOR jobs on the loopback HTCondor pool: submitting 500 jobs, and what tracking them costs.

    python bench/bench_condor.py [--jobs 500] [--cycles 5] [--tethys-jobs N] [--db-url URL]

Needs the pool of scripts/engines/condor.sh (run `scripts/engines/condor.sh up` as root first); its
client environment is read from /var/cache/engines/htcondor/client.env unless CONDOR_CONFIG is set.

submit      N CONDOR jobs (`/bin/sleep 900`, template vanilla_base) are created, then execute()d one
            after the other; the executes are timed (each is a guarded status move plus one schedd
            transaction). They stay active: the pool runs 4 at a time, the rest wait in the queue.
cycle       `Monitor().cycle()` with the N jobs active, timed `--cycles` times after a warm-up cycle:
            wall time, schedd queries (the backend counts them) and SQL statements per cycle.
tethys      what Tethys Platform 4.6.1 does to refresh the same jobs: condorpy 0.7.0's Job.status,
            which runs `condor_q <cluster> ... && condor_history <cluster> ...` in a shell per job
            (2 schedd queries and 3 processes per job), run over the same clusters with the Tethys
            virtualenv of bench/peer/setup_tethys_venv.sh. `--tethys-jobs N` times N of them only and
            scales the total (marked "scaled").

Prints the figures and the ratios, and writes the raw JSON to bench/results/condor-<time>.json. The
jobs are removed from the pool at the end.
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

import benchlib

ENV_FILE = os.environ.get("JOBTOWER_CONDOR_ENV") or os.path.join(
    os.environ.get("ENGINES_DIR", "/var/cache/engines"), "htcondor", "client.env"
)

#: The Tethys side, run under the Tethys virtualenv's python: condorpy's own status code per cluster.
TETHYS_POLL = r"""
import json, sys, time
from condorpy import Job
clusters = json.loads(sys.argv[1])
seen = {}
start = time.perf_counter()
for cluster in clusters:
    job = Job("bench")
    job._cluster_id = cluster
    seen[str(cluster)] = job.status
print(json.dumps({"seconds": time.perf_counter() - start, "statuses": seen}))
"""


log = benchlib.logger("bench_condor")


def condor_environment() -> dict[str, str]:
    """Apply the pool's client environment to this process (before htcondor is imported)."""
    if os.environ.get("CONDOR_CONFIG"):
        return {}
    try:
        lines = open(ENV_FILE).read().splitlines()
    except OSError as exc:
        raise SystemExit(f"no HTCondor pool ({exc}): run scripts/engines/condor.sh up (as root) first") from exc
    env = dict(line.split("=", 1) for line in lines if "=" in line and not line.startswith("#"))
    os.environ.update({k: v for k, v in env.items() if not k.startswith("JOBTOWER_")})
    if env.get("JOBTOWER_CONDOR_BIN"):
        os.environ["PATH"] = env["JOBTOWER_CONDOR_BIN"] + os.pathsep + os.environ.get("PATH", "")
    return env


def remove_clusters(clusters: list[int], reason: str) -> None:
    """Remove these clusters from the pool (DAGMan removes a workflow's nodes with it)."""
    import htcondor

    with_clusters = ", ".join(str(c) for c in clusters if c)
    htcondor.Schedd().act(htcondor.JobAction.Remove, f"member(ClusterId, {{{with_clusters}}})", reason=reason)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=500)
    parser.add_argument("--cycles", type=int, default=5)
    parser.add_argument("--tethys-jobs", type=int, default=0, help="time only this many Tethys polls (0: all)")
    parser.add_argument("--db-url", default=None, help="JOBTOWER_DATABASE_URL (default: SQLite in a temp dir)")
    args = parser.parse_args()

    condor_environment()
    home = tempfile.mkdtemp(prefix="jobtower-bench-condor-")
    workspace = tempfile.mkdtemp(prefix="jobtower-bench-condor-ws-")
    os.chmod(workspace, 0o755)  # the pool's job user must reach the job folders
    benchlib.setup_django(home, args.db_url)

    from django.db import connection

    import jobtower
    from jobtower.backends import get_backend
    from jobtower.monitor import Monitor

    backend = get_backend("jobtower.backends.condor:CondorBackend")
    _, manager, user = benchlib.bench_app("bench_condor", "HTCondor bench")
    results: dict = benchlib.results_head(jobs=args.jobs, database=connection.vendor)
    import htcondor

    results["htcondor_bindings"] = htcondor.version().split()[1]
    results["pool"] = htcondor.Schedd().location.version.split()[1]
    clusters: list[int] = []
    try:
        log(f"creating {args.jobs} CONDOR jobs")
        jobs = []
        for i in range(args.jobs):
            job = manager.create_job(
                name=f"bench_{i}", user=user, job_type="CONDOR", workspace=workspace,
                condorpy_template_name="vanilla_base",
                attributes={"executable": "/bin/sleep", "arguments": "900"},
            )
            job.save()
            jobs.append(job)
        log(f"submitting {args.jobs} jobs")
        start = time.perf_counter()
        for job in jobs:
            job.execute()
        submit_s = time.perf_counter() - start
        clusters = [job.cluster_id for job in jobs]
        results["submit"] = {"seconds": submit_s, "jobs_per_s": args.jobs / submit_s,
                             "ms_per_job": 1000 * submit_s / args.jobs}
        log(f"submitted in {submit_s:.2f} s")

        monitor = Monitor()
        # after a warm-up cycle, in which the first jobs start running
        walls, _, queries, statements = benchlib.timed_cycles(monitor.cycle, args.cycles, lambda: backend.queries)
        active = jobtower.Job.objects.filter(label="bench_condor", _status__in=["SUB", "RUN"]).count()
        results["cycle"] = {
            "active_jobs": active, "median_ms": 1000 * statistics.median(walls),
            "max_ms": 1000 * max(walls), "schedd_queries": max(queries),
            "sql_statements": max(statements), "all_ms": [1000 * w for w in walls],
        }
        log(f"monitor cycle: {results['cycle']['median_ms']:.1f} ms, {max(queries)} schedd queries")

        python = benchlib.tethys_python(log)
        if python:
            sample = clusters[: args.tethys_jobs] if args.tethys_jobs else clusters
            log(f"Tethys (condorpy) status of {len(sample)} jobs, one condor_q + condor_history each")
            out = subprocess.run([python, "-c", TETHYS_POLL, json.dumps(sample)], check=True,
                                 stdout=subprocess.PIPE, text=True, env=os.environ.copy()).stdout
            polled = json.loads(out)
            seconds = polled["seconds"] * len(clusters) / len(sample)
            counts: dict[str, int] = {}
            for status in polled["statuses"].values():
                counts[status] = counts.get(status, 0) + 1
            results["tethys"] = {
                "polled": len(sample), "scaled": len(sample) != len(clusters), "seconds": seconds,
                "ms_per_job": 1000 * polled["seconds"] / len(sample), "schedd_queries": 2 * len(clusters),
                "processes": 3 * len(clusters), "statuses": counts,
            }
    finally:
        if clusters:
            log("removing the bench's jobs from the pool")
            remove_clusters(clusters, "bench_condor: done")
        shutil.rmtree(home, ignore_errors=True)
        shutil.rmtree(workspace, ignore_errors=True)

    report(results)
    log(f"raw figures: {benchlib.save_results('condor', results)}")
    return 0


def report(r: dict) -> None:
    submit, cycle, tethys = r["submit"], r["cycle"], r.get("tethys")
    print(f"\nHTCondor {r['pool']} pool, bindings {r['htcondor_bindings']}, {r['database']}, {r['machine']}")
    print(f"submit {r['jobs']} jobs:  {submit['seconds']:.2f} s  ({submit['jobs_per_s']:.0f} jobs/s, "
          f"{submit['ms_per_job']:.1f} ms/job)")
    print(f"one monitor cycle, {cycle['active_jobs']} active jobs:  {cycle['median_ms']:.1f} ms median "
          f"(max {cycle['max_ms']:.1f}), {cycle['schedd_queries']} schedd queries, "
          f"{cycle['sql_statements']} SQL statements")
    if tethys:
        scaled = f" (scaled from {int(tethys['polled'])})" if tethys["scaled"] else ""
        print(f"Tethys 4.6.1 / condorpy refresh of the same jobs:  {tethys['seconds']:.2f} s{scaled}, "
              f"{tethys['ms_per_job']:.1f} ms/job, {tethys['schedd_queries']} schedd queries, "
              f"{tethys['processes']} processes")
        print(f"ratio (Tethys / jobtower):  wall time {1000 * tethys['seconds'] / cycle['median_ms']:.0f}x, "
              f"schedd queries {tethys['schedd_queries'] / max(cycle['schedd_queries'], 1):.0f}x")


if __name__ == "__main__":
    sys.exit(main())
