"""The API's one error shape: every failure is JSON {"error": "..."} with a status and, where useful, headers.

ninja's exception handlers are replaced here: its validation errors, authentication failures and any
unexpected exception become this shape (a locked database is a 503 to retry, anything else a 500 that
says nothing more and is logged). Django answers URLs and methods outside ninja's operations; those
views are here too, so a client never sees an HTML page under api/.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBase, JsonResponse
from django.urls import Resolver404, resolve
from django.views.decorators.csrf import csrf_exempt
from ninja.errors import AuthenticationError, HttpError, ValidationError

from jobtower.db import database_busy
from jobtower.web.middleware import busy_response

if TYPE_CHECKING:
    from ninja import NinjaAPI

log = logging.getLogger("jobtower")

#: Sent with every 401, as RFC 9110 asks.
UNAUTHENTICATED = {"WWW-Authenticate": 'Bearer realm="jobtower"'}

#: What each error status means, for the OpenAPI document.
DESCRIPTIONS = {
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


def _validation_message(exc: ValidationError) -> tuple[int, str]:
    """Return the status and message for parameters ninja refused (only the path's job id can fail)."""
    for error in exc.errors:
        location = tuple(error.get("loc", ()))
        if location[:2] == ("path", "job_id"):
            raw = error.get("input")
            return 404, f"there is no job {str(raw)!r:.40}: job ids are whole numbers"
    first = exc.errors[0] if exc.errors else {}
    where = ".".join(str(part) for part in first.get("loc", ())[1:]) or "the request"
    return 400, f"{where}: {first.get('msg', 'is not valid')}"


def install(api: NinjaAPI) -> None:
    """Answer every exception ninja sees in the API's error shape."""

    def on_api_error(request: HttpRequest, exc: ApiError) -> HttpResponse:
        return exc.response()

    def on_validation(request: HttpRequest, exc: ValidationError) -> HttpResponse:
        return error_response(*_validation_message(exc))

    def on_unauthenticated(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
        return error_response(
            401, "authentication required: send 'Authorization: Bearer <token>' or log in", UNAUTHENTICATED
        )

    def on_http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
        return error_response(exc.status_code, str(exc))

    def on_not_found(request: HttpRequest, exc: Http404) -> HttpResponse:
        return error_response(404, f"there is no API endpoint {request.path}")

    def on_too_big(request: HttpRequest, exc: RequestDataTooBig) -> HttpResponse:
        return error_response(413, "the request body is too large")

    def on_suspicious(request: HttpRequest, exc: SuspiciousOperation) -> HttpResponse:
        return error_response(400, f"the request was refused: {type(exc).__name__}")

    def on_any(request: HttpRequest, exc: Exception) -> HttpResponse:
        if database_busy(exc):
            return busy_response(request)
        log.exception("API %s %s failed", request.method, request.path, exc_info=exc)
        return error_response(500, "internal error: the request failed on the server; its log has the details")

    handlers: list[tuple[type[Exception], Callable[[HttpRequest, Any], HttpResponse]]] = [
        (ApiError, on_api_error), (ValidationError, on_validation), (AuthenticationError, on_unauthenticated),
        (HttpError, on_http_error), (Http404, on_not_found), (RequestDataTooBig, on_too_big),
        (SuspiciousOperation, on_suspicious), (Exception, on_any),
    ]
    for kind, handler in handlers:
        api.add_exception_handler(kind, handler)


_METHOD_ORDER = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def json_not_allowed(view: Callable[..., HttpResponseBase]) -> Callable[..., HttpResponseBase]:
    """Wrap a ninja path view so a method it does not answer is a JSON 405 (Allow lists the others, in order)."""

    @functools.wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        response = view(request, *args, **kwargs)
        if response.status_code == 405 and response.get("Content-Type", "") != "application/json":
            methods = {part.strip() for part in response.get("Allow", "").split(",") if part.strip()}
            allowed = ", ".join(sorted(methods, key=lambda m: (_METHOD_ORDER + (m,)).index(m)))
            return error_response(405, f"{request.method} is not allowed here; use {allowed}", {"Allow": allowed})
        return response

    return wrapped


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
