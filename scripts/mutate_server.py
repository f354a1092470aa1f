"""pytest plugin for scripts/mutate_driver.py: one pytest session judges many mutants, each in a fork.

Loaded with ``-p mutate_server``. Instead of running the collected tests, the session sets up its
session-wide fixtures once (the test database) and then reads one request per line on stdin, JSON
``{"tests": [node ids], "timeout": seconds}``. The driver has written the mutant into the target file
(``MUTATE_TRACE_TARGET``) already, so subprocesses that the tests start import it from disk; for this
process, a forked child loads the file and gives each function of the live module the mutated code, so
every reference to it (``from ... import``, signal receivers) runs the mutant. The child runs the tests in
order and stops at the first failure; the answer is one line on stdout, ``{"code": 0|1|null, "by": test}``
(null: the timeout passed and the child was killed; ``by``: the test that failed). Saves the interpreter
start, Django's set-up and the test database's creation for each mutant.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
import types
from typing import Any

import pytest
from _pytest.runner import runtestprotocol

_TARGET = os.environ.get("MUTATE_TRACE_TARGET", "")
# Taken before pytest captures stdin and stdout: they carry the driver's requests and our answers.
_IN = os.dup(0)
_OUT = os.dup(1)


def _module_for(path: str) -> types.ModuleType:
    real = os.path.realpath(path)
    for module in list(sys.modules.values()):
        if os.path.realpath(getattr(module, "__file__", None) or "") == real:
            return module
    raise LookupError(f"{path} is not imported by the tests: nothing to mutate in this process")


def _swap(live: Any, new: Any) -> None:
    """Give the live function the code (and defaults) of the new one; follow decorators' __wrapped__."""
    while hasattr(live, "__wrapped__") and hasattr(new, "__wrapped__"):
        live, new = live.__wrapped__, new.__wrapped__
    if isinstance(live, types.FunctionType) and isinstance(new, types.FunctionType):
        live.__code__ = new.__code__
        live.__defaults__ = new.__defaults__
        live.__kwdefaults__ = new.__kwdefaults__


def _fresh(path: str, name: str, source: str) -> dict[str, Any]:
    namespace: dict[str, Any] = {"__name__": name, "__file__": path, "__package__": name.rpartition(".")[0]}
    exec(compile(source, path, "exec"), namespace)  # noqa: S102 - the file under test, mutated by the driver
    return namespace


def load_mutant(module: types.ModuleType, original: dict[str, Any]) -> None:
    """Make the live module run the mutant now in its file: functions get its code, changed values are set."""
    path = module.__file__ or ""
    with open(path) as f:
        mutated = _fresh(path, module.__name__, f.read())
    live = vars(module)
    for name, value in mutated.items():
        if name.startswith("__") or name not in live:
            continue
        current = live[name]
        if isinstance(value, type) and isinstance(current, type):
            for attr, member in vars(value).items():
                target = vars(current).get(attr)
                if isinstance(member, (staticmethod, classmethod)) and isinstance(target, type(member)):
                    _swap(target.__func__, member.__func__)
                elif callable(member) and callable(target):
                    _swap(target, member)
                elif attr not in ("__dict__", "__weakref__", "__doc__", "__module__") and not callable(member):
                    try:
                        if member != original[name].__dict__.get(attr):
                            setattr(current, attr, member)
                    except (AttributeError, TypeError):
                        pass
        elif callable(value) and callable(current) and not isinstance(value, type):
            _swap(current, value)
        elif not isinstance(value, types.ModuleType):
            try:
                changed = bool(value != original.get(name))
            except Exception:
                changed = True
            if changed:
                live[name] = value


def _child(items: list[pytest.Item], session: pytest.Session, module: types.ModuleType,
           original: dict[str, Any], verdict: str) -> int:
    from django.db import connections

    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    for conn in connections.all(initialized_only=True):
        conn.connection = None  # SQLite: never use a connection the parent opened; open our own
    try:
        load_mutant(module, original)
    except Exception as exc:
        with open(verdict, "w") as f:
            f.write(f"(loading the mutant: {type(exc).__name__})")
        return 1  # a mutant that cannot even load is killed
    for n, item in enumerate(items):
        nextitem = items[n + 1] if n + 1 < len(items) else session
        reports = runtestprotocol(item, log=False, nextitem=nextitem)  # type: ignore[arg-type]
        if any(report.failed for report in reports):
            with open(verdict, "w") as f:
                f.write(item.nodeid)
            if nextitem is not session:
                session._setupstate.teardown_exact(session)  # type: ignore[arg-type]
            return 1
    return 0


def _judge(items: list[pytest.Item], session: pytest.Session, timeout: float, module: types.ModuleType,
           original: dict[str, Any], verdict: str) -> int | None:
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            code = _child(items, session, module, original, verdict)
        finally:
            os._exit(code)
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 1
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return None
        time.sleep(0.01)


@pytest.hookimpl(tryfirst=True)
def pytest_runtestloop(session: pytest.Session) -> bool:
    """Set up the session once, then judge mutants as the driver asks."""
    by_id = {item.nodeid: item for item in session.items}
    out = os.fdopen(_OUT, "w", buffering=1)
    module = _module_for(_TARGET)
    with open(_TARGET) as f:
        original = _fresh(_TARGET, module.__name__, f.read())
    # Prime: one test using the database sets the session fixtures up; tearing down to the session
    # keeps them for every child.
    prime = next((item for item in session.items if "db" in getattr(item, "fixturenames", ())), None)
    if prime is not None:
        runtestprotocol(prime, log=False, nextitem=session)  # type: ignore[arg-type]
    out.write(json.dumps({"ready": len(by_id)}) + "\n")
    for line in os.fdopen(_IN):
        request = json.loads(line)
        missing = [t for t in request["tests"] if t not in by_id]
        if missing:
            out.write(json.dumps({"code": 4, "missing": missing}) + "\n")
            continue
        items = [by_id[t] for t in request["tests"]]
        verdict = os.path.join(os.path.dirname(_TARGET), ".mutant-killed-by")
        if os.path.exists(verdict):
            os.unlink(verdict)
        code = _judge(items, session, float(request["timeout"]), module, original, verdict)
        by = ""
        if os.path.exists(verdict):
            with open(verdict) as f:
                by = f.read()
        out.write(json.dumps({"code": code, "by": by}) + "\n")
    return True
