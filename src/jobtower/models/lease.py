"""Leases: which one of several processes does a job that must be done once at a time (the monitor)."""

from __future__ import annotations

import datetime

from django.db import IntegrityError, connections, models, router, transaction
from django.db.models import Q
from django.utils import timezone


class Lease(models.Model):
    """A named lease held by one process until `expires`; another may take it once it has expired."""

    name = models.CharField(max_length=64, unique=True)
    holder = models.CharField(max_length=255)
    expires = models.DateTimeField()

    class Meta:
        app_label = "jobtower"

    def __str__(self) -> str:
        return f"lease {self.name} held by {self.holder} until {self.expires:%Y-%m-%d %H:%M:%S}"


def hold(name: str, holder: str, seconds: float) -> bool:
    """Take or renew the lease `name` for `seconds`; True if `holder` holds it now.

    One guarded UPDATE: it succeeds when the lease is ours already or has expired, so two processes can
    never both hold it (a process that stops renewing loses it `seconds` later).
    """
    now = timezone.now()
    until = now + datetime.timedelta(seconds=seconds)
    taken = Lease.objects.filter(Q(holder=holder) | Q(expires__lt=now), name=name).update(
        holder=holder, expires=until
    )
    if taken:
        return True
    try:
        with transaction.atomic():
            Lease.objects.create(name=name, holder=holder, expires=until)
    except IntegrityError:
        return False  # someone else holds it
    return True


def renew(name: str, holder: str, seconds: float) -> bool:
    """Extend the lease `name` for `seconds` only if `holder` still has it, even past its end; True if so.

    Unlike hold(), this never takes a lease that ran out from someone else: it succeeds only when nobody
    took the lease over since `holder` last held it, so what `holder` did meanwhile was done alone.
    """
    until = timezone.now() + datetime.timedelta(seconds=seconds)
    return bool(Lease.objects.filter(name=name, holder=holder).update(expires=until))


def still_held(name: str, holder: str) -> bool:
    """Return True if `holder` holds the lease `name` and it has not run out: a fence for a write.

    One small SELECT of the lease row. Run first in a transaction, its answer stays true until that
    transaction ends: on PostgreSQL it locks the row (FOR NO KEY UPDATE, which writes no new row
    version), so another process's hold() waits for the commit; on SQLite the transaction holds the
    database's write lock from its BEGIN IMMEDIATE (and with a deferred BEGIN, a write after a takeover
    fails as "database is locked" rather than succeeding).
    """
    connection = connections[router.db_for_write(Lease)]
    sql = _STILL_HELD
    if connection.in_atomic_block and connection.features.has_select_for_no_key_update:
        sql += " FOR NO KEY UPDATE"  # outside a transaction it is a plain question
    with connection.cursor() as cursor:
        # Plain SQL: it runs in every write transaction of the leading monitor, and building the same
        # query with the ORM each time costs several times what the database does.
        cursor.execute(sql, [name, holder, connection.ops.adapt_datetimefield_value(timezone.now())])
        return cursor.fetchone() is not None


_STILL_HELD = 'SELECT 1 FROM "jobtower_lease" WHERE "name" = %s AND "holder" = %s AND "expires" > %s'


def release(name: str, holder: str) -> None:
    """Give the lease up at once (a monitor that stops cleanly), if `holder` has it."""
    Lease.objects.filter(name=name, holder=holder).delete()


def holder_of(name: str) -> str | None:
    """Return who holds the lease now, or None when nobody does."""
    return Lease.objects.filter(name=name, expires__gte=timezone.now()).values_list("holder", flat=True).first()
