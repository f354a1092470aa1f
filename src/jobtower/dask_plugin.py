"""Push for DASK jobs: a scheduler plugin that calls a job's signed status callback when its task ends.

    dask scheduler --preload jobtower.dask_plugin --jobtower-callback-url http://web.example:8000

(or `JOBTOWER_DASK_CALLBACK_URL=http://web.example:8000` in the scheduler's environment). The URL is the
base of the jobtower site that the scheduler can reach (scheme, host, port and any prefix it is mounted
under, without the job's path).

What the plugin knows comes from jobtower, never from a secret of its own: when a DASK job is submitted,
jobtower stores on the scheduler (`client.set_metadata(["jobtower", str(key)], ...)`) the path of the
job's status callback with its signed token, `/.../jobs/<id>/update-status/?token=...`, which only
jobtower can make (the token is signed with the site's SECRET_KEY). On a task's transition to `memory` or
`erred` (and, once a second, for a task that ended before its path arrived) the plugin looks its key
up there and, when found, POSTs to base URL + that path in a thread
(never on the scheduler's event loop), once, with a 10-second timeout; a failure is logged and nothing
else happens. The callback only asks the monitor for an early re-check, so polling stays the fallback: a
lost callback costs at most one monitor interval.

The plugin imports neither Django nor the rest of jobtower: the scheduler needs only this file.
"""

from __future__ import annotations

import logging
import os
import threading
import urllib.request
from typing import Any

ENV = "JOBTOWER_DASK_CALLBACK_URL"
#: The name of the scheduler's metadata under which jobtower keeps the callback path of each key.
METADATA = "jobtower"
ENDED = frozenset({"memory", "erred"})
TIMEOUT = 10
SWEEP_MS = 1000

log = logging.getLogger("jobtower.dask_plugin")

try:
    import click
    from distributed.diagnostics.plugin import SchedulerPlugin
except ImportError:  # pragma: no cover - only ever loaded into a dask scheduler
    raise ImportError("jobtower.dask_plugin is a dask scheduler preload: pip install 'jobtower[dask]'") from None


def post(url: str) -> None:
    """POST an empty body to `url`; log, never raise, when it fails."""
    request = urllib.request.Request(url, data=b"", method="POST")
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as answer:  # noqa: S310 - the operator's URL
            answer.read()
    except Exception as exc:  # noqa: BLE001 - polling is the fallback
        log.warning("jobtower status callback %s failed: %s: %s", url.split("?", 1)[0], type(exc).__name__, exc)


class JobtowerCallbacks(SchedulerPlugin):
    """Calls jobtower's status callback of a job when its task reaches memory or erred."""

    name = "jobtower-callbacks"

    def __init__(self, scheduler: Any, base_url: str) -> None:
        self.scheduler = scheduler
        self.base_url = base_url.rstrip("/")

    async def start(self, scheduler: Any) -> None:
        from tornado.ioloop import PeriodicCallback

        # A task may end before jobtower's path for it arrives (a quick task): a sweep every second
        # catches those.
        self.sweeper = PeriodicCallback(self.sweep, SWEEP_MS)
        self.sweeper.start()

    async def close(self) -> None:
        sweeper = getattr(self, "sweeper", None)
        if sweeper is not None:
            sweeper.stop()

    def sweep(self) -> None:
        paths = self.scheduler.task_metadata.get(METADATA)
        if not isinstance(paths, dict):
            return
        for key in list(paths):
            task = self.scheduler.tasks.get(key)
            if task is not None and task.state in ENDED:
                self.call_back(key)

    def transition(self, key: Any, start: str, finish: str, *args: Any, **kwargs: Any) -> None:
        if finish in ENDED:
            self.call_back(str(key))

    def call_back(self, key: str) -> None:
        paths = self.scheduler.task_metadata.get(METADATA)
        path = paths.get(key) if isinstance(paths, dict) else None
        if not isinstance(path, str) or not path.startswith("/"):
            return
        del paths[key]  # once: a task that ends twice (recomputed) is news the poll brings
        threading.Thread(target=post, args=(self.base_url + path,), daemon=True,
                         name="jobtower-callback").start()


@click.command()
@click.option("--jobtower-callback-url", default=None,
              help=f"base URL of the jobtower site (default: ${ENV})")
def dask_setup(scheduler: Any, jobtower_callback_url: str | None) -> None:
    """Install the plugin on the scheduler (Dask's preload entry point)."""
    base = jobtower_callback_url or os.environ.get(ENV, "")
    if not base.startswith(("http://", "https://")):
        raise click.UsageError(
            f"jobtower.dask_plugin needs the base URL of the jobtower site: pass --jobtower-callback-url "
            f"http://host:port (or set {ENV}); got {base!r}"
        )
    scheduler.add_plugin(JobtowerCallbacks(scheduler, base))
