"""The REST API: JSON over the JobManager, on django-ninja (list, create, get, delete, actions, logs, history).

The pieces, one job each: `auth` (Bearer token, else session + CSRF), `errors` (the {"error": "..."}
shape for everything), `parsing` (strict query and body reading), `schemas` (pydantic models; create
requests generated from each job type's SpecFields), `render` (a job as JSON), `endpoints` (the
operations). This module joins them into one NinjaAPI, serves the OpenAPI document and the interactive
page (Swagger UI from ninja's own static files, no CDN), and gives the URLconf (api_urls.py).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render as render_page
from django.urls import URLPattern, URLResolver, path, re_path, reverse
from django.views.decorators.csrf import csrf_exempt
from ninja import NinjaAPI
from ninja.openapi.docs import Swagger

from jobtower.web.api import auth, endpoints, errors, schemas
from jobtower.web.api.endpoints import DEFAULT_LOG_TAIL, MAX_LOG_TAIL, job_json
from jobtower.web.api.errors import ApiError, error_response
from jobtower.web.api.render import finite

__all__ = [
    "DEFAULT_LOG_TAIL", "MAX_LOG_TAIL", "ApiError", "JobtowerApi", "api", "error_response", "finite", "job_json",
    "openapi_schema", "urlpatterns",
]

DESCRIPTION = (
    "Create, run, watch and manage jobs. Authenticate with `Authorization: Bearer <token>` "
    "(`jobtower token --user NAME`) or a session cookie (then unsafe methods need the X-CSRFToken "
    'header). Errors are {"error": "..."}.'
)


class JobtowerApi(NinjaAPI):
    """ninja's API with this API's document: per-type create schemas, error descriptions, version."""

    def get_openapi_schema(self, *, path_prefix: str | None = None, path_params: Any = None) -> Any:
        """Return the OpenAPI 3.1 document, with the create request of every job type registered now."""
        if path_prefix is None:
            path_prefix = reverse("jobtower:api-jobs").removesuffix("jobs/")
        document = super().get_openapi_schema(path_prefix=path_prefix, path_params=path_params)
        components = document.setdefault("components", {}).setdefault("schemas", {})
        refs = []
        for model in schemas.create_models():
            found = model.model_json_schema(ref_template="#/components/schemas/{model}")
            components.update(found.pop("$defs", {}))
            components[model.__name__] = found
            refs.append({"$ref": f"#/components/schemas/{model.__name__}"})
        components["JobCreate"] = {"oneOf": refs}
        document["paths"][f"{path_prefix}openapi.json"] = {"get": {
            "operationId": "getOpenApiSchema", "summary": "Get this API's OpenAPI document.", "tags": ["meta"],
            "security": [], "responses": {"200": {"description": "The OpenAPI 3.1 document.", "content": {
                "application/json": {"schema": {"type": "object"}}}}},
        }}
        for item in document["paths"].values():
            for operation in item.values():
                for code, answer in operation["responses"].items():
                    if int(code) in errors.DESCRIPTIONS:
                        answer["description"] = errors.DESCRIPTIONS[int(code)]
        return document


def _version() -> str:
    from jobtower import __version__

    return __version__


api = JobtowerApi(
    title="jobtower REST API",
    version=_version(),
    description=DESCRIPTION,
    auth=[auth.BearerToken(), auth.SessionCookie()],
    openapi_url=None,  # served below: GET only, public, at the URL the API always had
    docs_url=None,
    urls_namespace="jobtower",
)
errors.install(api)
api.add_router("", endpoints.router)


def openapi_schema() -> dict[str, Any]:
    """Return the OpenAPI 3.1 document of the API."""
    return dict(api.get_openapi_schema())


def _get_only(request: HttpRequest) -> JsonResponse | None:
    if request.method != "GET":
        return error_response(405, f"{request.method} is not allowed here; use GET", {"Allow": "GET"})
    return None


@csrf_exempt
def openapi(request: HttpRequest) -> HttpResponse:
    """Return the OpenAPI 3.1 document (no authentication: it describes, it reveals no job)."""
    return _get_only(request) or JsonResponse(openapi_schema())


class _LocalSwagger(Swagger):
    """Swagger UI from ninja's bundled static files (ninja must be in INSTALLED_APPS), never a CDN."""

    def get_openapi_url(self, api: NinjaAPI, path_params: Any) -> str:
        return reverse("jobtower:api-openapi")


def docs(request: HttpRequest) -> HttpResponse:
    """Render the interactive API page (Swagger UI), from this site's own static files."""
    refused = _get_only(request)
    if refused is not None:
        return refused
    if "ninja" not in settings.INSTALLED_APPS:
        return error_response(
            500, "the API page needs django-ninja's static files: add \"ninja\" to INSTALLED_APPS"
        )
    page = _LocalSwagger(settings={"persistAuthorization": False})
    page.settings["url"] = reverse("jobtower:api-openapi")
    return render_page(request, "ninja/swagger.html", {
        "swagger_settings": __import__("json").dumps(page.settings), "api": api, "add_csrf": True,
    })


def _patterns() -> list[URLPattern | URLResolver]:
    found: list[URLPattern | URLResolver] = []
    for pattern in api._get_urls():
        if isinstance(pattern, URLPattern) and pattern.name != "api-root":
            pattern.callback = errors.json_not_allowed(pattern.callback)
            found.append(pattern)
    return found


urlpatterns: list[URLPattern | URLResolver] = [
    *_patterns(),
    path("openapi.json", openapi, name="api-openapi"),
    path("docs/", docs, name="api-docs"),
    # Anything else under api/ is a JSON 404 too, never Django's HTML page.
    re_path(r"^.*$", errors.not_found, name="api-not-found"),
]
