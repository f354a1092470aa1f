"""Report progress from inside a running job: `jobtower.progress(50, "year 15 of 30")`."""

from __future__ import annotations

import json
import os
from pathlib import Path


def progress(percent: float, message: str = "") -> bool:
    """Record how far the job is (0-100) and a short message; False when not run by jobtower.

    Jobs in any language can do the same: write {"percent": 50, "message": "..."} to the file named
    by the JOBTOWER_PROGRESS_FILE environment variable (write a temporary file, then rename it).
    """
    target = os.environ.get("JOBTOWER_PROGRESS_FILE")
    if not target:
        return False
    percent = float(percent)
    if not 0.0 <= percent <= 100.0:
        raise ValueError(f"progress percent must be between 0 and 100, got {percent}")
    path = Path(target)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({"percent": percent, "message": str(message)[:255]}))
    tmp.replace(path)
    return True
