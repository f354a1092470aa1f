"""jobtower's settings, read lazily from Django's `settings.JOBTOWER` dict (never at import time)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

DEFAULTS: dict[str, Any] = {
    # Where jobtower keeps its SQLite database and workspaces; $JOBTOWER_HOME overrides the default.
    "HOME": None,
    # Root of app and user workspaces; default <HOME>/workspaces.
    "WORKSPACES_ROOT": None,
    # Library mode: reading job.status asks the engine at most once per this many seconds.
    # None: never ask on read (a monitor keeps statuses current).
    "STATUS_REFRESH_INTERVAL": 10.0,
    # The status callback URL carries a signed token, and requests without it (or a logged-in owner)
    # are refused. False accepts bare ids, as Tethys does.
    "CALLBACK_REQUIRES_TOKEN": True,
    # Webhooks called on every status change: [{"url": ..., "secret": ...}] (see jobtower.webhooks).
    "WEBHOOKS": [],
    # E-mail to a job's owner when it reaches one of these statuses, e.g.
    # {"statuses": ["Complete", "Error"], "from_email": "jobs@example.org"}; None sends none.
    "NOTIFY_EMAIL": None,
    # Notifications (webhooks, e-mail) are sent by the monitor from the outbox: at most this many per
    # round, each attempt given this many seconds, retried after DELIVERY_BACKOFF seconds (doubling
    # each time, at most an hour) until DELIVERY_MAX_ATTEMPTS attempts failed.
    "DELIVERY_BATCH": 20,
    "DELIVERY_TIMEOUT": 5.0,
    "DELIVERY_BACKOFF": 10.0,
    "DELIVERY_MAX_ATTEMPTS": 8,
    # Which backend runs a job type: {"CONDOR": "module:Class"} or {"CONDOR": {"BACKEND": ..., "OPTIONS": {}}};
    # types not named run on the backend their class declares.
    "BACKENDS": {},
    # The Dask scheduler of DASK jobs that name none: a DaskScheduler record's name, an address
    # ("tcp://host:8786"), or "local" for a LocalCluster that the monitor starts once and shares.
    "DASK_SCHEDULER": None,
    # With DASK_SCHEDULER = "local": the LocalCluster's keyword arguments (n_workers, threads_per_worker...).
    "DASK_LOCAL_CLUSTER": {},
    # A claim on a job's results step (fetching outputs, running process_results_function) older than
    # this many seconds is taken over: the process that held it died. The monitor renews its claims.
    "RESULTS_CLAIM_TIMEOUT": 120.0,
    # The Python that runs function jobs on CONDOR and SLURM: a path on the execute nodes, or a dict of
    # job type to path ({"CONDOR": "/usr/bin/python3"}). None: the server's own interpreter (sys.executable),
    # which the nodes must then reach at the same path. LOCAL always uses the worker's interpreter.
    "FUNCTION_PYTHON": None,
    # How many times the results step is started before the job ends in Error (crashes count, since a
    # step that kills its process would otherwise be retried forever).
    "RESULTS_MAX_TRIES": 3,
}


def get(name: str) -> Any:
    """Return the jobtower setting `name`, falling back to its default."""
    from django.conf import settings

    if name not in DEFAULTS:
        raise KeyError(f"unknown jobtower setting {name!r}; known: {', '.join(sorted(DEFAULTS))}")
    return getattr(settings, "JOBTOWER", {}).get(name, DEFAULTS[name])


def home() -> Path:
    """Return jobtower's home folder: JOBTOWER['HOME'], else $JOBTOWER_HOME, else ./.jobtower."""
    configured = get("HOME") or os.environ.get("JOBTOWER_HOME") or ".jobtower"
    return Path(configured).expanduser().absolute()


def workspaces_root() -> Path:
    """Return the folder under which app and user workspaces live."""
    configured = get("WORKSPACES_ROOT")
    return Path(configured).expanduser().absolute() if configured else home() / "workspaces"
