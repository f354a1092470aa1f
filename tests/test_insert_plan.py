"""The prepared INSERT of a new job: the values it writes and the cursor it writes them with."""

from __future__ import annotations

import datetime
import zoneinfo
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection, connections
from django.test.utils import CaptureQueriesContext

from jobtower.models import Job
from jobtower.models.job import _qmarks, insert_plan
from jobtower.registry import registered_classes

pytestmark = pytest.mark.django_db

UTC = datetime.UTC
SAMPLES: list[Any] = [
    None, "", "text", "{id} ü", 0, 7, -3, 2**40, 1.5, 0.0, {}, {"a": [1, None]}, [], [1, "x"], True,
    Decimal("2.5"),
    datetime.datetime(2026, 12, 7, 15, 4, 5, 123456, tzinfo=UTC),
    datetime.datetime(2026, 12, 7, 15, 4, 5, tzinfo=zoneinfo.ZoneInfo("America/Denver")),
    datetime.datetime(2026, 12, 7, 15, 4, 5, tzinfo=datetime.timezone(datetime.timedelta(hours=2))),
]


def _slow(field: Any, value: Any) -> tuple[bool, Any]:
    try:
        return True, field.get_db_prep_save(value, connections["default"])
    except Exception as exc:  # noqa: BLE001 - the short path must refuse what the field refuses
        return False, type(exc)


def _plain(value: Any) -> Any:
    """A driver's wrapper (psycopg's Jsonb, say) compared by what it wraps."""
    return ("wrapped", value.obj) if hasattr(value, "obj") else value


CLASSES = sorted({cls for _, cls in registered_classes()}, key=lambda cls: cls.__name__)


@pytest.mark.parametrize("cls", CLASSES, ids=lambda cls: cls.__name__)
def test_each_value_is_prepared_as_its_field_prepares_it(cls: type[Job]) -> None:
    """The short paths (str, int, None, JSON, aware times, user ids) give what get_db_prep_save gives."""
    db = connections["default"]
    plan = insert_plan(cls, db)
    checked = 0
    for field, prep in zip(plan.fields, plan.preparers, strict=True):
        for value in SAMPLES:
            ok, expected = _slow(field, value)
            if not ok:
                with pytest.raises(expected):
                    prep(value, db)
                continue
            got = prep(value, db)
            assert type(got) is type(expected) and _plain(got) == _plain(expected), (field.name, value, got, expected)
            checked += 1
    assert checked > len(plan.fields) * 5


def test_qmarks_rewrites_every_mark_and_refuses_strays() -> None:
    assert _qmarks("INSERT INTO t (a, b) VALUES (%s, %s)", 2) == "INSERT INTO t (a, b) VALUES (?, ?)"
    with pytest.raises(ValueError, match="expected 3"):
        _qmarks("INSERT INTO t (a, b) VALUES (%s, %s)", 3)
    with pytest.raises(ValueError):
        _qmarks("SELECT 1 WHERE x LIKE '%a' AND y = %s", 1)
    with pytest.raises(ValueError):
        _qmarks("SELECT ? , %s", 1)


def test_insert_runs_through_execute_wrappers_and_is_counted(job_manager, user) -> None:
    """Instrumentation that wraps Django's cursors (debug toolbars, tracing) sees the INSERT of a job."""
    seen: list[str] = []

    def wrapper(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        seen.append(sql)
        return execute(sql, params, many, context)

    job = job_manager.create_job(name="w{id}", user=user, job_type="BASIC", description="d")
    with connection.execute_wrapper(wrapper):
        job.save()
    assert len(seen) == 1 and seen[0].lstrip().upper().startswith(("INSERT", "WITH"))
    stored = Job.objects.get(pk=job.pk)
    assert stored.name == f"w{job.pk}" == job.name and stored.description == "d"


def test_insert_with_queries_logged_is_logged_readably(job_manager, user) -> None:
    """With DEBUG's query log on, the INSERT is logged with its values, and writes the same row."""
    job = job_manager.create_job(name="logged {id}", user=user, job_type="BASIC", description="it's")
    with CaptureQueriesContext(connection) as queries:
        job.save()
    assert len(queries) == 1
    assert "it''s" in queries[0]["sql"] or "it's" in queries[0]["sql"]
    assert Job.objects.get(pk=job.pk).name == f"logged {job.pk}"


def test_insert_error_is_djangos_integrity_error(job_manager, user) -> None:
    """A refused INSERT raises Django's own exception class, as connection.cursor() would."""
    from django.db import IntegrityError, transaction

    job = job_manager.create_job(name="nn", user=user, job_type="BASIC")
    job.__dict__["label"] = None  # NOT NULL: the database refuses the row
    with pytest.raises(IntegrityError), transaction.atomic():
        job.save()
    assert job.pk is None and not Job.objects.filter(name="nn").exists()
