"""Views of the reusable app: the status callback and a plain list of the user's jobs."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from jobtower import conf, manager
from jobtower.models import Job


@csrf_exempt  # called by the job's own process, which has no session; it sets nothing by itself
@require_http_methods(["GET", "POST"])
def update_job_status(request: HttpRequest, job_id: int) -> JsonResponse:
    """Ask for a re-check of one job's status; answer {"success": true} or a 404/403 JSON."""
    job = Job.objects.filter(pk=job_id).first()
    if job is None:
        return JsonResponse({"success": False, "error": f"there is no job {job_id}"}, status=404)
    if not _may_call_back(request, job):
        return JsonResponse(
            {
                "success": False,
                "error": "missing or wrong token: use the URL from "
                "job_manager.get_job_status_callback_url(request, job_id)",
            },
            status=403,
        )
    manager.request_check(job)
    return JsonResponse({"success": True})


def _may_call_back(request: HttpRequest, job: Job) -> bool:
    if not conf.get("CALLBACK_REQUIRES_TOKEN"):
        return True
    token = request.GET.get("token") or request.POST.get("token") or ""
    if token and manager.valid_callback_token(job.pk, token):
        return True
    user = request.user
    return bool(user.is_authenticated and (user.pk == job.user_id or user.is_staff))


@login_required
@require_http_methods(["GET"])
def job_list(request: HttpRequest) -> HttpResponse:
    """Show the signed-in user's latest jobs (all apps), newest first."""
    jobs = Job.objects.filter(user=request.user).order_by("-id")[:100]
    return render(request, "jobtower/job_list.html", {"jobs": jobs})
