"""Run a function job: ``python function_runner.py <attempt folder>`` (LOCAL: ``python -m`` this module).

The same runner runs a function job on every engine (LOCAL, CONDOR, SLURM). It uses the standard
library only, so a cluster's Python needs no jobtower: CONDOR and SLURM copy this file into the
attempt's folder and run it there with the configured interpreter.

It reads ``run.json`` ({"function": "pkg.module:name", "args": [...], "kwargs": {...}}) in the attempt
folder, imports the function (the job's current directory, its own folder, comes first on the import
path, as with ``python -m``), calls it, and writes ``{"value": <return value>}`` to ``result.json``.
When the function raises, or returns something JSON cannot hold, the traceback goes to stderr,
``{"type": "ValueError", "message": "..."}`` to ``error.json``, and the exit code is 1.
"""

from __future__ import annotations

import importlib
import json
import math
import os
import sys
import traceback
from typing import Any

RESULT_FILE = "result.json"
ERROR_FILE = "error.json"


def resolve(path: str) -> Any:
    """Import and return what a "module:name" (or "module.name") path names."""
    module_name, sep, attr = path.partition(":")
    if not sep:
        module_name, _, attr = path.rpartition(".")
    if not module_name or not attr:
        raise ValueError(f"{path!r} is not a dotted path; write it as 'pkg.module:function'")
    target: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        target = getattr(target, part)
    if not callable(target):
        raise TypeError(f"{path!r} is not callable")
    return target


def check(value: Any, where: str) -> None:
    """Raise TypeError naming the first part of `value` that is not plain JSON (as jobtower stores it)."""
    if value is None or isinstance(value, (str, bool, int)):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise TypeError(f"{where} is {value!r}, which JSON cannot store; use None or a string")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"{where} has the key {key!r} of type {type(key).__name__}; "
                                "JSON object keys must be strings")
            check(item, f"{where}[{key!r}]")
        return
    if isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            check(item, f"{where}[{index}]")
        return
    raise TypeError(
        f"{where} is a {type(value).__name__} ({value!r:.80}), which is not JSON; return only dicts, "
        "lists, strings, numbers, booleans and None (convert sets to lists, datetimes and paths to strings)"
    )


def type_name(exc: BaseException) -> str:
    """Return the exception's type as Python's traceback names it ("ValueError", "pkg.mod.Error")."""
    kind = type(exc)
    module = kind.__module__
    return kind.__qualname__ if module in ("builtins", "__main__") else f"{module}.{kind.__qualname__}"


def write(folder: str, name: str, text: str) -> None:
    """Write a file whole (a temporary file, then a rename), so a reader never sees half of it."""
    tmp = os.path.join(folder, f".{name}.tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(tmp, os.path.join(folder, name))


def main(argv: list[str]) -> int:
    """Run the function described in <attempt folder>/run.json; return the exit code."""
    folder = argv[1]
    here = os.path.dirname(os.path.abspath(__file__))
    if sys.path and sys.path[0] == here:
        sys.path[0] = os.getcwd()  # run as a file: import from the job's folder, not from ours
    with open(os.path.join(folder, "run.json"), encoding="utf-8") as handle:
        spec = json.load(handle)
    path = str(spec["function"])
    try:
        function = resolve(path)
        value = function(*(spec.get("args") or []), **(spec.get("kwargs") or {}))
        check(value, f"the return value of {path}")
        text = json.dumps({"value": value}, allow_nan=False)
    except Exception as exc:
        traceback.print_exc()
        write(folder, ERROR_FILE, json.dumps({"type": type_name(exc), "message": str(exc)}))
        return 1
    write(folder, RESULT_FILE, text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
