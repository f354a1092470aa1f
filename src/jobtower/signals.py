"""Signals jobtower sends; receivers must not raise (errors are logged and ignored)."""

from django.dispatch import Signal

#: Sent after a status move is committed: sender=job class, job, old, new (Status), source, message.
job_status_changed = Signal()
