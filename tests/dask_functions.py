"""What the DASK tests run on the workers (module level: the workers import them by name)."""

from __future__ import annotations

import time
from typing import Any


def add(a: float, b: float) -> float:
    """Add, and say so on stdout (the worker captures it for get_logs())."""
    print(f"adding {a} and {b}")
    return a + b


def boom(year: int = 7) -> None:
    """Fail as a model does."""
    print("starting the model")
    raise ValueError(f"the model diverged at year {year}")


def long_task(seconds: float = 300) -> str:
    """Run until `seconds` pass or the task is cancelled (a running thread cannot be killed: it looks)."""
    from distributed import get_worker
    from distributed.worker import thread_state

    key, worker = thread_state.key, get_worker()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        task = worker.state.tasks.get(key)
        if task is None or task.state in ("cancelled", "released", "forgotten"):
            return "cancelled"
        time.sleep(0.05)
    return "done"


def not_json() -> Any:
    """Return something that cannot be stored as JSON."""
    return {1, 2, 3}


def big(size: int) -> str:
    """Return a string of `size` characters."""
    return "x" * size


def model_run(years: int) -> float:
    """The issue's sample model: a value per year."""
    return years * 1.5


def convert_to_dollars(result: float) -> str:
    """The issue's sample process_results_function: Tethys passes the result and stores what it returns."""
    return f"${result:.2f}"


def explode_result(result: Any) -> Any:
    """A process_results_function that fails."""
    raise RuntimeError(f"cannot convert {result!r}")
