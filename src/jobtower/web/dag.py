"""A workflow's DAG as an SVG picture, drawn on the server from the stored node rows (no engine call).

Nodes are placed in columns by depth (a node sits one column right of its deepest parent) and
coloured by status; every text is escaped. The job page shows it and fetches it again while the
workflow is active, so the colours follow the nodes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from django.utils.html import escape

from jobtower.statuses import Status

#: Fill colour per status (the Jobs Table's badge colours, lighter so the names stay readable).
COLOURS = {
    Status.PENDING: "#d0d7de", Status.SUBMITTED: "#d8b9ff", Status.RUNNING: "#80ccff",
    Status.VARIOUS: "#80ccff", Status.PAUSED: "#f5d36b", Status.RESULTS_READY: "#7fd6cf",
    Status.COMPLETE: "#6fdd8b", Status.VARIOUS_COMPLETE: "#6fdd8b", Status.ERROR: "#ff8a80",
    Status.ABORTED: "#a6a6a6", Status.OTHER: "#e0e0e0",
}
WIDTH, HEIGHT, GAP_X, GAP_Y, MARGIN = 150, 34, 56, 16, 10
#: Node names are at most this long in the picture (the full name is in its tooltip).
LABEL = 20


def depths(parents: Mapping[int, Iterable[int]]) -> dict[int, int]:
    """Return each node's column: 0 for a root, else one more than its deepest parent (cycles: 0)."""
    remaining = {node: {p for p in ps if p in parents} for node, ps in parents.items()}
    depth = {node: 0 for node in parents}
    ready = [node for node, ps in remaining.items() if not ps]
    children: dict[int, list[int]] = {}
    for node, ps in remaining.items():
        for parent in ps:
            children.setdefault(parent, []).append(node)
    while ready:
        node = ready.pop()
        for child in children.get(node, []):
            depth[child] = max(depth[child], depth[node] + 1)
            remaining[child].discard(node)
            if not remaining[child]:
                ready.append(child)
    return depth


def dag_svg(workflow_id: int) -> str:
    """Return the workflow's DAG as an SVG document (text), nodes coloured by their stored status."""
    from jobtower.models.workflow import WorkflowNode, graph

    nodes = graph(workflow_id)
    rows = {pk: (status, message) for pk, status, message in
            WorkflowNode.objects.filter(workflow_id=workflow_id).values_list("pk", "status", "status_message")}
    column = depths({pk: parents for pk, (_, parents) in nodes.items()})
    placed: dict[int, tuple[int, int]] = {}
    per_column: dict[int, int] = {}
    for pk in sorted(nodes, key=lambda n: (column[n], nodes[n][0])):
        row = per_column.get(column[pk], 0)
        per_column[column[pk]] = row + 1
        placed[pk] = (MARGIN + column[pk] * (WIDTH + GAP_X), MARGIN + row * (HEIGHT + GAP_Y))
    width = MARGIN * 2 + (max(column.values(), default=0) + 1) * (WIDTH + GAP_X) - GAP_X
    height = MARGIN * 2 + max(per_column.values(), default=1) * (HEIGHT + GAP_Y) - GAP_Y
    parts: list[str] = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="jobtower-dag" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="workflow {workflow_id}">',
        '<defs><marker id="jt-arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" '
        'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#57606a"/></marker></defs>',
    ]
    for pk, (_, parents) in nodes.items():
        x2, y2 = placed[pk]
        for parent in parents:
            if parent in placed:
                x1, y1 = placed[parent]
                parts.append(
                    f'<line x1="{x1 + WIDTH}" y1="{y1 + HEIGHT // 2}" x2="{x2}" y2="{y2 + HEIGHT // 2}" '
                    'stroke="#57606a" stroke-width="1.5" marker-end="url(#jt-arrow)"/>'
                )
    for pk, (name, _) in nodes.items():
        x, y = placed[pk]
        code, message = rows.get(pk, (Status.OTHER.value, ""))
        status = Status(code)
        label = name if len(name) <= LABEL else name[: LABEL - 1] + "…"
        tip = f"{name}: {status.display}" + (f" ({message})" if message else "")
        parts.append(
            f'<g class="jobtower-dag-node status-{status.value}" data-node="{escape(name)}" '
            f'data-status="{status.value}"><title>{escape(tip)}</title>'
            f'<rect x="{x}" y="{y}" width="{WIDTH}" height="{HEIGHT}" rx="6" fill="{COLOURS[status]}" '
            'stroke="#57606a"/>'
            f'<text x="{x + WIDTH // 2}" y="{y + HEIGHT // 2 + 5}" text-anchor="middle" font-size="13" '
            f'font-family="sans-serif">{escape(label)}</text></g>'
        )
    parts.append("</svg>")
    return "".join(parts)


def node_rows(workflow_ids: Iterable[int]) -> dict[int, list[Any]]:
    """Return {workflow id: its nodes} for many workflows in one query (the Jobs Table's child rows)."""
    from jobtower.models.workflow import WorkflowNode

    ids = list(workflow_ids)
    found: dict[int, list[Any]] = {pk: [] for pk in ids}
    if ids:
        for node in WorkflowNode.objects.filter(workflow_id__in=ids).order_by("workflow_id", "id"):
            found[node.workflow_id].append(node)
    return found
