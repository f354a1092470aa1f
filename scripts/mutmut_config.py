"""mutmut 2 hooks for scripts/mutation.sh: which lines to mutate and which fast tests judge each file.

mutmut imports this module by name; scripts/mutation.sh puts scripts/ on PYTHONPATH for it.
"""

from __future__ import annotations

import ast
import functools
import os
from typing import Any

#: Tests that need an engine, a browser, root or PostgreSQL are left out: mutants run on SQLite alone.
MARKS = "not condor and not browser and not root and not slurm and not dask and not postgres"
_PYTEST = f'python -m pytest -x -q -p no:cacheprovider -m "{MARKS}"'

#: The fast tests that judge each mutated file (SQLite, no engine, no browser).
TESTS = {
    "src/jobtower/statuses.py": "tests/test_statuses.py tests/test_manager.py",
    "src/jobtower/web/permissions.py": "tests/test_permissions_matrix.py tests/test_jobs_table.py tests/test_api.py",
    "src/jobtower/gizmos.py": "tests/test_table_rows.py tests/test_escaping.py tests/test_jobs_table.py",
    # every fast test file that calls the manager, directly or through the API, the pages and the worker
    "src/jobtower/manager.py": (
        "tests/test_statuses.py tests/test_manager.py tests/test_manager_refusals.py tests/test_manager_rest.py"
        " tests/test_seam.py tests/test_workflow.py tests/test_delete.py tests/test_public_api.py"
        " tests/test_outbox.py tests/test_tasks.py tests/test_worker_monitor.py tests/test_worker_wait.py"
        " tests/test_concurrency.py tests/test_local.py tests/test_local_hardening.py tests/test_property.py"
        " tests/test_api.py tests/test_web.py tests/test_untrusted.py tests/test_failover.py"
        " tests/test_contract.py tests/test_job_page.py tests/test_jobs_table.py"
    ),
}

#: Only these functions of a file are mutated (a file not listed here is mutated whole).
ONLY = {
    "src/jobtower/gizmos.py": {"row_html", "_buttons"},
}


@functools.cache
def _lines(filename: str) -> frozenset[int]:
    with open(filename) as f:
        tree = ast.parse(f.read())
    wanted = ONLY[filename]
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name in wanted:
            # the body only: mutating a signature or decorator is noise
            lines.update(range(node.body[0].lineno, (node.end_lineno or node.lineno) + 1))
    return frozenset(lines)


def _key(filename: str) -> str:
    return os.path.relpath(filename).replace(os.sep, "/")


def pre_mutation(context: Any) -> None:
    """Skip lines outside the chosen functions; run only the tests that judge this file."""
    key = _key(context.filename)
    if key in ONLY and context.current_line_index + 1 not in _lines(key):
        context.skip = True
        return
    if key in TESTS:
        tests = " ".join(t for t in TESTS[key].split() if os.path.exists(t))
        context.config.test_command = f"{_PYTEST} {tests}"
