"""The outbox: notifications of status moves, written with the move and delivered by the monitor.

enqueue() is called by the manager inside the transaction of a status move: one row per (move,
configured webhook), and one per move to a notified status for the owner's e-mail. With neither
configured it writes nothing and asks the database nothing. deliver_due() is the monitor's part:
it claims due rows with a guarded UPDATE (so two monitors never send one row at once), sends each,
and records the outcome: sent, retried later (exponential backoff), or failed for good.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from jobtower import conf, statuses, webhooks
from jobtower.statuses import Status

if TYPE_CHECKING:
    from jobtower.models import Delivery, Job

log = logging.getLogger("jobtower.outbox")

#: The longest wait between two attempts, however many failed before.
MAX_BACKOFF = 3600.0


@dataclass(frozen=True)
class Move:
    """One committed-with-us status move, as the outbox needs it."""

    job: Job
    old: Status
    new: Status
    source: str
    message: str
    attempt: int
    time: datetime.datetime


def _email_statuses() -> frozenset[Status]:
    notify = conf.get("NOTIFY_EMAIL")
    if not notify:
        return frozenset()
    return frozenset(statuses.parse_status(s) for s in notify.get("statuses", ("Complete", "Error")))


def _opt_in_only() -> bool:
    return bool((conf.get("NOTIFY_EMAIL") or {}).get("opt_in"))


def wants_mail(move: Move, mailed: frozenset[Status], opt_in_only: bool) -> bool:
    """Return True when the move's owner is e-mailed: a job with notify="email" on reaching a terminal
    status (or one of NOTIFY_EMAIL's statuses), any other job only when NOTIFY_EMAIL is not opt-in."""
    props = move.job.extended_properties
    if isinstance(props, dict) and props.get("notify") == "email":
        return move.new in (mailed or statuses.TERMINAL)
    return move.new in mailed and not opt_in_only


def payload(move: Move) -> dict[str, Any]:
    """Return the JSON body of a move's notification."""
    job = move.job
    return {
        "type": "job.status_changed", "job_id": job.pk, "name": job.name, "label": job.label,
        "job_type": job.job_type, "user": job.user_id, "old": move.old.display, "new": move.new.display,
        "source": move.source, "message": move.message, "attempt": move.attempt, "time": move.time.isoformat(),
    }


def needed() -> bool:
    """Return True when some move may owe a notification (webhooks or e-mail are configured)."""
    return bool(conf.get("WEBHOOKS") or conf.get("NOTIFY_EMAIL"))


def enqueue(moves: Sequence[Move]) -> int:
    """Write the notifications `moves` owe, in one INSERT; call it in the moves' transaction."""
    hooks = webhooks.endpoints()
    mailed = _email_statuses()
    opt_in_only = _opt_in_only()
    mail_moves = [move for move in moves if wants_mail(move, mailed, opt_in_only)]
    if not moves or not (hooks or mail_moves):
        return 0
    from jobtower.models import Delivery

    emails: dict[Any, str] = {}
    if mail_moves:
        from django.contrib.auth import get_user_model

        owners = {move.job.user_id for move in mail_moves}
        emails = dict(get_user_model().objects.filter(pk__in=owners).values_list("pk", "email"))
    mailing = {id(move) for move in mail_moves}
    rows = []
    for move in moves:
        body = payload(move)
        for hook in hooks:
            rows.append(Delivery(job_id=move.job.pk, kind=Delivery.WEBHOOK, endpoint=hook.key,
                                 target=hook.shown[:1024], payload=body, created=move.time,
                                 next_attempt_at=move.time))
        address = emails.get(move.job.user_id) if id(move) in mailing else None
        if address:
            rows.append(Delivery(job_id=move.job.pk, kind=Delivery.EMAIL, endpoint=address, target=address,
                                 payload=body, created=move.time, next_attempt_at=move.time))
    Delivery.objects.bulk_create(rows)
    return len(rows)


# -- delivery (the monitor) ------------------------------------------------------------------------


def due(limit: int) -> list[Delivery]:
    """Return up to `limit` rows that may be sent now: pending, unclaimed, first of their job and endpoint."""
    from jobtower.models import Delivery

    now = timezone.now()
    earlier = Delivery.objects.filter(
        state=Delivery.PENDING, job_id=OuterRef("job_id"), endpoint=OuterRef("endpoint"), id__lt=OuterRef("id")
    )
    rows = (
        Delivery.objects.filter(_claim_free(now), state=Delivery.PENDING, next_attempt_at__lte=now)
        .exclude(Exists(earlier))
        .order_by("next_attempt_at", "id")
    )
    return list(rows[:limit])


def _claim_free(now: datetime.datetime) -> Q:
    return Q(claimed_until__isnull=True) | Q(claimed_until__lt=now)


def claim(row: Delivery, lease: float) -> bool:
    """Claim `row` with a guarded UPDATE (counting an attempt); True if this caller won it."""
    from django.db.models import F

    from jobtower.models import Delivery

    now = timezone.now()
    until = now + datetime.timedelta(seconds=lease)
    won = Delivery.objects.filter(
        _claim_free(now), pk=row.pk, state=Delivery.PENDING, next_attempt_at__lte=now
    ).update(claimed_until=until, attempts=F("attempts") + 1)
    if won:
        row.claimed_until, row.attempts = until, row.attempts + 1
    return bool(won)


def deliver_due(limit: int | None = None) -> int:
    """Send up to `limit` due notifications (DELIVERY_BATCH); return how many were delivered."""
    batch = int(conf.get("DELIVERY_BATCH")) if limit is None else limit
    timeout = float(conf.get("DELIVERY_TIMEOUT"))
    # The lease outlives one attempt by far; after it, a sender that died is taken over.
    lease = 4 * timeout + 30
    sent = 0
    for row in due(batch):
        if claim(row, lease):
            sent += deliver(row, timeout=timeout)
    return sent


def deliver(row: Delivery, *, timeout: float) -> bool:
    """Send one claimed row and record the outcome; True if it was delivered."""
    from jobtower.models import Delivery

    try:
        if row.kind == Delivery.EMAIL:
            _send_mail(row)
        else:
            _send_webhook(row, timeout)
    except Exception as exc:
        _failed(row, str(exc)[:2000] if isinstance(exc, _Failed) else f"{type(exc).__name__}: {exc}"[:2000])
        return False
    now = timezone.now()
    Delivery.objects.filter(pk=row.pk).update(state=Delivery.SENT, sent_at=now, claimed_until=None, last_error="")
    row.state, row.sent_at = Delivery.SENT, now
    return True


class _Failed(Exception):
    """An attempt failed; the message is safe to log and store."""


def _send_webhook(row: Delivery, timeout: float) -> None:
    hook = next((h for h in webhooks.endpoints() if h.key == row.endpoint), None)
    if hook is None:
        raise _Failed(f"{row.target} is no longer in JOBTOWER['WEBHOOKS']")
    try:
        webhooks.send(hook, str(row.key), row.payload, timeout=timeout)
    except Exception as exc:
        raise _Failed(_scrub(str(exc) if isinstance(exc, OSError) else f"{type(exc).__name__}: {exc}", hook)) from None


def _failed(row: Delivery, error: str) -> None:
    from jobtower.models import Delivery

    attempts = int(conf.get("DELIVERY_MAX_ATTEMPTS"))
    values: dict[str, Any] = {"claimed_until": None, "last_error": error}
    if row.attempts >= attempts:
        values["state"] = Delivery.FAILED
        log.warning("%s to %s for job %s failed %d times, giving up: %s",
                    row.kind, row.target, row.job_id, row.attempts, error)
    else:
        delay = min(float(conf.get("DELIVERY_BACKOFF")) * 2 ** (row.attempts - 1), MAX_BACKOFF)
        values["next_attempt_at"] = timezone.now() + datetime.timedelta(seconds=delay)
        log.info("%s to %s for job %s failed (attempt %d), retrying in %.1f s: %s",
                 row.kind, row.target, row.job_id, row.attempts, delay, error)
    Delivery.objects.filter(pk=row.pk).update(**values)
    for name, value in values.items():
        setattr(row, name, value)


def _scrub(text: str, hook: webhooks.Endpoint) -> str:
    """Remove what must never be logged (the full URL, its password, the secret) from an error text."""
    import urllib.parse

    text = text.replace(hook.url, hook.shown)
    secrets: Iterable[str | None] = (urllib.parse.urlsplit(hook.url).password, hook.secret)
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def _send_mail(row: Delivery) -> None:
    from django.core.mail import send_mail

    notify = conf.get("NOTIFY_EMAIL") or {}
    body = row.payload
    subject = f"Job {body['name']} ({body['job_id']}): {body['new']}"
    text = (
        f"Your {body['job_type']} job {body['name']} (id {body['job_id']}) is {body['new']}"
        f" (it was {body['old']}).\n" + (f"\n{body['message']}\n" if body.get("message") else "")
    )
    send_mail(subject, text, notify.get("from_email"), [row.target], fail_silently=False)
