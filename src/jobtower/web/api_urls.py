"""URLs of the REST API (mounted at api/ by jobtower.urls): ninja's operations, the schema, the page."""

from jobtower.web.api import urlpatterns

__all__ = ["urlpatterns"]
