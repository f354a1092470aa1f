"""Run a LOCAL job's Python function: `python -m jobtower.backends.local_runner <attempt folder>`.

Reads run.json, calls the function with its JSON args and kwargs, writes the JSON return value to
result.json. A failure prints the traceback to stderr and exits 1, so the job ends in Error with it.
"""

from __future__ import annotations

import json
import sys
import traceback
from pathlib import Path


def main(argv: list[str]) -> int:
    """Run the function described in <attempt folder>/run.json; return the exit code."""
    folder = Path(argv[1])
    spec = json.loads((folder / "run.json").read_text())
    from jobtower.dotted import resolve_function
    from jobtower.jsoncheck import NotJSON, check_json

    try:
        function = resolve_function(spec["function"])
        value = function(*spec.get("args", []), **spec.get("kwargs", {}))
    except Exception:
        traceback.print_exc()
        return 1
    try:
        check_json(value, f"the return value of {spec['function']}")
    except NotJSON as exc:
        print(f"jobtower: {exc}", file=sys.stderr)
        return 1
    tmp = folder / "result.json.tmp"
    tmp.write_text(json.dumps({"value": value}))
    tmp.replace(folder / "result.json")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
