from django.urls import include, path

from . import controllers

app_name = "tethys_test_app"
urlpatterns = [
    path("", controllers.jobs_table, name="jobs_table"),
    path("run/", controllers.run_job, name="run_job"),
    path("results/<int:job_id>/", controllers.results, name="results"),
]

# The site: the app under its root_url, and jobtower's own pages (job pages, logs, table actions).
site_urlpatterns = [
    path("apps/tethys-test-app/", include((urlpatterns, app_name))),
    path("", include("jobtower.urls")),
]
