"""Tethys Platform 4.6.1's DaskJob status path over keys that already live on a Dask scheduler.

    <tethys venv>/bin/python bench/peer/tethys_dask_status.py --address tcp://127.0.0.1:8786 \
        --keys-file keys.json --db sqlite:/tmp/tethys-dask.sqlite3 --workspace DIR

Run by bench/bench_dask.py under the Tethys venv (it has dask.distributed, a dependency of
tethys-platform). One DaskJob row per key, with Tethys's own DaskScheduler record pointing at the
bench's scheduler, is inserted outside the timing; then each job is loaded the way an app lists its jobs
and Tethys's `_update_status()` (what `job.status` calls once the update interval has passed, 0 s for
DaskJob) runs on each, timed: wall and CPU time, Dask Clients opened (Tethys's job.client opens one per
job row and closes it after reading the status) and SQL statements. Prints one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import core_workload  # noqa: E402 - the bench/ folder is on the path only now


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--address", required=True)
    parser.add_argument("--keys-file", required=True)
    parser.add_argument("--db", required=True, help="sqlite:/path or a postgresql:// URL (as core_workload.py)")
    parser.add_argument("--workspace", required=True)
    args = parser.parse_args()
    keys = json.load(open(args.keys_file))
    db = core_workload.parse_db(args.db)
    core_workload.fresh_database(db)
    try:
        return run(args, keys, db)
    finally:
        core_workload.drop_database(db)


def run(args: argparse.Namespace, keys: list[str], db: dict) -> int:
    env = core_workload.configure_tethys(db, args.workspace)
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connection

    call_command("migrate", verbosity=0, interactive=False)
    import distributed
    from tethys_compute.models.dask import dask_scheduler
    from tethys_compute.models.dask.dask_job import DaskJob
    from tethys_compute.models.dask.dask_scheduler import DaskScheduler

    user = get_user_model().objects.create_user("bench", password="bench")
    scheduler = DaskScheduler.objects.create(name="bench", host=args.address, timeout=10, heartbeat_interval=5)
    for key in keys:
        DaskJob.objects.create(name=f"dask_{key}", user=user, label=core_workload.APP_PACKAGE,
                               workspace=args.workspace, key=key, scheduler=scheduler, _status="RUN")

    opened = [0]
    real_client = dask_scheduler.Client

    def counting_client(*a, **k):  # noqa: ANN002, ANN003
        opened[0] += 1
        return real_client(*a, **k)

    dask_scheduler.Client = counting_client
    counter = core_workload.StatementCounter()
    seen: dict[str, int] = {}
    with connection.execute_wrapper(counter):
        wall0, cpu0 = time.perf_counter(), time.process_time()
        jobs = list(env.job_manager.list_jobs(user=user, order_by="id"))
        for job in jobs:
            job._update_status()
            seen[job._status] = seen.get(job._status, 0) + 1
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    print(json.dumps({
        "version": env.version, "distributed": distributed.__version__, "jobs": len(jobs), "wall_s": wall,
        "cpu_s": cpu, "clients_opened": opened[0], "sql_statements": counter.queries, "statuses": seen,
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
