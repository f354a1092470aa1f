"""Jobs as the API shows them: plain JSON-ready dicts built from the database, never from an engine."""

from __future__ import annotations

import datetime
import math
from typing import Any

from django.urls import reverse

from jobtower import manager
from jobtower.models import Job
from jobtower.models.job import spec_fields


def _iso(moment: Any) -> str | None:
    return moment.isoformat() if moment is not None else None


def finite(value: Any) -> Any:
    """Return `value` with every NaN or infinite number in it replaced by None."""
    # JSON has no such numbers: json.dumps would write NaN or Infinity, which clients cannot parse.
    # They reach a job through the database (a FloatField takes them), not through jsoncheck.
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(item) for item in value]
    return value


def job_json(job: Job) -> dict[str, Any]:
    """Return a job as the API shows it (from the database only: no engine is asked)."""
    code = job.status_code
    run_time = job.run_time
    names = spec_fields(type(job))
    settings_ = {name: getattr(job, name) for name in names} if names else dict(job.spec)
    shown: dict[str, Any] = finite({
        "id": job.pk,
        "url": reverse("jobtower:api-job", kwargs={"job_id": str(job.pk)}),
        "name": job.name,
        "description": job.description,
        "job_type": job.job_type,
        "label": job.label,
        "user": job.user.get_username(),
        "groups": sorted(group.name for group in job.groups.all()),
        "status": code.display,
        "status_code": code.value,
        "status_message": job.status_message,
        "progress": job.progress,
        "progress_message": job.progress_message,
        "attempt": job.attempt,
        "creation_time": _iso(job.creation_time),
        "execute_time": _iso(job.execute_time),
        "start_time": _iso(job.start_time),
        "completion_time": _iso(job.completion_time),
        "run_time": run_time.total_seconds() if isinstance(run_time, datetime.timedelta) else None,
        "result": job.result,
        "extended_properties": job.extended_properties,
        "spec": settings_,
        "stale_since": _iso(job.stale_since),
        "capabilities": sorted(c.value for c in manager.capabilities(job)),
    })
    return shown


