"""The endpoints: what each one does with the JobManager, declared on a ninja Router.

Who may see and act on a job is decided by web/permissions.py, as for the Jobs Table; a job the caller
may not see is a 404, so its existence is not revealed. Handlers return JsonResponse themselves (ninja
passes it through unvalidated, which keeps lists fast); the response models declared here are what the
OpenAPI document shows.
"""

from __future__ import annotations

import logging
import math
import os
import stat
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

from django.db import transaction
from django.db.models import F, Q, QuerySet
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import reverse
from ninja import Path as PathParam
from ninja import Router
from pydantic import ValidationError

from jobtower import manager, statuses
from jobtower.db import estimated_count
from jobtower.errors import EngineUnavailable, InvalidTransition, JobError, NotSupported, StopError, SubmitError
from jobtower.models import Job
from jobtower.registry import job_class
from jobtower.statuses import Status
from jobtower.web.api import parsing, render, schemas
from jobtower.web.api.errors import ApiError
from jobtower.web.api.schemas import DEFAULT_APP, Error, History, JobOut, JobPage, Logs, Nodes
from jobtower.web.permissions import is_manager, may_run_code, may_use_app, visible_jobs

log = logging.getLogger("jobtower")

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 200
#: Bytes of each log returned when ?tail= is not given, and the most ?tail= may ask for.
DEFAULT_LOG_TAIL = 64 * 1024
MAX_LOG_TAIL = 1024 * 1024
MAX_ID = 2**63 - 1
#: Job options apps set in code that a remote client may not: server paths and server-side code.
NOT_FROM_API = {
    "workspace": "jobs created through the API get their folder in the user's workspace",
    "process_results_function": "it runs inside the server; set it from the app's code",
}

router = Router(tags=["jobs"])

JobId = Annotated[int, PathParam(ge=1, le=MAX_ID, description="the job's id")]
NodeName = Annotated[str, PathParam(min_length=1, max_length=255, description="the node's name")]


def errors(*codes: int) -> dict[int, Any]:
    """Return ninja response declarations for error `codes`."""
    return {code: Error for code in codes}


def _jobs(user: Any) -> QuerySet[Job]:
    return visible_jobs(user, Job.objects.select_related("user").prefetch_related("groups"))


def _job(request: HttpRequest, job_id: int) -> Job:
    """Return the job the caller may see, or raise a 404 (the same for missing and not theirs)."""
    job = _jobs(request.user).filter(pk=job_id).first()
    if job is None:
        raise ApiError(404, f"there is no job {job_id} that you may see")
    return job


def _fresh(job_id: int) -> dict[str, Any]:
    """Return the job as stored now (after an action changed it)."""
    job = Job.objects.select_related("user").prefetch_related("groups").filter(pk=job_id).first()
    if job is None:
        raise ApiError(404, f"job {job_id} was deleted meanwhile")
    return job_json(job)


def job_json(job: Job) -> dict[str, Any]:
    """Return a job as the API shows it (one seam for tests that break it on purpose)."""
    return render.job_json(job)


# -- listing --------------------------------------------------------------------------------------

_ORDER_FIELDS = {
    "id": "id", "name": "name", "status": "_status", "job_type": "job_type", "app": "label",
    "user": "user__username", "attempt": "attempt", "progress": "progress",
    "creation_time": "creation_time", "execute_time": "execute_time", "start_time": "start_time",
    "completion_time": "completion_time",
}
ORDERS = [sign + name for name in _ORDER_FIELDS for sign in ("", "-")]
_NULLABLE_ORDER_FIELDS = {"progress", "execute_time", "start_time", "completion_time"}
_STATUS_NAMES = sorted({s.value for s in Status} | {s.display for s in Status})
_LIST_PARAMS: list[dict[str, Any]] = [
    {"name": "page", "schema": {"type": "integer", "minimum": 1, "default": 1},
     "description": "page number (404 past the last)"},
    {"name": "page_size", "schema": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE_SIZE,
                                     "default": DEFAULT_PAGE_SIZE}, "description": "jobs per page"},
    {"name": "status", "schema": {"type": "array", "items": {"type": "string", "enum": _STATUS_NAMES}},
     "description": "only jobs in these statuses (codes or display strings; repeat or comma-separate)"},
    {"name": "job_type", "schema": {"type": "array", "items": {"type": "string"}},
     "description": "only jobs of these types (repeat or comma-separate)"},
    {"name": "app", "schema": {"type": "array", "items": {"type": "string"}},
     "description": "only jobs of these app labels (repeat or comma-separate)"},
    {"name": "q", "schema": {"type": "string"}, "description": "text searched in names and descriptions"},
    {"name": "order", "schema": {"type": "string", "enum": ORDERS, "default": "id"},
     "description": "sort key; a leading '-' sorts descending"},
]
_LOGS_PARAMS: list[dict[str, Any]] = [
    {"name": "stream", "schema": {"type": "string"}, "description": "only this log (404 when the job has no such log)"},
    {"name": "tail", "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LOG_TAIL, "default": DEFAULT_LOG_TAIL},
     "description": "return at most this many bytes from the end of each log"},
]


def query_parameters(params: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Return OpenAPI query parameters (this API reads them itself: unknown ones are refused)."""
    found = []
    for param in params:
        spec = {"in": "query", "required": False, **param}
        if param["schema"].get("type") == "array":
            spec.update(style="form", explode=True)
        found.append(spec)
    return found


@router.get("/jobs/", url_name="api-jobs", operation_id="listJobs", response={200: JobPage, **errors(400, 401, 404)},
            summary="List the jobs you may see, a page at a time.",
            openapi_extra={"parameters": query_parameters(_LIST_PARAMS)})
def list_jobs(request: HttpRequest) -> HttpResponse:
    """List the jobs the caller may see, a page at a time, filtered and ordered."""
    parsing.check_query(request, [p["name"] for p in _LIST_PARAMS], repeatable=("status", "job_type", "app"))
    page = parsing.int_param(request, "page", 1, 1, 10**9)
    size = parsing.int_param(request, "page_size", DEFAULT_PAGE_SIZE, 1, MAX_PAGE_SIZE)
    jobs = _jobs(request.user)
    try:
        codes = sorted({statuses.parse_status(value).value for value in parsing.values(request, "status")})
        types = sorted({job_class(value).job_type_name for value in parsing.values(request, "job_type")})
    except ValueError as exc:
        raise ApiError(400, str(exc)) from None
    if codes:
        jobs = jobs.filter(_status__in=codes)
    if types:
        jobs = jobs.filter(job_type__in=types)
    apps = parsing.values(request, "app")
    if apps:
        jobs = jobs.filter(label__in=apps)
    text = request.GET.get("q", "").strip()
    if text:
        jobs = jobs.filter(Q(name__icontains=text) | Q(description__icontains=text))
    order = request.GET.get("order", "id") or "id"
    if order not in ORDERS:
        raise ApiError(400, f"order must be one of: {', '.join(ORDERS)}; not {order!r:.40}")
    descending = order.startswith("-")
    column = _ORDER_FIELDS[order.lstrip("-")]
    if column in _NULLABLE_ORDER_FIELDS:
        # Jobs without the value come last both ways (the databases disagree by default).
        key: Any = F(column).desc(nulls_last=True) if descending else F(column).asc(nulls_last=True)
    else:
        key = order.replace(order.lstrip("-"), column)  # plain, so an index can serve it
    jobs = jobs.order_by(key, "-id" if descending else "id")
    # All jobs of a large table (a manager's unfiltered list): the planner's estimate, not a COUNT(*)
    # that reads every row; the answer says so, and the pages follow the rows actually there.
    estimate = estimated_count(jobs)
    if estimate is None:
        count = jobs.count()
        pages = max(1, math.ceil(count / size))
        if page > pages:
            raise ApiError(404, f"page {page} is past the last page ({pages})")
        rows = list(jobs[(page - 1) * size : page * size])
        more = page < pages
    else:
        rows = list(jobs[(page - 1) * size : page * size + 1])  # one more row: is there a next page?
        more = len(rows) > size
        rows = rows[:size]
        if not rows and page > 1:
            raise ApiError(404, f"page {page} is past the last page")
        count = max(estimate, (page - 1) * size + len(rows))
        pages = max(page + more, math.ceil(count / size)) if more else page
    return JsonResponse({
        "count": count,
        "count_estimated": estimate is not None,
        "page": page,
        "page_size": size,
        "pages": pages,
        "next": _page_url(request, page + 1) if more else None,
        "previous": _page_url(request, page - 1) if page > 1 else None,
        "results": [job_json(job) for job in rows],
    })


def _page_url(request: HttpRequest, page: int) -> str:
    query = request.GET.copy()
    query["page"] = str(page)
    return f"{request.path}?{urlencode(sorted(query.lists()), doseq=True)}"


# -- creating -------------------------------------------------------------------------------------


class _ApiApp:
    """The app of a job created through the API under the API's or the site's own label."""

    def __init__(self, label: str) -> None:
        self.package = label
        self.name = label
        self.workspaces_root = None


#: The request body is read by create_job itself (415, NaN and NUL need their own answers); the API
#: module puts the generated per-type schemas in here when it builds the document.
CREATE_BODY = {"requestBody": {"required": True, "content": {"application/json": {
    "schema": {"$ref": "#/components/schemas/JobCreate"}}}}}


@router.post("/jobs/", url_name="api-jobs", operation_id="createJob",
             response={201: JobOut, **errors(400, 401, 403, 413, 415, 503)},
             summary='Create a job and execute it (unless "execute": false).', openapi_extra=CREATE_BODY)
def create_job(request: HttpRequest) -> HttpResponse:
    """Create a job from a JSON body and (unless "execute": false) execute it."""
    parsing.check_query(request, [])
    body = parsing.json_body(request)
    type_name = body.get("job_type")
    if not isinstance(type_name, str) or not type_name:
        raise ApiError(400, "job_type is required: a registered job type such as 'LOCAL' or 'BASIC'")
    try:
        cls = job_class(type_name)
    except ValueError as exc:
        raise ApiError(400, str(exc)) from None
    if not may_run_code(request.user, cls):
        raise ApiError(
            403, f"creating {cls.job_type_name} jobs runs programs on this server's engines: it needs the "
            "permission 'jobtower.add_job' (\"jobtower | job | Can add job\"), which an administrator grants",
        )
    settings_schemas = schemas.setting_schemas(cls)
    refused = sorted(set(body) & NOT_FROM_API.keys())
    if refused:
        raise ApiError(400, f"{refused[0]} cannot be set through the API: {NOT_FROM_API[refused[0]]}")
    unknown = sorted(set(body) - set(schemas.COMMON_FIELDS) - settings_schemas.keys())
    if unknown:
        accepted = ", ".join([*schemas.COMMON_FIELDS, *sorted(settings_schemas)])
        raise ApiError(
            400, f"unknown field(s) {', '.join(map(repr, unknown))} for a {cls.job_type_name} job; "
            f"it accepts: {accepted}",
        )
    name = body.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ApiError(400, "name is required: a non-empty string such as 'model run {id}'")
    if len(name.replace("{id}", "9" * len(str(MAX_ID)))) > schemas.MAX_NAME:
        raise ApiError(400, f"name is longer than {schemas.MAX_NAME} characters (with {{id}} expanded)")
    description = _typed(body, "description", str, "a string", "")
    app = _typed(body, "app", str, "a string", DEFAULT_APP)
    if not schemas.APP_LABEL.fullmatch(app) or ".." in app:
        raise ApiError(400, "app must be an app label: letters, digits, '_', '.', '-' (at most 100), such as 'my_app'")
    _check_app(request.user, app)
    execute = _typed(body, "execute", bool, "true or false", True)
    extended = _typed(body, "extended_properties", dict, "a JSON object", {})
    groups = _groups(request.user, _typed(body, "groups", list, "a list of group names", []))
    try:  # the type's settings, by the model generated from its SpecFields
        schemas.create_model_for(cls).model_validate({**body, "job_type": cls.job_type_name})
    except ValidationError as exc:
        field = str(exc.errors()[0]["loc"][0])
        value = body.get(field)
        raise ApiError(
            400, f"{field} must be {schemas.describe(settings_schemas.get(field, {}))}, not {parsing.json_type(value)}"
        ) from None
    settings_ = {key: body[key] for key in settings_schemas if key in body}
    # An installed app's own class, so its jobs get their folders where the app's other jobs do.
    job = manager.JobManager(installed_apps().get(app) or _ApiApp(app)).create_job(
        name=name, user=request.user, job_type=cls, groups=groups, description=description,
        extended_properties=extended,
    )
    for key, value in settings_.items():
        try:
            setattr(job, key, value)
        except (TypeError, ValueError, OverflowError) as exc:
            raise ApiError(400, f"{key}: {exc}") from None
    unavailable = None
    with transaction.atomic():
        if not execute:
            job.save()
        else:
            try:
                job.execute()
            except SubmitError:
                pass  # the job exists, in Error with the engine's reason: the client sees it below
            except EngineUnavailable as exc:
                unavailable = exc  # as in the library: the job is saved and stays Pending
            except (ValueError, TypeError) as exc:
                # execute() saved the job first; leaving this block undoes that.
                raise ApiError(400, f"the job cannot run, so it was not created: {exc}") from None
    url = reverse("jobtower:api-job", kwargs={"job_id": str(job.pk)})
    if unavailable is None:
        response = JsonResponse(_fresh(job.pk), status=201)
    else:
        message = f"{unavailable} To run it later: POST {url}run/"
        response = JsonResponse({"error": message, "job": _fresh(job.pk)}, status=503)
        response["Retry-After"] = "60"
    response["Location"] = url
    return response


def _open_apps() -> set[str]:
    """Return the labels every user may create jobs under: the API's own and the standalone site's."""
    from jobtower.web.views import SiteApp

    return {DEFAULT_APP, SiteApp.package}  # anyone logged in may use the site's form too


def installed_apps() -> dict[str, type]:
    """Return the apps this process knows by label: every AppBase subclass with a package."""
    from jobtower.appbase import AppBase

    found: dict[str, type] = {}
    classes = list(AppBase.__subclasses__())
    while classes:
        cls = classes.pop()
        classes.extend(cls.__subclasses__())
        if cls.package:
            found.setdefault(cls.package, cls)
    return found


def _check_app(user: Any, app: str) -> None:
    """Refuse a label that is no app's (400) or an app the caller may not use (403)."""
    if app in _open_apps():
        return
    installed = installed_apps()
    if app not in installed:
        usable = sorted(_open_apps() | {label for label in installed if may_use_app(user, label)})
        raise ApiError(400, f"there is no app {app!r}; you may create jobs for: {', '.join(usable)}")
    if not may_use_app(user, app):
        raise ApiError(
            403, f"you may not create jobs for the app {app!r}: that needs a permission of that app (or "
            f"staff status), which an administrator grants; or leave app out to use {DEFAULT_APP!r}",
        )


def _typed(body: Mapping[str, Any], key: str, kind: type, words: str, default: Any) -> Any:
    value = body.get(key, default)
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise ApiError(400, f"{key} must be {words}, not {parsing.json_type(value)}")
    return value


def _groups(user: Any, names: list[Any]) -> list[Any]:
    """Return the groups a new job is shared with: only the caller's own (any group for managers)."""
    if not names:
        return []
    from django.contrib.auth.models import Group

    if not all(isinstance(name, str) for name in names):
        raise ApiError(400, "groups must be a list of group names (strings)")
    pool = Group.objects.all() if is_manager(user) else user.groups.all()
    found = list(pool.filter(name__in=names))
    missing = sorted(set(names) - {group.name for group in found})
    if missing and is_manager(user):
        raise ApiError(400, f"there is no group {', '.join(map(repr, missing))}")
    if missing:
        listed = ", ".join(map(repr, missing))
        raise ApiError(403, f"you may share a job only with groups you are a member of; not {listed}")
    return found


# -- one job --------------------------------------------------------------------------------------


@router.get("/jobs/{job_id}/", url_name="api-job", operation_id="getJob", response={200: JobOut, **errors(401, 404)},
            summary="Get one job.")
def get_job(request: HttpRequest, job_id: JobId) -> HttpResponse:
    """Return one job."""
    parsing.check_query(request, [])
    return JsonResponse(job_json(_job(request, job_id)))


@router.delete("/jobs/{job_id}/", url_name="api-job", operation_id="deleteJob",
               response={204: None, **errors(401, 403, 404, 502)},
               summary="Delete a job (stopping it first if it is active) and its folder.")
def delete_job(request: HttpRequest, job_id: JobId) -> HttpResponse:
    """Stop the job if it is active, then delete it and its own folder."""
    parsing.check_query(request, [])
    job = _job(request, job_id)
    for retry in (False, True):
        try:
            job.delete()
        except StopError as exc:
            raise ApiError(502, f"{exc} The job was not deleted.") from None
        except Job.DoesNotExist:
            break  # deleted meanwhile: what was asked is done
        except InvalidTransition as exc:
            # It ended between the check and the stop: it needs no stopping now, so try once more.
            if retry:
                raise ApiError(409, str(exc)) from None
            continue
        break
    return HttpResponse(status=204)


def _action(verb: str, perform: Callable[[Job], None], summary: str, codes: tuple[int, ...]) -> None:
    """Declare POST jobs/<id>/<verb>/: perform the action and answer with the job afterwards."""

    def handler(request: HttpRequest, job_id: JobId) -> HttpResponse:
        parsing.check_query(request, [])
        job = _job(request, job_id)
        try:
            perform(job)
        except SubmitError:
            pass  # the job is in Error with the engine's reason, which the answer shows
        except InvalidTransition as exc:
            raise ApiError(409, str(exc)) from None
        except EngineUnavailable as exc:
            raise ApiError(503, str(exc), {"Retry-After": "60"}) from None
        except StopError as exc:
            raise ApiError(502, str(exc)) from None
        except NotImplementedError:
            engine = getattr(job.get_backend(), "name", "its engine")
            raise ApiError(409, f"{job.job_type} jobs cannot {verb}: {engine} does not support it") from None
        except Job.DoesNotExist:
            raise ApiError(404, f"job {job.pk} was deleted meanwhile") from None
        except (ValueError, TypeError, JobError) as exc:
            raise ApiError(409, f"job {job.pk} cannot {verb}: {exc}") from None
        return JsonResponse(_fresh(job.pk))

    handler.__name__ = handler.__qualname__ = f"{verb}_job"
    handler.__doc__ = f"{verb.capitalize()} a job."
    router.post(f"/jobs/{{job_id}}/{verb}/", url_name=f"api-job-{verb}", operation_id=f"{verb}Job",
                response={200: JobOut, **errors(401, 403, 404, *codes)}, summary=summary)(handler)


_action("run", manager.execute, "Execute a Pending job (exactly once).", (409, 503))
_action("stop", manager.stop, "Stop an active job (-> Aborted).", (409, 502))
_action("pause", manager.pause, "Pause an active job (-> Paused).", (409, 502))
_action("resume", manager.resume, "Resume a Paused job.", (409, 502))
_action("resubmit", manager.resubmit, "Run a job again as a new attempt.", (409, 502, 503))


@router.get("/jobs/{job_id}/logs/", url_name="api-job-logs", operation_id="getJobLogs",
            response={200: Logs, **errors(400, 401, 404, 409, 502)}, summary="Get the end of each of a job's logs.",
            openapi_extra={"parameters": query_parameters(_LOGS_PARAMS)})
def job_logs(request: HttpRequest, job_id: JobId) -> HttpResponse:
    """Return the end of each of the job's logs ({stream: text}); files are never read whole."""
    parsing.check_query(request, [p["name"] for p in _LOGS_PARAMS])
    job = _job(request, job_id)
    limit = parsing.int_param(request, "tail", DEFAULT_LOG_TAIL, 1, MAX_LOG_TAIL)
    wanted = request.GET.get("stream") or None
    try:
        manager.require(job, "logs")
    except NotSupported as exc:
        raise ApiError(409, str(exc)) from None
    backend = job.get_backend()
    files: Mapping[str, Path] = {}
    texts: Mapping[str, Any] = {}
    if backend is not None:
        try:
            files = backend.log_files(job)
            texts = {} if files else backend.logs(job)
        except Exception as exc:
            log.exception("reading the logs of job %s failed", job.pk)
            raise ApiError(
                502, f"{backend.name} could not give the logs of job {job.pk}: {type(exc).__name__}: {exc}"
            ) from None
    names = [str(name) for name in (files or texts)]
    if wanted is not None and wanted not in names:
        raise ApiError(404, f"job {job.pk} has no log {wanted!r:.60}; it has: {', '.join(names) or 'none'}")
    logs = {
        name: _tail_file(files[name], limit) if files else _tail_text(str(texts[name]), limit)
        for name in names
        if wanted in (None, name)
    }
    return JsonResponse(logs)


def _tail_file(path: Path, limit: int) -> str:
    try:
        with open(path, "rb") as handle:
            size = handle.seek(0, 2)
            handle.seek(max(0, size - limit))
            data = handle.read(limit)
    except OSError:
        return ""
    return _decode_tail(data, cut=size > limit)


def _tail_text(text: str, limit: int) -> str:
    data = text.encode("utf-8", errors="replace")
    return _decode_tail(data[-limit:], cut=len(data) > limit)


def _decode_tail(data: bytes, cut: bool) -> str:
    if cut:
        # Do not start in the middle of a UTF-8 character.
        start = 0
        while start < min(3, len(data)) and 0x80 <= data[start] < 0xC0:
            start += 1
        data = data[start:]
    return data.decode("utf-8", errors="replace")


@router.get("/jobs/{job_id}/history/", url_name="api-job-history", operation_id="getJobHistory",
            response={200: History, **errors(401, 404)}, summary="Get a job's status moves, oldest first.")
def job_history(request: HttpRequest, job_id: JobId) -> HttpResponse:
    """Return the job's status moves, oldest first."""
    parsing.check_query(request, [])
    job = _job(request, job_id)
    return JsonResponse({
        "results": [
            {
                "id": event.pk,
                "attempt": event.attempt,
                "from_status": Status(event.from_status).display,
                "from_status_code": event.from_status,
                "to_status": Status(event.to_status).display,
                "to_status_code": event.to_status,
                "time": render._iso(event.time),
                "source": event.source,
                "message": event.message,
            }
            for event in job.history()
        ]
    })


# -- a workflow's nodes ---------------------------------------------------------------------------

_NODE_LOGS_PARAMS: list[dict[str, Any]] = [
    {"name": "stream", "schema": {"type": "string", "enum": ["stdout", "stderr"]}, "description": "only this log"},
    _LOGS_PARAMS[1],
]


def _workflow(request: HttpRequest, job_id: int) -> Job:
    """Return the workflow the caller may see; a job that is not a workflow is a 404 too."""
    from jobtower.models import CondorWorkflow

    job = _job(request, job_id)
    if not isinstance(job, CondorWorkflow):
        raise ApiError(404, f"job {job.pk} is a {job.job_type} job, not a workflow (CONDORWORKFLOW): it has no nodes")
    return job


@router.get("/jobs/{job_id}/nodes/", url_name="api-job-nodes", operation_id="getJobNodes",
            response={200: Nodes, **errors(401, 404)}, summary="Get a workflow's nodes as last stored.")
def job_nodes(request: HttpRequest, job_id: JobId) -> HttpResponse:
    """Return the workflow's nodes: statuses, parents, throttles and run times (no engine is asked)."""
    from jobtower.models.workflow import WorkflowNode, graph

    parsing.check_query(request, [])
    job = _workflow(request, job_id)
    edges = graph(job.pk)
    names = {node_id: name for node_id, (name, _) in edges.items()}
    rows = []
    for node in WorkflowNode.objects.filter(workflow_id=job.pk).order_by("id"):
        code = node.status_code
        run_time = node.run_time
        rows.append({
            "name": node.name,
            "status": code.display,
            "status_code": code.value,
            "status_message": node.status_message,
            "parents": sorted(names[p] for p in edges.get(node.pk, ("", []))[1] if p in names),
            "category": node.category,
            "retry": node.retry,
            "start_time": render._iso(node.start_time),
            "completion_time": render._iso(node.completion_time),
            "run_time": run_time.total_seconds() if run_time != "" else None,
            "logs": reverse("jobtower:api-job-node-logs", kwargs={"job_id": str(job.pk), "name": node.name}),
        })
    return JsonResponse({"results": rows})


@router.get("/jobs/{job_id}/nodes/{name}/logs/", url_name="api-job-node-logs", operation_id="getJobNodeLogs",
            response={200: Logs, **errors(400, 401, 404)}, summary="Get the end of a node's stdout and stderr.",
            openapi_extra={"parameters": query_parameters(_NODE_LOGS_PARAMS)})
def job_node_logs(request: HttpRequest, job_id: JobId, name: NodeName) -> HttpResponse:
    """Return the end of the node's stdout and stderr in this attempt, read from its own folder only."""
    from jobtower.backends.condor_templates import node_folder
    from jobtower.models.workflow import NODE_NAME

    parsing.check_query(request, [p["name"] for p in _NODE_LOGS_PARAMS])
    job = _workflow(request, job_id)
    limit = parsing.int_param(request, "tail", DEFAULT_LOG_TAIL, 1, MAX_LOG_TAIL)
    wanted = request.GET.get("stream") or None
    if wanted not in (None, "stdout", "stderr"):
        raise ApiError(400, f"stream must be stdout or stderr, not {wanted!r:.60}")
    if not NODE_NAME.fullmatch(name) or not job.node_set.filter(name=name).exists():
        known = ", ".join(job.node_set.order_by("id").values_list("name", flat=True)[:50]) or "none"
        raise ApiError(404, f"workflow {job.pk} has no node {name!r:.80}; its nodes are: {known}")
    folder = Path(node_folder(job.folder, job.attempt, name))
    return JsonResponse({
        stream: _tail_inside(folder, f"{stream}.txt", limit)
        for stream in ("stdout", "stderr")
        if wanted in (None, stream)
    })


def _tail_inside(folder: Path, file_name: str, limit: int) -> str:
    """Return the end of folder/file_name, or "" when it is missing or leads out of `folder` (a link)."""
    try:
        root = folder.resolve(strict=True)
        target = (folder / file_name).resolve(strict=True)
    except OSError:
        return ""
    if target.parent != root:
        return ""  # a node job may leave a link where its log was: never follow it out of the folder
    try:  # and not if it becomes a link after the check
        handle = os.fdopen(os.open(target, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK), "rb")
    except OSError:
        return ""
    with handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            return ""
        size = handle.seek(0, 2)
        handle.seek(max(0, size - limit))
        return _decode_tail(handle.read(limit), cut=size > limit)
