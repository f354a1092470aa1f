"""Views of the reusable app: status callback, Jobs Table endpoints, job page, logs, files, site home.

Every view checks who is asking (web/permissions.py); state changes only over POST with CSRF; all
user-written text goes through Django's autoescaping (or `textContent` in the browser).
"""

from __future__ import annotations

import math
import mimetypes
import os
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from django.contrib.auth.decorators import login_required
from django.core import signing
from django.http import (
    FileResponse,
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseRedirect,
    JsonResponse,
    QueryDict,
)
from django.shortcuts import render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.safestring import mark_safe
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from jobtower import conf, manager
from jobtower.backends import Capability
from jobtower.errors import JobError
from jobtower.gizmos import JobsTable, TableConfig, with_status_since
from jobtower.models import Job
from jobtower.web.jobpage import fragments, page_config
from jobtower.web.permissions import can_access, may_run_code, visible_jobs

#: Bytes of a log shown first (its tail); the rest loads only on request.
LOG_TAIL = 64 * 1024
LOG_CHUNK_MAX = 1024 * 1024
MAX_REFRESH_ROWS = 500
#: Folders deeper than this inside a job's folder are not listed on its page.
MAX_FILES_DEPTH = 32
#: The largest id a job can have (the databases' signed 64-bit integer).
MAX_ID = 2**63 - 1


@csrf_exempt  # called by the job's own process, which has no session; it sets nothing by itself
@require_http_methods(["GET", "POST"])
def update_job_status(request: HttpRequest, job_id: int) -> JsonResponse:
    """Ask for a re-check of one job's status; answer {"success": true} or a 403/404 JSON."""
    token = request.GET.get("token") or request.POST.get("token") or ""
    if token and manager.valid_callback_token(job_id, token) and manager.monitor_alive():
        # The hot path (a running job calling back while a monitor runs): no ORM object at all,
        # one UPDATE that flags the job, or finds it flagged, or finds no such job.
        if manager.flag_for_check(job_id):
            return JsonResponse({"success": True})
    job = Job.objects.filter(pk=job_id).first()
    if not _may_call_back(request, job_id, job):
        # The same answer whether the job exists or not: an anonymous caller learns nothing about ids.
        return JsonResponse(
            {
                "success": False,
                "error": "missing or wrong token: use the URL from "
                "job_manager.get_job_status_callback_url(request, job_id)",
            },
            status=403,
        )
    if job is None:
        return JsonResponse({"success": False, "error": f"there is no job {job_id}"}, status=404)
    manager.request_check(job)
    return JsonResponse({"success": True})


def _may_call_back(request: HttpRequest, job_id: int, job: Job | None) -> bool:
    if not conf.get("CALLBACK_REQUIRES_TOKEN"):
        return True
    token = request.GET.get("token") or request.POST.get("token") or ""
    if token and manager.valid_callback_token(job_id, token):
        return True  # the token is made for the id: its holder may learn that the job is gone
    user = request.user
    return bool(user.is_authenticated and (user.is_staff or (job is not None and user.pk == job.user_id)))


def _job_for(request: HttpRequest, job_id: int) -> Job:
    """Return the job if the user may see it; 404 otherwise (existence is not revealed)."""
    job = Job.objects.filter(pk=job_id).first()
    if job is None or not can_access(request.user, job):
        raise Http404("no such job")
    return job


def _json_error(message: str, status: int) -> JsonResponse:
    return JsonResponse({"error": message}, status=status)


# -- the Jobs Table's live endpoints ----------------------------------------------------------------


def _table_config(token: str) -> TableConfig | None:
    """Return the configuration signed into a table's page, or None if missing or altered."""
    try:
        return TableConfig.load(token)
    except (signing.BadSignature, TypeError, ValueError, KeyError):
        return None


def _bad_config() -> JsonResponse:
    return _json_error("the table configuration is missing or was altered; reload the page", 400)


@require_GET
def table_rows(request: HttpRequest) -> JsonResponse:
    """Return fresh HTML for the table rows asked for, from the database only (one request)."""
    if not request.user.is_authenticated:
        return _json_error("log in to see jobs", 401)
    config = _table_config(request.GET.get("config", ""))
    if config is None:
        return _bad_config()
    parts = [i for i in request.GET.get("ids", "").split(",") if i][:MAX_REFRESH_ROWS]
    # Bounded to the databases' 64-bit ids: a larger number is not a job, and SQLite fails on it.
    if not all(i.isascii() and i.isdigit() and len(i) <= 19 and 0 < int(i) <= MAX_ID for i in parts):
        return _json_error(f"ids must be a comma-separated list of job ids (whole numbers from 1 to {MAX_ID})", 400)
    ids = [int(i) for i in parts]
    jobs = list(with_status_since(visible_jobs(request.user).filter(pk__in=ids)))
    nodes = config.nodes_for(jobs)
    return JsonResponse({"rows": {str(job.pk): config.row_html(job, nodes.get(job.pk)) for job in jobs}})


def _safe_next(request: HttpRequest, target: str) -> str:
    if target and url_has_allowed_host_and_scheme(target, {request.get_host()}, request.is_secure()):
        return target
    return reverse("jobtower:home")


def _wants_json(request: HttpRequest) -> bool:
    return "application/json" in request.headers.get("Accept", "")


def _refuse(request: HttpRequest, message: str) -> HttpResponse:
    """Answer 409 for an action the job's status or engine does not allow: JSON, or a page for a form."""
    if _wants_json(request):
        return _json_error(message, 409)
    back = _safe_next(request, request.POST.get("next", ""))
    return render(request, "jobtower/refused.html", {"message": message, "back": back}, status=409)


@require_POST
def table_action(request: HttpRequest, job_id: int, action: str) -> HttpResponse:
    """Run one of the table's configured actions on a job the user may act on (POST + CSRF)."""
    if not request.user.is_authenticated:
        return _json_error("log in to act on jobs", 401)
    config = _table_config(request.POST.get("config", ""))
    if config is None:
        return _bad_config()
    job = Job.objects.filter(pk=job_id).first()
    if job is None or not can_access(request.user, job):
        return _json_error(f"there is no job {job_id} you may act on", 404)
    chosen = config.action(action)
    if chosen is None or chosen.is_link:
        return _json_error(f"this table does not offer the action {action!r}", 400)
    refusal = chosen.refusal(job)
    if refusal:
        return _refuse(request, refusal)
    try:
        chosen.perform(job)  # type: ignore[misc]
    except (JobError, ValueError) as exc:
        return _refuse(request, str(exc))
    return_to = _safe_next(request, request.POST.get("next", ""))
    if not _wants_json(request):
        return HttpResponseRedirect(return_to)
    fresh = with_status_since(Job.objects.filter(pk=job_id)).first()
    return JsonResponse({"ok": True, "row": config.row_html(fresh) if fresh is not None else None})


# -- a job's own pages ----------------------------------------------------------------------------


@login_required
@require_GET
def job_detail(request: HttpRequest, job_id: int) -> HttpResponse:
    """Show a job: status, history, settings, progress, logs, results link and its files."""
    job = _job_for(request, job_id)
    results_url = ""
    name = request.GET.get("results_url", "")
    if name and job.status_code.value in ("COM", "VCP"):
        try:
            results_url = reverse(name, kwargs={"job_id": job.pk})
        except Exception:
            results_url = ""
    config = page_config()
    return render(request, "jobtower/job_detail.html", {
        "job": job,
        "history": job.history(),
        "files": job_files(job),
        "streams": _streams(job),
        "results_url": results_url,
        "engine": job.get_backend(),
        "progress_shown": job.progress is not None and math.isfinite(job.progress),
        "capabilities": sorted(c.value for c in manager.capabilities(job)),
        "dag_svg": _dag_picture(job),
        "live": fragments(job, config),
        "config_token": config.sign(),
        "spec_json": _pretty(job.spec),
        "props_json": _pretty(job.extended_properties),
    })


def _pretty(value: Any) -> str:
    """Return settings as indented JSON for reading (escaped by the template)."""
    import json

    return json.dumps(value, indent=2, sort_keys=True, default=str)


@require_GET
def job_live(request: HttpRequest, job_id: int) -> JsonResponse:
    """Return the job page's changing parts in one request (database and job folder only, no engine call)."""
    if not request.user.is_authenticated:
        return _json_error("log in to see jobs", 401)
    job = Job.objects.filter(pk=job_id).first()
    if job is None or not can_access(request.user, job):
        return _json_error(f"there is no job {job_id} you may see", 404)
    return JsonResponse(fragments(job, page_config()))


def _dag_picture(job: Job) -> str:
    """Return a workflow's DAG picture (SVG built from escaped values), or "" for other jobs."""
    if job.job_type != "CONDORWORKFLOW":
        return ""
    from jobtower.web.dag import dag_svg

    return mark_safe(dag_svg(job.pk))  # noqa: S308 - every value in it is escaped where it is built


@login_required
@require_GET
def job_dag(request: HttpRequest, job_id: int) -> HttpResponse:
    """Return a workflow's DAG as SVG, drawn from the stored node statuses (the engine is not asked)."""
    from jobtower.web.dag import dag_svg

    job = _job_for(request, job_id)
    if job.job_type != "CONDORWORKFLOW":
        raise Http404("only workflows have a DAG")
    response = HttpResponse(dag_svg(job.pk), content_type="image/svg+xml; charset=utf-8")
    response["X-Jobtower-Active"] = "0" if job.status_code.is_terminal else "1"
    response["Cache-Control"] = "no-store"
    return response


def _streams(job: Job) -> list[str]:
    backend = job.get_backend()
    if backend is None:
        return []
    files = list(backend.log_files(job)) if backend.can(Capability.LOG_FILES) else []
    return files or (list(backend.logs(job)) if backend.can(Capability.LOGS) else [])


@login_required
@require_GET
def job_logs(request: HttpRequest, job_id: int) -> HttpResponse:
    """Show a job's logs: the tail of each stream, following live while the job is active."""
    job = _job_for(request, job_id)
    return render(request, "jobtower/job_logs.html", {"job": job, "streams": _streams(job)})


@require_GET
def job_log_chunk(request: HttpRequest, job_id: int) -> JsonResponse:
    """Return part of a log: the tail (offset=-1) or what follows `offset` (JSON, text escaped by the client)."""
    if not request.user.is_authenticated:
        return _json_error("log in to read logs", 401)
    job = Job.objects.filter(pk=job_id).first()
    if job is None or not can_access(request.user, job):
        return _json_error(f"there is no job {job_id}", 404)
    stream = request.GET.get("stream", "stdout")
    try:
        offset = int(request.GET.get("offset", "-1"))
    except ValueError:
        return _json_error("offset must be an integer", 400)
    backend = job.get_backend()
    files = backend.log_files(job) if backend is not None else {}
    active = job.status_code.is_active
    if stream in files:
        return JsonResponse({**read_chunk(files[stream], offset), "active": active})
    texts = backend.logs(job) if backend is not None else {}
    if stream not in texts:
        return _json_error(f"job {job.pk} has no log {stream!r}; it has: {sorted(files) or sorted(texts)}", 404)
    data = str(texts[stream]).encode()
    start = max(0, len(data) - LOG_TAIL) if offset < 0 else min(offset, len(data))
    return JsonResponse({"text": data[start:start + LOG_CHUNK_MAX].decode(errors="replace"),
                         "offset": min(len(data), start + LOG_CHUNK_MAX),
                         "skipped": start if offset < 0 else 0, "active": active})


def read_chunk(path: Path, offset: int) -> dict[str, object]:
    """Read a piece of a log file: its last LOG_TAIL bytes, or up to 1 MiB after `offset`."""
    try:
        with path.open("rb") as handle:
            size = handle.seek(0, 2)
            start = max(0, size - LOG_TAIL) if offset < 0 else min(offset, size)
            handle.seek(start)
            data = handle.read(LOG_CHUNK_MAX)
    except OSError:
        return {"text": "", "offset": max(offset, 0), "skipped": 0}
    return {"text": data.decode(errors="replace"), "offset": start + len(data),
            "skipped": start if offset < 0 else 0}


def job_files(job: Job, limit: int = 500, max_depth: int = MAX_FILES_DEPTH) -> list[dict[str, object]]:
    """List the files in the job's own folder (never outside it), up to `limit`, in path order."""
    if not job.workspace:
        return []
    root = job.folder
    if not root.is_dir() or root.is_symlink():
        return []
    found: list[dict[str, object]] = []
    # A stack of folders being listed, not recursion (a folder may be nested thousands deep), and a walk that
    # stops at `limit`: a page must not cost a sort of every file a job wrote. No symlink is followed.
    stack = [("", _sorted_entries(root))]
    while stack:
        prefix, entries = stack[-1]
        entry = next(entries, None)
        if entry is None:
            stack.pop()
            continue
        try:
            if entry.is_file(follow_symlinks=False):
                found.append({"path": prefix + entry.name, "size": entry.stat(follow_symlinks=False).st_size})
                if len(found) >= limit:
                    break
            elif entry.is_dir(follow_symlinks=False) and len(stack) <= max_depth:
                stack.append((f"{prefix}{entry.name}/", _sorted_entries(Path(entry.path))))
        except OSError:
            continue  # removed or unreadable meanwhile
    return found


def _sorted_entries(folder: Path) -> Iterator[os.DirEntry[str]]:
    """Return the entries of one folder by name (none when it cannot be read)."""
    try:
        with os.scandir(folder) as listing:
            return iter(sorted(listing, key=lambda entry: entry.name))
    except OSError:
        return iter(())


@login_required
@require_GET
def job_file(request: HttpRequest, job_id: int, path: str) -> FileResponse:
    """Send one file of the job's own folder; any path that leaves it is a 404."""
    job = _job_for(request, job_id)
    if not job.workspace:
        raise Http404("this job has no folder")
    # A job folder replaced by a symlink would make anything it points to the job's files.
    if job.folder.is_symlink() or "\x00" in path:
        raise Http404("no such file in this job's folder")
    root = job.folder.resolve()
    target = (root / path).resolve()
    if not target.is_relative_to(root) or not target.is_file() or (root / path).is_symlink():
        raise Http404("no such file in this job's folder")
    kind, _ = mimetypes.guess_type(target.name)
    # Files are downloads, never rendered by the browser as this site's HTML.
    response = FileResponse(target.open("rb"), as_attachment=kind not in ("text/plain",),
                            content_type=kind if kind == "text/plain" else "application/octet-stream")
    response["X-Content-Type-Options"] = "nosniff"
    return response


# -- the standalone site --------------------------------------------------------------------------


class SiteApp:
    """The app that jobs submitted from the standalone site belong to."""

    package = "jobtower_site"
    name = "jobtower"


def _with_nul(data: QueryDict) -> str | None:
    """Return the first field of `data` with a NUL character in its name or value, or None."""
    # PostgreSQL cannot store or even search for NUL: such text must not reach a query.
    for key, values in data.lists():
        if "\x00" in key or any("\x00" in value for value in values):
            return key.replace("\x00", "")
    return None


@login_required
@require_GET
def home(request: HttpRequest) -> HttpResponse:
    """The standalone site: the user's Jobs Table and a form to run a command as a LOCAL job."""
    field = _with_nul(request.GET)
    if field is not None:
        return HttpResponse(f"the query parameter {field!r:.40} contains a NUL character", status=400,
                            content_type="text/plain")
    table = JobsTable(
        jobs=Job.objects.filter(user_id=request.user.pk or 0),
        column_fields=("id", "name", ("App", "label"), ("Type", "job_type"), "creation_time", "run_time"),
        reverse_sort=True, hover=True, striped=True, refresh_interval=2000,
    )
    from jobtower.models import LocalJob

    return render(request, "jobtower/home.html", {"table": table, "may_run": may_run_code(request.user, LocalJob)})


@login_required
@require_POST
def submit_local(request: HttpRequest) -> HttpResponse:
    """Create and execute a LOCAL job from the site's form (the command is split, never run by a shell)."""
    from jobtower.manager import JobManager
    from jobtower.models import LocalJob

    if not may_run_code(request.user, LocalJob):
        return HttpResponse(
            "Running commands on this server needs the permission 'jobtower | job | Can add job'; "
            "ask an administrator.", status=403, content_type="text/plain",
        )
    text = request.POST.get("command", "").strip()
    errors = []
    try:
        command = shlex.split(text)
    except ValueError as exc:
        command, errors = [], [f"the command cannot be split into arguments: {exc}"]
    if not command and not errors:
        errors.append("enter a command, e.g. python run_model.py --years 30")
    field = _with_nul(request.POST)
    if field is not None:
        errors.append(f"{field} contains a NUL character, which cannot be stored; remove it")
    timeout = request.POST.get("timeout", "").strip()
    options: dict[str, Any] = {"command": command} if command else {}
    if timeout:
        options["timeout"] = timeout
    if not errors:
        try:
            job = JobManager(SiteApp).create_job(
                name=request.POST.get("name", "").strip() or "{id}: " + text[:200],
                user=request.user, job_type="LOCAL",
                description=request.POST.get("description", "").strip(), **options,
            )
            job.execute()
        except (ValueError, TypeError, JobError) as exc:
            errors.append(str(exc))
    if errors:
        table = JobsTable(jobs=Job.objects.filter(user_id=request.user.pk or 0), reverse_sort=True)
        return render(request, "jobtower/home.html",
                      {"table": table, "errors": errors, "form": request.POST, "may_run": True}, status=400)
    return HttpResponseRedirect(reverse("jobtower:home"))
