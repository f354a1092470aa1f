"""jobtower's URLconf: include it anywhere (`path("jobs/", include("jobtower.urls"))`)."""

from django.urls import path

from jobtower.web import views

app_name = "jobtower"

urlpatterns = [
    path("update-job-status/<int:job_id>/", views.update_job_status, name="update-job-status"),
    path("", views.job_list, name="job-list"),
]
