"""The live job page: its changing parts as HTML fragments, and the status timeline as SVG.

The page and its refresh endpoint build the same fragments here, from the database and the job's
own folder only (never the engine), every value escaped where it is put into markup. The browser
swaps a fragment only when its HTML changed, so a focused button survives a refresh that changed
nothing around it.
"""

from __future__ import annotations

import datetime
import json
import math
from collections.abc import Sequence
from html import escape
from typing import Any

from django.urls import reverse
from django.utils import timezone

from jobtower.backends import Capability
from jobtower.gizmos import TableConfig, _duration
from jobtower.models import Job, JobEvent
from jobtower.statuses import Status
from jobtower.web.actions import DEFAULT_ACTIONS

#: Bytes of each log shown on the job page (the logs page has the whole log).
PAGE_LOG_TAIL = 8 * 1024
#: The timeline's size in SVG units (it scales to the page's width).
TL_WIDTH, TL_LANE, TL_LABEL, TL_AXIS = 800, 26, 110, 22
#: A span never drawn narrower than this, so an instant status (a terminal one) is still seen.
TL_MIN = 6.0


def page_config() -> TableConfig:
    """Return the job page's action configuration (the table's default actions, same rules)."""
    return TableConfig(columns=[], actions=[a for a in DEFAULT_ACTIONS if a != "logs"], custom=[])


def fragments(job: Job, config: TableConfig) -> dict[str, Any]:
    """Return the parts of the job page that change while it runs: HTML fragments and log tails."""
    from jobtower.web.views import job_files

    status = job.status_code
    badge = f'<span class="jobtower-badge status-{status.value}">{escape(status.display)}</span>'
    message = ""
    if job.status_message:
        message = f' <span class="jobtower-status-message">{escape(job.status_message)}</span>'
    progress = ""
    if job.progress is not None and math.isfinite(job.progress):
        pct = f"{job.progress:.0f}"
        progress = (
            f'<progress max="100" value="{job.progress:g}" aria-label="Progress">{pct}%</progress> '
            f'<span class="jobtower-pct">{pct}%</span> {escape(job.progress_message)}'
        )
    run_time = job.run_time
    result = ""
    if job.result is not None:
        result = f"<pre class=\"jobtower-result\">{escape(json.dumps(job.result, indent=2, default=str))}</pre>"
    error = ""
    if status in (Status.ERROR, Status.ABORTED) and job.status_message:
        error = f'<p class="jobtower-error" role="alert">{escape(job.status_message)}</p>'
    files = job_files(job, limit=200)
    if files:
        items = "".join(
            f'<li><a href="{escape(reverse("jobtower:job-file", args=[job.pk, f["path"]]))}">'
            f'{escape(str(f["path"]))}</a> <small>{int(str(f["size"]))} bytes</small></li>'
            for f in files
        )
        files_html = f'<ul class="jobtower-files">{items}</ul>'
    else:
        files_html = "<p>No files yet.</p>"
    return {
        "active": status.is_active,
        "html": {
            "status": badge + message,
            "progress": progress,
            "run_time": escape(_duration(run_time)) if isinstance(run_time, datetime.timedelta) else "",
            "actions": "".join(config._buttons(job)),
            "result": result,
            "error": error,
            "files": files_html,
            "timeline": timeline_svg(job),
        },
        "logs": log_tails(job),
    }


def log_tails(job: Job) -> dict[str, str]:
    """Return the last PAGE_LOG_TAIL bytes of each log file the engine names (files only, no engine call)."""
    backend = job.get_backend()
    if backend is None or not backend.can(Capability.LOG_FILES):
        return {}
    tails = {}
    for stream, path in backend.log_files(job).items():
        try:
            with path.open("rb") as handle:
                size = handle.seek(0, 2)
                handle.seek(max(0, size - PAGE_LOG_TAIL))
                tails[stream] = handle.read(PAGE_LOG_TAIL).decode(errors="replace")
        except OSError:
            tails[stream] = ""
    return tails


# -- the status timeline ----------------------------------------------------------------------------


Span = tuple[Status, datetime.datetime, datetime.datetime, str]


def _lanes(job: Job, events: Sequence[JobEvent], now: datetime.datetime) -> list[tuple[str, list[Span]]]:
    """Return (title, spans) per attempt, then per workflow node with times; a span is (status, start, end, note)."""
    by_attempt: dict[int, list[JobEvent]] = {}
    for event in events:
        by_attempt.setdefault(event.attempt, []).append(event)
    lanes: list[tuple[str, list[Span]]] = []
    following = {move.pk: after.time for move, after in zip(events, events[1:], strict=False)}
    for attempt, moves in sorted(by_attempt.items()):
        spans: list[Span] = []
        for move in moves:
            later = following.get(move.pk)
            status = Status(move.to_status)
            end = later or (now if status.is_active else move.time)
            note = f"{move.source}: {move.message}" if move.message else move.source
            spans.append((status, move.time, end, note))
        lanes.append((f"Attempt {attempt}", spans))
    if job.job_type == "CONDORWORKFLOW":
        from jobtower.models import WorkflowNode

        for node in WorkflowNode.objects.filter(workflow_id=job.pk).order_by("id"):
            if node.start_time is None:
                continue
            status = Status(node.status)
            end = node.completion_time or (now if status.is_active else node.start_time)
            lanes.append((node.name, [(status, node.start_time, end, node.status_message)]))
    return lanes


def timeline_svg(job: Job) -> str:
    """Return the job's history as an SVG timeline: one span per status move, one lane per attempt (escaped)."""
    events = list(JobEvent.objects.filter(job_id=job.pk).order_by("id"))
    if not events:
        return '<p class="jobtower-timeline-empty">Not executed yet: no history.</p>'
    now = timezone.now()
    lanes = _lanes(job, events, now)
    start = min(span[1] for _, spans in lanes for span in spans)
    end = max(span[2] for _, spans in lanes for span in spans)
    total = max((end - start).total_seconds(), 1e-3)
    scale = (TL_WIDTH - TL_LABEL - 10) / total
    height = TL_AXIS + TL_LANE * len(lanes) + 4
    parts = [
        f'<svg class="jobtower-timeline" viewBox="0 0 {TL_WIDTH} {height}" width="100%" role="img" '
        f'aria-label="Status timeline of job {job.pk}" xmlns="http://www.w3.org/2000/svg">',
        f'<text class="jobtower-tl-axis" x="{TL_LABEL}" y="14">{escape(_clock(start))}</text>',
        f'<text class="jobtower-tl-axis" x="{TL_WIDTH - 4}" y="14" text-anchor="end">'
        f'{escape(_clock(end))} (+{escape(_duration(end - start))})</text>',
    ]
    for row, (title, spans) in enumerate(lanes):
        y = TL_AXIS + row * TL_LANE
        parts.append(f'<text class="jobtower-tl-lane" x="4" y="{y + 17}">{escape(title[:16])}'
                     f'<title>{escape(title)}</title></text>')
        for status, begin, finish, note in spans:
            x = TL_LABEL + (begin - start).total_seconds() * scale
            width = max((finish - begin).total_seconds() * scale, TL_MIN)
            x = min(x, TL_WIDTH - 4 - width)
            tip = f"{status.display}: {_clock(begin)} for {_duration(finish - begin)}"
            tip += f" ({note})" if note else ""
            parts.append(
                f'<g class="jobtower-span" data-status="{status.value}" data-lane="{row}">'
                f'<rect class="status-{status.value}" x="{x:.1f}" y="{y + 3}" width="{width:.1f}" '
                f'height="{TL_LANE - 6}" rx="3">'
                f"<title>{escape(tip)}</title></rect>"
                + (f'<text class="jobtower-tl-label" x="{x + 4:.1f}" y="{y + 17}">{escape(status.display)}</text>'
                   if width > 8 * len(status.display) else "")
                + "</g>"
            )
    parts.append("</svg>")
    return "".join(parts)


def _clock(when: datetime.datetime) -> str:
    return str(timezone.localtime(when).strftime("%Y-%m-%d %H:%M:%S"))
