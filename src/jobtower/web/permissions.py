"""Who may see and act on a job: its owner, members of a group it is shared with, staff, or holders
of the `jobtower.jobs_table_actions` permission. Every web view and API endpoint asks here."""

from __future__ import annotations

from typing import Any

from django.db.models import Q, QuerySet

from jobtower.models import Job

PERMISSION = "jobtower.jobs_table_actions"


def is_manager(user: Any) -> bool:
    """Return True for users who may see and act on every job (staff, or the permission)."""
    return bool(user.is_authenticated and (user.is_staff or user.has_perm(PERMISSION)))


#: Creating engine jobs from the web (site form, REST API) runs programs on this machine or a cluster.
RUN_PERMISSION = "jobtower.add_job"


def may_run_code(user: Any, job_class: type[Job]) -> bool:
    """Return True when `user` may create jobs of `job_class` over the web.

    Jobs with an engine run programs the user chose, so they need `jobtower.add_job` ("Can add
    job"; superusers have it). BASIC jobs, which run nothing, need only a login.
    """
    if not user.is_authenticated:
        return False
    return job_class.backend_path is None or user.has_perm(RUN_PERMISSION)


def may_use_app(user: Any, package: str) -> bool:
    """Return True when `user` may create jobs under the installed app `package` over the web.

    Jobs under an app's label appear in its list_jobs() and get_job(), so the app must trust them.
    Managers may use every app; other users an app whose Django app label they hold a permission
    of (Django's own test of "may use this app", as on the admin index; superusers have all).
    """
    return bool(user.is_authenticated and (is_manager(user) or user.has_module_perms(package)))


def can_access(user: Any, job: Job) -> bool:
    """Return True when `user` may see `job` and run its actions."""
    if not user.is_authenticated:
        return False
    if job.user_id == user.pk or is_manager(user):
        return True
    return job.groups.filter(pk__in=user.groups.values("pk")).exists()


def visible_jobs(user: Any, queryset: QuerySet[Job] | None = None) -> QuerySet[Job]:
    """Return the jobs `user` may see: everything for managers, else own and shared ones."""
    jobs = Job.objects.all() if queryset is None else queryset
    if not user.is_authenticated:
        return jobs.none()
    if is_manager(user):
        return jobs
    # Look the shared ids up first: "user = x OR id IN (subquery)" keeps databases from using an index.
    shared = list(
        Job.groups.through.objects.filter(group__in=user.groups.values("pk")).values_list("job_id", flat=True)
    )
    if not shared:
        return jobs.filter(user=user)
    return jobs.filter(Q(user=user) | Q(pk__in=shared))
