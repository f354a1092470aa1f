"""The JobManager: creates, finds and drives jobs; `transition()` is the only writer of job status."""

from __future__ import annotations

import contextlib
import contextvars
import datetime
import functools
import gc
import json
import logging
import math
import os
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from django.core import signing
from django.db import DatabaseError, connection, models, router, transaction
from django.db.models import F, Q
from django.urls import reverse
from django.utils import timezone

from jobtower import conf, outbox, statuses
from jobtower.backends.base import Backend, Capability, Observation, PollResult
from jobtower.db import database_busy
from jobtower.errors import AlreadyExecuted, InvalidTransition, NotSupported, StopError, SubmitError
from jobtower.models import Job, JobEvent
from jobtower.models.job import fetch_job, insert_many, spec_fields
from jobtower.registry import job_class
from jobtower.signals import job_status_changed
from jobtower.statuses import Status

if TYPE_CHECKING:
    from django.http import HttpRequest

    from jobtower.appbase import AppBase

log = logging.getLogger("jobtower")


class AppLike(Protocol):
    """What a JobManager needs of an app: its package name (every job's `label`)."""

    package: str

#: Settings every job type accepts in create_job(); each type adds its own SpecFields.
COMMON_OPTIONS = frozenset({"description", "workspace", "extended_properties", "process_results_function"})
_RACE_RETRIES = 5
#: create_job() options that are model fields (the others are settings or properties).
_FIELD_OPTIONS = ("description", "extended_properties")


class JobManager:
    """Creates and finds the jobs of one app; the Jobs API's entry point (app.get_job_manager())."""

    def __init__(self, app: type[AppBase] | AppBase | AppLike) -> None:
        label = getattr(app, "package", "")
        if not label:
            raise ValueError(f"{app!r} has no `package`: set package = 'my_app' on the app class")
        self.app = app
        self.label = label

    def create_job(
        self,
        name: str,
        user: Any,
        job_type: str | type[Job] | None = None,
        groups: Iterable[Any] | None = None,
        **kwargs: Any,
    ) -> Job:
        """Return a new, unsaved job of `job_type` for `user`; save() or execute() it."""
        if job_type is None:
            raise TypeError("create_job() needs job_type, e.g. job_type='BASIC'")
        cls = job_class(job_type)
        allowed = _allowed_options(cls)
        for key in kwargs:
            if key not in allowed:
                raise TypeError(
                    f"create_job() got an unexpected keyword argument {key!r} for a "
                    f"{cls.job_type_name} job; it accepts: {', '.join(sorted(allowed))}"
                )
        if not name or not isinstance(name, str):
            raise ValueError("create_job() needs a name: a non-empty string such as 'myjob_{id}'")
        if getattr(user, "pk", None) is None or not getattr(user, "is_authenticated", False):
            raise ValueError(
                f"create_job() needs a saved, logged-in user, got {user!r}; "
                "pass request.user from a view behind login_required"
            )
        workspace = kwargs.pop("workspace", None)
        if not workspace:
            from jobtower.appbase import user_workspace

            workspace = user_workspace(self.app, user)
        else:
            workspace = str(workspace)
            if not _plain_absolute(workspace):
                workspace = _absolute(workspace, os.getcwd(), os.environ.get("HOME"))
        fields = {"name": name, "label": self.label, "workspace": workspace}
        for key in _FIELD_OPTIONS:
            if key in kwargs:
                fields[key] = kwargs.pop(key)
        # The groups are set once the job has an id (on its first save).
        return cls.new(user, fields, kwargs, list(groups or ()))

    def create_jobs(self, specs: Iterable[Mapping[str, Any]], *, batch_size: int = 1000) -> list[Job]:
        """Create and save many jobs at once (a parameter sweep): one transaction, bulk INSERTs.

        Each spec holds create_job()'s arguments (name, user, job_type, ...), checked as create_job()
        checks them: one bad spec saves nothing. The jobs come back saved, with their ids, and `{id}`
        in their names expanded. As with Django's bulk_create(), no pre_save/post_save signal is sent.
        """
        from jobtower.appbase import user_workspace

        workspaces: dict[Any, str] = {}  # a sweep's jobs mostly share a user: find its workspace once

        def build(spec: Mapping[str, Any]) -> Job:
            user: Any = spec.get("user")
            key = getattr(user, "pk", None)
            if not spec.get("workspace") and key is not None and getattr(user, "is_authenticated", False):
                if key not in workspaces:
                    workspaces[key] = user_workspace(self.app, user)
                spec = {**spec, "workspace": workspaces[key]}
            # create_job() checks each setting as it is set (JSON, coercion): nothing runs in between.
            return self.create_job(**spec)

        using = router.db_for_write(Job)
        # Every job is built and checked before anything is written: one bad spec saves nothing. (Writing
        # each as it is built measured slower: the COPY's flushes interleaved with building.)
        with _collector_paused():
            built = [build(spec) for spec in specs]
        with transaction.atomic(using=using), _collector_paused():
            jobs = insert_many(built, len(built), using)
            links = [
                Job.groups.through(job_id=job.pk, group_id=getattr(group, "pk", group))
                for job in jobs
                for group in job.__dict__.pop("_pending_groups", None) or ()
            ]
            if links:
                Job.groups.through.objects.bulk_create(links, batch_size=batch_size)
        return jobs

    def list_jobs(
        self,
        user: Any = None,
        groups: Iterable[Any] | None = None,
        order_by: str = "id",
        filters: Mapping[str, Any] | None = None,
    ) -> models.QuerySet[Job]:
        """Return this app's jobs (of `user`, and/or shared with `groups`), each as its own class."""
        jobs = Job.objects.filter(label=self.label)
        groups = list(groups or ())
        if user is not None and groups:
            jobs = jobs.filter(Q(user=user) | Q(groups__in=groups)).distinct()
        elif user is not None:
            jobs = jobs.filter(user=user)
        elif groups:
            jobs = jobs.filter(groups__in=groups).distinct()
        if filters:
            jobs = jobs.filter(**translate_filters(filters))
        return jobs.order_by(_order_field(order_by))

    def get_job(self, job_id: int | str, user: Any = None, filters: Mapping[str, Any] | None = None) -> Job | None:
        """Return this app's job `job_id` as its own class, or None (also when it is not `user`'s)."""
        try:
            pk = int(job_id)
        except (TypeError, ValueError):
            raise ValueError(f"job_id must be an integer, got {job_id!r}") from None
        if not filters and (user is None or (isinstance(user, _user_model()) and type(user.pk) is int)):
            # The common call (by id, maybe of a user): one prepared query, no ORM compilation.
            return fetch_job(pk, self.label, None if user is None else user.pk)
        jobs = Job.objects.filter(label=self.label, pk=pk)
        if user is not None:
            jobs = jobs.filter(user=user)
        if filters:
            jobs = jobs.filter(**translate_filters(filters))
        return jobs.first()

    def get_job_status_callback_url(self, request: HttpRequest, job_id: int) -> str:
        """Return the absolute URL a running job calls to ask for a re-check of its status."""
        return callback_url(request, job_id)


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector while a sweep's jobs are built and written.

    Building thousands of jobs allocates enough objects to start several full collections, each of
    which walks every live object (a quarter of the Python time of create_jobs). Nothing built here is
    a cycle that needs the collector; reference counting frees what is dropped. The collector runs
    again afterwards if it was on.
    """
    was_on = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_on:
            gc.enable()


def _plain_absolute(path: str) -> bool:
    """Return True when `path` is absolute and already as Path(path).absolute() writes it."""
    return (path.startswith("/") and not path.endswith(("/", "/.")) and "//" not in path and "/./" not in path)


@functools.lru_cache(maxsize=256)
def _absolute(workspace: str, cwd: str, home: str | None) -> str:
    """Return `workspace` with ~ expanded, made absolute (remembered per current folder and $HOME)."""
    return str(Path(workspace).expanduser().absolute())


@functools.cache
def _allowed_options(cls: type[Job]) -> frozenset[str]:
    return COMMON_OPTIONS | spec_fields(cls).keys()


def _user_model() -> Any:
    return Job._meta.get_field("user").related_model


# -- reading --------------------------------------------------------------------------------------


def translate_filters(filters: Mapping[str, Any]) -> dict[str, Any]:
    """Map `status` filters (codes or display strings) onto the stored column; pass others through."""
    out: dict[str, Any] = {}
    for key, value in filters.items():
        head, sep, lookup = key.partition("__")
        if head == "status":
            key = "_status" + sep + lookup
            if lookup == "in":
                value = [statuses.parse_status(v).value for v in value]
            elif not lookup or lookup == "exact":
                value = statuses.parse_status(value).value
        out[key] = value
    return out


def _order_field(order_by: str) -> str:
    sign = "-" if order_by.startswith("-") else ""
    field = order_by.lstrip("-")
    return sign + ("_status" if field == "status" else field)


def callback_url(request: HttpRequest, job_id: int) -> str:
    """Return the absolute status-callback URL of a job, signed when tokens are required."""
    url = request.build_absolute_uri(reverse("jobtower:update-job-status", args=[int(job_id)]))
    if conf.get("CALLBACK_REQUIRES_TOKEN"):
        url += f"?token={callback_token(job_id)}"
    return url


def callback_token(job_id: int) -> str:
    """Return the token that lets a job's own process call its status callback."""
    return signing.Signer(salt="jobtower.callback").signature(str(int(job_id)))


def valid_callback_token(job_id: int, token: str) -> bool:
    """Return True when `token` was issued for `job_id` (with the current or a fallback key)."""
    try:
        signing.Signer(salt="jobtower.callback").unsign(f"{int(job_id)}:{token}")
    except signing.BadSignature:
        return False
    return True


# -- fenced writes (the leading monitor) -----------------------------------------------------------


class _Fence:
    """The check that the write transactions of a fenced() block run first; `open` while one runs."""

    __slots__ = ("check", "open")

    def __init__(self, check: Callable[[], None]) -> None:
        self.check = check
        self.open = False


_fence: contextvars.ContextVar[_Fence | None] = contextvars.ContextVar("jobtower_fence", default=None)


@contextlib.contextmanager
def fenced(check: Callable[[], None]) -> Iterator[None]:
    """Make every status write of this thread in the block first run `check()` inside its transaction.

    `check` raises (jobtower.errors.LeaseLost) when this process may no longer write, so the write is
    rolled back and the exception ends the block: the leading monitor's check is that it still holds
    its lease. One check per outermost write transaction; other threads are not fenced.
    """
    token = _fence.set(_Fence(check))
    try:
        yield
    finally:
        _fence.reset(token)


@contextlib.contextmanager
def _writing() -> Iterator[None]:
    """transaction.atomic() that first runs the fence's check when fenced() is in force."""
    fence = _fence.get()
    if fence is None or fence.open:
        with transaction.atomic():
            yield
        return
    with transaction.atomic():
        fence.check()
        fence.open = True
        try:
            yield
        finally:
            fence.open = False


# -- the one writer of status ---------------------------------------------------------------------


def transition(
    job: Job,
    new: Status,
    *,
    source: str,
    message: str = "",
    expected: Status | None = None,
    resubmit: bool = False,
    strict: bool = True,
    check_time: datetime.datetime | None = None,
    extra: Mapping[str, Any] | None = None,
) -> bool:
    """Move `job` to `new` with a guarded UPDATE and a JobEvent row; return True if it moved.

    `extra` holds engine facts written in the same UPDATE (the result, the progress). This moves
    status and nothing else: a job that finishes well while it has a results step stops at
    Results-Ready, and the results step (process_results()) is claimed work done elsewhere.

    The UPDATE matches the status the job is known to be in, so a concurrent writer makes it match
    zero rows: then the status is re-read and the move is re-checked from there (or, with
    `expected`, refused). Illegal moves raise InvalidTransition, or return False when not `strict`.
    """
    new = Status(new)
    current = expected if expected is not None else job.status_code
    final: Status | None = None
    if (
        new in (Status.COMPLETE, Status.VARIOUS_COMPLETE)
        and current is not Status.RESULTS_READY
        and has_results_step(job)
    ):
        # Finished well: first Results-Ready, whose one winner fetches outputs and processes them.
        final, new = new, Status.RESULTS_READY
    for _ in range(_RACE_RETRIES):
        if current is new and not resubmit:
            return False
        legal = (
            resubmit and new is Status.PENDING and current in statuses.RESUBMITTABLE
        ) or statuses.is_legal(current, new)
        if not legal:
            if strict:
                raise _illegal(job, current, new)
            log.debug("ignored %s -> %s for job %s (%s)", current.value, new.value, job.pk, source)
            return False
        now, values = _values_for(job, current, new, message, resubmit)
        if final is not None:
            values.update(results_status=final.value, results_claimed_at=None, results_tries=0)
        if check_time is not None:
            values["last_status_check"] = check_time
        if extra:
            values.update(extra)
        with _writing():
            moved = Job.objects.filter(pk=job.pk, _status=current.value).update(**values)
            if moved:
                if resubmit:
                    values["attempt"] = Job.objects.values_list("attempt", flat=True).get(pk=job.pk)
                attempt = values.get("attempt", job.attempt)
                JobEvent.objects.create(
                    job_id=job.pk,
                    attempt=attempt,
                    from_status=current.value,
                    to_status=new.value,
                    time=now,
                    source=source,
                    message=message,
                )
                # The move's notifications commit with it, or not at all (see jobtower.outbox).
                outbox.enqueue([outbox.Move(job, current, new, source, message, attempt, now)])
        if moved:
            job._set(**values)
            _announce(job, current, new, source, message)
            return True
        fresh = Job.objects.filter(pk=job.pk).values_list("_status", flat=True).first()
        if fresh is None:
            if not strict:
                return False  # deleted meanwhile: an observation about it changes nothing
            raise Job.DoesNotExist(f"job {job.pk} no longer exists (it was deleted)")
        job._set(_status=fresh)
        if expected is not None:
            if strict:
                raise InvalidTransition(
                    f"job {job.pk} is {Status(fresh).display}, not {expected.display}: "
                    "another request changed it first",
                    job_id=job.pk,
                    current=fresh,
                    new=new.value,
                )
            return False
        current = Status(fresh)
    raise InvalidTransition(
        f"job {job.pk}: gave up moving to {new.display} after {_RACE_RETRIES} concurrent changes",
        job_id=job.pk,
        new=new.value,
    )


# -- what engines report --------------------------------------------------------------------------

#: Bounds on what a job or engine reports: it is untrusted input, and it goes into the database.
MAX_MESSAGE = 4000
MAX_RESULT_BYTES = 1_000_000


def poll(backend: Backend, jobs: list[Job]) -> PollResult:
    """Ask `backend` about `jobs` in one call; an engine that fails to answer reports all of them unreachable."""
    try:
        return PollResult.of(backend.poll(jobs))
    except Exception as exc:
        reason = f"{backend.name} did not answer: {type(exc).__name__}: {exc}"
        return PollResult(unreachable={job.pk: reason for job in jobs})


def apply_poll(jobs: list[Job], answer: PollResult, *, source: str = "engine") -> int:
    """Apply a poll's answer to `jobs`: moves, progress, and stale marks; return how many moved."""
    if answer.unreachable:
        gone = [job for job in jobs if job.pk in answer.unreachable]
        # Said once when jobs become stale, not at every cycle while the engine is away.
        if mark_stale(gone, True):
            log.warning("%d jobs are stale (their engine does not answer): %s", len(gone),
                        _clean_text(next(iter(answer.unreachable.values())), 500))
    answered = [job for job in jobs if job.pk in answer.observations]
    mark_stale(answered, False)
    return apply_observations([(job, answer.observations[job.pk]) for job in answered], source=source)


def _clean_text(value: Any, limit: int) -> str:
    """Return `value` as text the database takes: NUL bytes removed, at most `limit` characters."""
    text = value if isinstance(value, str) else str(value)
    return text.replace("\x00", "")[:limit]


def _clean_json(value: Any, what: str) -> Any:
    """Return `value` if it is JSON the database takes (finite numbers, no NUL, bounded); else ValueError."""
    try:
        text = json.dumps(value, allow_nan=False)
    except (TypeError, ValueError, RecursionError) as exc:
        raise ValueError(f"{what} is not plain JSON: {exc}") from None
    if "\\u0000" in text:
        raise ValueError(f"{what} holds a NUL character, which cannot be stored")
    if len(text) > MAX_RESULT_BYTES:
        raise ValueError(f"{what} is {len(text):,} bytes of JSON; at most {MAX_RESULT_BYTES:,} are kept")
    return value


def sanitize(observation: Observation) -> Observation:
    """Return the observation with every value typed, bounded and storable; a bad one is an Error.

    Everything a job writes (progress, messages, results) reaches us through observations: one bad
    value must end that one job with a reason, never fail the write of a whole cycle.
    """
    if _plain(observation):
        return observation  # the common case of every cycle: a status and a short message
    try:
        status = Status(observation.status)
    except ValueError:
        reason = f"the engine reported an unknown status {observation.status!r}"
        return Observation(Status.ERROR, _clean_text(reason, 500))
    progress = observation.progress
    if progress is not None:
        try:
            progress = float(progress)
        except (TypeError, ValueError, OverflowError):
            progress = None
        if progress is not None:
            progress = min(100.0, max(0.0, progress)) if math.isfinite(progress) else None
    try:
        result = None if observation.result is None else _clean_json(observation.result, "the job's result")
        engine_data = (
            None if observation.engine_data is None
            else _clean_json(dict(observation.engine_data), "the engine's data")
        )
        nodes = (
            None if observation.nodes is None
            else {_clean_text(name, 255): Status(state) for name, state in observation.nodes.items()}
        )
    except (TypeError, ValueError) as exc:
        return Observation(Status.ERROR, _clean_text(f"rejected what the job reported: {exc}", MAX_MESSAGE))
    return Observation(
        status,
        _clean_text(observation.message, MAX_MESSAGE),
        progress=progress,
        progress_message=_clean_text(observation.progress_message, 255) if progress is not None else "",
        result=result,
        nodes=nodes,
        engine_data=engine_data,
    )


def _plain(observation: Observation) -> bool:
    """Return True when an observation holds nothing but a known status and a clean short message."""
    return (
        type(observation.status) is Status
        and observation.progress is None and not observation.progress_message
        and observation.result is None and observation.engine_data is None and observation.nodes is None
        and isinstance(observation.message, str) and len(observation.message) <= MAX_MESSAGE
        and "\x00" not in observation.message
    )


def observe(job: Job, observation: Observation, *, source: str = "engine") -> bool:
    """Apply what an engine observed: a legal move is made, anything else is ignored."""
    observation = sanitize(observation)
    if observation.nodes is not None:
        _store_nodes(job, observation)
    moved = transition(
        job, observation.status, source=source, message=observation.message, strict=False,
        extra=_facts(job, observation),
    )
    if not moved:
        record_facts(job, observation)
    return moved


def _store_nodes(job: Job, observation: Observation) -> None:
    """Write a workflow's node statuses into its node rows when they changed: one UPDATE per workflow.

    Compared with what the job's engine_data holds from the last observation, so a cycle where
    nothing moved writes nothing, and reading the nodes never asks the engine.
    """
    from jobtower.models.workflow import store_statuses

    known = job.engine_data or {}
    states = {name: Status(state) for name, state in (observation.nodes or {}).items()}
    messages = {
        _clean_text(name, 255): _clean_text(text, 1000)
        for name, text in dict((observation.engine_data or {}).get("node_messages") or {}).items()
    }
    old_states = known.get("nodes") or {}
    old_messages = known.get("node_messages") or {}
    changed_states = {name: s for name, s in states.items() if old_states.get(name) != s.value}
    changed_messages = {name: t for name, t in messages.items() if old_messages.get(name) != t}
    if changed_states or changed_messages:
        with _writing():
            store_statuses(job.pk, changed_states, changed_messages)


def _facts(job: Job, observation: Observation) -> dict[str, Any]:
    facts: dict[str, Any] = {}
    if observation.result is not None:
        facts["result"] = observation.result
    if observation.progress is not None and observation.progress != job.progress:
        facts["progress"] = observation.progress
        facts["progress_message"] = observation.progress_message
    engine_data = _merged_engine_data(job, observation)
    if engine_data is not None:
        facts["engine_data"] = engine_data
    return facts


def _merged_engine_data(job: Job, observation: Observation) -> dict[str, Any] | None:
    """Return the job's engine_data with the observation's updates and nodes, or None when unchanged."""
    updates = dict(observation.engine_data or {})
    if observation.nodes is not None:
        updates["nodes"] = {name: Status(state).value for name, state in observation.nodes.items()}
    current = job.engine_data or {}
    if all(current.get(key) == value for key, value in updates.items()):
        return None
    return {**current, **updates}


def record_facts(job: Job, observation: Observation) -> bool:
    """Store a job's reported progress and engine data when they changed (no status move, no event)."""
    values: dict[str, Any] = {}
    if observation.progress is not None and (
        observation.progress != job.progress or observation.progress_message != job.progress_message
    ):
        values.update(progress=observation.progress, progress_message=observation.progress_message)
    engine_data = _merged_engine_data(job, observation)
    if engine_data is not None:
        values["engine_data"] = engine_data
    if not values:
        return False
    with _writing():  # a refused write must not break a transaction around us
        Job.objects.filter(pk=job.pk).update(**values)
    job._set(**values)
    return True


def apply_observations(pairs: Iterable[tuple[Job, Observation]], *, source: str = "engine") -> int:
    """Apply a poll's observations; moves that many jobs share are written in bulk. Return moves.

    A write that fails is retried job by job, so one job whose facts the database refuses cannot
    hold back the others: that job is moved to Error with the reason, the rest are applied.
    """
    groups: dict[tuple[Status, Status, str], list[Job]] = {}
    moved = 0
    for job, raw in pairs:
        observation = sanitize(raw)
        current, new = job.status_code, observation.status
        if new is current and _plain(observation):
            continue  # nothing new: the engine says what we know
        simple = (
            observation.result is None
            and observation.engine_data is None
            and observation.nodes is None
            and new is not current
            and statuses.is_legal(current, new)
            and not (new in (Status.COMPLETE, Status.VARIOUS_COMPLETE) and has_results_step(job))
        )
        if simple:
            _guarded(job, source, record_facts, job, observation)
            groups.setdefault((current, new, observation.message), []).append(job)
        else:
            moved += _guarded(job, source, observe, job, observation, source=source)
    for (current, new, message), jobs in groups.items():
        try:
            moved += _move_many(jobs, current, new, message, source)
        except DatabaseError as exc:
            # Handled here: said in one line, the reason included (a traceback adds nothing).
            log.warning("moving %d jobs %s -> %s at once failed (%s: %s); moving them one by one",
                        len(jobs), current.display, new.display, type(exc).__name__, exc)
            for job in jobs:
                moved += _guarded(job, source, observe, job, Observation(new, message), source=source)
    return moved


def _guarded(job: Job, by: str, write: Callable[..., bool], *args: Any, **kwargs: Any) -> bool:
    """Run one job's write; if the database refuses it, end that job in Error with the reason."""
    try:
        return bool(write(*args, **kwargs))
    except DatabaseError as exc:
        if database_busy(exc):
            # Another process held the lock too long: nothing is wrong with the job; the next cycle
            # observes it again.
            log.warning("job %s: the database was busy; its news is applied at the next cycle", job.pk)
            return False
        log.exception("could not record what the engine reported about job %s", job.pk)
        reason = _clean_text(f"could not record what the engine reported: {type(exc).__name__}: {exc}", 1000)
    try:
        return transition(job, Status.ERROR, source=by, message=reason, strict=False)
    except DatabaseError:
        log.exception("could not move job %s to Error either", job.pk)
        return False


def _move_many(jobs: list[Job], current: Status, new: Status, message: str, source: str) -> int:
    """Move many jobs from `current` to `new` in one guarded UPDATE; retry the rest one by one."""
    by_id = {job.pk: job for job in jobs}
    now, values = _values_for(None, current, new, message, resubmit=False)
    with _writing():
        ids = list(
            Job.objects.select_for_update()
            .filter(pk__in=by_id, _status=current.value)
            .values_list("pk", flat=True)
        )
        Job.objects.filter(pk__in=ids).update(**values)
        if new in (Status.RUNNING, Status.VARIOUS):
            Job.objects.filter(pk__in=ids, start_time__isnull=True).update(start_time=now)
        JobEvent.objects.bulk_create(
            JobEvent(job_id=pk, attempt=by_id[pk].attempt, from_status=current.value,
                     to_status=new.value, time=now, source=source, message=message)
            for pk in ids
        )
        outbox.enqueue([outbox.Move(by_id[pk], current, new, source, message, by_id[pk].attempt, now) for pk in ids])
    for pk in ids:
        job = by_id.pop(pk)
        job._set(**values)
        if new in (Status.RUNNING, Status.VARIOUS) and job.start_time is None:
            job._set(start_time=now)
        _announce(job, current, new, source, message)
    # Those that changed meanwhile are re-checked from their new status.
    late = sum(
        transition(job, new, source=source, message=message, strict=False) for job in by_id.values()
    )
    return len(ids) + late


def claim(job_types: Iterable[str], limit: int, *, source: str) -> list[Job]:
    """Move up to `limit` Submitted jobs of `job_types` to Running for one worker; never twice."""
    return finish_and_claim([], PollResult(), job_types, limit, source=source)[1]


def finish_and_claim(
    finished: list[Job], answer: PollResult, job_types: Iterable[str], limit: int, *, source: str
) -> tuple[int, list[Job]]:
    """Record how a worker's `finished` jobs ended and claim up to `limit` queued ones, in one transaction.

    A LOCAL worker does this at every wake-up, so it is written as a few prepared statements: the
    ended jobs' guarded UPDATE, the claim's UPDATE (FOR UPDATE SKIP LOCKED on PostgreSQL; SQLite's
    IMMEDIATE transaction holds the lock), and one INSERT of every move's JobEvent. Observations that
    carry more than a final status (a result, progress, a results step, a stale mark to clear) take
    apply_poll()'s path. A job moved meanwhile by someone else (a stop, the monitor) is re-checked from
    its new status after the commit. Return (how many finished jobs moved, the jobs claimed).
    """
    job_types = list(job_types)
    fast: dict[tuple[Status, Status, str], list[Job]] = {}
    slow: list[Job] = []
    for job in finished:
        raw = answer.observations.get(job.pk)
        if raw is None:
            slow.append(job)
            continue
        observation = sanitize(raw)
        current, new = job.status_code, observation.status
        if (
            _plain(observation) and new.is_terminal and statuses.is_legal(current, new)
            and job.stale_since is None
            and not (new in (Status.COMPLETE, Status.VARIOUS_COMPLETE) and has_results_step(job))
        ):
            fast.setdefault((current, new, observation.message), []).append(job)
        else:
            slow.append(job)
    moved = apply_poll(slow, answer, source=source) if slow else 0
    from django.db import connections

    using = router.db_for_write(Job)
    db = connections[using]
    if not fast and (limit <= 0 or not job_types or not _queued(job_types, using)):
        # An idle worker asks with a plain read first: it takes no write lock (SQLite's BEGIN
        # IMMEDIATE would otherwise serialize every idle look with real writers), and on PostgreSQL
        # it is cheaper for the server than the statement below.
        return moved, []
    # PostgreSQL does it all in one statement (see _PgFinishAndClaim).
    one_statement = db.vendor == "postgresql"
    now = timezone.now()
    ended: list[tuple[Job, Status, Status, str, dict[str, Any]]] = []
    late: list[tuple[Job, Status, str]] = []
    claimed: list[Job] = []
    try:
        if one_statement:
            # One statement is atomic on its own; an explicit transaction (two more round trips) only
            # when the moves owe notifications, whose rows must commit with them, or inside a caller's
            # transaction, where a savepoint keeps a refused statement from breaking that transaction
            # (PostgreSQL refuses every later statement of a transaction with a failed one).
            atomic: contextlib.AbstractContextManager[Any] = (
                transaction.atomic(using=using) if outbox.needed() or db.in_atomic_block
                else contextlib.nullcontext()
            )
            with atomic, db.cursor() as cursor:
                claimed = _pg_finish_and_claim(cursor, db, using, fast, ended, late, job_types, limit, now, source)
        else:
            with transaction.atomic(using=using), db.cursor() as cursor:
                claimed = _finish_and_claim_rows(
                    cursor, db, using, fast, ended, late, job_types, limit, now, source
                )
    except DatabaseError as exc:
        # Said in one line (a traceback adds nothing); the jobs' news goes the slower way, job by job,
        # so one job the database refuses cannot hold back the others. The next wake-up claims.
        log.warning("recording %d finished jobs and claiming failed (%s: %s); recording them one by one",
                    sum(map(len, fast.values())), type(exc).__name__, exc)
        jobs = [job for group in fast.values() for job in group]
        return moved + apply_poll(jobs, answer, source=source), []
    claim_values = {"_status": Status.RUNNING.value, "status_message": "", "start_time": now,
                    "last_status_check": now}
    for job, current, new, message, values in ended:
        job._set(**values)
        _announce(job, current, new, source, message)
    for job in claimed:
        job._set(**claim_values)
        _announce(job, Status.SUBMITTED, Status.RUNNING, source, "")
    # Those that changed meanwhile are re-checked from their new status.
    moved += len(ended) + sum(
        transition(job, new, source=source, message=message, strict=False) for job, new, message in late
    )
    return moved, claimed


def _finish_and_claim_rows(
    cursor: Any, db: Any, using: str, fast: dict[tuple[Status, Status, str], list[Job]],
    ended: list[tuple[Job, Status, Status, str, dict[str, Any]]], late: list[tuple[Job, Status, str]],
    job_types: list[str], limit: int, now: datetime.datetime, source: str,
) -> list[Job]:
    """finish_and_claim()'s statements, inside its transaction: fills `ended` and `late`, returns the claimed."""
    for (current, new, message), jobs in fast.items():
        values = _values_for(None, current, new, message, resubmit=False)[1]
        ids = _guarded_update(cursor, db, values, [job.pk for job in jobs], current)
        for job in jobs:
            if job.pk in ids:
                ended.append((job, current, new, message, values))
            else:
                late.append((job, new, message))
    claimed = _claim_rows(cursor, db, using, job_types, limit, now) if limit > 0 and job_types else []
    moves = [outbox.Move(job, current, new, source, message, job.attempt, values["completion_time"])
             for job, current, new, message, values in ended]
    moves += [outbox.Move(job, Status.SUBMITTED, Status.RUNNING, source, "", job.attempt, now) for job in claimed]
    if moves:
        _insert_events(cursor, db, moves)
        outbox.enqueue(moves)
    return claimed


class _PgFinishAndClaim:
    """finish_and_claim()'s one statement on PostgreSQL: the ended jobs' guarded UPDATE, the claim's
    UPDATE and every move's JobEvent, as data-modifying CTEs (built once per process).

    One round trip and no BEGIN/COMMIT instead of five, and one statement for the server to parse.
    The claim is the one _claim_rows() runs: the pick runs once (ARRAY), its rows locked FOR UPDATE
    SKIP LOCKED, and the UPDATE checks "status" again; it never picks a job this statement ends
    (one statement must not UPDATE a row twice). The rows come back as: the ids of the ended jobs
    (an array, on every row) and one row of columns per claimed job (NULLs when none was claimed).
    """

    def __init__(self, db: Any) -> None:
        quote = db.ops.quote_name
        job = quote(Job._meta.db_table)
        event = quote(JobEvent._meta.db_table)
        columns = ", ".join(quote(f.column) for f in Job._meta.concrete_fields)
        # Parameters: ids, attempts, from, to, messages, completion time; claim: start time, last
        # check, job types, ids again (not to claim), limit; events: time, source, time, source.
        self.sql = (
            "WITH v AS (SELECT * FROM unnest(%s::bigint[], %s::integer[], %s::text[], %s::text[], %s::text[])"
            " AS v(id, attempt, cur, new, msg)), "
            f"ended AS (UPDATE {job} AS j SET \"status\" = v.new, \"status_message\" = v.msg, "
            '"completion_time" = %s FROM v WHERE j."id" = v.id AND j."status" = v.cur '
            'RETURNING j."id", v.attempt, v.cur, v.new, v.msg), '
            f'claimed AS (UPDATE {job} SET "status" = \'RUN\', "status_message" = \'\', "start_time" = %s, '
            f'"last_status_check" = %s WHERE "id" = ANY(ARRAY(SELECT "id" FROM {job} WHERE "status" = \'SUB\' '
            'AND "job_type" = ANY(%s::text[]) AND NOT ("id" = ANY(%s::bigint[])) '
            'ORDER BY "id" LIMIT %s FOR UPDATE SKIP LOCKED)) AND "status" = \'SUB\' '
            f"RETURNING {columns}), "
            f'events AS (INSERT INTO {event} ("job_id", "attempt", "from_status", "to_status", "time", '
            '"source", "message") SELECT "id", attempt, cur, new, %s, %s, msg FROM ended '
            'UNION ALL SELECT "id", "attempt", \'SUB\', \'RUN\', %s, %s, \'\' FROM claimed) '
            "SELECT d.done, c.* FROM (SELECT coalesce(array_agg(\"id\"), '{}') AS done FROM ended) AS d "
            'LEFT JOIN claimed AS c ON true ORDER BY c."id"'
        )
        assert Status.SUBMITTED.value == "SUB" and Status.RUNNING.value == "RUN"

    @staticmethod
    @functools.cache
    def get(alias: str) -> _PgFinishAndClaim:
        """Return the statement for database `alias`."""
        from django.db import connections

        return _PgFinishAndClaim(connections[alias])


def _pg_finish_and_claim(
    cursor: Any, db: Any, using: str, fast: dict[tuple[Status, Status, str], list[Job]],
    ended: list[tuple[Job, Status, Status, str, dict[str, Any]]], late: list[tuple[Job, Status, str]],
    job_types: list[str], limit: int, now: datetime.datetime, source: str,
) -> list[Job]:
    """finish_and_claim()'s work on PostgreSQL as one statement: fills `ended` and `late`, returns the claimed."""
    plan = _PgFinishAndClaim.get(using)
    jobs = [(job, current, new, message) for (current, new, message), group in fast.items() for job in group]
    ids = [job.pk for job, *_ in jobs]
    when = db.ops.adapt_datetimefield_value(now)
    cursor.execute(plan.sql, [
        ids, [job.attempt for job, *_ in jobs], [current.value for _, current, _, _ in jobs],
        [new.value for _, _, new, _ in jobs], [message for *_, message in jobs], when,
        when, when, job_types, ids, max(0, limit) if job_types else 0, when, source, when, source,
    ])
    rows = cursor.fetchall()
    done = set(rows[0][0]) if rows else set()
    for job, current, new, message in jobs:
        if job.pk in done:
            ended.append((job, current, new, message, {"_status": new.value, "status_message": message,
                                                       "completion_time": now}))
        else:
            late.append((job, new, message))
    rows = [row[1:] for row in rows if row[1] is not None]
    moves = [outbox.Move(job, current, new, source, message, job.attempt, now)
             for job, current, new, message, _ in ended]
    claimed: list[Job] = []
    if rows:
        claimed = _claimed_jobs(db, using, rows)
        moves += [outbox.Move(job, Status.SUBMITTED, Status.RUNNING, source, "", job.attempt, now)
                  for job in claimed]
    if moves:
        outbox.enqueue(moves)
    return claimed


_QUEUED_SQL = 'SELECT 1 FROM "jobtower_job" WHERE "status" = %s AND "job_type" IN ({}) LIMIT 1'


def _queued(job_types: list[str], using: str = "default") -> bool:
    """Return True when a Submitted job of `job_types` waits (a plain read, no lock)."""
    from django.db import connections

    with connections[using].cursor() as cursor:
        cursor.execute(_QUEUED_SQL.format(", ".join(["%s"] * len(job_types))),
                       [Status.SUBMITTED.value, *job_types])
        return cursor.fetchone() is not None


def _guarded_update(cursor: Any, db: Any, values: Mapping[str, Any], ids: list[int], current: Status) -> set[int]:
    """UPDATE the jobs `ids` that are still `current` with `values`; return the ids it changed."""
    meta = Job._meta
    quote = db.ops.quote_name
    assignments, params = [], []
    for name, value in values.items():
        field = meta.get_field(name)
        assert isinstance(field, models.Field)
        assignments.append(f"{quote(field.column)} = %s")
        params.append(field.get_db_prep_save(value, db))
    marks = ", ".join(["%s"] * len(ids))
    cursor.execute(
        f"UPDATE {quote(meta.db_table)} SET {', '.join(assignments)} "
        f'WHERE "id" IN ({marks}) AND "status" = %s RETURNING "id"',
        [*params, *ids, current.value],
    )
    return {row[0] for row in cursor.fetchall()}


def _claim_rows(
    cursor: Any, db: Any, using: str, job_types: list[str], limit: int, now: datetime.datetime
) -> list[Job]:
    """Claim up to `limit` Submitted jobs of `job_types` (oldest first) in one UPDATE; return them."""
    meta = Job._meta
    quote = db.ops.quote_name
    fields = meta.concrete_fields
    table = quote(meta.db_table)
    when = db.ops.adapt_datetimefield_value(now)
    types = ", ".join(["%s"] * len(job_types))
    pick = f'SELECT "id" FROM {table} WHERE "status" = %s AND "job_type" IN ({types}) ORDER BY "id" LIMIT %s'
    if db.features.has_select_for_update_skip_locked:
        # ARRAY(...) runs the pick once. As "id IN (...)" PostgreSQL may run it again for each row it
        # joins, and each run skips the rows the last one locked: the UPDATE then claims every
        # queued job, whatever the limit (a worker running all of them at once).
        where = f'"id" = ANY(ARRAY({pick} FOR UPDATE SKIP LOCKED))'
    else:
        where = f'"id" IN ({pick})'
    cursor.execute(
        f'UPDATE {table} SET "status" = %s, "status_message" = %s, "start_time" = %s, "last_status_check" = %s '
        f'WHERE {where} AND "status" = %s '
        f"RETURNING {', '.join(quote(f.column) for f in fields)}",
        [Status.RUNNING.value, "", when, when, Status.SUBMITTED.value, *job_types, limit, Status.SUBMITTED.value],
    )
    return sorted(_claimed_jobs(db, using, cursor.fetchall()), key=lambda job: job.pk)


#: Per connection: the compiler and the converters of every Job column (looked up once, not per claim).
_row_converters: weakref.WeakKeyDictionary[Any, tuple[Any, list[Any]]] = weakref.WeakKeyDictionary()


def _claimed_jobs(db: Any, using: str, rows: list[Any]) -> list[Job]:
    """Return rows of every Job column (in field order) as jobs, each column through its field's
    converter (JSON, SQLite's datetimes) as a queryset applies them."""
    if not rows:
        return []
    found = _row_converters.get(db)
    if found is None:
        from django.db.models.sql import Query

        compiler = db.ops.compiler("SQLCompiler")(Query(Job), db, using)
        columns = [f.get_col(Job._meta.db_table) for f in Job._meta.concrete_fields]
        found = _row_converters[db] = (compiler, compiler.get_converters(columns))
    compiler, converters = found
    if converters:
        rows = list(compiler.apply_converters(rows, converters))
    attnames = tuple(f.attname for f in Job._meta.concrete_fields)
    return [Job.from_db(using, attnames, row) for row in rows]


def _insert_events(cursor: Any, db: Any, moves: list[outbox.Move]) -> None:
    """Append a JobEvent per move with multi-row INSERTs."""
    if not moves:
        return
    quote = db.ops.quote_name
    columns = ("job_id", "attempt", "from_status", "to_status", "time", "source", "message")
    head = f"INSERT INTO {quote(JobEvent._meta.db_table)} ({', '.join(quote(c) for c in columns)}) VALUES "
    row = f"({', '.join(['%s'] * len(columns))})"
    for start in range(0, len(moves), 100):
        chunk = moves[start:start + 100]
        params: list[Any] = []
        for move in chunk:
            params += [move.job.pk, move.attempt, move.old.value, move.new.value,
                       db.ops.adapt_datetimefield_value(move.time), move.source, move.message]
        cursor.execute(head + ", ".join([row] * len(chunk)), params)


def _illegal(job: Job, current: Status, new: Status) -> InvalidTransition:
    allowed = ", ".join(sorted(s.display for s in statuses.TRANSITIONS[current])) or "nothing"
    if current is new:
        return InvalidTransition(
            f"job {job.pk} is already {current.display}", job_id=job.pk, current=current.value, new=new.value
        )
    if current.is_terminal:
        hint = f"{current.display} is final; resubmit() starts a new attempt"
    else:
        hint = f"from {current.display} a job may move to: {allowed}"
    return InvalidTransition(
        f"job {job.pk} cannot move from {current.display} to {new.display}: {hint}",
        job_id=job.pk,
        current=current.value,
        new=new.value,
    )


def _values_for(
    job: Job | None, current: Status, new: Status, message: str, resubmit: bool
) -> tuple[datetime.datetime, dict[str, Any]]:
    now = timezone.now()
    values: dict[str, Any] = {"_status": new.value, "status_message": message}
    if resubmit:
        values.update(attempt=F("attempt") + 1, execute_time=None, start_time=None, completion_time=None,
                      results_claimed_at=None, results_tries=0, results_status="")
    elif new is Status.SUBMITTED and current is Status.PENDING:
        values["execute_time"] = now
    elif new in (Status.RUNNING, Status.VARIOUS) and job is not None and job.start_time is None:
        values["start_time"] = now
    if new.is_terminal:
        values["completion_time"] = now
    return now, values


def _announce(job: Job, old: Status, new: Status, source: str, message: str) -> None:
    log.info("job %s: %s -> %s (%s) %s", job.pk, old.display, new.display, source, message)

    def send() -> None:
        job_status_changed.send_robust(
            sender=type(job), job=job, old=old, new=new, source=source, message=message
        )

    transaction.on_commit(send, robust=True)


def has_results_step(job: Job) -> bool:
    """Return True when a job that finishes well has results to process before it is Complete."""
    if job._process_results_function:
        return True
    backend = job.get_backend()
    return backend is not None and backend.can(Capability.RESULTS)


# -- the results step: claimed work, retried after a crash ----------------------------------------


def _claim_free() -> Q:
    horizon = timezone.now() - datetime.timedelta(seconds=float(conf.get("RESULTS_CLAIM_TIMEOUT")))
    return Q(results_claimed_at__isnull=True) | Q(results_claimed_at__lt=horizon)


def results_due(limit: int, exclude: Iterable[int] = ()) -> list[Job]:
    """Return up to `limit` Results-Ready jobs whose results step nobody holds (or whose holder died)."""
    if limit <= 0:
        return []
    jobs = Job.objects.filter(_claim_free(), _status=Status.RESULTS_READY.value).exclude(pk__in=list(exclude))
    return list(jobs.order_by("id")[:limit])


def claim_results(job: Job) -> bool:
    """Claim the results step of a Results-Ready job with a guarded UPDATE; True if this caller won it.

    A claim older than RESULTS_CLAIM_TIMEOUT is taken over. A job whose step was started
    RESULTS_MAX_TRIES times already (its runs crashed) ends in Error instead of being claimed.
    """
    tries = int(conf.get("RESULTS_MAX_TRIES"))
    now = timezone.now()
    won = Job.objects.filter(
        _claim_free(), pk=job.pk, _status=Status.RESULTS_READY.value, results_tries__lt=tries
    ).update(results_claimed_at=now, results_tries=F("results_tries") + 1)
    if won:
        job._set(results_claimed_at=now, results_tries=job.results_tries + 1)
        return True
    if Job.objects.filter(_claim_free(), pk=job.pk, _status=Status.RESULTS_READY.value).exists():
        transition(
            job, Status.ERROR, source="results", expected=Status.RESULTS_READY, strict=False,
            message=f"processing results did not finish in {tries} tries: the process running it stopped "
            "(killed, or it crashed) each time. Resubmit the job to run it again.",
        )
    return False


def renew_claims(job_ids: Iterable[int]) -> int:
    """Refresh the claims of results steps still running here, so nobody takes them over."""
    ids = list(job_ids)
    if not ids:
        return 0
    return Job.objects.filter(pk__in=ids, _status=Status.RESULTS_READY.value).update(
        results_claimed_at=timezone.now()
    )


def release_claim(job_id: int) -> None:
    """Hand back a claimed results step that was never started (it does not count as a try)."""
    Job.objects.filter(pk=job_id, _status=Status.RESULTS_READY.value, results_tries__gt=0).update(
        results_claimed_at=None, results_tries=F("results_tries") - 1
    )


def run_results(job: Job) -> Status:
    """Run a claimed results step: fetch outputs, run process_results_function, then end the job.

    The step may run more than once for one job (at least once): a process killed while running it
    leaves its claim behind, which is taken over after RESULTS_CLAIM_TIMEOUT, because nothing can tell
    a dead process from a slow one sooner. process_results_function should therefore be safe to repeat.
    """
    final = Status(job.results_status or Status.COMPLETE.value)
    message = job.status_message
    try:
        backend = job.get_backend()
        if backend is not None and backend.can(Capability.RESULTS):
            backend.fetch_results(job)
        function = job.process_results_function
        if function is not None:
            function(job)
    except Exception as exc:
        log.exception("processing the results of job %s failed", job.pk)
        transition(
            job, Status.ERROR, source="results", strict=False,
            message=_clean_text(f"processing results failed: {type(exc).__name__}: {exc}", MAX_MESSAGE),
        )
        return job.status_code
    except BaseException:
        # Interrupted (SystemExit, KeyboardInterrupt): let the next claimant start at once.
        Job.objects.filter(pk=job.pk, _status=Status.RESULTS_READY.value).update(results_claimed_at=None)
        raise
    # The engine's words (e.g. a multi-proc summary) stay on the finished job.
    transition(job, final, source="results", message=message, strict=False)
    return job.status_code


def store_result(job: Job, value: Any) -> None:
    """Replace a Results-Ready job's result by `value` (plain JSON, at most 1 MB) from its results step.

    Engines whose results step returns the result (DASK, as Tethys's process_results_function does) call
    this; a value that cannot be stored raises ValueError, which ends the step, and the job, in Error.
    """
    value = _clean_json(value, "the value process_results_function returned")
    Job.objects.filter(pk=job.pk, _status=Status.RESULTS_READY.value).update(result=value)
    job._set(result=value)


def process_results(job: Job) -> bool:
    """Claim and run the results step of a Results-Ready job; False when someone else holds it."""
    if job.status_code is not Status.RESULTS_READY or not claim_results(job):
        return False
    run_results(job)
    return True


def settle(job: Job) -> bool:
    """In library mode (no monitor running), run a Results-Ready job's results step here and now."""
    if job.pk is None or job.status_code is not Status.RESULTS_READY or monitor_alive():
        return False
    return process_results(job)


# -- freshness ------------------------------------------------------------------------------------


_RESULTS_READY = Status.RESULTS_READY.value
_POLLED_CODES = frozenset(s.value for s in statuses.POLLED)


def refresh_if_due(job: Job) -> bool:
    """Ask the engine about an active job if the last check is older than the interval."""
    code = job._status  # the stored code: this runs on every status read, so no enum lookups
    if code == _RESULTS_READY:
        return settle(job)
    interval = conf.get("STATUS_REFRESH_INTERVAL")
    # backend_path None: no engine, whatever the settings say (BACKENDS only swaps engines).
    if interval is None or job.pk is None or job.backend_path is None or code not in _POLLED_CODES:
        return False
    last = job.last_status_check
    if last is not None and (timezone.now() - last).total_seconds() < interval:
        return False
    return refresh(job)


def refresh(job: Job, *, force: bool = False) -> bool:
    """Ask the job's engine for its status now and apply it; return True if the status moved."""
    backend = job.get_backend()
    if backend is None or job.pk is None or job.status_code not in statuses.POLLED:
        return settle(job)
    now = timezone.now()
    answer = poll(backend, [job])
    if job.pk in answer.unreachable:
        # An engine that does not answer changes no status: the old one stays, marked stale.
        log.warning("could not ask %s about job %s: %s", backend.name, job.pk, answer.unreachable[job.pk])
    moved = bool(apply_poll([job], answer, source="engine"))
    Job.objects.filter(pk=job.pk).update(last_status_check=now)
    job._set(last_status_check=now)
    settle(job)
    return moved


def mark_stale(jobs: Iterable[Job], stale: bool) -> int:
    """Record whether the engine of `jobs` answers: stale_since is set once, and cleared on an answer.

    Statuses are never touched: a job whose engine does not answer keeps the last status it reported
    (marked stale), so an unreachable scheduler cannot turn running jobs into errors. Return how many
    rows changed; jobs already marked (or clear) cost no query.
    """
    todo = [job for job in jobs if (job.stale_since is None) is stale]
    if not todo:
        return 0
    value = timezone.now() if stale else None
    with _writing():  # one statement, but a fenced monitor's write needs its check before it
        changed = (
            Job.objects.filter(pk__in=[job.pk for job in todo], stale_since__isnull=stale)
            .update(stale_since=value)
        )
    for job in todo:
        job._set(stale_since=value)
    return changed


def request_check(job: Job) -> bool:
    """Re-check a job at once (the status callback); never sets a status by itself.

    With a monitor running, the job is flagged and the monitor checks it within a fraction of a
    second; a burst of requests for one job costs one check. Without one, it is checked here.
    """
    if monitor_alive():
        flag_for_check(job.pk)
        return False
    return refresh(job, force=True)


def flag_for_check(job_id: int) -> bool:
    """Flag a job for the monitor's next quick check; False when there is no such job.

    Plain SQL, no Job object: the first of a burst of callbacks writes the flag; the others find
    it set and write nothing.
    """
    with connection.cursor() as cursor:
        cursor.execute(_FLAG_SQL, [timezone.now(), int(job_id)])
        if cursor.fetchone() is not None:
            return True
        cursor.execute('SELECT 1 FROM "jobtower_job" WHERE "id" = %s', [int(job_id)])
        return cursor.fetchone() is not None


_FLAG_SQL = (
    'UPDATE "jobtower_job" SET "check_requested" = %s '
    'WHERE "id" = %s AND "check_requested" IS NULL RETURNING "id"'
)


_monitor_seen: list[float] = [0.0, 0.0]  # [checked at, alive until], per process


def monitor_alive() -> bool:
    """Return True when a monitor's heartbeat is recent (cached for a second)."""
    import time

    from jobtower.models import Worker

    now = time.monotonic()
    if now - _monitor_seen[0] > 1.0:
        horizon = timezone.now() - datetime.timedelta(seconds=MONITOR_STALE_AFTER)
        alive = Worker.objects.filter(kind="monitor", heartbeat__gte=horizon).exists()
        _monitor_seen[:] = [now, 1.0 if alive else 0.0]
    return bool(_monitor_seen[1])


#: A monitor whose heartbeat is older than this many seconds is considered gone.
MONITOR_STALE_AFTER = 15


# -- what engines can do --------------------------------------------------------------------------

#: What each action needs from the job's engine; jobs without an engine (BASIC) need nothing.
NEEDS: dict[str, Capability] = {
    "execute": Capability.SUBMIT,
    "resubmit": Capability.SUBMIT,
    "stop": Capability.STOP,
    "pause": Capability.HOLD,
    "resume": Capability.HOLD,
    "logs": Capability.LOGS,
}


_EVERYTHING = frozenset(Capability)


def capabilities(job: Job) -> frozenset[Capability]:
    """Return what the job's engine can do (everything for a job the app drives itself)."""
    if job.backend_path is None:
        return _EVERYTHING
    backend = job.get_backend()
    return _EVERYTHING if backend is None else backend.capabilities


def supports(job: Job, action: str, known: frozenset[Capability] | None = None) -> bool:
    """Return True when the job's engine can do `action` (execute, stop, pause, resume, logs, ...).

    `known` is the job's capabilities when the caller has them already (a table row asks for several
    actions of one job).
    """
    need = NEEDS.get(action)
    return need is None or need in (capabilities(job) if known is None else known)


def require(job: Job, action: str) -> None:
    """Raise NotSupported when the job's engine cannot do `action`; the table, API and CLI answer 409."""
    if supports(job, action):
        return
    backend = job.get_backend()
    engine = backend.name if backend is not None else "its engine"
    doing = {"execute": "run", "logs": "show its logs"}.get(action, action)
    raise NotSupported(
        f"{job.job_type} job {job.pk} cannot {doing}: its engine ({engine}) does not support it",
        job_id=job.pk, action=action, capability=NEEDS[action].value,
    )


# -- actions --------------------------------------------------------------------------------------


def execute(job: Job) -> None:
    """Save `job` and submit it exactly once: Pending -> Submitted is a compare-and-set."""
    job.save()
    job.clean_spec()  # a job that cannot run is refused before anything moves: it stays Pending
    require(job, "execute")
    backend = job.get_backend()
    if backend is not None:
        backend.check(job)
    try:
        transition(job, Status.SUBMITTED, source="execute", expected=Status.PENDING)
    except InvalidTransition as exc:
        raise AlreadyExecuted(
            f"job {job.pk} ({job.name}) was executed already: it is {job.status_code.display}. "
            "Call resubmit() to run it again.",
            job_id=job.pk,
            current=job.status_code.value,
            new=Status.SUBMITTED.value,
        ) from exc
    if backend is None:
        return
    try:
        job.ensure_folder()
        note = backend.submit(job)
    except Exception as exc:
        reason = f"{backend.name} did not accept the job: {type(exc).__name__}: {exc}"
        log.exception("submitting job %s failed", job.pk)
        transition(job, Status.ERROR, source="execute", message=reason, strict=False)
        raise SubmitError(reason) from exc
    if job.engine_data:
        Job.objects.filter(pk=job.pk).update(engine_data=job.engine_data)
    if note:
        # Only while it still waits: a worker that claimed it meanwhile has its own words.
        if Job.objects.filter(pk=job.pk, _status=Status.SUBMITTED.value).update(status_message=note[:MAX_MESSAGE]):
            job._set(status_message=note[:MAX_MESSAGE])


def _current(job: Job) -> Status:
    """Re-read the stored status (actions decide on the truth, not on a stale object)."""
    fresh = Job.objects.filter(pk=job.pk).values_list("_status", flat=True).first()
    if fresh is None:
        raise Job.DoesNotExist(f"job {job.pk} does not exist (was it deleted, or never saved?)")
    job._set(_status=fresh)
    return Status(fresh)


def stop(job: Job) -> None:
    """Cancel the job on its engine, then Aborted; a finished job is an error."""
    current = _current(job)
    if current.is_terminal:
        raise InvalidTransition(
            f"job {job.pk} is already {current.display}: there is nothing to stop",
            job_id=job.pk, current=current.value, new=Status.ABORTED.value,
        )
    _cancel_on_engine(job, current)
    transition(job, Status.ABORTED, source="stop", message="stopped by a user", strict=False)


def _cancel_on_engine(job: Job, current: Status) -> None:
    """Ask the engine to end an active job (a Pending one has nothing there); raise StopError or NotSupported."""
    backend = job.get_backend()
    if backend is None or current is Status.PENDING:
        return
    require(job, "stop")
    try:
        backend.cancel(job)
    except Exception as exc:
        log.exception("stopping job %s failed", job.pk)
        raise StopError(
            f"{backend.name} could not stop job {job.pk}: {type(exc).__name__}: {exc}. "
            "Its status is unchanged; try again when the engine answers."
        ) from exc


def pause(job: Job) -> None:
    """Hold an active job on its engine -> Paused."""
    current = _current(job)
    require(job, "pause")
    if not statuses.is_legal(current, Status.PAUSED):
        raise _illegal(job, current, Status.PAUSED)
    backend = job.get_backend()
    if backend is not None:
        backend.hold(job)
    transition(job, Status.PAUSED, source="pause")


def resume(job: Job) -> None:
    """Release a paused job: it runs again (or queues again, as its engine says)."""
    current = _current(job)
    require(job, "resume")
    if current is not Status.PAUSED:
        raise InvalidTransition(
            f"job {job.pk} is {current.display}, not Paused: only a paused job can be resumed",
            job_id=job.pk, current=current.value, new=Status.RUNNING.value,
        )
    backend = job.get_backend()
    now = backend.release(job) if backend is not None else Status.RUNNING
    transition(job, now, source="resume")


def resubmit(job: Job) -> None:
    """Start a new attempt: stop the job if it is active, back to Pending, execute again."""
    current = _current(job)
    require(job, "resubmit")
    if current is Status.PENDING:
        raise InvalidTransition(
            f"job {job.pk} is Pending, it has not run yet: call execute()",
            job_id=job.pk, current=current.value, new=Status.PENDING.value,
        )
    if current.is_active:
        stop(job)
    transition(job, Status.PENDING, source="resubmit", resubmit=True, message="new attempt")
    execute(job)


def delete(job: Job, *, force: bool = False, using: str | None = None) -> tuple[int, dict[str, int]]:
    """Stop an active job, then delete its record and its own folder, nothing else."""
    if job.pk is None:
        raise ValueError("this job was never saved, so there is nothing to delete")
    current = _current(job)
    if current.is_active:
        try:
            stop(job)
        except (StopError, NotSupported):
            if not force:
                raise
            log.warning("deleting job %s although its engine could not stop it", job.pk)
    job.__dict__[_STOPPED_FOR_DELETE] = True  # the pre_delete receiver has nothing left to do
    # The post_delete receiver removes the job's own folder once the deletion commits.
    return models.Model.delete(job, using=using)


# -- every other way of deleting jobs (QuerySet.delete(), a deleted user's cascade) ----------------

#: Set on a job whose deletion was decided by delete() (stopped, or forced): the receivers skip it.
_STOPPED_FOR_DELETE = "_stopped_for_delete"


def delete_many(jobs: models.QuerySet[Job]) -> tuple[int, dict[str, int]]:
    """Stop the active jobs among `jobs`, then delete them all; each one's own folder goes on commit.

    What Job.delete() does for one job, for a QuerySet.delete(). A job whose engine cannot stop it
    refuses the whole deletion (nothing is deleted; the others stopped stay Aborted): deleting the
    record would leave the job running with nobody able to see or stop it.
    """
    active = list(jobs.filter(_status__in=[s.value for s in Status if s.is_active]))
    for job in active:
        if job.status_code is not Status.PENDING:
            require(job, "stop")  # refused before anything is stopped
    failures = []
    for job in active:
        try:
            stop(job)
        except InvalidTransition:
            pass  # it ended meanwhile
        except StopError as exc:
            failures.append(str(exc))
    if failures:
        raise StopError(
            f"deleting {len(failures)} of these jobs was refused, because their engine could not stop them, "
            f"so none was deleted: {' '.join(failures)} Delete them one by one with job.delete(force=True) "
            "to delete them anyway."
        )
    return models.QuerySet.delete(jobs)


def prune(older_than: datetime.timedelta, *, dry_run: bool = False, batch: int = 1000) -> int:
    """Delete the jobs that ended more than `older_than` ago, with their history and own folders.

    Only finished jobs (Complete, Various-Complete, Error, Aborted) go; their folders are removed on
    commit, as deleting one job does. Returns how many were (or, with dry_run, would be) deleted.
    """
    if older_than.total_seconds() <= 0:
        raise ValueError(f"older_than must be a positive age, got {older_than}")
    horizon = timezone.now() - older_than
    old = Job.objects.filter(
        _status__in=[s.value for s in statuses.TERMINAL], completion_time__lt=horizon
    ).order_by("id")
    if dry_run:
        return old.count()
    deleted = 0
    while True:  # in batches: a year of history is not one transaction
        ids = list(old.values_list("pk", flat=True)[:batch])
        if not ids:
            return deleted
        with transaction.atomic():
            delete_many(Job.objects.filter(pk__in=ids))
        deleted += len(ids)


def stop_before_delete(sender: Any, instance: Any, **kwargs: Any) -> None:
    """pre_delete receiver: end an active job on its engine before its record goes (a cascade's safety net).

    Deleting a user cascades to their jobs without Job.delete() or QuerySet.delete(); the record
    vanishes within this transaction, so the job is only cancelled on its engine (no Aborted move is
    recorded for a record being deleted). An engine that cannot stop it refuses the whole deletion.
    """
    if not isinstance(instance, Job) or instance.__dict__.get(_STOPPED_FOR_DELETE) or instance.pk is None:
        return
    # Lock the row until the deletion commits (PostgreSQL; SQLite's write lock does it already): a
    # worker or monitor moving this job meanwhile waits, then finds it gone, instead of adding a
    # history row after the deletion chose which rows to delete (a foreign key error at commit).
    stored = (
        Job.objects.using(kwargs.get("using")).select_for_update()
        .filter(pk=instance.pk).values_list("_status", flat=True).first()
    )
    if stored is None:
        return
    current = Status(stored)
    if not current.is_active:
        return
    try:
        _cancel_on_engine(instance, current)
    except (StopError, NotSupported) as exc:
        raise StopError(
            f"deleting {instance} was refused, so nothing was deleted: it is {current.display} and could not "
            f"be stopped ({exc}) Stop or delete the job first; job.delete(force=True) deletes it although "
            "it may run on."
        ) from exc
    log.info("job %s: cancelled on its engine, as its record is deleted", instance.pk)


def remove_folder_after_delete(sender: Any, instance: Any, using: str, **kwargs: Any) -> None:
    """post_delete receiver: remove a deleted job's own folder (nothing else) once the deletion commits."""
    if not isinstance(instance, Job) or instance.pk is None or not instance.workspace:
        return
    folder = instance.folder
    transaction.on_commit(lambda: instance._remove_folder(folder), using=using, robust=True)
