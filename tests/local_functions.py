"""Functions that LOCAL function jobs run in the tests."""

from __future__ import annotations

import os
import time
from pathlib import Path

import jobtower


def add(a: int, b: int, *, scale: int = 1) -> dict:
    """Return a JSON result."""
    return {"sum": (a + b) * scale, "cwd": os.getcwd()}


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
