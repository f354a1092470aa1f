"""pytest plugin for scripts/mutate_driver.py: record each test's outcome, time and lines of one file.

Loaded with ``-p mutate_trace`` (scripts/ on PYTHONPATH). ``MUTATE_TRACE_OUT`` names the JSON file to
write; when ``MUTATE_TRACE_TARGET`` names a source file, every line of it that a test runs (in any thread
of the test process) is recorded under that test's node id, and lines run outside a test (the import)
under ``"<import>"``. sys.settrace is used because coverage is not a dependency of jobtower.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Iterator
from types import FrameType
from typing import Any

import pytest

_TARGET = os.path.realpath(os.environ["MUTATE_TRACE_TARGET"]) if os.environ.get("MUTATE_TRACE_TARGET") else ""
_OUT = os.environ.get("MUTATE_TRACE_OUT", "")
_IMPORT = "<import>"

_current = _IMPORT
_lines: dict[str, set[int]] = {}
_durations: dict[str, float] = {}
_failed: set[str] = set()
_order: list[str] = []
_is_target: dict[str, bool] = {}


def _local(frame: FrameType, event: str, arg: Any) -> Any:
    if event == "line":
        _lines.setdefault(_current, set()).add(frame.f_lineno)
    return _local


def _global(frame: FrameType, event: str, arg: Any) -> Any:
    name = frame.f_code.co_filename
    hit = _is_target.get(name)
    if hit is None:
        hit = _is_target[name] = os.path.realpath(name) == _TARGET
    if not hit:
        return None  # no line events for the rest of the process: tracing costs little there
    _lines.setdefault(_current, set()).add(frame.f_code.co_firstlineno)
    return _local


def pytest_configure(config: pytest.Config) -> None:
    """Start tracing before the test modules (and the target) are imported."""
    if _TARGET:
        threading.settrace(_global)
        sys.settrace(_global)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    """Charge the lines run by a test's setup, call and teardown to that test."""
    global _current
    _current = item.nodeid
    _order.append(item.nodeid)
    started = time.monotonic()
    try:
        yield
    finally:
        _durations[item.nodeid] = time.monotonic() - started
        _current = _IMPORT


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Remember tests that fail without a mutant: they cannot judge one."""
    if report.failed:
        _failed.add(report.nodeid)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Write what was recorded."""
    sys.settrace(None)
    threading.settrace(None)  # type: ignore[arg-type]
    if not _OUT:
        return
    with open(_OUT, "w") as f:
        json.dump(
            {
                "order": _order,
                "durations": _durations,
                "failed": sorted(_failed),
                "lines": {test: sorted(lines) for test, lines in _lines.items()},
            },
            f,
        )
