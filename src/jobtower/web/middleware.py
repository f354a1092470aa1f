"""Middleware of the reusable app: a database that stays locked is a 503 to retry, not a 500.

Add "jobtower.web.middleware.DatabaseBusyMiddleware" to MIDDLEWARE (the standalone site has it).
The REST API answers the same way without it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, JsonResponse

from jobtower.db import database_busy

log = logging.getLogger("jobtower")

#: Seconds a client is asked to wait before it tries again.
RETRY_AFTER = 5
BUSY_MESSAGE = "the database is busy (another process holds its lock); try again in a few seconds"


def busy_response(request: HttpRequest) -> JsonResponse:
    """Return the 503 for a request that found the database busy, and log it."""
    log.warning("%s %s answered 503: the database is busy", request.method, request.path)
    response = JsonResponse({"error": BUSY_MESSAGE}, status=503)
    response["Retry-After"] = str(RETRY_AFTER)
    return response


class DatabaseBusyMiddleware:
    """Answer a view that found the database locked with 503 and Retry-After."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        """Return the 503 for a busy database; None lets every other error be a (logged) 500."""
        return busy_response(request) if database_busy(exception) else None
