"""Run the core Jobs API workload against jobtower and Tethys Platform 4.6.1, side by side.

    python bench/bench_core.py [--db sqlite|postgresql|both] [--quick] [--impl both|jobtower|tethys]

Tethys runs from its own virtualenv (made by peer/setup_tethys_venv.sh); jobtower runs under the
python running this script. Each (implementation, database) pair gets a fresh database and a fresh
workspace. Prints a table per database and writes the raw JSON to bench/results/core-<time>.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import tempfile

import benchlib

WORKLOAD = os.path.join(benchlib.HERE, "core_workload.py")
IMPLS = ("jobtower", "tethys")

FULL = {"n_create": 10000, "n_table": 100000, "n_status": 1000}
QUICK = {"n_create": 1000, "n_table": 10000, "n_status": 200}

# (section, key, label, kind): kind "time" -> lower is better, "rate" -> higher is better
ROWS = [
    ("create_save", "jobs_per_s", "create+save  jobs/s", "rate", "queries_per_job", "writes_per_job"),
    ("create_save", "cpu_us_per_job", "  CPU us/job (this process)", "time", None, None),
    ("create_save", "raw_insert_commit_per_s", "  raw 1-row INSERT+COMMIT /s", "rate", None, None),
    ("create_save", "of_raw", "  create+save / raw", "rate", None, None),
    ("list_first_page", "median_ms", "list page 50  median ms", "time", "queries", "writes"),
    ("list_first_page", "p95_ms", "list page 50  p95 ms", "time", None, None),
    ("get_job", "median_ms", "get_job  median ms", "time", "queries", "writes"),
    ("get_job", "p95_ms", "get_job  p95 ms", "time", None, None),
    ("status_read", "ms_per_read", "job.status  ms/read", "time", "queries_per_read", "writes_per_read"),
]


log = benchlib.logger("bench_core", clock=False)


def jobtower_importable(python: str) -> str | None:
    """None if `python` can import jobtower, else the error text."""
    proc = subprocess.run(
        [python, "-c", "import jobtower, importlib.metadata as m; m.version('jobtower')"],
        capture_output=True, text=True,
    )
    return None if proc.returncode == 0 else (proc.stderr.strip().splitlines() or ["failed"])[-1]


def run_one(python: str, impl: str, db: str, sizes: dict, scratch: str, pg_base: str) -> dict:
    tag = f"{impl}-{db}"
    workspace = os.path.join(scratch, tag, "workspace")
    if db == "sqlite":
        url = "sqlite:" + os.path.join(scratch, tag, "db.sqlite3")
    else:
        url = f"{pg_base.rstrip('/')}/jobtower_bench_{impl}_{os.getpid()}"
    cmd = [
        python, WORKLOAD, "--impl", impl, "--db", url, "--workspace", workspace,
        "--n-create", str(sizes["n_create"]), "--n-table", str(sizes["n_table"]),
        "--n-status", str(sizes["n_status"]),
    ]
    log(f"running {impl} on {db}")
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)  # stderr streams through
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    if proc.returncode != 0 or not lines:
        return {"impl": impl, "db": db, "error": f"exit code {proc.returncode}", "stdout": proc.stdout[-2000:]}
    try:
        return json.loads(lines[-1])
    except json.JSONDecodeError as exc:
        return {"impl": impl, "db": db, "error": f"bad JSON: {exc}", "stdout": proc.stdout[-2000:]}


def fmt(value) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:,.1f}" if abs(value) >= 100 else f"{value:.3g}" if abs(value) < 1 else f"{value:.2f}"
    return str(value)


def qw_fmt(q, w) -> str:
    if q is None or w is None:
        return "n/a"
    return f"{q:.3g}/{w:.3g}"


def ratio(kind: str, jt, te) -> str:
    if not isinstance(jt, (int, float)) or not isinstance(te, (int, float)) or not jt or not te:
        return "n/a"
    r = te / jt if kind == "time" else jt / te
    return f"{r:.2f}x"


def get(run: dict | None, section: str, key: str | None):
    if not run or "error" in run or key is None:
        return None
    return run.get(section, {}).get(key)


def combine(runs: list[dict]) -> dict | None:
    """One run's shape, with every number replaced by its median over the successful `runs`."""
    good = [r for r in runs if "error" not in r]
    if not good:
        return runs[0] if runs else None
    merged = json.loads(json.dumps(good[0]))
    for section, values in merged.items():
        if not isinstance(values, dict) or section in ("versions", "params"):
            continue
        for key, value in values.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                samples = [r[section][key] for r in good if isinstance(r.get(section, {}).get(key), (int, float))]
                values[key] = statistics.median(samples)
            elif isinstance(value, list):
                values[key] = sorted({v for r in good for v in r.get(section, {}).get(key, [])})
    merged["repeats"] = len(good)
    return merged


def table(db: str, jt: dict | None, te: dict | None) -> str:
    head = ("metric", "jobtower", "tethys", "ratio", "jobtower q/w", "tethys q/w")
    rows = [head]
    for section, key, label, kind, qkey, wkey in ROWS:
        a, b = get(jt, section, key), get(te, section, key)
        qw = []
        for run in (jt, te):
            q, w = get(run, section, qkey), get(run, section, wkey)
            qw.append("" if qkey is None else qw_fmt(q, w))
        rows.append((label, fmt(a), fmt(b), ratio(kind, a, b), *qw))
    statuses = [", ".join(get(run, "status_read", "statuses") or []) or "n/a" for run in (jt, te)]
    rows.append(("statuses seen", *statuses, "", "", ""))
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    out = []
    for n, r in enumerate(rows):
        out.append("  ".join(c.ljust(widths[i]) if i == 0 else c.rjust(widths[i]) for i, c in enumerate(r)))
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    title = f"== {db} =="
    for run in (jt, te):
        if run and "error" not in run:
            v = run.get("versions", {})
            title += f"  {run['impl']} {v.get('impl')} (Django {v.get('django')}, {db} {v.get('db_server')})"
        elif run:
            title += f"  {run['impl']}: FAILED ({run['error']})"
    return title + "\n" + "\n".join(out)


def goals(db: str, jt: dict | None, te: dict | None) -> list[str]:
    """The issue's goals for this database (issue 17), each with its figure and ok/MISSED."""
    found = []
    rate, peer = get(jt, "create_save", "jobs_per_s"), get(te, "create_save", "jobs_per_s")
    if db == "sqlite" and rate and peer:
        found.append(("create+save >= 10x Tethys", f"{rate / peer:.2f}x", rate / peer >= 10))
        cpu, peer_cpu = get(jt, "create_save", "cpu_us_per_job"), get(te, "create_save", "cpu_us_per_job")
        if cpu and peer_cpu:
            print_cpu = f"(by CPU per job, which load does not inflate: {peer_cpu / cpu:.2f}x)"
            found.append((print_cpu, "", None))
    of_raw = get(jt, "create_save", "of_raw")
    if db == "postgresql" and of_raw:
        found.append(("create+save >= 0.8x raw INSERT+COMMIT", f"{of_raw:.2f}x", of_raw >= 0.8))
    median = get(jt, "get_job", "median_ms")
    if db == "postgresql" and median:
        found.append(("get_job <= 0.5 ms median", f"{median:.3f} ms", median <= 0.5))
    return [f"goal: {what:40} {figure:>10}  {'ok' if ok else 'MISSED'}" if ok is not None else f"      {what}"
            for what, figure, ok in found]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="jobtower vs Tethys Platform: core Jobs API workload")
    ap.add_argument("--db", choices=("sqlite", "postgresql", "both"), default="both")
    ap.add_argument("--impl", choices=("both",) + IMPLS, default="both")
    ap.add_argument("--quick", action="store_true", help="n_create 1000, n_table 10000, n_status 200")
    ap.add_argument(
        "--repeat", type=int, default=1,
        help="run every (db, impl) pair N times, alternating implementations; the table shows medians",
    )
    ap.add_argument(
        "--pg", default=benchlib.PG_SERVER,
        help="PostgreSQL server URL without database (env JOBTOWER_BENCH_PG); needs CREATEDB rights",
    )
    args = ap.parse_args(argv)

    sizes = QUICK if args.quick else FULL
    dbs = ("sqlite", "postgresql") if args.db == "both" else (args.db,)
    impls = IMPLS if args.impl == "both" else (args.impl,)

    pythons = {}
    if "tethys" in impls:
        pythons["tethys"] = benchlib.tethys_python()
    skipped = {}
    if "jobtower" in impls:
        pythons["jobtower"] = sys.executable
        err = jobtower_importable(sys.executable)
        if err:
            skipped["jobtower"] = f"not importable under {sys.executable}: {err}"
            log(f"jobtower {skipped['jobtower']}")

    started = dt.datetime.now()
    load_before = os.getloadavg()[0]
    runs = []
    with tempfile.TemporaryDirectory(prefix="jobtower-bench-") as scratch:
        for db in dbs:
            for rep in range(max(args.repeat, 1)):
                for impl in impls:
                    if impl in skipped:
                        if rep == 0:
                            runs.append({"impl": impl, "db": db, "error": skipped[impl]})
                        continue
                    runs.append(run_one(pythons[impl], impl, db, sizes, scratch, args.pg))

    load_after = os.getloadavg()[0]
    report = {
        "started": started.isoformat(timespec="seconds"),
        "load_average": {"before": load_before, "after": load_after},
        "host": benchlib.host(),
        "sizes": sizes,
        "repeat": max(args.repeat, 1),
        "runs": runs,
    }
    path = benchlib.save_results("core", report, started, indent=2)

    print(f"core workload: n_create={sizes['n_create']} n_table={sizes['n_table']} n_status={sizes['n_status']}")
    print("ratio = how many times better jobtower is (tethys time / jobtower time, or jobtower rate / tethys rate)")
    print("q/w = SQL statements / writes per operation (transaction control not counted)")
    if args.repeat > 1:
        print(f"figures are medians of {args.repeat} runs per implementation and database")
    print(f"{os.cpu_count()} CPUs, 1-minute load average {load_before:.2f} before, {load_after:.2f} after")
    print()
    for db in dbs:
        by_impl = {impl: combine([r for r in runs if r["db"] == db and r["impl"] == impl]) for impl in IMPLS}
        print(table(db, by_impl["jobtower"], by_impl["tethys"]))
        for line in goals(db, by_impl["jobtower"], by_impl["tethys"]):
            print(line)
        print()
    print(f"raw results: {os.path.relpath(path)}")
    return 1 if any("error" in r for r in runs) else 0


if __name__ == "__main__":
    sys.exit(main())
