"""The outbox: one row per notification a status move owes (a webhook POST, an e-mail), written with the move."""

from __future__ import annotations

import uuid

from django.db import models
from django.utils import timezone


class Delivery(models.Model):
    """One notification of one status move to one destination; the monitor delivers it (at least once).

    Rows are written in the transaction that moves the job, so a move that commits always has its
    notifications, even when the process that made it ends at once. They are kept after delivery
    (or after the last failed attempt, with its error) for inspection.
    """

    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"
    STATES = [(PENDING, "pending"), (SENT, "sent"), (FAILED, "failed")]
    WEBHOOK = "webhook"
    EMAIL = "email"
    KINDS = [(WEBHOOK, "webhook"), (EMAIL, "e-mail")]

    #: The stable id receivers see (the `webhook-id` header): the same on every retry.
    key = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    # A plain column, not a foreign key: a job's notifications outlive the job (e.g. its deletion's).
    job_id = models.BigIntegerField()
    kind = models.CharField(max_length=8, choices=KINDS)
    # Which destination: a digest of the configured URL (no secret in the database) or the e-mail address.
    endpoint = models.CharField(max_length=254)
    # What to show: the URL without credentials or query string, or the e-mail address.
    target = models.CharField(max_length=1024)
    payload = models.JSONField()
    state = models.CharField(max_length=8, choices=STATES, default=PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    created = models.DateTimeField(default=timezone.now)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    # Set by the sender that claimed the row; a claim past this time is taken over (its sender died).
    claimed_until = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True, default="")

    class Meta:
        app_label = "jobtower"
        ordering = ["id"]
        verbose_name_plural = "deliveries"
        indexes = [
            # the sender's "what is due" query reads pending rows only.
            models.Index(
                fields=["next_attempt_at"], name="jobtower_delivery_due",
                condition=models.Q(state="pending"),
            ),
            # per-job order: "is an earlier row of this job to this endpoint still pending?"
            models.Index(fields=["job_id", "endpoint", "id"], name="jobtower_delivery_order"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.key} for job {self.job_id} to {self.target}: {self.state}"
