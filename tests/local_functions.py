"""Functions that LOCAL function jobs run in the tests."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import jobtower


def add(a: int, b: int, *, scale: int = 1) -> dict:
    """Return a JSON result."""
    return {"sum": (a + b) * scale, "cwd": os.getcwd()}


def fail(reason: str) -> None:
    """Raise like a broken model does."""
    raise ValueError(f"model diverged: {reason}")


def not_json() -> object:
    """Return something JSON cannot hold."""
    return {1, 2}


def report_progress(flag: str) -> str:
    """Report 50% and wait until the test creates `flag`, then finish."""
    jobtower.progress(50, "year 15 of 30")
    deadline = time.time() + 60
    while not Path(flag).exists() and time.time() < deadline:
        time.sleep(0.05)
    jobtower.progress(100, "done")
    return "finished"


def environment_names() -> list:
    """Return the names in the job's environment."""
    return sorted(os.environ)


def nul_progress() -> str:
    """Report progress whose message holds a NUL byte (PostgreSQL text cannot hold one)."""
    jobtower.progress(10, "a\x00b")
    return "done"


def shout(name: str, *, who: str) -> dict:
    """Read an input file from the job's folder, say so on stdout and stderr, return what it did.

    Standard library and JSON only: the one-definition test runs it on LOCAL, CONDOR and SLURM.
    """
    text = Path(name).read_text()
    Path("output.txt").write_text(text.upper())
    print("read", len(text), "bytes for", who, "and", os.environ["WHO"])
    print("a warning", file=sys.stderr)
    return {"shouted": text.upper(), "who": who, "cwd": os.getcwd()}
