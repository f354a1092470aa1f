"""What the benchmark scripts share: their paths, a log line, Django's set-up, a bench app and user,
the head of a results file, a SQL statement counter, the Tethys virtualenv.

Standard library only at import time (bench/peer/ scripts import it under the Tethys virtualenv's python);
Django and jobtower are imported inside the functions that need them. A script in bench/ imports it as
``import benchlib`` (Python puts a script's own folder first on sys.path, from whatever folder it is run).
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import platform
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple, overload

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results")
SETUP_TETHYS = os.path.join(HERE, "peer", "setup_tethys_venv.sh")
#: The PostgreSQL server (a URL without a database) the benches make their databases on; its role needs CREATEDB.
PG_SERVER = os.environ.get("JOBTOWER_BENCH_PG", "postgresql://postgres@127.0.0.1:5432")

#: The loggers a bench quiets by default: one INFO line per job would drown the figures.
QUIET_LOGGERS: Mapping[str, str] = {"jobtower": "WARNING"}


def logger(prefix: str, clock: bool = True) -> Callable[[str], None]:
    """A `log(msg)` writing `[prefix HH:MM:SS] msg` (`[prefix] msg` without `clock`) to stderr."""

    def log(msg: str) -> None:
        stamp = f" {time.strftime('%H:%M:%S')}" if clock else ""
        print(f"[{prefix}{stamp}] {msg}", file=sys.stderr, flush=True)

    return log


def setup_django(home: str, db_url: str | None, quiet: Mapping[str, str] = QUIET_LOGGERS) -> None:
    """Set Django up on jobtower's site settings in `home` and `db_url` (None: SQLite), migrate, quiet loggers."""
    os.environ["JOBTOWER_HOME"] = home
    os.environ["DJANGO_SETTINGS_MODULE"] = "jobtower.site.settings"
    if db_url:
        os.environ["JOBTOWER_DATABASE_URL"] = db_url
    else:
        os.environ.pop("JOBTOWER_DATABASE_URL", None)
    import logging

    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)
    for name, level in quiet.items():
        logging.getLogger(name).setLevel(level)


class BenchApp(NamedTuple):
    """A jobtower app made for a bench, its job manager and the user who owns the bench's jobs."""

    app: Any
    manager: Any
    user: Any


def bench_app(package: str, name: str, username: str = "bench", password: str | None = "bench") -> BenchApp:
    """A jobtower app of `package` (the jobs' label) and `name`, its job manager and a new user (Django set up)."""
    from django.contrib.auth import get_user_model

    import jobtower

    label, title = package, name

    class App(jobtower.AppBase):
        package = label
        name = title

    user = get_user_model().objects.create_user(username, password=password)
    return BenchApp(App, App.get_job_manager(), user)


def results_head(**fields: Any) -> dict[str, Any]:
    """The head of a results JSON: when, python, machine (architecture and cpus), then `fields` (sizes, database...)."""
    return {
        "when": dt.datetime.now().isoformat(timespec="seconds"), "python": platform.python_version(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus", **fields,
    }


def save_results(kind: str, data: dict[str, Any], started: dt.datetime | None = None, indent: int = 1) -> str:
    """Write `data` to RESULTS/<kind>-<started or now, as YYYYmmdd-HHMMSS>.json; return the file's path."""
    os.makedirs(RESULTS, exist_ok=True)
    path = os.path.join(RESULTS, f"{kind}-{(started or dt.datetime.now()):%Y%m%d-%H%M%S}.json")
    with open(path, "w") as handle:
        json.dump(data, handle, indent=indent, default=str)
        handle.write("\n")
    return path


def host() -> dict[str, Any]:
    """The host a run was on: platform, cpus and python version (the `host` of the driver's results JSON)."""
    return {"platform": platform.platform(), "cpus": os.cpu_count(), "python": sys.version.split()[0]}


def db_server_version(connection: Any) -> str:
    """The database server's version of a Django connection (SQLite library or PostgreSQL major.minor)."""
    if connection.vendor == "sqlite":
        return str(connection.Database.sqlite_version)
    return ".".join(str(x) for x in divmod(connection.pg_version, 10000))


class StatementCounter:
    """Counts the SQL statements Django runs while installed (``connection.execute_wrapper(counter)``)."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any) -> Any:
        """Count one statement and run it."""
        self.count += 1
        return execute(sql, params, many, context)


class Cycles(NamedTuple):
    """What `timed_cycles` measured, one entry per timed cycle."""

    walls: list[float]
    cpus: list[float]
    calls: list[int]
    statements: list[int]


def timed_cycles(cycle: Callable[[], object], count: int, calls: Callable[[], int]) -> Cycles:
    """Run `cycle` once (a warm-up), then `count` times: wall and CPU seconds, `calls()` made, SQL statements."""
    from django.db import connection

    cycle()
    out = Cycles([], [], [], [])
    for _ in range(count):
        counter = StatementCounter()
        before = calls()
        with connection.execute_wrapper(counter):
            cpu0 = time.process_time()
            wall0 = time.perf_counter()
            cycle()
            out.walls.append(time.perf_counter() - wall0)
            out.cpus.append(time.process_time() - cpu0)
        out.calls.append(calls() - before)
        out.statements.append(counter.count)
    return out


def percentile(samples: list[float], pct: float) -> float:
    """Nearest-rank percentile (`pct` in 0..100) of a non-empty list."""
    ordered = sorted(samples)
    return ordered[max(1, math.ceil(pct / 100.0 * len(ordered))) - 1]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class NoTethysVenv(RuntimeError):
    """The Tethys Platform virtualenv of peer/setup_tethys_venv.sh could not be made."""


@overload
def tethys_python(skip: None = None) -> str: ...


@overload
def tethys_python(skip: Callable[[str], None]) -> str | None: ...


def tethys_python(skip: Callable[[str], None] | None = None) -> str | None:
    """The Tethys venv's python (made once); if it cannot be made, NoTethysVenv, or None said through `skip`."""
    try:
        out = subprocess.run(["bash", SETUP_TETHYS], check=True, stdout=subprocess.PIPE, text=True).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        problem = f"no Tethys virtualenv ({exc})"
    else:
        lines = [line for line in out.splitlines() if line.strip()]
        if lines:
            return lines[-1].strip()
        problem = f"no Tethys virtualenv ({SETUP_TETHYS} printed no python path)"
    if skip is None:
        raise NoTethysVenv(f"{problem}: see the output of {SETUP_TETHYS} above")
    skip(f"{problem}: the Tethys side is skipped")
    return None
