"""Bulk creation: `job_manager.create_jobs()` of a parameter sweep against one create+save per job.

    python bench/bench_bulk.py [--db sqlite|postgresql|both] [--jobs 10000] [--repeat 5]

Each run creates --repeat sweeps of --jobs jobs into the same table and prints the median rate, with the
CPU time per job of this process and (PostgreSQL, on this host) of the database server process, which
a busy machine does not inflate as it does the wall-clock rate.

Each database gets a fresh SQLite file or a fresh PostgreSQL database (created and dropped here). Also
printed: the database's own rate of one-row INSERT + COMMIT through the same driver, the floor of any
one-save-per-job API. Tethys has no bulk creation; its create+save rate is in bench_core.py.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

import benchlib

PG = benchlib.PG_SERVER


def child(db_url: str, n: int, repeat: int) -> None:
    """Run the workload in this process (Django is configured once per process)."""
    benchlib.setup_django(os.environ["JOBTOWER_HOME"], db_url, quiet={})  # jobtower's log as create_jobs has it
    from django.db import connection, transaction

    _, manager, user = benchlib.bench_app("bench_sweep", "Sweep", password=None)
    def sweep() -> list[dict]:
        return [{"name": f"run_{{id}}_{i}", "user": user, "job_type": "LOCAL", "command": ["model", str(i)]}
                for i in range(n)]

    def backend_cpu() -> float:
        """CPU seconds the database server process of this connection has used (it runs on this host)."""
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            pid = cursor.fetchone()[0]
        with open(f"/proc/{pid}/stat") as f:
            ticks = f.read().rsplit(")", 1)[1].split()
        return (int(ticks[11]) + int(ticks[12])) / os.sysconf("SC_CLK_TCK")

    pg = connection.vendor == "postgresql"
    rates, python_us, server_us = [], [], []
    for _ in range(repeat):
        specs = sweep()
        server0 = backend_cpu() if pg else 0.0
        cpu0, start = time.process_time(), time.perf_counter()
        manager.create_jobs(specs)
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu0
        rates.append(n / wall)
        python_us.append(cpu / n * 1e6)
        if pg:
            server_us.append((backend_cpu() - server0) / n * 1e6)
    bulk = statistics.median(rates)
    cpu_note = f"python {statistics.median(python_us):.1f} us/job"
    if pg:
        cpu_note += f", PostgreSQL server {statistics.median(server_us):.1f} us/job"
    print(f"{connection.vendor:<11} create_jobs of {n:,}, {repeat} sweeps: median {bulk:,.0f} jobs/s "
          f"(min {min(rates):,.0f}, max {max(rates):,.0f}); CPU per job: {cpu_note}; "
          f"load average {os.getloadavg()[0]:.2f}")
    specs = sweep()
    one = min(n, 2000)
    start = time.perf_counter()
    for spec in specs[:one]:
        manager.create_job(**spec).save()
    single = one / (time.perf_counter() - start)
    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE bench_raw (id integer PRIMARY KEY, name varchar(64))")
    start = time.perf_counter()
    for i in range(one):
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("INSERT INTO bench_raw (id, name) VALUES (%s, %s)", [i, f"row {i}"])
    raw = one / (time.perf_counter() - start)
    print(f"{connection.vendor:<11} create_jobs of {n:,}: {bulk:>9,.0f} jobs/s   create+save one by one: "
          f"{single:>7,.0f} jobs/s   raw one-row INSERT+COMMIT: {raw:>7,.0f} rows/s   "
          f"bulk/one-by-one {bulk / single:.1f}x")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--db", choices=("sqlite", "postgresql", "both"), default="both")
    ap.add_argument("--jobs", type=int, default=10000)
    ap.add_argument("--repeat", type=int, default=5, help="sweeps of --jobs each; the median rate is the figure")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child, args.jobs, max(1, args.repeat))
        return 0
    print(f"bulk creation, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
    failed = 0
    for db in ("sqlite", "postgresql") if args.db == "both" else (args.db,):
        with tempfile.TemporaryDirectory() as home:
            env = {**os.environ, "JOBTOWER_HOME": home}
            name = f"jobtower_bench_bulk_{os.getpid()}"
            if db == "sqlite":
                url = f"sqlite:///{home}/bench.sqlite3"
            else:
                subprocess.run(["psql", f"{PG}/postgres", "-qc", f"CREATE DATABASE {name}"], check=True)
                url = f"{PG}/{name}"
            try:
                failed |= subprocess.run([sys.executable, __file__, "--child", url, "--jobs", str(args.jobs),
                                         "--repeat", str(args.repeat)],
                                         env=env).returncode
            finally:
                if db == "postgresql":
                    subprocess.run(["psql", f"{PG}/postgres", "-qc", f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"])
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
