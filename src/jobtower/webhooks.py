"""Webhooks: a signed POST per status move to each configured URL, delivered from the outbox.

Configure them in settings::

    JOBTOWER["WEBHOOKS"] = [{"url": "https://user:pass@example.org/hook", "secret": "whsec_..."}]

Each status move writes one outbox row per URL in the transaction that makes the move
(jobtower.outbox); the monitor sends it, retries it with growing delays, and gives up after
DELIVERY_MAX_ATTEMPTS (the row stays, marked failed, with the last error). Delivery is at least
once: a receiver may see one message twice and should drop repeats by their ``webhook-id``. A job's
messages reach an endpoint in order: a later one waits until the earlier one was delivered or failed
for good.

The request follows the Standard Webhooks convention (https://www.standardwebhooks.com):

- body: JSON ``{"type": "job.status_changed", "job_id", "name", "label", "job_type", "user",
  "old", "new", "source", "message", "attempt", "time"}``
- ``webhook-id``: the message's stable id (the same on every retry)
- ``webhook-timestamp``: when this attempt was signed, in unix seconds
- ``webhook-signature``: ``v1,`` + base64(HMAC-SHA256(key, f"{id}.{timestamp}.{body}")), where the
  key is the secret's UTF-8 bytes, or for a secret ``whsec_<base64>`` the decoded bytes (as the
  Standard Webhooks libraries do)

Receivers check a request with ``verify(secret, body, headers)``, which also refuses a timestamp
outside the replay window (5 minutes by default).

Redirects are not followed: a 3xx answer is a failed attempt. Credentials in the URL
(``https://user:pass@host/...``) are sent as HTTP basic auth, never in the request line. Logs and the
outbox show a URL as scheme://host/path only: never its credentials, query string or secret.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from jobtower import conf

__all__ = ["Endpoint", "endpoints", "redact", "send", "sign", "signature_key", "verify"]

#: Receivers refuse a message signed longer ago (or further ahead) than this many seconds.
TOLERANCE = 300


@dataclass(frozen=True)
class Endpoint:
    """One configured webhook: its URL (possibly with credentials) and signing secret."""

    url: str
    secret: str

    @property
    def key(self) -> str:
        """Return the digest that names this endpoint in the outbox (the URL itself is not stored)."""
        return hashlib.sha256(self.url.encode()).hexdigest()[:32]

    @property
    def shown(self) -> str:
        """Return the URL as logs may show it: scheme://host/path."""
        return redact(self.url)


def endpoints() -> list[Endpoint]:
    """Return the configured webhooks (JOBTOWER["WEBHOOKS"])."""
    return [Endpoint(str(hook["url"]), str(hook.get("secret", ""))) for hook in conf.get("WEBHOOKS") or ()]


def redact(url: str) -> str:
    """Return `url` as scheme://host[:port]/path: no user, password, query string or fragment."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    return f"{parts.scheme}://{host}{f':{port}' if port else ''}{parts.path}"


def signature_key(secret: str) -> bytes:
    """Return the HMAC key of `secret`: a "whsec_" secret is base64, any other is used as UTF-8."""
    if secret.startswith("whsec_"):
        return base64.b64decode(secret.removeprefix("whsec_"))
    return secret.encode()


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """Return the `webhook-signature` value of `body` sent as message `msg_id` at `timestamp`."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(signature_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def verify(
    secret: str, body: bytes, headers: Mapping[str, str], *, tolerance: float = TOLERANCE, now: float | None = None
) -> bool:
    """Return True when `headers` carry a valid signature of `body` made within `tolerance` seconds.

    For receivers: pass the raw body and the request headers (e.g. Django's request.headers).
    """
    lower = {name.lower(): value for name, value in headers.items()}
    msg_id, stamp, signatures = (lower.get(h, "") for h in ("webhook-id", "webhook-timestamp", "webhook-signature"))
    if not (msg_id and stamp and signatures):
        return False
    try:
        timestamp = int(stamp)
    except ValueError:
        return False
    if abs((time.time() if now is None else now) - timestamp) > tolerance:
        return False  # a replay of an old message, or a clock far off
    expected = sign(secret, msg_id, timestamp, body)
    # The header may hold several space-separated signatures (a receiver rotating its secret).
    return any(hmac.compare_digest(expected, candidate) for candidate in signatures.split())


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    # A redirect could carry the signed body and the credentials to another host: it is a failure.
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_opener = urllib.request.build_opener(_NoRedirects)


def send(endpoint: Endpoint, msg_id: str, payload: Mapping[str, Any], *, timeout: float) -> None:
    """POST one signed message to `endpoint`; raise OSError saying why unless it answered 2xx."""
    body = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
    timestamp = int(time.time())
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "jobtower-webhooks",
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(endpoint.secret, msg_id, timestamp, body),
    }
    parts = urllib.parse.urlsplit(endpoint.url)
    if parts.username is not None or parts.password is not None:
        user = urllib.parse.unquote(parts.username or "")
        password = urllib.parse.unquote(parts.password or "")
        headers["Authorization"] = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        netloc = parts.netloc.rpartition("@")[2]
        url = urllib.parse.urlunsplit(parts._replace(netloc=netloc))
    else:
        url = endpoint.url
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with _opener.open(request, timeout=timeout) as response:
            status: int = response.status
    except urllib.error.HTTPError as exc:
        exc.close()
        # The reason is the endpoint's own words; never the URL (which may hold credentials).
        if 300 <= exc.code < 400:
            raise OSError(f"HTTP {exc.code}: redirects are not followed") from None
        raise OSError(f"HTTP {exc.code} {exc.reason}"[:200]) from None
    except urllib.error.URLError as exc:
        raise OSError(f"unreachable: {exc.reason}"[:200]) from None
    if not 200 <= status < 300:
        raise OSError(f"HTTP {status}")
