"""URLs of the REST API (mounted at api/ by jobtower.urls)."""

urlpatterns: list = []
