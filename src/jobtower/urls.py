"""jobtower's URLconf: include it anywhere (`path("jobs/", include("jobtower.urls"))`)."""

from django.urls import include, path

from jobtower.web import views

app_name = "jobtower"

urlpatterns = [
    path("update-job-status/<int:job_id>/", views.update_job_status, name="update-job-status"),
    path("jobs-table/rows/", views.table_rows, name="table-rows"),
    path("jobs-table/action/<int:job_id>/<slug:action>/", views.table_action, name="table-action"),
    path("jobs/<int:job_id>/", views.job_detail, name="job-detail"),
    path("jobs/<int:job_id>/live.json", views.job_live, name="job-live"),
    path("jobs/<int:job_id>/logs/", views.job_logs, name="job-logs"),
    path("jobs/<int:job_id>/dag.svg", views.job_dag, name="job-dag"),
    path("jobs/<int:job_id>/logs.json", views.job_log_chunk, name="job-log-chunk"),
    path("jobs/<int:job_id>/files/<path:path>", views.job_file, name="job-file"),
    path("submit/", views.submit_local, name="submit"),
    path("api/", include("jobtower.web.api_urls")),
    path("", views.home, name="home"),
]
