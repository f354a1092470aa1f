"""The REST API: JSON over the JobManager (list, create, get, delete, actions, logs, history, schema).

Every endpoint is declared once, in ENDPOINTS: the URLconf (api_urls.py) and the OpenAPI schema are
built from that table, so the two cannot disagree. Authentication is a Bearer token (web/tokens.py;
such requests need no CSRF token) or the session (then unsafe methods need CSRF, as everywhere in
Django). Who may see and act on a job is decided by web/permissions.py, as for the Jobs Table; a job
the caller may not see is a 404, so its existence is not revealed. Every error is JSON
{"error": "..."}; an unexpected exception is logged and answered with a 500 that says nothing more.
"""

from __future__ import annotations

import datetime
import json
import logging
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlencode

from django.conf import settings
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.db import transaction
from django.db.models import F, Q, QuerySet
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.middleware.csrf import CsrfViewMiddleware
from django.urls import Resolver404, resolve, reverse
from django.views.decorators.csrf import csrf_exempt

from jobtower import manager, statuses
from jobtower.backends import Capability
from jobtower.errors import EngineUnavailable, InvalidTransition, JobError, NotSupported, StopError, SubmitError
from jobtower.models import Job
from jobtower.models.job import spec_fields
from jobtower.registry import job_class, registered_classes
from jobtower.statuses import Status
from jobtower.web import tokens
from jobtower.web.middleware import busy_response, database_busy
from jobtower.web.permissions import is_manager, may_run_code, may_use_app, visible_jobs

log = logging.getLogger("jobtower")

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 200
#: Bytes of each log returned when ?tail= is not given, and the most ?tail= may ask for.
DEFAULT_LOG_TAIL = 64 * 1024
MAX_LOG_TAIL = 1024 * 1024
#: The app label of jobs created through the API when the body names none.
DEFAULT_APP = "api"
_APP_LABEL = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}")
_MAX_NAME = Job._meta.get_field("name").max_length or 1024
_MAX_ID = 2**63 - 1
_SAFE_METHODS = ("GET", "HEAD", "OPTIONS", "TRACE")
#: Fields of a create request besides the job type's own settings.
_COMMON_FIELDS = ("job_type", "name", "description", "app", "execute", "groups", "extended_properties")
#: Job options apps set in code that a remote client may not: server paths and server-side code.
_NOT_FROM_API = {
    "workspace": "jobs created through the API get their folder in the user's workspace",
    "process_results_function": "it runs inside the server; set it from the app's code",
}


class ApiError(Exception):
    """An answer other than success: an HTTP status and a message for the client."""

    def __init__(self, status: int, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})

    def response(self) -> JsonResponse:
        """Return the error as a JSON response."""
        return error_response(self.status, self.message, self.headers)


def error_response(status: int, message: str, headers: Mapping[str, str] | None = None) -> JsonResponse:
    """Return {"error": message} with `status`."""
    response = JsonResponse({"error": message}, status=status)
    for key, value in (headers or {}).items():
        response[key] = value
    return response


# -- authentication -------------------------------------------------------------------------------


class _CsrfCheck(CsrfViewMiddleware):
    """Django's own CSRF check, answering with the reason instead of rendering the HTML failure page."""

    def _reject(self, request: HttpRequest, reason: str) -> str:
        return reason


def _no_response(request: HttpRequest) -> HttpResponse:  # the check never calls the next layer
    return HttpResponse(status=500)


_UNAUTHENTICATED = {"WWW-Authenticate": 'Bearer realm="jobtower"'}


def authenticate(request: HttpRequest) -> tuple[Any, bool]:
    """Return (user, came with a token) for the request, or raise a 401 ApiError."""
    header = request.headers.get("Authorization", "")
    if header:
        scheme, _, credentials = header.strip().partition(" ")
        if scheme.lower() != "bearer" or not credentials.strip():
            raise ApiError(
                401, "the Authorization header must be 'Bearer <token>'; make a token with "
                "`jobtower token --user NAME`", _UNAUTHENTICATED,
            )
        user = tokens.user_for_token(credentials.strip())
        if user is None:
            raise ApiError(
                401, "the token is not valid: it was altered, or its user changed their password or "
                "was deactivated; make a new one with `jobtower token --user NAME`", _UNAUTHENTICATED,
            )
        return user, True
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        return user, False
    raise ApiError(
        401, "authentication required: send 'Authorization: Bearer <token>' or log in", _UNAUTHENTICATED
    )


def csrf_failure(request: HttpRequest) -> str | None:
    """Return why a session request fails Django's CSRF check, or None when it passes."""
    return _CsrfCheck(_no_response).process_view(request, None, (), {})  # type: ignore[arg-type, return-value]


# -- the endpoint table ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Param:
    """A query parameter of an operation (validated by the handler, described in the schema)."""

    name: str
    schema: dict[str, Any]
    description: str
    repeatable: bool = False


@dataclass(frozen=True)
class Operation:
    """One method of one endpoint: its handler and what the schema says about it."""

    handler: Callable[..., HttpResponse]
    operation_id: str
    summary: str
    success: int
    success_description: str
    success_schema: dict[str, Any] | None
    errors: tuple[int, ...]
    params: tuple[Param, ...] = ()
    request_body: dict[str, Any] | None = None
    #: No authentication needed (the schema itself).
    public: bool = False


@dataclass(frozen=True)
class Endpoint:
    """A URL under api/ and its operations by HTTP method."""

    route: str
    name: str
    operations: dict[str, Operation] = field(default_factory=dict)

    @property
    def allowed(self) -> str:
        """Return the methods the endpoint answers, for the Allow header."""
        return ", ".join(self.operations)


def view_for(endpoint: Endpoint) -> Callable[..., HttpResponse]:
    """Return the Django view that serves `endpoint` (CSRF is checked inside, for sessions only)."""

    @csrf_exempt
    def view(request: HttpRequest, **kwargs: Any) -> HttpResponse:
        try:
            return _dispatch(request, endpoint, kwargs)
        except ApiError as exc:
            return exc.response()
        except RequestDataTooBig:
            return error_response(413, "the request body is too large")
        except SuspiciousOperation as exc:
            return error_response(400, f"the request was refused: {type(exc).__name__}")
        except Exception as exc:
            if database_busy(exc):
                return busy_response(request)
            log.exception("API %s %s failed", request.method, request.path)
            return error_response(500, "internal error: the request failed on the server; its log has the details")

    view.__name__ = view.__qualname__ = f"api_{endpoint.name.replace('-', '_')}"
    view.__doc__ = "; ".join(op.summary for op in endpoint.operations.values())
    return view


def _dispatch(request: HttpRequest, endpoint: Endpoint, kwargs: dict[str, Any]) -> HttpResponse:
    operation = endpoint.operations.get(request.method or "")
    if operation is None:
        raise ApiError(
            405, f"{request.method} is not allowed here; use {endpoint.allowed}", {"Allow": endpoint.allowed}
        )
    _check_query(request, operation)
    if not operation.public:
        user, with_token = authenticate(request)
        request.user = user
        if not with_token and request.method not in _SAFE_METHODS:
            reason = csrf_failure(request)
            if reason is not None:
                raise ApiError(
                    403, f"CSRF check failed ({reason}): session requests that change something need the "
                    "X-CSRFToken header; token requests (Authorization: Bearer) do not",
                )
    return operation.handler(request, **kwargs)


def _check_query(request: HttpRequest, operation: Operation) -> None:
    known = {param.name: param for param in operation.params}
    unknown = sorted(set(request.GET) - known.keys())
    if unknown:
        accepted = ", ".join(known) or "none"
        raise ApiError(400, f"unknown query parameter(s) {', '.join(map(repr, unknown))}; accepted: {accepted}")
    for name, values in request.GET.lists():
        if len(values) > 1 and not known[name].repeatable:
            raise ApiError(400, f"query parameter {name!r} may be given only once")
        for value in values:
            if "\x00" in value:
                raise ApiError(400, f"query parameter {name!r} contains a NUL character")


@csrf_exempt
def not_found(request: HttpRequest, *args: Any, **kwargs: Any) -> JsonResponse:
    """Answer any other URL under api/ with a JSON 404 (suggesting the slash when it is missing)."""
    hint = ""
    if not request.path_info.endswith("/"):
        try:
            match = resolve(request.path_info + "/")
        except Resolver404:
            match = None
        if match is not None and match.url_name != "api-not-found":
            hint = f"; did you mean {request.path}/ ?"
    return error_response(404, f"there is no API endpoint {request.path}{hint}")


# -- reading the request --------------------------------------------------------------------------


def _int_param(request: HttpRequest, name: str, default: int, low: int, high: int) -> int:
    raw = request.GET.get(name)
    if raw is None or raw == "":
        return default
    if not (raw.isascii() and raw.isdigit()):
        raise ApiError(400, f"{name} must be a whole number from {low} to {high}, not {raw!r:.40}")
    value = int(raw)
    if not low <= value <= high:
        raise ApiError(400, f"{name} must be from {low} to {high}, not {value}")
    return value


def _values(request: HttpRequest, name: str) -> list[str]:
    """Return a repeatable parameter's values; each may also be a comma-separated list."""
    return [part.strip() for value in request.GET.getlist(name) for part in value.split(",") if part.strip()]


def _json_body(request: HttpRequest) -> dict[str, Any]:
    content_type = request.content_type or ""
    if content_type != "application/json" and not content_type.endswith("+json"):
        raise ApiError(
            415, f"send the body as JSON with Content-Type: application/json, not {content_type or 'nothing'!r}"
        )
    raw = request.body
    if not raw.strip():
        raise ApiError(400, "the body is empty: send a JSON object")
    try:
        data = json.loads(raw, parse_constant=_no_constant)
    except RecursionError:
        raise ApiError(400, "the JSON body is nested too deeply") from None
    except ValueError as exc:
        raise ApiError(400, f"the body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ApiError(400, f"the body must be a JSON object, not {_json_type(data)}")
    try:
        _check_text(data, "body")
    except RecursionError:
        raise ApiError(400, "the JSON body is nested too deeply") from None
    return data


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _check_text(value: Any, where: str) -> None:
    """Refuse strings the databases cannot store: NUL characters and lone surrogates."""
    if isinstance(value, str):
        if "\x00" in value:
            raise ApiError(400, f"{where} contains a NUL character, which cannot be stored")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ApiError(400, f"{where} contains an unpaired surrogate (invalid Unicode)") from None
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_text(key, f"a key in {where}")
            _check_text(item, f"{where}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check_text(item, f"{where}[{index}]")


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _matches(value: Any, schema: Mapping[str, Any]) -> bool:
    """Return True when `value` has a type `schema` allows (the small part of JSON Schema we use)."""
    types = schema.get("type")
    if types is None:
        return True
    allowed = {types} if isinstance(types, str) else set(types)
    kind = _json_type(value)
    if kind == "integer" and "number" in allowed:
        kind = "number"
    if kind not in allowed:
        return False
    if kind == "array":
        items = schema.get("items")
        if len(value) < schema.get("minItems", 0):
            return False
        return items is None or all(_matches(item, items) for item in value)
    if kind == "object":
        extra = schema.get("additionalProperties")
        return not isinstance(extra, dict) or all(_matches(item, extra) for item in value.values())
    if kind in ("integer", "number") and "exclusiveMinimum" in schema:
        return bool(value > schema["exclusiveMinimum"])
    return True


_WORDS = {"array": "a list", "object": "a JSON object", "string": "a string", "number": "a number",
          "integer": "a whole number", "boolean": "true or false"}


def _describe(schema: Mapping[str, Any]) -> str:
    """Return what a value of `schema` must be, in words ("a number above 0 or null")."""
    types = schema.get("type")
    if types is None:
        return "any JSON value"
    kinds = [types] if isinstance(types, str) else list(types)
    text = " or ".join(_WORDS[kind] for kind in kinds if kind != "null")
    if "items" in schema:
        text += f" of {schema['items'].get('type', 'value')}s"
    if schema.get("minItems"):
        text += " (not empty)"
    extra = schema.get("additionalProperties")
    if isinstance(extra, dict):
        text += f" with {extra.get('type', 'any')} values"
    if "exclusiveMinimum" in schema:
        text += f" above {schema['exclusiveMinimum']}"
    return text + (" or null" if "null" in kinds else "")


# -- settings of each job type, as JSON Schema ----------------------------------------------------

_KNOWN_SETTINGS: dict[str, dict[str, Any]] = {
    "command": {"type": ["array", "null"], "items": {"type": "string"}, "minItems": 1,
                "description": "the program and its arguments (argv); never run by a shell"},
    "function": {"type": ["string", "null"], "description": "'package.module:function' the worker calls"},
    "args": {"type": "array", "description": "positional arguments of `function` (JSON values)"},
    "kwargs": {"type": "object", "description": "keyword arguments of `function` (JSON values)"},
    "environment": {"type": "object", "additionalProperties": {"type": "string"},
                    "description": "environment variables added to the job's"},
    "timeout": {"type": ["number", "null"], "exclusiveMinimum": 0,
                "description": "seconds after which the job is ended as an Error"},
    "attributes": {"type": "object", "description": "HTCondor submit-description attributes"},
    "condorpy_template_name": {"type": ["string", "null"]},
    "scheduler": {"type": ["string", "null"], "description": "the name of the scheduler"},
    "remote_input_files": {"type": "array", "items": {"type": "string"}},
    "max_jobs": {"type": "object", "additionalProperties": {"type": "integer"}},
    "config": {"type": "string"},
}


def setting_schemas(cls: type[Job]) -> dict[str, dict[str, Any]]:
    """Return the JSON Schema of each setting of a job class (known ones, else from its default)."""
    found = {}
    for name, spec in spec_fields(cls).items():
        if name in _KNOWN_SETTINGS:
            found[name] = dict(_KNOWN_SETTINGS[name])
            continue
        default = spec.default() if callable(spec.default) else spec.default
        kind = {list: "array", dict: "object", str: "string", bool: "boolean", int: "integer", float: "number"}
        found[name] = {"type": kind[type(default)]} if type(default) in kind else {}
    return found


# -- writing the response -------------------------------------------------------------------------


def _iso(moment: Any) -> str | None:
    return moment.isoformat() if moment is not None else None


def finite(value: Any) -> Any:
    """Return `value` with every NaN or infinite number in it replaced by None."""
    # JSON has no such numbers: json.dumps would write NaN or Infinity, which clients cannot parse.
    # They reach a job through the database (a FloatField takes them), not through jsoncheck.
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(item) for item in value]
    return value


def job_json(job: Job) -> dict[str, Any]:
    """Return a job as the API shows it (from the database only: no engine is asked)."""
    code = job.status_code
    run_time = job.run_time
    names = spec_fields(type(job))
    settings_ = {name: getattr(job, name) for name in names} if names else dict(job.spec)
    shown: dict[str, Any] = finite({
        "id": job.pk,
        "url": reverse("jobtower:api-job", kwargs={"job_id": str(job.pk)}),
        "name": job.name,
        "description": job.description,
        "job_type": job.job_type,
        "label": job.label,
        "user": job.user.get_username(),
        "groups": sorted(group.name for group in job.groups.all()),
        "status": code.display,
        "status_code": code.value,
        "status_message": job.status_message,
        "progress": job.progress,
        "progress_message": job.progress_message,
        "attempt": job.attempt,
        "creation_time": _iso(job.creation_time),
        "execute_time": _iso(job.execute_time),
        "start_time": _iso(job.start_time),
        "completion_time": _iso(job.completion_time),
        "run_time": run_time.total_seconds() if isinstance(run_time, datetime.timedelta) else None,
        "result": job.result,
        "extended_properties": job.extended_properties,
        "spec": settings_,
        "stale_since": _iso(job.stale_since),
        "capabilities": sorted(c.value for c in manager.capabilities(job)),
    })
    return shown


def _jobs(user: Any) -> QuerySet[Job]:
    return visible_jobs(user, Job.objects.select_related("user").prefetch_related("groups"))


def _job(request: HttpRequest, job_id: str) -> Job:
    """Return the job the caller may see, or raise a 404 (the same for missing and not theirs)."""
    if not (job_id.isascii() and job_id.isdigit()) or not 0 < int(job_id) <= _MAX_ID:
        raise ApiError(404, f"there is no job {job_id!r:.40}: job ids are whole numbers")
    job = _jobs(request.user).filter(pk=int(job_id)).first()
    if job is None:
        raise ApiError(404, f"there is no job {job_id} that you may see")
    return job


def _fresh(job_id: int) -> dict[str, Any]:
    """Return the job as stored now (after an action changed it)."""
    job = Job.objects.select_related("user").prefetch_related("groups").filter(pk=job_id).first()
    if job is None:
        raise ApiError(404, f"job {job_id} was deleted meanwhile")
    return job_json(job)


# -- handlers -------------------------------------------------------------------------------------

_ORDER_FIELDS = {
    "id": "id", "name": "name", "status": "_status", "job_type": "job_type", "app": "label",
    "user": "user__username", "attempt": "attempt", "progress": "progress",
    "creation_time": "creation_time", "execute_time": "execute_time", "start_time": "start_time",
    "completion_time": "completion_time",
}
ORDERS = [sign + name for name in _ORDER_FIELDS for sign in ("", "-")]
_NULLABLE_ORDER_FIELDS = {"progress", "execute_time", "start_time", "completion_time"}


def list_jobs(request: HttpRequest) -> JsonResponse:
    """List the jobs the caller may see, a page at a time, filtered and ordered."""
    page = _int_param(request, "page", 1, 1, 10**9)
    size = _int_param(request, "page_size", DEFAULT_PAGE_SIZE, 1, MAX_PAGE_SIZE)
    jobs = _jobs(request.user)
    try:
        codes = sorted({statuses.parse_status(value).value for value in _values(request, "status")})
        types = sorted({job_class(value).job_type_name for value in _values(request, "job_type")})
    except ValueError as exc:
        raise ApiError(400, str(exc)) from None
    if codes:
        jobs = jobs.filter(_status__in=codes)
    if types:
        jobs = jobs.filter(job_type__in=types)
    apps = _values(request, "app")
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
    count = jobs.count()
    pages = max(1, math.ceil(count / size))
    if page > pages:
        raise ApiError(404, f"page {page} is past the last page ({pages})")
    rows = list(jobs[(page - 1) * size : page * size])
    return JsonResponse({
        "count": count,
        "page": page,
        "page_size": size,
        "pages": pages,
        "next": _page_url(request, page + 1) if page < pages else None,
        "previous": _page_url(request, page - 1) if page > 1 else None,
        "results": [job_json(job) for job in rows],
    })


def _page_url(request: HttpRequest, page: int) -> str:
    query = request.GET.copy()
    query["page"] = str(page)
    return f"{request.path}?{urlencode(sorted(query.lists()), doseq=True)}"


class _ApiApp:
    """The app of a job created through the API under the API's or the site's own label."""

    def __init__(self, label: str) -> None:
        self.package = label
        self.name = label
        self.workspaces_root = None


def create_job(request: HttpRequest) -> JsonResponse:
    """Create a job from a JSON body and (unless "execute": false) execute it."""
    body = _json_body(request)
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
    schemas = setting_schemas(cls)
    refused = sorted(set(body) & _NOT_FROM_API.keys())
    if refused:
        raise ApiError(400, f"{refused[0]} cannot be set through the API: {_NOT_FROM_API[refused[0]]}")
    unknown = sorted(set(body) - set(_COMMON_FIELDS) - schemas.keys())
    if unknown:
        accepted = ", ".join([*_COMMON_FIELDS, *sorted(schemas)])
        raise ApiError(
            400, f"unknown field(s) {', '.join(map(repr, unknown))} for a {cls.job_type_name} job; "
            f"it accepts: {accepted}",
        )
    name = body.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ApiError(400, "name is required: a non-empty string such as 'model run {id}'")
    if len(name.replace("{id}", "9" * len(str(_MAX_ID)))) > _MAX_NAME:
        raise ApiError(400, f"name is longer than {_MAX_NAME} characters (with {{id}} expanded)")
    description = _typed(body, "description", str, "a string", "")
    app = _typed(body, "app", str, "a string", DEFAULT_APP)
    if not _APP_LABEL.fullmatch(app) or ".." in app:
        raise ApiError(400, "app must be an app label: letters, digits, '_', '.', '-' (at most 100), such as 'my_app'")
    _check_app(request.user, app)
    execute = _typed(body, "execute", bool, "true or false", True)
    extended = _typed(body, "extended_properties", dict, "a JSON object", {})
    groups = _groups(request.user, _typed(body, "groups", list, "a list of group names", []))
    settings_ = {key: body[key] for key in schemas if key in body}
    for key, value in settings_.items():
        if not _matches(value, schemas[key]):
            raise ApiError(400, f"{key} must be {_describe(schemas[key])}, not {_json_type(value)}")
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
        raise ApiError(400, f"{key} must be {words}, not {_json_type(value)}")
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


def get_job(request: HttpRequest, job_id: str) -> JsonResponse:
    """Return one job."""
    return JsonResponse(job_json(_job(request, job_id)))


def delete_job(request: HttpRequest, job_id: str) -> HttpResponse:
    """Stop the job if it is active, then delete it and its own folder."""
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


def _action(perform: Callable[[Job], None], verb: str) -> Callable[..., JsonResponse]:
    def handler(request: HttpRequest, job_id: str) -> JsonResponse:
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

    handler.__name__ = f"{verb}_job"
    handler.__doc__ = f"{verb.capitalize()} a job."
    return handler


def job_logs(request: HttpRequest, job_id: str) -> JsonResponse:
    """Return the end of each of the job's logs ({stream: text}); files are never read whole."""
    job = _job(request, job_id)
    limit = _int_param(request, "tail", DEFAULT_LOG_TAIL, 1, MAX_LOG_TAIL)
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


def job_history(request: HttpRequest, job_id: str) -> JsonResponse:
    """Return the job's status moves, oldest first."""
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
                "time": _iso(event.time),
                "source": event.source,
                "message": event.message,
            }
            for event in job.history()
        ]
    })


def openapi(request: HttpRequest) -> JsonResponse:
    """Return the OpenAPI 3.1 description of this API."""
    return JsonResponse(openapi_schema())


# -- the table ------------------------------------------------------------------------------------

_ERROR_DESCRIPTIONS = {
    400: "Bad request: a parameter, field or body is wrong; the message names it.",
    401: "Not authenticated: send `Authorization: Bearer <token>` or log in.",
    403: "Forbidden: a session request without a valid CSRF token, or sharing with a group you are not in.",
    404: "No such job, or one you may not see (the two are not told apart).",
    409: "The job's status does not allow this now; the message says why.",
    413: "The body is too large.",
    415: "The body is not JSON: send Content-Type: application/json.",
    502: "The job's engine failed to do it; nothing was changed.",
    503: "The job's engine is not available now; nothing was run (a new job is stored Pending and "
         "returned as `job` next to `error`). Also any request that finds the database locked: "
         "try again after Retry-After seconds.",
}
_JOB_ID = {"name": "job_id", "in": "path", "required": True, "schema": {"type": "integer", "minimum": 1},
           "description": "the job's id"}
_STATUS_NAMES = sorted({s.value for s in Status} | {s.display for s in Status})


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _action_op(verb: str, perform: Callable[[Job], None], summary: str, errors: tuple[int, ...]) -> Operation:
    return Operation(_action(perform, verb), f"{verb}Job", summary, 200, "The job after the action.",
                     _ref("Job"), (401, 403, 404, *errors))


ENDPOINTS: list[Endpoint] = [
    Endpoint("jobs/", "api-jobs", {
        "GET": Operation(
            list_jobs, "listJobs", "List the jobs you may see, a page at a time.", 200, "A page of jobs.",
            _ref("JobPage"), (400, 401, 404),
            params=(
                Param("page", {"type": "integer", "minimum": 1, "default": 1}, "page number (404 past the last)"),
                Param("page_size", {"type": "integer", "minimum": 1, "maximum": MAX_PAGE_SIZE,
                                    "default": DEFAULT_PAGE_SIZE}, "jobs per page"),
                Param("status", {"type": "array", "items": {"type": "string", "enum": _STATUS_NAMES}},
                      "only jobs in these statuses (codes or display strings; repeat or comma-separate)",
                      repeatable=True),
                Param("job_type", {"type": "array", "items": {"type": "string"}},
                      "only jobs of these types (repeat or comma-separate)", repeatable=True),
                Param("app", {"type": "array", "items": {"type": "string"}},
                      "only jobs of these app labels (repeat or comma-separate)", repeatable=True),
                Param("q", {"type": "string"}, "text searched in names and descriptions"),
                Param("order", {"type": "string", "enum": ORDERS, "default": "id"},
                      "sort key; a leading '-' sorts descending"),
            ),
        ),
        "POST": Operation(
            create_job, "createJob", "Create a job and execute it (unless \"execute\": false).", 201,
            "The new job (an engine that refused it leaves it in Error, with the reason).", _ref("Job"),
            (400, 401, 403, 413, 415, 503), request_body=_ref("JobCreate"),
        ),
    }),
    Endpoint("jobs/<str:job_id>/", "api-job", {
        "GET": Operation(get_job, "getJob", "Get one job.", 200, "The job.", _ref("Job"), (401, 404)),
        "DELETE": Operation(
            delete_job, "deleteJob", "Delete a job (stopping it first if it is active) and its folder.",
            204, "Deleted.", None, (401, 403, 404, 502),
        ),
    }),
    Endpoint("jobs/<str:job_id>/run/", "api-job-run", {
        "POST": _action_op("run", manager.execute, "Execute a Pending job (exactly once).", (409, 503)),
    }),
    Endpoint("jobs/<str:job_id>/stop/", "api-job-stop", {
        "POST": _action_op("stop", manager.stop, "Stop an active job (-> Aborted).", (409, 502)),
    }),
    Endpoint("jobs/<str:job_id>/pause/", "api-job-pause", {
        "POST": _action_op("pause", manager.pause, "Pause an active job (-> Paused).", (409, 502)),
    }),
    Endpoint("jobs/<str:job_id>/resume/", "api-job-resume", {
        "POST": _action_op("resume", manager.resume, "Resume a Paused job.", (409, 502)),
    }),
    Endpoint("jobs/<str:job_id>/resubmit/", "api-job-resubmit", {
        "POST": _action_op("resubmit", manager.resubmit, "Run a job again as a new attempt.", (409, 502, 503)),
    }),
    Endpoint("jobs/<str:job_id>/logs/", "api-job-logs", {
        "GET": Operation(
            job_logs, "getJobLogs", "Get the end of each of a job's logs.", 200,
            "The logs by stream name: {\"stdout\": \"...\", \"stderr\": \"...\"}.", _ref("Logs"),
            (400, 401, 404, 502),
            params=(
                Param("stream", {"type": "string"}, "only this log (404 when the job has no such log)"),
                Param("tail", {"type": "integer", "minimum": 1, "maximum": MAX_LOG_TAIL, "default": DEFAULT_LOG_TAIL},
                      "return at most this many bytes from the end of each log"),
            ),
        ),
    }),
    Endpoint("jobs/<str:job_id>/history/", "api-job-history", {
        "GET": Operation(job_history, "getJobHistory", "Get a job's status moves, oldest first.", 200,
                         "The job's history.", _ref("History"), (401, 404)),
    }),
    Endpoint("openapi.json", "api-openapi", {
        "GET": Operation(openapi, "getOpenApiSchema", "Get this API's OpenAPI schema.", 200,
                         "The OpenAPI 3.1 schema.", {"type": "object"}, (), public=True),
    }),
]


# -- the schema -----------------------------------------------------------------------------------


def _nullable(kind: str, **extra: Any) -> dict[str, Any]:
    return {"type": [kind, "null"], **extra}


def _component_schemas() -> dict[str, Any]:
    time = {"type": "string", "format": "date-time"}
    job = {
        "type": "object",
        "properties": {
            "id": {"type": "integer"},
            "url": {"type": "string", "description": "this job in the API"},
            "name": {"type": "string"},
            "description": {"type": "string"},
            "job_type": {"type": "string"},
            "label": {"type": "string", "description": "the app the job belongs to"},
            "user": {"type": "string", "description": "the owner's username"},
            "groups": {"type": "array", "items": {"type": "string"}, "description": "groups it is shared with"},
            "status": {"type": "string", "enum": [s.display for s in Status]},
            "status_code": {"type": "string", "enum": [s.value for s in Status]},
            "status_message": {"type": "string"},
            "progress": _nullable("number", description="percent done, as the job reports it"),
            "progress_message": {"type": "string"},
            "attempt": {"type": "integer", "minimum": 1},
            "creation_time": time,
            "execute_time": _nullable("string", format="date-time"),
            "start_time": _nullable("string", format="date-time"),
            "completion_time": _nullable("string", format="date-time"),
            "run_time": _nullable("number", description="seconds it ran (so far); null before it starts"),
            "result": {"description": "what the job returned (any JSON value)"},
            "extended_properties": {"type": "object"},
            "spec": {"type": "object", "description": "the job type's settings"},
            "stale_since": _nullable(
                "string", format="date-time",
                description="set while the job's engine does not answer: the status is the last it gave",
            ),
            "capabilities": {
                "type": "array", "items": {"type": "string", "enum": [c.value for c in Capability]},
                "description": "what the job's engine can do; actions needing anything else answer 409",
            },
        },
    }
    job["required"] = list(job["properties"])
    creates = []
    schemas: dict[str, Any] = {}
    for type_name, cls in registered_classes():
        aliases = sorted(name for name in _aliases(cls) if name != type_name)
        properties: dict[str, Any] = {
            "job_type": {"type": "string", "enum": [type_name, *aliases]},
            "name": {"type": "string", "minLength": 1, "maxLength": _MAX_NAME,
                     "description": "'{id}' in it becomes the job's id"},
            "description": {"type": "string"},
            "app": {"type": "string", "pattern": f"^{_APP_LABEL.pattern}$", "default": DEFAULT_APP,
                    "description": "the app label the job belongs to: the default, the site's, or an "
                    "installed app you may use"},
            "execute": {"type": "boolean", "default": True, "description": "false: store it Pending"},
            "groups": {"type": "array", "items": {"type": "string"},
                       "description": "names of your groups to share the job with"},
            "extended_properties": {"type": "object"},
            **setting_schemas(cls),
        }
        key = f"JobCreate{type_name.title().replace('_', '')}"
        schemas[key] = {"type": "object", "required": ["job_type", "name"], "properties": properties,
                        "additionalProperties": False, "description": f"A new {type_name} job."}
        creates.append(_ref(key))
    history_event = {
        "type": "object",
        "properties": {
            "id": {"type": "integer"},
            "attempt": {"type": "integer"},
            "from_status": {"type": "string"},
            "from_status_code": {"type": "string"},
            "to_status": {"type": "string"},
            "to_status_code": {"type": "string"},
            "time": time,
            "source": {"type": "string", "description": "who moved it: execute, engine, stop, app, ..."},
            "message": {"type": "string"},
        },
    }
    history_event["required"] = list(history_event["properties"])
    return {
        "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}},
        "Job": job,
        "JobPage": {
            "type": "object",
            "required": ["count", "page", "page_size", "pages", "next", "previous", "results"],
            "properties": {
                "count": {"type": "integer"}, "page": {"type": "integer"}, "page_size": {"type": "integer"},
                "pages": {"type": "integer"}, "next": _nullable("string"), "previous": _nullable("string"),
                "results": {"type": "array", "items": _ref("Job")},
            },
        },
        "JobCreate": {"oneOf": creates},
        **schemas,
        "JobEvent": history_event,
        "History": {"type": "object", "required": ["results"],
                    "properties": {"results": {"type": "array", "items": _ref("JobEvent")}}},
        "Logs": {"type": "object", "additionalProperties": {"type": "string"}},
    }


def _aliases(cls: type[Job]) -> list[str]:
    from jobtower.registry import job_types

    return [name for name in job_types() if job_class(name) is cls]


def _path(endpoint: Endpoint) -> str:
    if "<str:job_id>" in endpoint.route:
        return unquote(reverse(f"jobtower:{endpoint.name}", kwargs={"job_id": "{job_id}"}))
    return reverse(f"jobtower:{endpoint.name}")


def _operation_schema(endpoint: Endpoint, method: str, op: Operation) -> dict[str, Any]:
    parameters = [_JOB_ID] if "<str:job_id>" in endpoint.route else []
    for param in op.params:
        spec = {"name": param.name, "in": "query", "required": False, "schema": param.schema,
                "description": param.description}
        if param.schema.get("type") == "array":
            spec.update(style="form", explode=True)
        parameters.append(spec)
    success: dict[str, Any] = {"description": op.success_description}
    if op.success_schema is not None:
        success["content"] = {"application/json": {"schema": op.success_schema}}
    responses = {str(op.success): success}
    for code in op.errors:
        responses[str(code)] = {"description": _ERROR_DESCRIPTIONS[code],
                                "content": {"application/json": {"schema": _ref("Error")}}}
    schema: dict[str, Any] = {
        "operationId": op.operation_id,
        "summary": op.summary,
        "tags": ["meta" if op.public else "jobs"],
        "parameters": parameters,
        "responses": responses,
    }
    if op.public:
        schema["security"] = []
    if op.request_body is not None:
        schema["requestBody"] = {"required": True, "content": {"application/json": {"schema": op.request_body}}}
    return schema


def openapi_schema() -> dict[str, Any]:
    """Return the OpenAPI 3.1 schema of every endpoint in ENDPOINTS."""
    from jobtower import __version__

    paths: dict[str, Any] = {}
    for endpoint in ENDPOINTS:
        paths[_path(endpoint)] = {
            method.lower(): _operation_schema(endpoint, method, op) for method, op in endpoint.operations.items()
        }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "jobtower REST API",
            "version": __version__,
            "description": "Create, run, watch and manage jobs. Authenticate with "
            "`Authorization: Bearer <token>` (`jobtower token --user NAME`) or a session cookie "
            "(then unsafe methods need the X-CSRFToken header). Errors are {\"error\": \"...\"}.",
        },
        "paths": paths,
        "components": {
            "schemas": _component_schemas(),
            "securitySchemes": {
                "bearerAuth": {"type": "http", "scheme": "bearer",
                               "description": "a token from `jobtower token --user NAME`"},
                "sessionAuth": {"type": "apiKey", "in": "cookie", "name": settings.SESSION_COOKIE_NAME},
            },
        },
        "security": [{"bearerAuth": []}, {"sessionAuth": []}],
    }
