"""The job record: one table for every job type, and the table of its status history."""

from __future__ import annotations

import datetime
import functools
import logging
import shutil
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import connections, models, router, transaction
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


@functools.cache
def _insert_statement_for(cls: type[Model], vendor: str, quote: Callable[[str], str]) -> tuple[list[Any], str]:
    fields = [f for f in cls._meta.concrete_fields if not f.primary_key]
    columns = ", ".join(quote(f.column) for f in fields)
    marks = ", ".join(["%s"] * len(fields))
    pk = quote(cls._meta.pk.column)
    return fields, f"INSERT INTO {quote(cls._meta.db_table)} ({columns}) VALUES ({marks}) RETURNING {pk}"


def _insert_statement(cls: type[Model], connection: Any) -> tuple[list[Any], str]:
    return _insert_statement_for(cls, connection.vendor, connection.ops.quote_name)


def insert_many(jobs: list[Job], using: str) -> None:
    """INSERT new jobs with multi-row statements (ids come back in order), then expand `{id}` names.

    Django's bulk_create() spends most of its time compiling SQL per batch; the statement here is built
    from the same prepared field list as a single job's INSERT. Call it inside a transaction.
    """
    connection = connections[using]
    fields, single = _insert_statement(Job, connection)
    head, _, tail = single.partition(" VALUES ")
    row, _, returning = tail.partition(" RETURNING ")
    batch = max(1, connection.ops.bulk_batch_size(fields, jobs))
    renamed: list[tuple[str, int]] = []
    with connection.cursor() as cursor:
        for start in range(0, len(jobs), batch):
            chunk = jobs[start:start + batch]
            params = [f.get_db_prep_save(f.pre_save(job, True), connection) for job in chunk for f in fields]
            cursor.execute(f"{head} VALUES {', '.join([row] * len(chunk))} RETURNING {returning}", params)
            for job, (pk,) in zip(chunk, cursor.fetchall(), strict=True):
                job.pk = pk
                job._state.adding = False
                job._state.db = using
                if "{id}" in job.name:
                    job.name = job.name.replace("{id}", str(pk))
                    renamed.append((job.name, pk))
        if renamed:
            cursor.executemany(_RENAME_SQL, renamed)


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
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="jobtower_jobs"
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
            # the monitor's "every active job" query.
            models.Index(fields=["_status"], name="jobtower_status"),
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
        """INSERT the new job (and expand {id}) in one transaction, with prepared SQL.

        Creating jobs is the hot path of an app that launches thousands of runs: the SQL is built
        once per class instead of by the ORM's compiler per job. Field values are prepared by each
        field's own get_db_prep_save, and pre_save/post_save are sent, so models behave as usual.
        """
        cls = type(self)
        connection = connections[using]
        fields, sql = _insert_statement(cls, connection)
        signals.pre_save.send(sender=cls, instance=self, raw=False, using=using, update_fields=None)
        params = [f.get_db_prep_save(f.pre_save(self, True), connection) for f in fields]
        with transaction.atomic(using=using):
            with connection.cursor() as cursor:
                cursor.execute(sql, params)
                self.pk = cursor.fetchone()[0]
                if "{id}" in self.name:
                    # The id exists only after the INSERT; expand it for every job type.
                    self.name = self.name.replace("{id}", str(self.pk))
                    cursor.execute(_RENAME_SQL, [self.name, self.pk])
            self._state.adding = False
            self._state.db = using
            groups = self.__dict__.pop("_pending_groups", None)
            if groups:
                self.groups.set(groups)
            signals.post_save.send(sender=cls, instance=self, created=True, update_fields=None, raw=False, using=using)

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
