"""Functions that function jobs run on every engine: the standard library only, no Django, no jobtower.

HTCondor runs them with another interpreter than the server's (FUNCTION_PYTHON in the tests), which has
none of the server's packages; so this module imports nothing but the standard library.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def fail(reason: str) -> None:
    """Raise like a broken model does."""
    raise ValueError(f"model diverged: {reason}")


def shout(name: str, *, who: str) -> dict:
    """Read an input file from the job's folder, say so on stdout and stderr, return what it did.

    Standard library and JSON only: the one-definition test runs it on LOCAL, CONDOR and SLURM.
    """
    text = Path(name).read_text()
    Path("output.txt").write_text(text.upper())
    print("read", len(text), "bytes for", who, "and", os.environ["WHO"])
    print("a warning", file=sys.stderr)
    return {"shouted": text.upper(), "who": who, "cwd": os.getcwd()}
