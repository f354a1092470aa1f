"""Who is asking: a Bearer token (web/tokens.py), else the session, whose changes need Django's CSRF check.

Both are ninja auth callables, tried in order, so the OpenAPI document lists both schemes. A request
that carries an Authorization header is judged by it alone: a bad token is a 401 even with a valid
session. Token requests need no CSRF token (no browser sends the header by itself).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.middleware.csrf import CsrfViewMiddleware
from ninja.security import HttpBearer
from ninja.security.base import AuthBase, SecuritySchema

from jobtower.web import tokens
from jobtower.web.api.errors import UNAUTHENTICATED, ApiError

_SAFE_METHODS = ("GET", "HEAD", "OPTIONS", "TRACE")


class _CsrfCheck(CsrfViewMiddleware):
    """Django's own CSRF check, answering with the reason instead of rendering the HTML failure page."""

    def _reject(self, request: HttpRequest, reason: str) -> str:
        return reason


def _no_response(request: HttpRequest) -> HttpResponse:  # the check never calls the next layer
    return HttpResponse(status=500)


def csrf_failure(request: HttpRequest) -> str | None:
    """Return why a session request fails Django's CSRF check, or None when it passes."""
    return _CsrfCheck(_no_response).process_view(request, None, (), {})  # type: ignore[arg-type, return-value]


class BearerToken(HttpBearer):
    """`Authorization: Bearer <token>`, a token from `jobtower token --user NAME`."""

    def __call__(self, request: HttpRequest) -> Any | None:
        """Return the token's user; None without the header; a 401 for any other Authorization."""
        header = request.headers.get("Authorization", "")
        if not header:
            return None
        scheme, _, credentials = header.strip().partition(" ")
        if scheme.lower() != "bearer" or not credentials.strip():
            raise ApiError(
                401, "the Authorization header must be 'Bearer <token>'; make a token with "
                "`jobtower token --user NAME`", UNAUTHENTICATED,
            )
        return self.authenticate(request, credentials.strip())

    def authenticate(self, request: HttpRequest, token: str) -> Any | None:
        """Return the active user the token names, or raise a 401 that says what to do."""
        user = tokens.user_for_token(token)
        if user is None:
            raise ApiError(
                401, "the token is not valid: it was altered, or its user changed their password or "
                "was deactivated; make a new one with `jobtower token --user NAME`", UNAUTHENTICATED,
            )
        request.user = user
        return user


class SessionCookie(AuthBase):
    """The site's login session; requests that change something need the X-CSRFToken header."""

    openapi_type = "apiKey"

    @property
    def openapi_security_schema(self) -> SecuritySchema:
        """Return the scheme for the OpenAPI document (the cookie's name is read when asked, not at import)."""
        return SecuritySchema("apiKey", **{"in": "cookie", "name": settings.SESSION_COOKIE_NAME})

    @openapi_security_schema.setter
    def openapi_security_schema(self, value: SecuritySchema) -> None:
        pass  # AuthBase's constructor sets one; the property above decides

    def __call__(self, request: HttpRequest) -> Any | None:
        """Return the logged-in user (after the CSRF check for unsafe methods), else None."""
        user = getattr(request, "user", None)
        if user is None or not user.is_authenticated:
            return None
        if request.method not in _SAFE_METHODS:
            reason = csrf_failure(request)
            if reason is not None:
                raise ApiError(
                    403, f"CSRF check failed ({reason}): session requests that change something need the "
                    "X-CSRFToken header; token requests (Authorization: Bearer) do not",
                )
        return user
