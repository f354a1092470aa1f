"""The job record: one table for every job type, and the table of its status history."""

from __future__ import annotations

import datetime
import functools
import json
import logging
import shutil
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import connections, models, router, transaction
from django.db.backends.base.operations import BaseDatabaseOperations
from django.db.models import Model, signals
from django.db.models.base import ModelState
from django.utils import timezone

from jobtower import statuses
from jobtower.dotted import function_path, resolve_function
from jobtower.jsoncheck import check_json
from jobtower.registry import class_for_stored
from jobtower.statuses import Status

if TYPE_CHECKING:
    from jobtower.backends.base import Backend

log = logging.getLogger("jobtower")

#: Attributes the Jobs API documents as read-only; the manager sets them, apps read them.
READ_ONLY = {
    "user": "it is set by create_job()",
    "label": "it is the package name of the app that created the job",
    "job_type": "it is chosen in create_job(job_type=...)",
    "creation_time": "it is set when the job is created",
    "execute_time": "it is set when the job is executed",
    "start_time": "it is set when the engine starts the job",
    "completion_time": "it is set when the job ends",
    "status_message": "it is set with the status: job.update_status(status, message=...)",
    "attempt": "resubmit() starts a new attempt",
    "last_status_check": "the manager records when it last asked the engine",
    "stale_since": "the manager records when the engine stopped answering about the job",
    "check_requested": "the status callback sets it: job_manager.get_job_status_callback_url()",
    "progress": "the running job reports it (jobtower.progress(percent, message))",
    "progress_message": "the running job reports it (jobtower.progress(percent, message))",
    "result": "it is what the job's function returned",
    "results_claimed_at": "the process running the job's results step claims it",
    "results_tries": "the manager counts how often the results step was started",
    "results_status": "the manager records how the job ends once its results are processed",
    "_status": "set job.status (a code or a display string) to change it",
}

#: Fields that job.save() writes on an existing row: the ones apps configure. Status, times and
#: engine data are written only by the manager, so a stale object never overwrites a newer status.
APP_FIELDS = (
    "name",
    "description",
    "workspace",
    "extended_properties",
    "spec",
    "_process_results_function",
)


_RENAME_SQL = 'UPDATE "jobtower_job" SET "name" = %s WHERE "id" = %s'

#: The text in a job's name that becomes its id when the job is first saved.
ID_MARK = "{id}"

Preparer = Callable[[Any, Any], Any]
_BASE_ADAPT_JSON = BaseDatabaseOperations.adapt_json_value


def _field_preparer(field: Any) -> tuple[bool, Preparer]:
    """Return (needs pre_save, how to turn the attribute into the value the driver gets) for a field.

    The common cases (a str, an int, None, a dict or list for JSON) take a short path with the same
    result as the field's own get_db_prep_save; anything else goes through get_db_prep_save itself.
    """
    slow = field.get_db_prep_save
    needs_pre_save = bool(getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False)) or (
        type(field).pre_save not in (models.Field.pre_save, models.DateField.pre_save, models.DateTimeField.pre_save)
    )
    kind = field.get_internal_type()
    if kind in ("CharField", "TextField"):
        return needs_pre_save, lambda value, connection: value if type(value) is str else slow(value, connection)
    if kind in ("IntegerField", "PositiveIntegerField", "PositiveSmallIntegerField", "SmallIntegerField",
                "BigIntegerField"):
        def integer(value: Any, connection: Any) -> Any:
            if value is None:
                return None
            if type(value) is int:
                return connection.ops.adapt_integerfield_value(value, kind)
            return slow(value, connection)
        return needs_pre_save, integer
    if kind == "FloatField":
        return needs_pre_save, lambda value, connection: value if value is None or type(value) is float else slow(
            value, connection)
    if kind == "JSONField":
        encoder = field.encoder

        def as_json(value: Any, connection: Any) -> Any:
            if value is None:
                return None  # SQL NULL, as JSONField.get_db_prep_save gives it
            if type(value) in (dict, list):
                if encoder is None and type(connection.ops).adapt_json_value is _BASE_ADAPT_JSON:
                    # What the base adapt_json_value does, with the standard library's cached encoder.
                    return json.dumps(value) if value else ("{}" if type(value) is dict else "[]")
                return connection.ops.adapt_json_value(value, encoder)
            return slow(value, connection)
        return needs_pre_save, as_json
    if kind == "DateTimeField":
        utc = datetime.UTC

        def when(value: Any, connection: Any) -> Any:
            if value is None:
                return None
            if type(value) is datetime.datetime and value.tzinfo is utc:
                # What the backends' adapt_datetimefield_value give an aware UTC time.
                if connection.vendor == "postgresql":
                    return value
                if connection.vendor == "sqlite" and connection.timezone is utc:
                    return str(value.replace(tzinfo=None))
            return slow(value, connection)
        return needs_pre_save, when
    if kind == "ForeignKey" and field.target_field.get_internal_type() in ("AutoField", "BigAutoField"):
        # A saved user's id: an int the backend takes as it is (MySQL alone refuses 0 as an id).
        return needs_pre_save, lambda value, connection: value if type(value) is int and value > 0 else slow(
            value, connection)
    return needs_pre_save, slow


class InsertPlan:
    """The prepared INSERT of one job class on one database vendor (built once, used for every job)."""

    def __init__(self, cls: type[Model], vendor: str, quote: Callable[[str], str]) -> None:
        self.fields = [f for f in cls._meta.concrete_fields if not f.primary_key]
        self.attnames = [f.attname for f in self.fields]
        preparers = [_field_preparer(f) for f in self.fields]
        #: Fields whose pre_save() does something (auto_now dates): None when no field needs it.
        self.pre_save = [f for f, (needs, _) in zip(self.fields, preparers, strict=True) if needs] or None
        self.preparers = [prep for _, prep in preparers]
        self.vendor = vendor
        self.table = quote(cls._meta.db_table)
        self.pk = quote(cls._meta.pk.column)
        self.columns = [quote(f.column) for f in self.fields]
        self.name_index = self.attnames.index("name")
        marks = ["%s"] * len(self.fields)
        #: One row, the id from the table's own sequence (no {id} to expand).
        self.plain = (f"INSERT INTO {self.table} ({', '.join(self.columns)}) VALUES ({', '.join(marks)}) "
                      f"RETURNING {self.pk}")
        #: One row whose name holds {id}: the id is drawn first, in the same statement, so the name is
        #: written once, already expanded (one statement per job, no UPDATE after the INSERT). None on a
        #: database where this is not written out: there the name is updated after the INSERT.
        self.named: str | None = None
        next_id = self._next_id_sql(cls)
        if next_id is not None:
            named_marks = list(marks)
            named_marks[self.name_index] = "replace(%s, '" + ID_MARK + "', CAST((SELECT id FROM n) AS TEXT))"
            self.named = (f"WITH n AS {next_id} INSERT INTO {self.table} ({self.pk}, {', '.join(self.columns)}) "
                          f"VALUES ((SELECT id FROM n), {', '.join(named_marks)}) RETURNING {self.pk}")
        #: The same statements in SQLite's own "?" marks (None elsewhere): Django's SQLite cursor rewrites
        #: every statement's "%s" marks on each execute, about 15 us for these long ones; _insert_cursor()
        #: gives a cursor that runs them as written.
        self.qmark_plain = self.qmark_named = None
        #: PostgreSQL with psycopg 3: the cursor class that binds parameters on the server (else None).
        self.server_binding: Any = None
        if vendor == "postgresql" and _is_psycopg3():
            from django.db.backends.postgresql.base import ServerBindingCursor  # type: ignore[attr-defined]

            self.server_binding = ServerBindingCursor
        if vendor == "sqlite":
            self.qmark_plain = _qmarks(self.plain, len(self.fields))
            self.qmark_named = None if self.named is None else _qmarks(self.named, len(self.fields))

    def _next_id_sql(self, cls: type[Model]) -> str | None:
        table = cls._meta.db_table
        column = cls._meta.pk.column
        if self.vendor == "postgresql":
            # MATERIALIZED: nextval() runs once, both uses read the same id.
            return f"MATERIALIZED (SELECT nextval(pg_get_serial_sequence('{self.table}', '{column}')) AS id)"
        if self.vendor == "sqlite":
            # AUTOINCREMENT's own rule: one more than the largest id ever used (sqlite_sequence) or present.
            # The INSERT holds the write lock from its start, so no other writer gets in between.
            return (f"(SELECT max(coalesce((SELECT seq FROM sqlite_sequence WHERE name = '{table}'), 0), "
                    f"coalesce((SELECT max({self.pk}) FROM {self.table}), 0)) + 1 AS id)")
        return None

    def params(self, job: Model, connection: Any, preparers: list[Preparer] | None = None) -> list[Any]:
        """Return the INSERT's parameters for `job`: each field's value as its own field prepares it."""
        if self.pre_save is not None:
            for field in self.pre_save:
                job.__dict__[field.attname] = field.pre_save(job, True)
        state = job.__dict__
        return [prep(state[attname], connection)
                for attname, prep in zip(self.attnames, preparers or self.preparers, strict=True)]

    @functools.cached_property
    def copy_preparers(self) -> list[Preparer]:
        """The preparers for COPY ... FROM STDIN, where a JSON column reads JSON text (as the driver's
        adapter would write it): dumped here with the standard library's cached encoder."""
        found = list(self.preparers)
        for index, field in enumerate(self.fields):
            slow = self.preparers[index]
            if field.get_internal_type() == "JSONField" and getattr(field, "encoder", None) is None:
                def as_text(value: Any, connection: Any, slow: Preparer = slow) -> Any:
                    if type(value) in (dict, list):
                        return json.dumps(value) if value else ("{}" if type(value) is dict else "[]")
                    return slow(value, connection)
                found[index] = as_text
            elif field.get_internal_type() == "DateTimeField":
                # An aware datetime is what get_db_prep_save gives PostgreSQL's adapter (the only COPY user).
                def as_time(value: Any, connection: Any, slow: Preparer = slow) -> Any:
                    if value is None or (type(value) is datetime.datetime and value.tzinfo is not None):
                        return value
                    return slow(value, connection)
                found[index] = as_time
            elif "IntegerField" in field.get_internal_type():
                # COPY writes an int as its digits: no typed wrapper for server-side binding needed.
                def as_int(value: Any, connection: Any, slow: Preparer = slow) -> Any:
                    return value if value is None or type(value) is int else slow(value, connection)
                found[index] = as_int
        return found


def _qmarks(sql: str, count: int) -> str:
    """Return `sql` with its `count` "%s" marks written as SQLite's "?"."""
    parts = sql.split("%s")
    if len(parts) != count + 1 or "%" in "".join(parts) or "?" in sql:
        raise ValueError(f"expected {count} plain %s marks in {sql[:80]!r}...")
    return "?".join(parts)


def _insert_cursor(connection: Any, plan: InsertPlan) -> tuple[Any, bool]:
    """Return (a Django cursor for a job's INSERT, whether it takes the plan's "?" statements).

    SQLite: a plain sqlite3 cursor, handed SQL already in its own "?" marks (Django's SQLite cursor
    rewrites every statement's marks on each execute). PostgreSQL with psycopg 3: a cursor that binds
    the parameters on the server (Django's default cursor quotes each of the 27 values into the SQL text
    in Python, about 30 us of a job's 200 us of CPU); statements are prepared only if OPTIONS'
    prepare_threshold asks for it, as with Django's own cursors. Either is wrapped as connection.cursor()
    wraps its own (execute wrappers, thread checks, database errors). Anything else, or a connection that
    logs its queries (the log then shows the values in the SQL, as Django's own cursors send it), gets
    connection.cursor().
    """
    qmarks = plan.qmark_plain is not None
    if connection.queries_logged or not (qmarks or plan.server_binding is not None):
        return connection.cursor(), False
    connection.close_if_health_check_failed()
    connection.ensure_connection()
    with connection.wrap_database_errors:
        raw = connection.connection.cursor() if qmarks else plan.server_binding(connection.connection)
        return connection._prepare_cursor(raw), qmarks


#: Prepared INSERTs by (job class, database vendor, connection alias): per alias, not per connection
#: object, so a process that opens connections in many threads keeps one plan per database.
_insert_plans: dict[tuple[type[Model], str, str], InsertPlan] = {}


def insert_plan(cls: type[Model], connection: Any) -> InsertPlan:
    """Return the prepared INSERT of `cls` on `connection`'s kind of database."""
    key = (cls, connection.vendor, connection.alias)
    plan = _insert_plans.get(key)
    if plan is None:
        plan = _insert_plans[key] = InsertPlan(cls, connection.vendor, connection.ops.quote_name)
    return plan


def insert_many(jobs: Iterable[Job], count: int, using: str) -> list[Job]:
    """INSERT `count` new jobs in bulk, expand `{id}` in their names; return them. Call it in a transaction.

    PostgreSQL: the ids are drawn from the table's sequence first (one query for all), and each job is
    written, its name expanded, by one COPY. Elsewhere: multi-row INSERTs (ids come back in order), then
    one prepared UPDATE per expanded name. An exception from `jobs` leaves the transaction to roll back.
    """
    connection = connections[using]
    plan = insert_plan(Job, connection)
    if connection.vendor == "postgresql" and _is_psycopg3():
        saved = _copy_many(jobs, count, plan, connection)
    else:
        saved = list(jobs)
        if saved:
            _insert_rows(saved, plan, connection)
    for job in saved:
        job._state.adding = False
        job._state.db = using
    return saved


def _is_psycopg3() -> bool:
    from django.db.backends.postgresql.psycopg_any import is_psycopg3  # type: ignore[import-untyped]

    return bool(is_psycopg3)


def _copy_many(jobs: Iterable[Job], count: int, plan: InsertPlan, connection: Any) -> list[Job]:
    saved: list[Job] = []
    if count <= 0:
        return saved
    column = Job._meta.pk.column
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT nextval(pg_get_serial_sequence('{plan.table}', '{column}')) "
                       "FROM generate_series(1, %s)", [count])
        ids = sorted(pk for (pk,) in cursor.fetchall())
        attname = Job._meta.pk.attname
        copy_sql = f"COPY {plan.table} ({plan.pk}, {', '.join(plan.columns)}) FROM STDIN"
        params, preparers = plan.params, plan.copy_preparers
        with cursor.cursor.copy(copy_sql) as copy:
            write = copy.write_row
            for job, pk in zip(jobs, ids, strict=True):
                state = job.__dict__
                state[attname] = pk
                if ID_MARK in state["name"]:
                    state["name"] = state["name"].replace(ID_MARK, str(pk))
                write([pk, *params(job, connection, preparers)])
                saved.append(job)
    return saved


def _insert_rows(jobs: list[Job], plan: InsertPlan, connection: Any) -> None:
    head, _, tail = plan.plain.partition(" VALUES ")
    row, _, returning = tail.partition(" RETURNING ")
    batch = max(1, connection.ops.bulk_batch_size(plan.fields, jobs))
    renamed: list[tuple[str, int]] = []
    with connection.cursor() as cursor:
        for start in range(0, len(jobs), batch):
            chunk = jobs[start:start + batch]
            values = [value for job in chunk for value in plan.params(job, connection)]
            cursor.execute(f"{head} VALUES {', '.join([row] * len(chunk))} RETURNING {returning}", values)
            for job, (pk,) in zip(chunk, cursor.fetchall(), strict=True):
                job.pk = pk
                if ID_MARK in job.name:
                    job.__dict__["name"] = job.name.replace(ID_MARK, str(pk))
                    renamed.append((job.name, pk))
        if renamed:
            cursor.executemany(_RENAME_SQL, renamed)


class SelectPlan:
    """The prepared SELECT of one job by id (get_job's query), and the converters of its columns."""

    def __init__(self, cls: type[Model], connection: Any) -> None:
        quote = connection.ops.quote_name
        table = cls._meta.db_table
        fields = cls._meta.concrete_fields
        self.attnames = _attnames(cls)
        head = (f"SELECT {', '.join(f'{quote(table)}.{quote(f.column)}' for f in fields)} FROM {quote(table)} "
                f"WHERE {quote(table)}.{quote(cls._meta.pk.column)} = %s AND {quote(table)}.{quote('label')} = %s")
        self.by_id = head
        user_column = cls._meta.get_field("user").column  # type: ignore[union-attr]
        self.by_user = f"{head} AND {quote(table)}.{quote(user_column)} = %s"
        # What the ORM's compiler would apply to each column (dates on SQLite, JSON, ...).
        self.converters: list[tuple[int, list[Any], Any]] = []
        for index, field in enumerate(fields):
            column = field.get_col(table)
            found = connection.ops.get_db_converters(column) + column.get_db_converters(connection)
            if found:
                self.converters.append((index, found, column))

    def job(self, cls: type[Job], row: Any, connection: Any, using: str) -> Job:
        """Build the job of a fetched row, its values converted as the ORM converts them."""
        if self.converters:
            values = list(row)
            for index, converters, column in self.converters:
                value = values[index]
                for converter in converters:
                    value = converter(value, column, connection)
                values[index] = value
            row = values
        return cls.from_db(using, self.attnames, row)


#: By (vendor, connection alias): the converters depend only on the database's settings, not on the
#: connection object, so a process that opens connections in many threads keeps one plan per database.
_select_plans: dict[tuple[str, str], SelectPlan] = {}


def fetch_job(pk: int, label: str, user_id: Any = None) -> Job | None:
    """Return job `pk` of app `label` (and of user `user_id` unless None) in one prepared query, or None.

    What `Job.objects.filter(pk=pk, label=label[, user_id=user_id]).first()` returns, without the ORM
    building and compiling the query on every call (get_job is called per request).
    """
    using = router.db_for_read(Job)
    connection = connections[using]
    key = (connection.vendor, using)
    plan = _select_plans.get(key)
    if plan is None:
        plan = _select_plans[key] = SelectPlan(Job, connection)
    with connection.cursor() as cursor:
        if user_id is None:
            cursor.execute(plan.by_id, [pk, label])
        else:
            cursor.execute(plan.by_user, [pk, label, user_id])
        row = cursor.fetchone()
    return None if row is None else plan.job(Job, row, connection, using)


class SpecField:
    """A type-specific job setting stored in the job's JSON `spec` column."""

    def __init__(
        self,
        default: Any = None,
        *,
        coerce: Callable[[Any], Any] | None = None,
        schema: Mapping[str, Any] | None = None,
        description: str = "",
    ) -> None:
        self.default = default
        self.coerce = coerce
        #: The JSON Schema of the setting's value (the REST API validates and documents with it);
        #: None: inferred from the default's type. Plain data, so models import no schema library.
        self.schema = schema
        #: One line for the API's schema and its interactive page.
        self.description = description
        self.name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, job: Job | None, owner: type) -> Any:
        if job is None:
            return self
        if self.name in job.spec:
            return job.spec[self.name]
        default = self.default() if callable(self.default) else self.default
        if isinstance(default, (dict, list)):
            job.spec[self.name] = default  # so in-place edits are saved
        return default

    def __set__(self, job: Job, value: Any) -> None:
        if self.coerce is not None and value is not None:
            value = self.coerce(value)
        check_json(value, f"{type(job).__name__}.{self.name}")
        job.spec[self.name] = value


@functools.cache
def _attnames(cls: type[Model]) -> tuple[str, ...]:
    return tuple(f.attname for f in cls._meta.concrete_fields)


class _Construction:
    """How Job.new() fills a new job of one class: each field's default, the user model."""

    def __init__(self, cls: type[Model]) -> None:
        user_field = cls._meta.get_field("user")
        self.user_model: Any = user_field.related_model
        #: Defaults that are the same immutable value for every job ("", 0, None, "PEN"), by attname.
        self.constants: dict[str, Any] = {}
        #: The others (dict(), timezone.now): (attname, Field._get_default, what Field.get_default() calls).
        self.factories: list[tuple[str, Callable[[], Any]]] = []
        names = []
        for field in cls._meta.concrete_fields:
            if field is user_field:
                continue
            names.append(field.name)
            value = field.get_default()
            if not (field.has_default() and callable(field.default)) and type(value) in _IMMUTABLE:
                self.constants[field.attname] = value
            else:
                self.factories.append((field.attname, field._get_default))  # type: ignore[attr-defined]
        self.names = frozenset(names)


_IMMUTABLE = (str, int, float, bool, type(None))


@functools.cache
def _construction(cls: type[Model]) -> _Construction:
    return _Construction(cls)


@functools.cache
def spec_fields(cls: type) -> dict[str, SpecField]:
    """Return the SpecFields a job class declares, its parents' included."""
    found: dict[str, SpecField] = {}
    for klass in reversed(cls.__mro__):
        for key, value in vars(klass).items():
            if isinstance(value, SpecField):
                found[key] = value
    return found


class JobQuerySet(models.QuerySet["Job"]):
    """Jobs; delete() stops the active ones and removes each one's own folder, as Job.delete() does."""

    def delete(self) -> tuple[int, dict[str, int]]:
        """Stop the active jobs on their engines, then delete them and (on commit) their own folders."""
        from jobtower import manager

        if self.query.is_sliced:
            raise TypeError("Cannot use 'limit' or 'offset' with delete().")
        return manager.delete_many(self)

    delete.alters_data = True  # type: ignore[attr-defined]
    delete.queryset_only = True  # type: ignore[attr-defined]


class Job(models.Model):
    """A job of any type; `get_job` and `list_jobs` return it as its own type's class."""

    objects = JobQuerySet.as_manager()

    #: The registered type name; each proxy class sets its own.
    job_type_name = ""
    #: Dotted path "module:Class" of the engine backend; None for jobs the app drives itself.
    backend_path: str | None = None

    job_type = models.CharField(max_length=32, editable=False)
    label = models.CharField(max_length=255, editable=False, help_text="package of the app")
    name = models.CharField(max_length=1024)
    description = models.TextField(blank=True, default="")
    # No index of its own: the (user, id) index serves every lookup by user, and one index less is one
    # page less to write per new job.
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="jobtower_jobs", db_index=False
    )
    groups = models.ManyToManyField("auth.Group", blank=True, related_name="jobtower_jobs")
    workspace = models.CharField(max_length=1024, blank=True, default="")
    extended_properties = models.JSONField(default=dict, blank=True)
    spec = models.JSONField(default=dict, blank=True, help_text="type-specific settings")
    engine_data = models.JSONField(default=dict, blank=True, help_text="what the engine returned")
    _status = models.CharField(
        max_length=3, choices=statuses.CHOICES, default=Status.PENDING.value, db_column="status"
    )
    status_message = models.TextField(blank=True, default="")
    _process_results_function = models.CharField(
        max_length=255, blank=True, default="", db_column="process_results_function"
    )
    attempt = models.PositiveIntegerField(default=1)
    creation_time = models.DateTimeField(default=timezone.now, editable=False)
    execute_time = models.DateTimeField(null=True, blank=True)
    start_time = models.DateTimeField(null=True, blank=True)
    completion_time = models.DateTimeField(null=True, blank=True)
    last_status_check = models.DateTimeField(null=True, blank=True)
    # Set while the job's engine does not answer: the status shown is the last one it gave.
    stale_since = models.DateTimeField(null=True, blank=True)
    # Set by the status callback; the monitor re-checks flagged jobs at once (a burst costs one check).
    check_requested = models.DateTimeField(null=True, blank=True)
    progress = models.FloatField(null=True, blank=True, help_text="percent done, as the job reports it")
    progress_message = models.CharField(max_length=255, blank=True, default="")
    result = models.JSONField(null=True, blank=True, help_text="what the job returned (JSON)")
    # The results step (fetch outputs, run process_results_function) of a Results-Ready job is
    # claimed work: who runs it sets the claim time; a claim older than RESULTS_CLAIM_TIMEOUT is taken
    # over (its process died), and RESULTS_MAX_TRIES bounds the starts.
    results_claimed_at = models.DateTimeField(null=True, blank=True)
    results_tries = models.PositiveSmallIntegerField(default=0)
    #: The status the job ends in once its results are processed (Complete or Various-Complete).
    results_status = models.CharField(max_length=3, blank=True, default="", choices=statuses.CHOICES)

    class Meta:
        app_label = "jobtower"
        ordering = ["id"]
        indexes = [
            models.Index(
                fields=["check_requested"], name="jobtower_check_requested",
                condition=models.Q(check_requested__isnull=False),
            ),
            # list_jobs(user=...) of one app, first page by id: one index range scan.
            models.Index(fields=["label", "user", "id"], name="jobtower_label_user_id"),
            models.Index(fields=["label", "id"], name="jobtower_label_id"),
            # a user's jobs of every app, newest first (the site's Jobs Table, the REST API).
            models.Index(fields=["user", "id"], name="jobtower_user_id"),
            # the monitor's "every active job" query, and a LOCAL worker's claim of the oldest Submitted
            # jobs: in id order, it reads only the rows it claims (by "id" alone it would step over every
            # job that ended since the oldest queued one).
            models.Index(fields=["_status", "id"], name="jobtower_status_id"),
        ]
        permissions = [("jobs_table_actions", "Can run actions on any job in a Jobs Table")]

    # -- construction and the read-only guard ---------------------------------------------------

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        options = {}
        if kwargs:
            fields = spec_fields(type(self))
            for key in list(kwargs):
                if key in fields:
                    options[key] = kwargs.pop(key)
            pending_groups = kwargs.pop("groups", None)
        else:
            pending_groups = None
        super().__init__(*args, **kwargs)
        if not self.job_type and self.job_type_name:
            self.job_type = self.job_type_name
        for key, value in options.items():
            setattr(self, key, value)
        self.__dict__["_pending_groups"] = pending_groups
        self.__dict__["_sealed"] = True

    @classmethod
    def new(cls, user: Any, fields: Mapping[str, Any], options: Mapping[str, Any], groups: list[Any]) -> Job:
        """Return a new, unsaved job: what `cls(user=user, groups=groups, **fields, **options)` returns.

        `fields` are model fields by name, `options` the type's settings and properties (set one by
        one, as the constructor sets them). Creating jobs is a hot path: this fills the instance from a
        plan built once per class instead of Model.__init__'s per-field work, whenever nothing needs that
        work (no pre_init/post_init receiver, a user of the user model, only known fields).
        """
        plan = _construction(cls)
        if (
            signals.pre_init.has_listeners(cls)
            or signals.post_init.has_listeners(cls)
            or not isinstance(user, plan.user_model)
            or not plan.names.issuperset(fields)
        ):
            return cls(user=user, groups=groups, **fields, **options)  # type: ignore[misc]
        job = Model.__new__(cls)
        job._state = state = ModelState()
        values = job.__dict__
        values.update(plan.constants)
        for attname, default in plan.factories:
            values[attname] = default()
        values.update(fields)  # model fields by name: their attnames are the same (the user is apart)
        if "extended_properties" in fields:
            check_json(values["extended_properties"], "extended_properties")
        values["user_id"] = user.pk
        state.fields_cache["user"] = user
        state.db = router.db_for_write(cls, instance=user)
        if not values["job_type"]:
            values["job_type"] = cls.job_type_name
        for key, value in options.items():
            setattr(job, key, value)
        values["_pending_groups"] = groups
        values["_sealed"] = True
        return job

    def __setattr__(self, name: str, value: Any) -> None:
        if name in READ_ONLY and self.__dict__.get("_sealed") and not self._same_user(name, value):
            raise AttributeError(f"{type(self).__name__}.{name} is read-only: {READ_ONLY[name]}")
        if name == "extended_properties":
            check_json(value, "extended_properties")
        super().__setattr__(name, value)

    def _same_user(self, name: str, value: Any) -> bool:
        # A related manager's query (user.jobtower_jobs.all()) caches the owner it was asked from on
        # each job: allowed, since it changes nothing.
        owner = self.__dict__.get("user_id")
        return name == "user" and owner is not None and getattr(value, "pk", None) == owner

    @classmethod
    def from_db(cls, db: str | None, field_names: Any, values: Any, **kwargs: Any) -> Job:
        """Build the job as the class of its own type (a proxy of Job, so no join is needed).

        Lists build many jobs: a full row is put straight into the instance (as Model.__init__
        would, without its per-field setattr); partial rows take Django's usual path. `kwargs` are
        what newer Django versions pass along (Django 6.1's fetch_mode), kept as Django keeps them.
        """
        attnames = _attnames(cls)
        if len(values) == len(attnames) and tuple(field_names) == attnames:
            state = dict(zip(attnames, values, strict=True))
            klass = class_for_stored(state["job_type"])
            if klass is None or not issubclass(klass, cls):
                klass = cls
            job = Model.__new__(klass)
            job._state = ModelState()
            job._state.adding = False
            job._state.db = db
            if kwargs.get("fetch_mode") is not None:
                job._state.fetch_mode = kwargs["fetch_mode"]  # type: ignore[attr-defined]  # Django 6.1+
            state["_pending_groups"] = None
            state["_sealed"] = True
            job.__dict__.update(state)
            if signals.post_init.has_listeners(klass):
                signals.post_init.send(sender=klass, instance=job)
            return job
        job = super().from_db(db, field_names, values, **kwargs)
        klass = class_for_stored(job.__dict__.get("job_type", ""))
        if klass is not None and klass is not cls and issubclass(klass, cls):
            job.__class__ = klass
        return job

    def refresh_from_db(self, *args: Any, **kwargs: Any) -> None:
        """Reload the job's fields from the database."""
        self.__dict__["_sealed"] = False
        try:
            super().refresh_from_db(*args, **kwargs)
        finally:
            self.__dict__["_sealed"] = True

    def _set(self, **values: Any) -> None:
        """Set manager-owned attributes on this object (the database was written already)."""
        self.__dict__.update(values)

    # -- saving -----------------------------------------------------------------------------------

    def save(self, *args: Any, **kwargs: Any) -> None:
        """Save what the app configured; status and times are only ever written by the manager."""
        check_json(self.extended_properties, "extended_properties")
        check_json(self.spec, f"{type(self).__name__} settings")
        if not self.job_type:
            raise ValueError(
                "a job needs a job type: create it with job_manager.create_job(job_type=...)"
            )
        if self.pk is None or self._state.adding:
            self._insert(kwargs.get("using") or router.db_for_write(type(self), instance=self))
            return
        if not kwargs.get("update_fields") and not (args and len(args) >= 4):
            kwargs["update_fields"] = APP_FIELDS
        super().save(*args, **kwargs)

    def _insert(self, using: str) -> None:
        """INSERT the new job with prepared SQL: one statement, `{id}` in the name expanded by it.

        Creating jobs is the hot path of an app that launches thousands of runs: the SQL is built
        once per class instead of by the ORM's compiler per job, and no transaction is opened around
        a single statement (as Django's own save() of a model without parents): in autocommit mode a
        job costs one statement and its commit. Field values are prepared as each field's own
        get_db_prep_save prepares them; pre_save/post_save are sent, so models behave as usual.
        """
        cls = type(self)
        connection = connections[using]
        plan = insert_plan(cls, connection)
        if signals.pre_save.has_listeners(cls):
            signals.pre_save.send(sender=cls, instance=self, raw=False, using=using, update_fields=None)
        params = plan.params(self, connection)
        name = self.name
        expand = ID_MARK in name
        groups = self.__dict__.pop("_pending_groups", None)
        # Several statements (the group links, or a rename where the INSERT cannot expand {id})
        # commit together; one statement is atomic by itself.
        if groups or (expand and plan.named is None):
            with transaction.atomic(using=using, savepoint=False):
                self._insert_row(connection, plan, params, name, expand)
                if groups:
                    self.groups.set(groups)
        else:
            try:
                self._insert_row(connection, plan, params, name, expand)
            except Exception:
                # As Django's save() does (mark_for_rollback_on_error): an enclosing atomic block
                # must roll back, its transaction is broken on PostgreSQL.
                if connection.in_atomic_block:
                    connection.needs_rollback = True
                raise
        if signals.post_save.has_listeners(cls):
            signals.post_save.send(sender=cls, instance=self, created=True, update_fields=None, raw=False,
                                   using=using)

    def _insert_row(self, connection: Any, plan: InsertPlan, params: list[Any], name: str, expand: bool) -> None:
        cursor, qmarks = _insert_cursor(connection, plan)
        if qmarks:
            statement = plan.qmark_named if expand and plan.qmark_named is not None else plan.qmark_plain
        else:
            statement = plan.named if expand and plan.named is not None else plan.plain
        with cursor:
            cursor.execute(statement, params)
            pk = cursor.fetchone()[0]
            if expand:
                name = name.replace(ID_MARK, str(pk))
                if plan.named is None:
                    cursor.execute(_RENAME_SQL, [name, pk])
        state = self.__dict__
        state["id"] = pk
        state["name"] = name
        self._state.adding = False
        self._state.db = connection.alias

    # -- status -----------------------------------------------------------------------------------

    @property
    def status(self) -> str:
        """Return the status display string, asking the engine at most once per interval."""
        from jobtower import manager

        manager.refresh_if_due(self)
        return Status(self._status).display

    @status.setter
    def status(self, value: str | Status) -> None:
        from jobtower import manager

        manager.transition(self, statuses.parse_status(value), source="app")
        manager.settle(self)  # a results step is run here when no monitor runs

    @property
    def status_code(self) -> Status:
        """Return the stored status as a Status, without asking the engine."""
        return Status(self._status)

    def update_status(self, status: str | Status | None = None, message: str = "") -> bool:
        """Move to `status` (with `message`), or with no status ask the engine now; True if it moved."""
        from jobtower import manager

        if status is None:
            return manager.refresh(self, force=True)
        moved = manager.transition(self, statuses.parse_status(status), source="app", message=message)
        manager.settle(self)
        return moved

    def history(self) -> models.QuerySet[JobEvent]:
        """Return the job's status moves, oldest first."""
        return self.events.order_by("id")

    @property
    def run_time(self) -> datetime.timedelta | str:
        """Return how long the job ran (so far), or "" when it has not started."""
        start = self.start_time
        if start is None:
            return ""
        end = self.completion_time or timezone.now()
        return end - start

    # -- results ----------------------------------------------------------------------------------

    @property
    def process_results_function(self) -> Callable[[Job], Any] | None:
        """Return the function run once when the job's results are ready, or None."""
        path = self._process_results_function
        return resolve_function(path) if path else None

    @process_results_function.setter
    def process_results_function(self, value: Callable[..., Any] | str | None) -> None:
        self._process_results_function = function_path(value) if value else ""

    # -- files ------------------------------------------------------------------------------------

    @property
    def folder(self) -> Path:
        """Return the job's own folder inside its workspace (created by ensure_folder())."""
        if self.pk is None:
            raise ValueError("an unsaved job has no folder yet: save() it first")
        return Path(self.workspace) / f"job_{self.pk}"

    def ensure_folder(self) -> Path:
        """Create the job's own folder if needed and return it."""
        folder = self.folder
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def _remove_folder(self, folder: Path) -> None:
        # Only the job's own folder: never the workspace, never through a symlink.
        if folder.is_symlink():
            folder.unlink()
            return
        # Renamed first, so the folder is gone at once: a job just stopped may still write into it
        # (its supervisor records the exit), which would otherwise race the removal. What it writes
        # into its current directory lands in the renamed folder, hence a few tries.
        tomb = folder.with_name(f".{folder.name}.deleted-{uuid.uuid4().hex[:8]}")
        try:
            folder.rename(tomb)
        except FileNotFoundError:
            return
        for _ in range(20):
            shutil.rmtree(tomb, ignore_errors=True)
            if not tomb.exists():
                return
            time.sleep(0.05)
        log.warning("could not remove all of %s (the folder of deleted job %s)", tomb, self.pk)

    # -- engine -----------------------------------------------------------------------------------

    def clean_spec(self) -> None:
        """Check the job type's settings before execute(); raise ValueError naming what is wrong."""

    def get_backend(self) -> Backend | None:
        """Return the engine backend that runs this job type, or None when the app drives it."""
        from jobtower.backends import backend_for

        return backend_for(type(self))

    def execute(self, *args: Any, **kwargs: Any) -> None:
        """Save the job and hand it to its engine, exactly once (Pending -> Submitted)."""
        from jobtower import manager

        manager.execute(self)

    def stop(self) -> None:
        """Stop the job on its engine -> Aborted."""
        from jobtower import manager

        manager.stop(self)

    def pause(self) -> None:
        """Hold the job -> Paused."""
        from jobtower import manager

        manager.pause(self)

    def resume(self) -> None:
        """Release a paused job so it runs again."""
        from jobtower import manager

        manager.resume(self)

    def resubmit(self) -> None:
        """Run the job again as a new attempt (stopping it first if it is active)."""
        from jobtower import manager

        manager.resubmit(self)

    def get_logs(self) -> dict[str, Any]:
        """Return the job's logs by name (stdout, stderr, engine logs); {} when there are none."""
        from jobtower.backends import Capability

        backend = self.get_backend()
        return backend.logs(self) if backend is not None and backend.can(Capability.LOGS) else {}

    def delete(self, *args: Any, force: bool = False, **kwargs: Any) -> tuple[int, dict[str, int]]:
        """Stop the job if active, then delete its record and its own folder (nothing else)."""
        from jobtower import manager

        return manager.delete(self, force=force, using=kwargs.get("using"))

    def __str__(self) -> str:
        return f"{self.job_type} job {self.pk}: {self.name}"


class Worker(models.Model):
    """A running worker or monitor process, known by its heartbeat."""

    name = models.CharField(max_length=255, unique=True)
    kind = models.CharField(max_length=16, help_text="worker or monitor")
    host = models.CharField(max_length=255)
    pid = models.IntegerField()
    started = models.DateTimeField(default=timezone.now)
    heartbeat = models.DateTimeField(default=timezone.now)
    capacity = models.PositiveIntegerField(default=0)
    running = models.PositiveIntegerField(default=0)

    class Meta:
        app_label = "jobtower"
        ordering = ["kind", "name"]

    def __str__(self) -> str:
        return f"{self.kind} {self.name}"


class JobEvent(models.Model):
    """One status move of a job: the job's history, appended by the manager only."""

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="events")
    attempt = models.PositiveIntegerField(default=1)
    from_status = models.CharField(max_length=3, choices=statuses.CHOICES)
    to_status = models.CharField(max_length=3, choices=statuses.CHOICES)
    time = models.DateTimeField(default=timezone.now)
    source = models.CharField(max_length=32, help_text="who moved it: execute, app, engine, ...")
    message = models.TextField(blank=True, default="")

    class Meta:
        app_label = "jobtower"
        ordering = ["id"]

    def __str__(self) -> str:
        return (
            f"job {self.job_id}: {Status(self.from_status).display} -> "
            f"{Status(self.to_status).display} ({self.source})"
        )
