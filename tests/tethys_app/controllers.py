from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from jobtower.tethys import CustomJobAction, JobsTable  # was: from tethys_sdk.gizmos import CustomJobAction, JobsTable
from jobtower.tethys import BasicJob, TethysJob  # was: from tethys_sdk.jobs import BasicJob, TethysJob

from .app import TethysTestApp as app


def archive(job):
    """A custom action: mark the job archived."""
    job.extended_properties = {**job.extended_properties, "archived": True}
    job.save()


@login_required
def jobs_table(request):
    jobs = app.get_job_manager().list_jobs(user=request.user)
    jobs_table_options = JobsTable(
        jobs=jobs,
        column_fields=("id", "name", "description", "creation_time"),
        actions=["run", "resubmit", "|", "logs", "monitor", "results", "|", "terminate", "delete",
                 CustomJobAction("Archive", archive, confirmation_message="Archive this job?")],
        hover=True,
        striped=True,
        results_url="tethys_test_app:results",
        delay_loading_status=True,
        enable_data_table=True,
        data_table_options={"pageLength": 2, "ordering": True, "searching": False},
        refresh_interval=10000,
        show_detailed_status=True,
    )
    return render(request, "tethys_test_app/jobs_table.html", {"jobs_table_options": jobs_table_options})


@login_required
@require_POST
def run_job(request):
    job = app.get_job_manager().create_job(
        name="job_{id}", user=request.user, job_type="BASIC", description="made by the Tethys app"
    )
    job.execute()
    return redirect("tethys_test_app:jobs_table")


@login_required
def results(request, job_id):
    job = app.get_job_manager().get_job(job_id, user=request.user)
    assert isinstance(job, BasicJob) and isinstance(job, TethysJob)
    return render(request, "tethys_test_app/results.html", {"job": job})
