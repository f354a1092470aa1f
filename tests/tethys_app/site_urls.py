from tests.tethys_app.urls import site_urlpatterns as urlpatterns

__all__ = ["urlpatterns"]
