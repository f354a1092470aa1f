"""URLs of the REST API (mounted at api/ by jobtower.urls): one per entry of api.ENDPOINTS."""

from django.urls import path, re_path

from jobtower.web import api

urlpatterns = [path(endpoint.route, api.view_for(endpoint), name=endpoint.name) for endpoint in api.ENDPOINTS]
# Anything else under api/ is a JSON 404 too, never Django's HTML page.
urlpatterns.append(re_path(r"^.*$", api.not_found, name="api-not-found"))
