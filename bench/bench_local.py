"""LOCAL jobs end to end: throughput with 2 workers and a monitor, per-job overhead, monitor memory.

    python bench/bench_local.py [--db sqlite|postgresql|both] [--quick] [--phase all|throughput|memory]

Every run gets a fresh database (SQLite under a temporary JOBTOWER_HOME, or a PostgreSQL database that
this script creates and drops) and runs in a child process of this driver (`--child ...`), because
Django's settings are fixed once per process. The child starts `jobtower worker` and `jobtower monitor`
as real subprocesses with the same environment and stops them before it returns.

throughput  N trivial LOCAL jobs (command ["true"]) are created and executed in the child, then 2 workers
            (default concurrency, then --concurrency 8, each on a fresh database) and 1 monitor start;
            timed from the workers' start until every job is Complete (the DB is polled). Then, with the
            workers still running, jobs are submitted one by one at a steady rate and their
            submit -> start -> Complete latencies are read from the jobs' own timestamps.
memory      100,000 finished jobs (bulk-inserted) and 1,000 active ones (LOCAL jobs executed with no
            worker running, so they stay Submitted); one `Monitor().cycle()` is timed in-process, then
            `jobtower monitor --interval 1` runs for M minutes while its RSS is sampled every 10 s.

Prints a table per phase and writes the raw JSON to bench/results/local-<time>.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter

import benchlib

APP_PACKAGE = "bench_local"

FULL = {"n_jobs": 2000, "steady_jobs": 300, "minutes": 10.0}
QUICK = {"n_jobs": 300, "steady_jobs": 60, "minutes": 1.0}
N_FINISHED = 100_000
#: Jobs run by the in-process worker that counts SQL statements per job (step 4 of the throughput phase).
STATEMENT_JOBS = 300
N_ACTIVE = 1_000
SAMPLE_EVERY = 10.0
MONITOR_INTERVAL = 1.0


log = benchlib.logger("bench_local")


def pct(values: list[float], p: float) -> float | None:
    """Nearest-rank percentile (p in 0..100) of `values`; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-p * len(ordered) // 100))))
    return ordered[rank - 1]


def summary_ms(values: list[float]) -> dict:
    """Median, p95 and max of a list of seconds, in milliseconds."""
    ms = [v * 1000.0 for v in values]
    return {
        "n": len(ms),
        "median_ms": statistics.median(ms) if ms else None,
        "p95_ms": pct(ms, 95),
        "max_ms": max(ms) if ms else None,
    }


# =========================================================================== child side (Django)


def child_setup() -> tuple:
    """Set up Django on the home and database the driver gave (Target), migrate, return (app, user)."""
    # The driver creates thousands of jobs: their INFO lines would drown the figures (setup_django quiets
    # them). The workers and the monitor keep the site's logging (to their own log files).
    benchlib.setup_django(os.environ["JOBTOWER_HOME"], os.environ.get("JOBTOWER_DATABASE_URL"))
    app, _, user = benchlib.bench_app(APP_PACKAGE, "LOCAL bench")
    return app, user


def spawn_cli(home: str, tag: str, *args: str) -> subprocess.Popen:
    """Start `jobtower <args>` (as `python -m jobtower.cli`) with our environment; output to a file."""
    logs = os.path.join(home, "logs")
    os.makedirs(logs, exist_ok=True)
    out = open(os.path.join(logs, f"{tag}.log"), "wb")
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "jobtower.cli", *args],
            env=dict(os.environ), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
        )
    finally:
        out.close()


def stop_all(processes: list[subprocess.Popen]) -> list[int | None]:
    """SIGTERM every process we started, wait, SIGKILL what is left; return the exit codes."""
    for process in processes:
        if process.poll() is None:
            process.terminate()
    codes = []
    for process in processes:
        try:
            codes.append(process.wait(timeout=30))
        except subprocess.TimeoutExpired:
            process.kill()
            codes.append(process.wait(timeout=10))
    return codes


def log_tail(home: str, tag: str, lines: int = 15) -> str:
    try:
        with open(os.path.join(home, "logs", f"{tag}.log"), "rb") as fh:
            return "\n".join(fh.read().decode(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def submit_one(manager, user, i: int):
    job = manager.create_job(name=f"true_{i}_{{id}}", user=user, job_type="LOCAL", command=["true"])
    job.execute()
    return job


def wait_until_done(
    ids: list[int] | None, timeout: float, *, poll: float = 0.05, start: float | None = None
) -> tuple[bool, list]:
    """Poll the DB until none of the bench app's jobs (or of `ids`) is active; return (ok, trace).

    `trace` is [(seconds since `start` (perf_counter; default now), jobs still active)] each time
    that number changed; `timeout` counts from `start` too.
    """
    from jobtower.models import Job
    from jobtower.statuses import ACTIVE

    query = Job.objects.filter(label=APP_PACKAGE, _status__in=[s.value for s in ACTIVE])
    if ids is not None:
        query = query.filter(pk__in=ids)
    start = time.perf_counter() if start is None else start
    trace, last = [], None
    while True:
        left = query.count()
        now = time.perf_counter() - start
        if left != last:
            trace.append((round(now, 3), left))
            last = left
        if left == 0:
            return True, trace
        if now > timeout:
            return False, trace
        time.sleep(poll)


def cpu_times(pid: int) -> tuple[float, float]:
    """(own, reaped children's) CPU seconds of a process, user + system."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / tick, (int(fields[13]) + int(fields[14])) / tick


def machine_cpu() -> tuple[int, int]:
    """(busy, total) CPU time of the whole machine so far, in clock ticks (all CPUs)."""
    with open("/proc/stat") as fh:
        values = [int(v) for v in fh.readline().split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return sum(values) - idle, sum(values)


def database_backends_cpu() -> float:
    """CPU seconds so far of this database's other PostgreSQL backends (the workers' and the monitor's
    connections); 0 on SQLite, which runs inside the processes that use it."""
    from django.db import connection

    if connection.vendor != "postgresql":
        return 0.0
    with connection.cursor() as cursor:
        cursor.execute("SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                       "AND pid <> pg_backend_pid()")
        pids = [row[0] for row in cursor.fetchall()]
    total = 0.0
    for pid in pids:
        try:
            total += cpu_times(pid)[0]
        except OSError:
            pass  # the server is on another machine, or the backend ended
    return total


def statements_per_job(manager, user, n_jobs: int) -> dict:
    """Run `n_jobs` queued jobs with an in-process worker (no other worker running) and count its SQL."""
    from django.db import connection

    from jobtower.worker import LocalWorker

    ids = [submit_one(manager, user, 10_000_000 + i).pk for i in range(n_jobs)]
    counts: Counter = Counter()

    def counter(execute, sql, params, many, context):
        first = sql.lstrip().split(None, 1)[0].upper()
        if first not in ("BEGIN", "SAVEPOINT", "RELEASE", "ROLLBACK", "COMMIT"):
            counts[first] += 1
        return execute(sql, params, many, context)

    worker = LocalWorker(name="bench-statements")
    with connection.execute_wrapper(counter):
        worker.run(until_idle=True)
    from jobtower.models import Job

    left = Job.objects.filter(pk__in=ids).exclude(_status="COM").count()
    return {"jobs": n_jobs, "not_complete": left, "per_job": sum(counts.values()) / n_jobs,
            "by_kind": dict(counts)}


def job_timings(ids: list[int]) -> dict:
    """Per-job overheads from the jobs' own timestamps (all written by this machine's clock)."""
    from jobtower.models import Job, JobEvent

    rows = list(
        Job.objects.filter(pk__in=ids).values_list("_status", "execute_time", "start_time", "completion_time")
    )
    queue = [(s - e).total_seconds() for _, e, s, c in rows if e and s]
    run = [(c - s).total_seconds() for _, e, s, c in rows if s and c]
    total = [(c - e).total_seconds() for _, e, s, c in rows if e and c]
    starts = [s for _, e, s, c in rows if s]
    ends = [c for _, e, s, c in rows if c]
    events = JobEvent.objects.filter(job_id__in=ids)
    claims = events.filter(from_status="SUB", to_status="RUN").count()
    # Every job that did not end Complete, with its history (a `true` job should never fail).
    failures = [
        {"id": pk, "status": status, "message": message,
         "history": [f"{e.time.isoformat()} {e.from_status}->{e.to_status} ({e.source}) {e.message}"
                     for e in JobEvent.objects.filter(job_id=pk).order_by("id")]}
        for pk, status, message in Job.objects.filter(pk__in=ids).exclude(_status="COM")
        .values_list("pk", "_status", "status_message")[:20]
    ]
    finished_by = Counter(events.filter(to_status="COM").values_list("source", flat=True))
    return {
        "statuses": dict(Counter(status for status, *_ in rows)),
        "start_minus_execute": summary_ms(queue),
        "complete_minus_start": summary_ms(run),
        "complete_minus_execute": summary_ms(total),
        "first_start": min(starts).isoformat() if starts else None,
        "last_complete": max(ends).isoformat() if ends else None,
        "start_to_last_complete_s": (max(ends) - min(starts)).total_seconds() if starts and ends else None,
        "claims": claims,
        "completed_by": dict(finished_by),
        "failures": failures,
    }


def child_throughput(args: argparse.Namespace) -> dict:
    home = os.environ["JOBTOWER_HOME"]
    app, user = child_setup()
    from django.db import connection

    from jobtower.models import Job

    manager = app.get_job_manager()
    result: dict = {"phase": "throughput", "db": connection.vendor, "concurrency": args.concurrency or None,
                    "workers": 2, "n_jobs": args.n_jobs}

    # 1. N jobs created and executed by the driver (no worker yet): they wait Submitted.
    log(f"{connection.vendor}: creating and executing {args.n_jobs} LOCAL jobs of `true`")
    t0 = time.perf_counter()
    backlog = [submit_one(manager, user, i).pk for i in range(args.n_jobs)]
    create_s = time.perf_counter() - t0
    result["create_execute_s"] = create_s
    result["create_execute_jobs_per_s"] = args.n_jobs / create_s

    worker_args = ["worker"] + (["--concurrency", str(args.concurrency)] if args.concurrency else [])
    processes: list[subprocess.Popen] = []
    profile_path = os.path.join(home, "worker1.prof") if args.profile else None
    try:
        # 2. Two workers and one monitor start; wall time until every job is Complete.
        log(f"{connection.vendor}: starting 2 workers ({' '.join(worker_args[1:]) or 'default concurrency'}) "
            f"and a monitor (--interval {args.monitor_interval:g})")
        t_start = time.perf_counter()
        for n in (1, 2):
            cli = [*worker_args, "--name", f"bench-worker-{n}"]
            if n == 1 and profile_path:
                logs = os.path.join(home, "logs")
                os.makedirs(logs, exist_ok=True)
                with open(os.path.join(logs, "worker-1.log"), "wb") as out:
                    processes.append(subprocess.Popen(
                        [sys.executable, "-m", "cProfile", "-o", profile_path, "-m", "jobtower.cli", *cli],
                        env=dict(os.environ), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                    ))
            else:
                processes.append(spawn_cli(home, f"worker-{n}", *cli))
        processes.append(spawn_cli(home, "monitor", "monitor", "--interval", str(args.monitor_interval),
                                   "--name", "bench-monitor"))
        # CPU is counted from when all three are set up (their heartbeat rows exist), so Python and
        # Django start-up is left out; the supervisors' and jobs' CPU comes in as the workers' reaped
        # children.
        from jobtower.models import Worker

        names = {"bench-worker-1", "bench-worker-2", "bench-monitor"}
        while Worker.objects.filter(name__in=names).count() < 3 and time.perf_counter() - t_start < 60:
            time.sleep(0.02)
        cpu_before = ([cpu_times(p.pid) for p in processes], machine_cpu(), time.process_time(),
                      database_backends_cpu())
        done_before = Job.objects.filter(pk__in=backlog, _status="COM").count()
        ok, trace = wait_until_done(None, timeout=max(300.0, args.n_jobs / 2.0), start=t_start)
        wall = time.perf_counter() - t_start
        cpu_after = ([cpu_times(p.pid) for p in processes], machine_cpu(), time.process_time(),
                     database_backends_cpu())
        if not ok:
            result["error"] = f"timed out after {wall:.0f} s with {trace[-1][1]} jobs still active"
            result["logs"] = {t: log_tail(home, t) for t in ("worker-1", "worker-2", "monitor")}
            return result
        result["wall_s"] = wall
        result["jobs_per_s"] = args.n_jobs / wall
        counted = max(1, args.n_jobs - done_before)
        (w1b, w2b, mb), (busy_b, total_b), driver_b, pg_b = cpu_before
        (w1a, w2a, ma), (busy_a, total_a), driver_a, pg_a = cpu_after
        result["cpu_ms_per_job"] = {
            "jobs_counted": counted,
            "workers_python": 1000 * (w1a[0] - w1b[0] + w2a[0] - w2b[0]) / counted,
            "supervisors_and_jobs": 1000 * (w1a[1] - w1b[1] + w2a[1] - w2b[1]) / counted,
            "monitor": 1000 * (ma[0] - mb[0]) / counted,
            "database_backends": 1000 * (pg_a - pg_b) / counted,
            "driver_polling": 1000 * (driver_a - driver_b) / counted,
            "machine_busy_percent": 100 * (busy_a - busy_b) / max(1, total_a - total_b),
            "machine_busy_ms": 1000 * (busy_a - busy_b) / os.sysconf("SC_CLK_TCK") / counted,
        }
        result["first_complete_after_s"] = next((t for t, left in trace if left < args.n_jobs), None)
        result["backlog"] = job_timings(backlog)
        span = result["backlog"]["start_to_last_complete_s"]
        result["span_jobs_per_s"] = args.n_jobs / span if span else None
        result["trace"] = trace[:: max(1, len(trace) // 200)]
        log(f"{connection.vendor}: {args.n_jobs} jobs Complete in {wall:.2f} s ({args.n_jobs / wall:.1f} jobs/s)")

        # 3. Workers running and idle: jobs submitted one by one at a steady rate.
        time.sleep(1.0)
        log(f"{connection.vendor}: submitting {args.steady_jobs} jobs at {args.rate:g}/s into running workers")
        steady: list[int] = []
        period = 1.0 / args.rate
        t_first = next_at = time.perf_counter()
        for i in range(args.steady_jobs):
            delay = next_at - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            steady.append(submit_one(manager, user, args.n_jobs + i).pk)
            next_at += period
        submit_span = time.perf_counter() - t_first
        ok, _ = wait_until_done(steady, timeout=120.0)
        if not ok:
            result["error"] = "steady-rate jobs did not all end within 120 s"
        result["steady"] = {
            "jobs": args.steady_jobs,
            "rate_asked": args.rate,
            "rate_achieved": (args.steady_jobs - 1) / submit_span if submit_span else None,
            **job_timings(steady),
        }
    finally:
        codes = stop_all(processes)
        result["exit_codes"] = codes
    if "error" not in result:
        # 4. SQL statements per job, counted in-process: the workers are stopped, one LocalWorker runs
        # STATEMENT_JOBS more queued jobs here (its own wake-ups, so the count is of the real code).
        log(f"{connection.vendor}: counting SQL statements per job with an in-process worker")
        result["statements"] = statements_per_job(manager, user, STATEMENT_JOBS)
    if profile_path and os.path.exists(profile_path):
        result["profile"] = profile_summary(profile_path)
    result["all_complete"] = Job.objects.filter(label=APP_PACKAGE).exclude(_status="COM").count() == 0
    return result


def profile_summary(path: str, top: int = 25) -> dict:
    """The top functions of a cProfile dump, by own time and by cumulative time."""
    import pstats

    stats = pstats.Stats(path)
    total = stats.total_tt
    rows = []
    for (filename, line, func), (_cc, nc, tt, ct, _callers) in stats.stats.items():
        short = re.sub(r"^.*/(site-packages|src|python3\.\d+)/", "", filename)
        rows.append({"function": f"{short}:{line}({func})", "calls": nc, "own_s": tt, "cum_s": ct})
    return {
        "total_s": total,
        "by_own": sorted(rows, key=lambda r: -r["own_s"])[:top],
        "by_cum": sorted(rows, key=lambda r: -r["cum_s"])[:top],
    }


def proc_status(pid: int) -> dict:
    """VmRSS and VmHWM (KiB) and CPU seconds (user+system) of a live process."""
    out: dict = {}
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0])
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    out["cpu_s"] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return out


class OpenCounter:
    """Counts the opens of one file with inotify (Linux): a monitor cycle reads every active job's
    progress.json once, so the opens of one job's file count the cycles of the monitor exactly."""

    IN_OPEN = 0x20

    def __init__(self, path: str) -> None:
        import ctypes
        import threading

        libc = ctypes.CDLL(None, use_errno=True)
        self.fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if self.fd < 0 or libc.inotify_add_watch(self.fd, os.fsencode(path), self.IN_OPEN) < 0:
            raise OSError(ctypes.get_errno(), f"inotify on {path}")
        self.count = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import select
        import struct

        while not self._stop.is_set():
            ready, _, _ = select.select([self.fd], [], [], 0.2)
            if not ready:
                continue
            data = os.read(self.fd, 65536)
            offset = 0
            while offset + 16 <= len(data):
                _wd, mask, _cookie, length = struct.unpack_from("iIII", data, offset)
                if mask & self.IN_OPEN:
                    self.count += 1
                offset += 16 + length

    def close(self) -> int:
        self._stop.set()
        self._thread.join()
        os.close(self.fd)
        return self.count


def slope_kib_per_min(samples: list[dict]) -> float | None:
    """Least-squares slope of RSS over time, KiB per minute."""
    if len(samples) < 3:
        return None
    xs = [s["t_s"] / 60 for s in samples]
    ys = [s["VmRSS"] for s in samples]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / den if den else None


def child_memory(args: argparse.Namespace) -> dict:
    home = os.environ["JOBTOWER_HOME"]
    app, user = child_setup()
    from django.db import connection, connections

    from jobtower.models import Job, Worker
    from jobtower.monitor import Monitor

    manager = app.get_job_manager()
    result: dict = {"phase": "memory", "db": connection.vendor, "finished": args.finished, "active": args.active,
                    "interval": MONITOR_INTERVAL, "minutes": args.minutes}

    log(f"{connection.vendor}: bulk-inserting {args.finished:,} finished jobs")
    t0 = time.perf_counter()
    workspace = str(app.get_user_workspace(user).path)
    batch = 5000
    for start in range(0, args.finished, batch):
        Job.objects.bulk_create(
            Job(job_type="LOCAL", label=APP_PACKAGE, user=user, name=f"finished_{i}", workspace=workspace,
                _status="COM")
            for i in range(start, min(start + batch, args.finished))
        )
    result["insert_finished_s"] = time.perf_counter() - t0
    log(f"{connection.vendor}: executing {args.active:,} LOCAL jobs with no worker running (they stay Submitted)")
    t0 = time.perf_counter()
    active = [submit_one(manager, user, i) for i in range(args.active)]
    result["create_active_s"] = time.perf_counter() - t0
    # The cycle counter: one active job gets an empty progress.json, which each cycle opens (and which
    # says nothing, so it changes nothing).
    from jobtower.backends.local import attempt_dir

    sentinel = attempt_dir(active[0]) / "progress.json"
    sentinel.write_text("{}")
    result["table"] = dict(Counter(Job.objects.values_list("_status", flat=True)))
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE jobtower_job")

    # One monitor cycle over the 1,000 active jobs, timed in this process (the first one is cold).
    monitor = Monitor(interval=MONITOR_INTERVAL)
    walls, cpus, moved = [], [], []
    for _ in range(6):
        w, c = time.perf_counter(), time.process_time()
        moved.append(monitor.cycle())
        walls.append(time.perf_counter() - w)
        cpus.append(time.process_time() - c)
    result["cycle"] = {
        "first_ms": walls[0] * 1000, "median_ms": statistics.median(walls[1:]) * 1000,
        "cpu_median_ms": statistics.median(cpus[1:]) * 1000, "moved": moved, "polls": monitor.polls,
    }
    log(f"{connection.vendor}: one monitor cycle over {args.active} active jobs: "
        f"{result['cycle']['median_ms']:.0f} ms (first {walls[0] * 1000:.0f} ms)")
    if args.profile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.runcall(monitor.cycle)
        path = os.path.join(home, "cycle.prof")
        profiler.dump_stats(path)
        result["profile"] = profile_summary(path)
    connections.close_all()

    # `jobtower monitor --interval 1` as a subprocess; RSS sampled every 10 s.
    process = spawn_cli(home, "monitor", "monitor", "--interval", str(MONITOR_INTERVAL), "--name", "bench-monitor")
    samples: list[dict] = []
    counter = OpenCounter(str(sentinel))
    try:
        deadline = time.monotonic() + 120
        while not Worker.objects.filter(kind="monitor", name="bench-monitor").exists():
            if process.poll() is not None or time.monotonic() > deadline:
                result["error"] = f"the monitor did not start (exit code {process.poll()})"
                result["logs"] = {"monitor": log_tail(home, "monitor")}
                return result
            time.sleep(0.1)
        connections.close_all()  # hold no connection during the run
        t_start = time.monotonic()
        log(f"{connection.vendor}: monitor pid {process.pid} up; sampling RSS every {SAMPLE_EVERY:g} s "
            f"for {args.minutes:g} min")
        n_samples = int(args.minutes * 60 / SAMPLE_EVERY) + 1
        for k in range(n_samples):
            time.sleep(max(0.0, t_start + k * SAMPLE_EVERY - time.monotonic()))
            if process.poll() is not None:
                result["error"] = f"the monitor exited with code {process.returncode} during the run"
                result["logs"] = {"monitor": log_tail(home, "monitor")}
                break
            sample = {"t_s": round(time.monotonic() - t_start, 1), **proc_status(process.pid)}
            samples.append(sample)
            if k % 6 == 0:
                log(f"  t={sample['t_s']:>5.0f} s  RSS {sample['VmRSS'] / 1024:.1f} MiB  cpu {sample['cpu_s']:.1f} s")
        elapsed = time.monotonic() - t_start
    finally:
        code = stop_all([process])[0]
        cycles = counter.close()
    result["monitor_exit_code"] = code
    result["cycles"] = cycles
    result["samples"] = samples
    if samples:
        rss = [s["VmRSS"] for s in samples]
        after_1min = [s["VmRSS"] for s in samples if s["t_s"] >= 60] or rss
        cpu = samples[-1]["cpu_s"] - samples[0]["cpu_s"]
        span = samples[-1]["t_s"] - samples[0]["t_s"]
        result["rss_kib"] = {
            "first": rss[0], "last": rss[-1], "max": max(rss), "min": min(rss),
            "growth": rss[-1] - rss[0], "growth_after_1min": rss[-1] - after_1min[0],
            "hwm_last": samples[-1].get("VmHWM"),
            "slope_per_min_after_1min": slope_kib_per_min([s for s in samples if s["t_s"] >= 60]),
            "growth_second_half": rss[-1] - next(s["VmRSS"] for s in samples if s["t_s"] >= samples[-1]["t_s"] / 2),
        }
        result["monitor_cpu_s"] = cpu
        result["monitor_cpu_percent"] = 100.0 * cpu / span if span else None
        result["elapsed_s"] = elapsed
        result["cycle_period_s"] = elapsed / cycles if cycles else None
    return result


def child_main(args: argparse.Namespace) -> int:
    # The driver ends us with SIGTERM if it is interrupted: unwind so the finally blocks stop our processes.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        result = child_throughput(args) if args.child == "throughput" else child_memory(args)
    except Exception as exc:  # report, so the driver shows n/a instead of losing the other runs
        import traceback

        traceback.print_exc()
        result = {"phase": args.child, "error": f"{type(exc).__name__}: {exc}"}
    print(json.dumps(result, default=str))
    return 0


# =========================================================================== driver side


class Target:
    """A fresh database and JOBTOWER_HOME for one child run; PostgreSQL databases are dropped at the end."""

    def __init__(self, db: str, scratch: str, tag: str, pg_base: str) -> None:
        self.db, self.pg_base = db, pg_base.rstrip("/")
        self.home = os.path.join(scratch, tag)
        os.makedirs(self.home)
        self.dbname = None
        env = {k: v for k, v in os.environ.items() if not k.startswith(("JOBTOWER_", "DJANGO_"))}
        env.update(
            JOBTOWER_HOME=self.home,
            DJANGO_SETTINGS_MODULE="jobtower.site.settings",
            PATH=os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", ""),
            PYTHONUNBUFFERED="1",
        )
        if db == "postgresql":
            self.dbname = f"jobtower_bench_local_{os.getpid()}_{tag.replace('-', '_')}"
            self._admin(f'CREATE DATABASE "{self.dbname}"')
            env["JOBTOWER_DATABASE_URL"] = f"{self.pg_base}/{self.dbname}"
        self.env = env

    def _admin(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(f"{self.pg_base}/postgres", autocommit=True) as conn:
            conn.execute(sql)

    def drop(self) -> None:
        if self.dbname:
            try:
                self._admin(f'DROP DATABASE IF EXISTS "{self.dbname}" WITH (FORCE)')
            except Exception as exc:
                log(f"could not drop database {self.dbname}: {exc}")
            self.dbname = None


def run_child(target: Target, child_args: list[str]) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--child", *child_args]
    process = subprocess.Popen(cmd, env=target.env, stdout=subprocess.PIPE, text=True)  # stderr streams
    try:
        out, _ = process.communicate()
    except BaseException:
        process.terminate()
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
        raise
    lines = [line for line in out.splitlines() if line.strip()]
    if process.returncode != 0 or not lines:
        return {"error": f"child exit code {process.returncode}", "stdout": out[-2000:]}
    try:
        return json.loads(lines[-1])
    except json.JSONDecodeError as exc:
        return {"error": f"bad JSON: {exc}", "stdout": out[-2000:]}


def fmt(value, digits: int = 1) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def med_p95(section: dict | None) -> str:
    if not section or section.get("median_ms") is None:
        return "n/a"
    return f"{section['median_ms']:.0f} / {section['p95_ms']:.0f}"


def render(rows: list[tuple], title: str) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    out = [title]
    for n, r in enumerate(rows):
        out.append("  ".join(c.ljust(widths[i]) if i == 0 else c.rjust(widths[i]) for i, c in enumerate(r)))
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def throughput_table(runs: list[dict], n_jobs: int, rate: float, steady: int) -> str:
    def col(run: dict) -> str:
        c = run.get("concurrency")
        return f"{run['db_label']} c={c if c else f'default({os.cpu_count()})'}"

    def g(run: dict, *keys):
        value = run
        for key in keys:
            if not isinstance(value, dict):
                return None
            value = value.get(key)
        return value

    spec = [
        ("driver create+execute  jobs/s", lambda r: fmt(r.get("create_execute_jobs_per_s"))),
        ("workers start -> all Complete  s", lambda r: fmt(r.get("wall_s"), 2)),
        ("END TO END  jobs/s", lambda r: "FAILED" if "error" in r else fmt(r.get("jobs_per_s"))),
        ("first start -> last Complete  jobs/s", lambda r: fmt(r.get("span_jobs_per_s"))),
        ("workers start -> first Complete  s", lambda r: fmt(r.get("first_complete_after_s"), 2)),
        ("backlog CPU ms/job: workers' python", lambda r: fmt(g(r, "cpu_ms_per_job", "workers_python"), 2)),
        ("  supervisors (sh) + jobs (true)", lambda r: fmt(g(r, "cpu_ms_per_job", "supervisors_and_jobs"), 2)),
        ("  monitor / driver's polling", lambda r: "{} / {}".format(
            fmt(g(r, "cpu_ms_per_job", "monitor"), 2), fmt(g(r, "cpu_ms_per_job", "driver_polling"), 2))),
        ("  database server (PostgreSQL backends)", lambda r: fmt(g(r, "cpu_ms_per_job", "database_backends"), 2)
         if r.get("db") == "postgresql" else "in workers"),
        ("  whole machine (both CPUs)", lambda r: fmt(g(r, "cpu_ms_per_job", "machine_busy_ms"), 2)),
        ("backlog: machine CPU busy  %", lambda r: fmt(g(r, "cpu_ms_per_job", "machine_busy_percent"))),
        ("backlog: Complete-start  med/p95 ms", lambda r: med_p95(g(r, "backlog", "complete_minus_start"))),
        ("backlog: completed by", lambda r: ", ".join(
            f"{k} {v}" for k, v in sorted((g(r, "backlog", "completed_by") or {}).items())) or "n/a"),
        (f"steady {rate:g}/s: rate achieved  jobs/s", lambda r: fmt(g(r, "steady", "rate_achieved"))),
        ("steady: start-execute  med/p95 ms", lambda r: med_p95(g(r, "steady", "start_minus_execute"))),
        ("steady: Complete-start  med/p95 ms", lambda r: med_p95(g(r, "steady", "complete_minus_start"))),
        ("steady: Complete-execute  med/p95 ms", lambda r: med_p95(g(r, "steady", "complete_minus_execute"))),
        ("SQL statements per job (in-process worker)", lambda r: fmt(g(r, "statements", "per_job"), 2)),
        ("host load (1-min avg) before / after run", lambda r: "{:.2f} / {:.2f}".format(*r["loadavg_1min"])
         if r.get("loadavg_1min") else "n/a"),
        ("all Complete, each claimed once", lambda r: "n/a" if "error" in r else (
            "yes" if r.get("all_complete") and g(r, "backlog", "claims") == n_jobs
            and g(r, "steady", "claims") == steady else "NO")),
    ]
    rows = [("metric", *(col(r) for r in runs))]
    for label, getter in spec:
        rows.append((label, *(getter(r) for r in runs)))
    title = (f"== throughput: {n_jobs} LOCAL jobs of `true`, 2 workers + 1 monitor; "
             f"then {steady} jobs at {rate:g}/s into running workers ==")
    text = render(rows, title)
    for r in runs:
        if "error" in r:
            text += f"\n  {col(r)} FAILED: {r['error']}"
        for part in ("backlog", "steady"):
            for f in g(r, part, "failures") or []:
                text += f"\n  {col(r)} {part}: job {f['id']} ended {f['status']}: {f['message']!r}"
                text += "".join(f"\n      {h}" for h in f["history"])
    return text


def memory_table(run: dict) -> str:
    title = (f"== monitor memory: {run['db_label']}, {run.get('finished', 0):,} finished + "
             f"{run.get('active', 0):,} active (Submitted, no worker) LOCAL jobs, "
             f"`jobtower monitor --interval {MONITOR_INTERVAL:g}` for {fmt(run.get('minutes'), 1)} min ==")
    if "error" in run and not run.get("samples"):
        return f"{title}\n  FAILED: {run['error']}"
    lines = [title]
    samples = run.get("samples", [])
    lines.append(f"RSS MiB every {SAMPLE_EVERY:g} s:")
    for i in range(0, len(samples), 10):
        chunk = samples[i:i + 10]
        lines.append(f"  t={chunk[0]['t_s']:>5.0f}s  " + " ".join(f"{s['VmRSS'] / 1024:6.1f}" for s in chunk))
    rss, cyc = run.get("rss_kib", {}), run.get("cycle", {})
    mib = lambda k: fmt(rss[k] / 1024, 2) if rss.get(k) is not None else "n/a"  # noqa: E731
    rows = [
        ("metric", "value"),
        ("RSS first / last / max  MiB", f"{mib('first')} / {mib('last')} / {mib('max')}"),
        ("RSS growth last-first  KiB", fmt(rss.get("growth"))),
        ("RSS growth after the first minute  KiB", fmt(rss.get("growth_after_1min"))),
        ("monitor CPU  % of one core", fmt(run.get("monitor_cpu_percent"))),
        ("RSS growth over the second half of the run  KiB", fmt(rss.get("growth_second_half"))),
        ("RSS slope after the first minute  KiB/min", fmt(rss.get("slope_per_min_after_1min"))),
        ("cycles run (counted with inotify)", fmt(run.get("cycles"))),
        ("mean time between cycles  s", fmt(run.get("cycle_period_s"), 3)),
        (f"one cycle, {run.get('active', 0):,} active  median ms (in-process)", fmt(cyc.get("median_ms"))),
        ("one cycle, first (cold)  ms", fmt(cyc.get("first_ms"))),
        ("one cycle  CPU ms", fmt(cyc.get("cpu_median_ms"))),
        ("host load (1-min avg) before / after run", "{:.2f} / {:.2f}".format(*run["loadavg_1min"])
         if run.get("loadavg_1min") else "n/a"),
        ("set-up: insert finished / execute active  s",
         f"{fmt(run.get('insert_finished_s'))} / {fmt(run.get('create_active_s'))}"),
    ]
    text = "\n".join(lines) + "\n" + render(rows, "")
    if "error" in run:
        text += f"\n  ERROR: {run['error']}"
    return text


def profile_text(run: dict, top: int = 15) -> str:
    prof = run.get("profile")
    if not prof:
        return ""
    what = (f"one Monitor().cycle() over {run.get('active')} active jobs" if run.get("phase") == "memory"
            else f"worker 1, c={run.get('concurrency') or 'default'}")
    out = [f"-- cProfile of {what} ({run['db_label']}): {prof['total_s']:.2f} s profiled; top by own time --"]
    for r in prof["by_own"][:top]:
        out.append(f"  {r['own_s']:8.3f} s own {r['cum_s']:8.3f} s cum {r['calls']:>8}  {r['function']}")
    out.append("   top by cumulative time:")
    for r in prof["by_cum"][:top]:
        out.append(f"  {r['own_s']:8.3f} s own {r['cum_s']:8.3f} s cum {r['calls']:>8}  {r['function']}")
    return "\n".join(out)


def source_version() -> dict:
    """The commit the figures belong to, and whether src/ had uncommitted changes."""
    root = os.path.dirname(benchlib.HERE)

    def git(*cmd: str) -> str | None:
        try:
            return subprocess.run(["git", "-C", root, *cmd], stdout=subprocess.PIPE,
                                  stderr=subprocess.DEVNULL, text=True, check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return None

    status = git("status", "--porcelain", "--", "src")
    return {"commit": git("rev-parse", "--short", "HEAD"), "src_dirty": bool(status) if status is not None else None}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="jobtower LOCAL jobs: throughput, overhead, monitor memory")
    ap.add_argument("--db", choices=("sqlite", "postgresql", "both"), default="both")
    ap.add_argument("--phase", choices=("all", "throughput", "memory"), default="all")
    ap.add_argument("--quick", action="store_true",
                    help=f"{QUICK['n_jobs']} jobs, {QUICK['steady_jobs']} steady-rate jobs, 1 minute of memory")
    ap.add_argument("--jobs", type=int, help=f"jobs in the backlog (default {FULL['n_jobs']})")
    ap.add_argument("--steady-jobs", type=int, help=f"jobs submitted at a steady rate (default {FULL['steady_jobs']})")
    ap.add_argument("--rate", type=float, default=20.0, help="steady submission rate, jobs/s (default 20)")
    ap.add_argument("--concurrency", default="default,8",
                    help="worker --concurrency values to try, comma-separated; 'default' = the worker's default")
    ap.add_argument("--monitor-interval", type=float, default=2.0,
                    help="`jobtower monitor --interval` during the throughput phase (default 2, its default)")
    ap.add_argument("--minutes", type=float, help="memory run length (default 10, --quick 1)")
    ap.add_argument("--finished", type=int, default=N_FINISHED, help=argparse.SUPPRESS)
    ap.add_argument("--active", type=int, default=N_ACTIVE, help=argparse.SUPPRESS)
    ap.add_argument("--profile", action="store_true",
                    help="run worker 1 under cProfile and print its hot spots (slows that worker)")
    ap.add_argument(
        "--pg", default=benchlib.PG_SERVER,
        help="PostgreSQL server URL without database (env JOBTOWER_BENCH_PG); needs CREATEDB rights",
    )
    ap.add_argument("--child", choices=("throughput", "memory"), help=argparse.SUPPRESS)
    ap.add_argument("--n-jobs", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--child-concurrency", type=int, dest="child_concurrency", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    sizes = dict(QUICK if args.quick else FULL)
    if args.jobs:
        sizes["n_jobs"] = args.jobs
    if args.steady_jobs:
        sizes["steady_jobs"] = args.steady_jobs
    if args.minutes is not None:
        sizes["minutes"] = args.minutes

    if args.child:
        args.concurrency = args.child_concurrency
        args.n_jobs = args.n_jobs or sizes["n_jobs"]
        args.steady_jobs = sizes["steady_jobs"]
        args.minutes = sizes["minutes"]
        return child_main(args)

    dbs = ("sqlite", "postgresql") if args.db == "both" else (args.db,)
    concurrencies = [0 if c.strip() == "default" else int(c) for c in args.concurrency.split(",") if c.strip()]
    started = dt.datetime.now()
    version = source_version()
    throughput, memory = [], []
    with tempfile.TemporaryDirectory(prefix="jobtower-bench-local-") as scratch:
        for db in dbs:
            label = "pg" if db == "postgresql" else db
            runs = []
            if args.phase in ("all", "throughput"):
                for c in concurrencies:
                    runs.append(("throughput", f"tp-{label}-c{c}",
                                 ["throughput", "--n-jobs", str(sizes["n_jobs"]),
                                  "--steady-jobs", str(sizes["steady_jobs"]), "--rate", str(args.rate),
                                  "--monitor-interval", str(args.monitor_interval),
                                  *(["--child-concurrency", str(c)] if c else []),
                                  *(["--profile"] if args.profile else [])],
                                 {"concurrency": c or None}))
            if args.phase in ("all", "memory"):
                runs.append(("memory", f"mem-{label}",
                             ["memory", "--minutes", str(sizes["minutes"]), "--finished", str(args.finished),
                              "--active", str(args.active), *(["--profile"] if args.profile else [])],
                             {"finished": args.finished, "active": args.active, "minutes": sizes["minutes"]}))
            for phase, tag, child_args, extra in runs:
                target = Target(db, scratch, tag, args.pg)
                load_before = os.getloadavg()[0]
                try:
                    result = run_child(target, child_args)
                finally:
                    target.drop()
                result.update(db_label=label, **{k: v for k, v in extra.items() if k not in result})
                result["loadavg_1min"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
                (throughput if phase == "throughput" else memory).append(result)

    report = {
        "started": started.isoformat(timespec="seconds"),
        "host": benchlib.host(),
        "source": version,
        "sizes": sizes,
        "rate": args.rate,
        "monitor_interval_throughput": args.monitor_interval,
        "throughput": throughput,
        "memory": memory,
    }
    path = benchlib.save_results("local", report, started, indent=2)

    print(f"host: {platform.platform()}, {os.cpu_count()} CPUs, python {sys.version.split()[0]}; jobtower at "
          f"{version['commit']}{' + uncommitted changes in src/' if version['src_dirty'] else ''}")
    print("times are medians / p95 over jobs, from the jobs' own execute_time, start_time, completion_time")
    print()
    if throughput:
        print(throughput_table(throughput, sizes["n_jobs"], args.rate, sizes["steady_jobs"]))
        print()
        for run in throughput:
            text = profile_text(run)
            if text:
                print(text)
                print()
    for run in memory:
        print(memory_table(run))
        print()
        text = profile_text(run)
        if text:
            print(text)
            print()
    print(f"raw results: {os.path.relpath(path)}")
    return 1 if any("error" in r for r in throughput + memory) else 0


if __name__ == "__main__":
    sys.exit(main())
