"""The Jobs Table gizmo: `JobsTable(jobs=..., column_fields=...)`, rendered server-side and kept live.

In a template: `{% load jobtower %}{% jobs_table jobs_table_options %}`; in Python:
`jobs_table_options.render(request)`. Pagination, sorting, status filter and search happen in the
database; the page refreshes its active rows with one request per interval.
"""

from __future__ import annotations

import datetime
import functools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from html import escape  # the stdlib's: same escaping as Django's, without its lazy-string wrapper
from typing import Any
from urllib.parse import urlencode

from django.core import signing
from django.db.models import Count, OuterRef, Q, QuerySet, Subquery
from django.http import HttpRequest
from django.template.loader import render_to_string
from django.urls import NoReverseMatch, reverse
from django.utils import formats, timezone
from django.utils.safestring import SafeString, mark_safe
from django.utils.text import slugify

from jobtower import manager
from jobtower.models import Job, JobEvent
from jobtower.statuses import Status
from jobtower.web.actions import BUILTIN, DEFAULT_ACTIONS, CustomAction, TableAction

__all__ = ["CustomAction", "Filters", "JobsTable"]

_SALT = "jobtower.jobs-table"
#: Columns that can be sorted in the database (others are shown but not sortable).
SORTABLE = {"id", "name", "description", "label", "job_type", "creation_time", "execute_time",
            "start_time", "completion_time", "status", "attempt", "progress"}
MAX_PAGE_SIZE = 500
#: Beyond this a page number is nonsense (and would overflow the database's OFFSET).
MAX_PAGE = 1_000_000


def _column(entry: str | Sequence[str]) -> tuple[str, str]:
    if isinstance(entry, str):
        label = entry.split(".")[-1].replace("_", " ").title()
        return ("ID" if entry == "id" else label, entry)
    label, name = entry
    return str(label), str(name)


@dataclass
class JobsTable:
    """Options of a Jobs Table (the Tethys gizmo's options, and a few more)."""

    jobs: QuerySet[Job] | Iterable[Job]
    column_fields: Sequence[str | Sequence[str]] = ("id", "name", "description", "creation_time")
    show_status: bool = True
    show_actions: bool = True
    actions: Sequence[str] | None = None
    custom_actions: Sequence[CustomAction] = ()
    monitor_url: str = ""
    results_url: str = ""
    hover: bool = False
    striped: bool = False
    bordered: bool = False
    condensed: bool = False
    attributes: dict[str, str] = field(default_factory=dict)
    classes: str = ""
    refresh_interval: int = 5000
    sort: bool = True
    reverse_sort: bool = False
    sort_field: str = "id"
    show_detailed_status: bool = False
    page_size: int = 50
    #: Query-string prefix, so that two tables on one page keep their own page and filters.
    prefix: str = "jt"

    def __post_init__(self) -> None:
        self.columns = [_column(entry) for entry in self.column_fields]
        names = list(self.actions) if self.actions is not None else list(DEFAULT_ACTIONS)
        if self.monitor_url and "monitor" not in names and self.actions is None:
            names.append("monitor")
        if self.results_url and "results" not in names and self.actions is None:
            names.append("results")
        unknown = [n for n in names if n not in BUILTIN]
        if unknown:
            raise ValueError(
                f"unknown Jobs Table action(s) {unknown}; built-in actions are {sorted(BUILTIN)}; "
                "add your own with custom_actions=[CustomAction(...)]"
            )
        if "monitor" in names and not self.monitor_url:
            raise ValueError("the 'monitor' action needs monitor_url='app:view_name'")
        if "results" in names and not self.results_url:
            raise ValueError("the 'results' action needs results_url='app:view_name'")
        self.action_names = names
        if not 1 <= self.page_size <= MAX_PAGE_SIZE:
            raise ValueError(f"page_size must be between 1 and {MAX_PAGE_SIZE}")

    def config(self) -> TableConfig:
        """Return the table's row-level settings."""
        return TableConfig(
            columns=self.columns,
            actions=self.action_names if self.show_actions else [],
            custom=[c.to_config() for c in self.custom_actions] if self.show_actions else [],
            monitor_url=self.monitor_url,
            results_url=self.results_url,
            show_status=self.show_status,
            show_detailed_status=self.show_detailed_status,
        )

    def render(self, request: HttpRequest) -> SafeString:
        """Render the table for `request` (its page, sort, status filter and search)."""
        params = request.GET
        p = self.prefix
        try:
            page = min(max(1, int(params.get(f"{p}_page", "1"))), MAX_PAGE)
        except ValueError:
            page = 1
        default_sort = ("-" if self.reverse_sort else "") + self.sort_field
        sort = params.get(f"{p}_sort", default_sort) if self.sort else default_sort
        if sort.lstrip("-") not in SORTABLE:
            sort = default_sort
        staff = bool(getattr(request.user, "is_staff", False))
        filters = Filters.from_params(params, p, staff=staff)
        jobs, has_next = _page(self.jobs, page, self.page_size, sort, filters)
        config = self.config()
        nodes = config.nodes_for(jobs)
        rows = [mark_safe(config.row_html(job, nodes.get(job.pk))) for job in jobs]  # built escaped, value by value

        def link(**changes: Any) -> str:
            values: dict[str, Any] = {f"{p}_page": page, f"{p}_sort": sort, **filters.params(p)}
            values.update({f"{p}_{k}": v for k, v in changes.items()})
            kept: dict[str, Any] = {k: v for k, v in request.GET.lists() if not k.startswith(f"{p}_")}
            kept.update({k: v for k, v in values.items() if v not in ("", None, [])})
            return "?" + urlencode(kept, doseq=True)

        headers = []
        for label, name in config.columns:
            sortable = self.sort and name in SORTABLE
            direction = "" if sort == name else ("-" if sort == "-" + name else None)
            headers.append({
                "label": label,
                "url": link(sort=("-" + name if sort == name else name), page=1) if sortable else "",
                "arrow": {"": "▲", "-": "▼"}.get(direction or "x", ""),
                "aria_sort": {"": "ascending", "-": "descending"}.get(direction or "x", "none") if sortable else "",
            })
        options = (("hover", self.hover, "table-hover"), ("striped", self.striped, "table-striped"),
                   ("bordered", self.bordered, "table-bordered"), ("condensed", self.condensed, "table-sm"))
        classes = ["jobtower-table", self.classes]
        classes += [name for name, on, _ in options if on]
        # Bootstrap 5's names too, so a Tethys page styled by Bootstrap shows the options it asked for.
        classes += ["table", *(bootstrap for _, on, bootstrap in options if on)]
        counts = status_counts(self.jobs, filters)
        context = {
            "table": self,
            "config": config,
            "config_token": config.sign(),
            "rows": rows,
            "headers": headers,
            "classes": " ".join(c for c in classes if c),
            "attributes": self.attributes,
            "page": page,
            "first_index": (page - 1) * self.page_size + 1 if rows else 0,
            "last_index": (page - 1) * self.page_size + len(rows),
            "prev_url": link(page=page - 1) if page > 1 else "",
            "next_url": link(page=page + 1) if has_next else "",
            "filters": filters,
            "filtered": filters.active(),
            "query": filters.query,
            "prefix": p,
            "statuses": [(s, counts.get(s.value, 0), s.value in filters.statuses) for s in Status],
            "total": sum(counts.values()),
            "staff": staff,
            "hidden_params": [(k, v) for k, v in request.GET.items() if not k.startswith(f"{p}_")],
            "refresh_interval": max(int(self.refresh_interval), 500),
            "return_to": request.get_full_path(),
        }
        return render_to_string("jobtower/jobs_table.html", context, request=request)

    def __html__(self) -> str:  # so a mistaken {{ options }} shows a hint, not object repr
        return "<!-- render a JobsTable with {% jobs_table options %} -->"


@dataclass
class Filters:
    """A table's filters, read from the page's URL (GET parameters with the table's prefix)."""

    statuses: list[str] = field(default_factory=list)
    job_type: str = ""
    app: str = ""
    #: A username; only staff may filter by owner (others see their own jobs anyway).
    owner: str = ""
    created_from: str = ""
    created_to: str = ""
    query: str = ""
    #: What was wrong with the filters as given (shown above the table; the text stays in the form).
    errors: list[str] = field(default_factory=list)

    @classmethod
    def from_params(cls, params: Any, prefix: str, *, staff: bool = False) -> Filters:
        """Return the filters in `params` (a QueryDict); unknown statuses and bad dates are reported."""

        def text(name: str, limit: int = 200) -> str:
            # A NUL cannot reach PostgreSQL (it refuses the query): a filter never holds one.
            return str(params.get(f"{prefix}_{name}", "")).replace("\x00", "").strip()[:limit]

        found = cls(job_type=text("type", 64), app=text("app"), owner=text("owner", 150) if staff else "",
                    created_from=text("from", 10), created_to=text("to", 10), query=text("q"))
        known = {s.value for s in Status}
        for value in params.getlist(f"{prefix}_status"):
            if value in known and value not in found.statuses:
                found.statuses.append(value)
            elif value:
                found.errors.append(f"unknown status {value[:20]!r}: choose among the listed statuses")
        for label, value in (("created from", found.created_from), ("created to", found.created_to)):
            if value and _date(value) is None:
                found.errors.append(f"{label} must be a date like 2026-01-31, not {value!r}")
        return found

    def active(self) -> bool:
        """Return True when any filter narrows the table."""
        return bool(self.statuses or self.job_type or self.app or self.owner or self.created_from
                    or self.created_to or self.query)

    def params(self, prefix: str) -> dict[str, Any]:
        """Return the filters as GET parameters (for the table's links: page, sort)."""
        return {f"{prefix}_status": self.statuses, f"{prefix}_type": self.job_type, f"{prefix}_app": self.app,
                f"{prefix}_owner": self.owner, f"{prefix}_from": self.created_from,
                f"{prefix}_to": self.created_to, f"{prefix}_q": self.query}

    def apply(self, jobs: QuerySet[Job], *, with_status: bool = True) -> QuerySet[Job]:
        """Return `jobs` narrowed by the filters (by status too unless `with_status` is False)."""
        if with_status and self.statuses:
            jobs = jobs.filter(_status__in=self.statuses)
        if self.job_type:
            jobs = jobs.filter(job_type=self.job_type.upper())
        if self.app:
            jobs = jobs.filter(label=self.app)
        if self.owner:
            jobs = jobs.filter(user__username=self.owner)
        start, end = _date(self.created_from), _date(self.created_to)
        zone = timezone.get_current_timezone()
        if start is not None:
            jobs = jobs.filter(creation_time__gte=datetime.datetime.combine(start, datetime.time.min, zone))
        if end is not None:  # the whole "to" day is included
            jobs = jobs.filter(creation_time__lt=datetime.datetime.combine(
                end + datetime.timedelta(days=1), datetime.time.min, zone))
        if self.query:
            jobs = jobs.filter(Q(name__icontains=self.query) | Q(description__icontains=self.query))
        return jobs


def _date(text: str) -> datetime.date | None:
    try:
        return datetime.date.fromisoformat(text) if text else None
    except ValueError:
        return None


def _queryset(jobs: QuerySet[Job] | Iterable[Job]) -> QuerySet[Job]:
    return jobs if isinstance(jobs, QuerySet) else Job.objects.filter(pk__in=[job.pk for job in jobs])


def status_counts(jobs: QuerySet[Job] | Iterable[Job], filters: Filters) -> dict[str, int]:
    """Return how many jobs each status has under every filter but the status one (one GROUP BY)."""
    rows = filters.apply(_queryset(jobs), with_status=False).order_by().values("_status").annotate(n=Count("pk"))
    return {row["_status"]: row["n"] for row in rows}


def _page(
    jobs: QuerySet[Job] | Iterable[Job], page: int, size: int, sort: str, filters: Filters
) -> tuple[list[Job], bool]:
    """Return one page of jobs (sorted, filtered and searched in the database) and if more follow."""
    jobs = filters.apply(_queryset(jobs))
    field_name = sort.lstrip("-")
    order = ("-" if sort.startswith("-") else "") + ("_status" if field_name == "status" else field_name)
    jobs = with_status_since(jobs.order_by(order, "-id" if order.startswith("-") else "id"))
    start = (page - 1) * size
    rows = list(jobs[start : start + size + 1])
    return rows[:size], len(rows) > size


def with_status_since(jobs: QuerySet[Job]) -> QuerySet[Job]:
    """Annotate each job with the time of its last status move (`status_since`)."""
    last = JobEvent.objects.filter(job=OuterRef("pk")).order_by("-id").values("time")[:1]
    return jobs.select_related("user").annotate(status_since=Subquery(last))


@dataclass
class TableConfig:
    """What a row needs to render: columns and actions. Signed into the page for live requests."""

    columns: list[tuple[str, str]]
    actions: list[str]
    custom: list[dict[str, Any]]
    monitor_url: str = ""
    results_url: str = ""
    show_status: bool = True
    show_detailed_status: bool = False

    def sign(self) -> str:
        """Return the configuration as a signed token (it decides what the server will do)."""
        return signing.dumps(self.__dict__, salt=_SALT, compress=True)

    @classmethod
    def load(cls, token: str) -> TableConfig:
        """Return the configuration a page was rendered with; BadSignature if it was tampered with."""
        data = signing.loads(token, salt=_SALT)
        data["columns"] = [tuple(c) for c in data["columns"]]
        return cls(**data)

    def action(self, name: str) -> TableAction | None:
        """Return the configured action `name`, or None when this table does not offer it."""
        if name in self.actions:
            return BUILTIN[name]
        for custom in self.custom:
            if custom["name"] == name:
                return CustomAction(**custom).as_action()
        return None

    @staticmethod
    def nodes_for(jobs: Sequence[Job]) -> dict[int, list[Any]]:
        """Return the nodes of the workflows among `jobs`, in one query (none: no query)."""
        from jobtower.web.dag import node_rows

        return node_rows(job.pk for job in jobs if job.job_type == "CONDORWORKFLOW")

    def row_html(self, job: Job, nodes: list[Any] | None = None) -> str:
        """Return one table row as HTML (a workflow's is followed by a row of its nodes); all escaped.

        Rows are built in Python rather than with the template engine: a page has 50 of them and
        the refresh endpoint renders them again every few seconds. `nodes` are a workflow's nodes
        when the caller fetched them for many rows at once.
        """
        status = job.status_code
        cells = []
        for name, css in _column_classes(tuple(name for _, name in self.columns)):
            value = _display(cell_value(job, name))
            if name == "id":
                value = f'<a href="{_url("jobtower:job-detail", job.pk)}">{value}</a>'
            cells.append(f'<td class="{css}">{value}</td>')
        if self.show_status:
            parts = [f'<span class="jobtower-badge status-{status.value}">{status.display}</span>']
            if job.progress is not None and math.isfinite(job.progress) and status.is_active:
                pct = f"{job.progress:.0f}"
                parts.append(
                    f'<progress max="100" value="{job.progress:g}" title="{pct}% '
                    f'{escape(job.progress_message)}"></progress> <small>{pct}%</small>'
                )
            since = getattr(job, "status_since", None) or job.creation_time
            title = since.isoformat() if since else ""
            parts.append(f'<small class="jobtower-age" title="{title}">{_age(since)}</small>')
            if job.status_message:
                message = job.status_message if len(job.status_message) <= 300 else job.status_message[:299] + "…"
                parts.append(f'<div class="jobtower-status-message">{escape(message)}</div>')
            if self.show_detailed_status and job.progress_message:
                parts.append(f'<div class="jobtower-progress-message">{escape(job.progress_message)}</div>')
            cells.append(f'<td class="jobtower-status">{"".join(parts)}</td>')
        if self.actions or self.custom:
            cells.append(f'<td class="jobtower-actions">{"".join(self._buttons(job))}</td>')
        active = ' data-active="1"' if status.is_active else ""
        css = f"jobtower-row status-{status.value} type-{escape(job.job_type.lower())}"
        if job.job_type != "CONDORWORKFLOW":
            return f'<tr data-job-id="{job.pk}"{active} class="{css}">{"".join(cells)}</tr>'
        if nodes is None:
            nodes = self.nodes_for([job]).get(job.pk, [])
        toggle = (f'<button type="button" class="jobtower-expand" data-jt-expand="{job.pk}" '
                  f'aria-expanded="false">▸ {len(nodes)} node{"" if len(nodes) == 1 else "s"}</button>')
        cells[0] = cells[0].replace("</td>", f" {toggle}</td>", 1) if cells else f"<td>{toggle}</td>"
        main = f'<tr data-job-id="{job.pk}"{active} class="{css}">{"".join(cells)}</tr>'
        return main + self._node_row(job, nodes, len(cells))

    def _node_row(self, job: Job, nodes: list[Any], width: int) -> str:
        """Return the hidden row that lists a workflow's nodes: name, status, run time, logs."""
        logs = _url("jobtower:job-logs", job.pk)
        lines = []
        for node in nodes:
            status = Status(node.status)
            run_time = node.run_time
            message = f' <small>{escape(node.status_message[:200])}</small>' if node.status_message else ""
            lines.append(
                f'<tr data-node="{escape(node.name)}"><td>{escape(node.name)}</td>'
                f'<td><span class="jobtower-badge status-{status.value}">{status.display}</span>{message}</td>'
                f'<td>{_duration(run_time) if run_time != "" else ""}</td>'
                f'<td><a href="{logs}#log-{escape(slugify(node.name + ".stdout"))}">stdout</a> '
                f'<a href="{logs}#log-{escape(slugify(node.name + ".stderr"))}">stderr</a></td></tr>'
            )
        body = "".join(lines) or '<tr><td colspan="4">This workflow has no nodes.</td></tr>'
        return (
            f'<tr class="jobtower-node-row" data-parent-job="{job.pk}" hidden><td colspan="{max(width, 1)}">'
            '<table class="jobtower-nodes"><thead><tr><th>Node</th><th>Status</th><th>Run time</th>'
            f'<th>Logs</th></tr></thead><tbody>{body}</tbody></table></td></tr>'
        )

    def _buttons(self, job: Job) -> list[str]:
        buttons = []
        capabilities = manager.capabilities(job)  # once per row, not once per button
        for name in [*self.actions, *(c["name"] for c in self.custom)]:
            action = self.action(name)
            if action is None or not action.enabled_for(job, capabilities):
                continue
            label = escape(action.label)
            if action.is_link:
                url = self._link(name, job)
                if url:
                    buttons.append(
                        f'<a class="jobtower-button" href="{escape(url)}" data-action="{escape(name)}">{label}</a>'
                    )
                continue
            confirm = ""
            if action.confirm:
                confirm = f' data-confirm="{escape(action.confirm.replace("{name}", job.name))}"'
            url = _url("jobtower:table-action", job.pk, name)
            buttons.append(
                f'<button type="submit" class="jobtower-button {action.style}" formaction="{escape(url)}" '
                f'data-jt-action="{escape(name)}"{confirm}>{label}</button>'
            )
        return buttons

    def _link(self, name: str, job: Job) -> str:
        if name == "logs":
            return _url("jobtower:job-logs", job.pk)
        target = {"monitor": self.monitor_url, "results": self.results_url}.get(name)
        if target is None:
            target = next((c["url_name"] for c in self.custom if c["name"] == name), "")
        if not target:
            return ""
        try:
            return reverse(target, kwargs={"job_id": job.pk})
        except NoReverseMatch:
            return reverse(target, args=[job.pk])


def cell_value(job: Job, name: str) -> Any:
    """Return a column's value: an attribute, or a path into extended_properties ("a.b")."""
    head, _, rest = name.partition(".")
    if head == "status":
        return job.status_code.display
    value: Any = getattr(job, head, "") if not head.startswith("_") else ""
    if callable(value):
        return ""  # columns show data; they never call methods
    for part in rest.split(".") if rest else ():
        value = value.get(part, "") if isinstance(value, dict) else ""
    if isinstance(value, datetime.timedelta):
        return _duration(value)
    return value


@functools.lru_cache(maxsize=256)
def _column_classes(names: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    return tuple((name, "col-" + escape(slugify(name))) for name in names)


@functools.lru_cache(maxsize=64)
def _url_pattern(name: str, with_action: bool) -> str:
    args = [987654321, "ACTION"] if with_action else [987654321]
    return reverse(name, args=args)


def _url(name: str, job_id: int, action: str | None = None) -> str:
    """Reverse a jobtower URL once per name and fill in the id (a page reverses hundreds)."""
    url = _url_pattern(name, action is not None).replace("987654321", str(job_id))
    return url.replace("ACTION", action) if action is not None else url


def _display(value: Any) -> str:
    """Return a cell value as escaped text, as the template engine would show it."""
    if value is None:
        return "None"
    if isinstance(value, datetime.datetime):
        # Compact and sortable, in the site's time zone (Django's localize costs a third of a row).
        # template_localtime() is public Django (what templates call) that django-stubs leaves out.
        value = timezone.template_localtime(value).strftime("%Y-%m-%d %H:%M")  # type: ignore[attr-defined]
    elif isinstance(value, (datetime.date, float, int)) and not isinstance(value, bool):
        value = formats.localize(value)
    return escape(str(value))


def _duration(delta: datetime.timedelta) -> str:
    seconds = int(delta.total_seconds())
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}"


def _age(since: datetime.datetime | None) -> str:
    if since is None:
        return ""
    seconds = max(0, int((timezone.now() - since).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit}"
    return f"{seconds} s"
