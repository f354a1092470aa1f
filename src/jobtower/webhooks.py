"""Webhooks: a POST per status change to each configured URL, HMAC-signed, retried, never fatal.

JOBTOWER["WEBHOOKS"] = [{"url": "https://example.org/hook", "secret": "shared-secret"}]
The body is JSON; the header X-Jobtower-Signature is "sha256=" + HMAC-SHA256(secret, body) in hex.
Delivery runs on a background thread: an endpoint that is down delays nothing and fails no job.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import queue
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from jobtower import conf

log = logging.getLogger("jobtower.webhooks")

ATTEMPTS = 4
BACKOFF = 0.5  # seconds before the 2nd attempt; doubles each time
TIMEOUT = 5.0


@dataclass
class Delivery:
    """One body for one endpoint, with its attempts so far."""

    url: str
    secret: str
    body: bytes
    attempts: int = 0
    errors: list[str] = field(default_factory=list)

    def signature(self) -> str:
        """Return the X-Jobtower-Signature header value."""
        return "sha256=" + hmac.new(self.secret.encode(), self.body, hashlib.sha256).hexdigest()


def sign_ok(secret: str, body: bytes, header: str) -> bool:
    """Return True when `header` is the signature of `body` under `secret` (for receivers)."""
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, header)


_queue: queue.Queue[Delivery] = queue.Queue()
_thread: threading.Thread | None = None
_lock = threading.Lock()


def _deliver(delivery: Delivery) -> bool:
    request = urllib.request.Request(
        delivery.url,
        data=delivery.body,
        headers={"Content-Type": "application/json", "X-Jobtower-Signature": delivery.signature()},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
            status: int = response.status
            return 200 <= status < 300
    except Exception as exc:  # an unreachable endpoint is logged, never raised
        delivery.errors.append(f"{type(exc).__name__}: {exc}")
        return False


def _run() -> None:
    while True:
        delivery = _queue.get()
        while delivery.attempts < ATTEMPTS:
            delivery.attempts += 1
            if _deliver(delivery):
                break
            time.sleep(BACKOFF * 2 ** (delivery.attempts - 1))
        else:
            log.warning("webhook %s failed %d times: %s", delivery.url, ATTEMPTS, delivery.errors[-1:])
        _queue.task_done()


def _start() -> None:
    global _thread
    with _lock:
        if _thread is None or not _thread.is_alive():
            _thread = threading.Thread(target=_run, name="jobtower-webhooks", daemon=True)
            _thread.start()


def on_status_changed(sender: Any, job: Any, old: Any, new: Any, source: str, message: str, **_: Any) -> None:
    """Queue one delivery per configured webhook (the job_status_changed receiver)."""
    hooks = conf.get("WEBHOOKS")
    if not hooks:
        return
    body = json.dumps(
        {
            "job_id": job.pk, "name": job.name, "label": job.label, "job_type": job.job_type,
            "user": job.user_id, "old": old.display, "new": new.display, "source": source,
            "message": message, "attempt": job.attempt,
        }
    ).encode()
    for hook in hooks:
        _queue.put(Delivery(hook["url"], hook.get("secret", ""), body))
    _start()


def wait_idle(timeout: float = 10.0) -> bool:
    """Wait until every queued delivery is done (for tests and shutdown); True if it emptied."""
    deadline = time.monotonic() + timeout
    while _queue.unfinished_tasks and time.monotonic() < deadline:
        time.sleep(0.02)
    return not _queue.unfinished_tasks
