"""The nodes of a CONDORWORKFLOW: one row per node, its parents, and the status the engine last gave it.

A node's status is written by the job manager from the workflow's observations (one UPDATE per
workflow per change), so reading it (``workflow.nodes_status()``, the Jobs Table) never asks the
schedd. Apps build nodes as in Tethys (``CondorWorkflowJobNode(...).save()``, ``add_parent()``) or
with ``workflow.add_node(...)``; both write the same rows.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from django.db import models
from django.db.models.functions import Coalesce
from django.utils import timezone

from jobtower import statuses
from jobtower.jsoncheck import check_json
from jobtower.statuses import Status

#: DAGMan's node kinds; jobtower runs HTCondor job nodes.
NODE_TYPES = ("JOB",)
#: A node's name is also its folder's name and a word of the DAG file: letters, digits, _ . - only.
NODE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,254}")
#: A DAGMan VARS name.
VAR_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,99}")


class WorkflowNode(models.Model):
    """One node of a DAGMan workflow: an HTCondor job described like a CONDOR job, with DAG settings."""

    workflow = models.ForeignKey("jobtower.Job", on_delete=models.CASCADE, related_name="node_set")
    name = models.CharField(max_length=255)
    job_type = models.CharField(max_length=8, default="JOB")
    parent_nodes = models.ManyToManyField("self", symmetrical=False, blank=True, related_name="children")
    condorpy_template_name = models.CharField(max_length=64, null=True, blank=True)
    attributes = models.JSONField(default=dict, blank=True)
    remote_input_files = models.JSONField(default=list, blank=True)
    pre_script = models.CharField(max_length=1024, blank=True, default="")
    pre_script_args = models.CharField(max_length=1024, blank=True, default="")
    post_script = models.CharField(max_length=1024, blank=True, default="")
    post_script_args = models.CharField(max_length=1024, blank=True, default="")
    variables = models.JSONField(default=dict, blank=True)
    priority = models.IntegerField(null=True, blank=True)
    category = models.CharField(max_length=128, blank=True, default="")
    retry = models.PositiveSmallIntegerField(null=True, blank=True)
    retry_unless_exit_value = models.IntegerField(null=True, blank=True)
    pre_skip = models.IntegerField(null=True, blank=True)
    abort_dag_on = models.IntegerField(null=True, blank=True)
    abort_dag_on_return_value = models.IntegerField(null=True, blank=True)
    dir = models.CharField(max_length=1024, blank=True, default="")
    noop = models.BooleanField(default=False)
    #: The node's status as the engine last reported it (written by the manager only).
    status = models.CharField(max_length=3, choices=statuses.CHOICES, default=Status.PENDING.value)
    status_message = models.TextField(blank=True, default="")
    #: When the engine first reported the node queued or running, and when it ended (this attempt).
    start_time = models.DateTimeField(null=True, blank=True)
    completion_time = models.DateTimeField(null=True, blank=True)

    class Meta:
        app_label = "jobtower"
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["workflow", "name"], name="jobtower_node_name_per_workflow"),
        ]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if kwargs.get("remote_input_files") is not None:
            kwargs["remote_input_files"] = _paths(kwargs["remote_input_files"])
        for key in ("pre_script", "pre_script_args", "post_script", "post_script_args", "category", "dir"):
            if key in kwargs and kwargs[key] is None:
                kwargs[key] = ""
        super().__init__(*args, **kwargs)

    @property
    def type(self) -> str:
        """Return the DAGMan node kind ("JOB")."""
        return self.job_type

    @property
    def parents(self) -> list[WorkflowNode]:
        """Return the node's parents (saved ones), by name."""
        if self.pk is None:
            return []
        return sorted(self.parent_nodes.all(), key=lambda node: node.name)

    @property
    def run_time(self) -> Any:
        """Return how long the node has been queued or running (so far), or "" before it started."""
        if self.start_time is None:
            return ""
        return (self.completion_time or timezone.now()) - self.start_time

    @property
    def status_code(self) -> Status:
        """Return the node's stored status as a Status."""
        return Status(self.status)

    def save(self, *args: Any, **kwargs: Any) -> None:
        """Check the node, then save it; ValueError names a duplicate or a bad setting."""
        self.clean_node()
        super().save(*args, **kwargs)

    def clean_node(self) -> None:
        """Raise ValueError naming what is wrong with this node (nothing is written)."""
        if not self.name or not str(self.name).strip():
            raise ValueError("a workflow node needs a name: CondorWorkflowJobNode(name='prep', workflow=...)")
        if not NODE_NAME.fullmatch(str(self.name)) or self.name.upper() in DAG_WORDS:
            raise ValueError(
                f"workflow node name {self.name!r} is not allowed: use letters, digits, '_', '.' and '-' "
                "(not first), at most 255 characters, and no DAGMan keyword; the name is also the node's "
                "folder name"
            )
        if self.workflow_id is None:
            raise ValueError(f"workflow node {self.name!r} has no workflow: save() the workflow first")
        if self.job_type not in NODE_TYPES:
            raise ValueError(
                f"workflow node {self.name!r}: job_type must be one of {NODE_TYPES}, not {self.job_type!r}"
            )
        if self.category and not NODE_NAME.fullmatch(str(self.category)):
            raise ValueError(
                f"workflow node {self.name!r}: category {self.category!r} must be one word of letters, digits, "
                "'_', '.' and '-' (it is written into the DAG file)"
            )
        if not isinstance(self.variables, dict):
            raise TypeError(f"workflow node {self.name!r}: variables must be a dict of names to values")
        for key, value in (self.variables or {}).items():
            if not VAR_NAME.fullmatch(str(key)) or any(c in str(value) for c in '"\n\r\\'):
                raise ValueError(
                    f"workflow node {self.name!r}: variable {key!r} = {value!r} cannot be written into the DAG: "
                    "names are letters, digits and '_' (not first a digit), values hold no quote, backslash "
                    "or line break"
                )
        for key in ("pre_script", "pre_script_args", "post_script", "post_script_args", "dir"):
            if any(c in str(getattr(self, key) or "") for c in "\n\r"):
                raise ValueError(f"workflow node {self.name!r}: {key} cannot span lines")
        check_json(self.attributes, f"workflow node {self.name!r} attributes")
        check_json(self.variables, f"workflow node {self.name!r} variables")
        self.remote_input_files = _paths(self.remote_input_files or [])
        clash = WorkflowNode.objects.filter(workflow_id=self.workflow_id, name=self.name)
        if self.pk is not None:
            clash = clash.exclude(pk=self.pk)
        if clash.exists():
            raise ValueError(
                f"workflow {self.workflow_id} has a node named {self.name!r} already; node names must be "
                "unique within a workflow"
            )

    def add_parent(self, parent: WorkflowNode) -> None:
        """Make `parent` run before this node; ValueError when it is of another workflow or makes a cycle."""
        if self.pk is None:
            self.save()
        if parent.pk is None:
            parent.save()
        if parent.workflow_id != self.workflow_id:
            raise ValueError(
                f"node {parent.name!r} belongs to workflow {parent.workflow_id}, not to workflow "
                f"{self.workflow_id} of node {self.name!r}: a parent must be a node of the same workflow"
            )
        cycle = _path(parent, self)
        if cycle is not None:
            raise ValueError(
                f"making {parent.name!r} a parent of {self.name!r} would make a cycle: "
                f"{' -> '.join([*cycle, cycle[0]])} (each runs before the next); nothing was changed"
            )
        self.parent_nodes.add(parent)

    def add_parents(self, parents: Iterable[WorkflowNode]) -> None:
        """Add several parents (each checked as add_parent does)."""
        for parent in parents:
            self.add_parent(parent)

    def __str__(self) -> str:
        return f"node {self.name} of workflow {self.workflow_id}"


#: Words of the DAG language a node name must not be (DAGMan reads them as keywords).
DAG_WORDS = frozenset({"PARENT", "CHILD", "JOB", "SUBDAG", "SPLICE", "FINAL", "SCRIPT", "RETRY", "VARS",
                       "PRIORITY", "CATEGORY", "MAXJOBS", "ABORT-DAG-ON", "DONE", "ALL_NODES"})

#: The Tethys name of a workflow node (tethys_compute.models.CondorWorkflowJobNode).
CondorWorkflowJobNode = WorkflowNode


def _paths(value: Any) -> list[str]:
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise TypeError(f"remote_input_files must be a list or tuple of file paths, not {type(value).__name__}")
    return [str(item) for item in value]


def _path(start: WorkflowNode, goal: WorkflowNode) -> list[str] | None:
    """Return the node names from `goal` down to `start` if `start` descends from `goal` (or is it)."""
    edges = graph(start.workflow_id)
    names = {node_id: name for node_id, (name, _) in edges.items()}
    # Walk up from `start` through its parents: reaching `goal` means goal -> ... -> start exists.
    stack: list[tuple[int, list[str]]] = [(start.pk, [start.name])]
    seen: set[int] = set()
    while stack:
        node_id, trail = stack.pop()
        if node_id == goal.pk:
            return list(reversed(trail))
        if node_id in seen:
            continue
        seen.add(node_id)
        for parent_id in edges.get(node_id, ("", []))[1]:
            stack.append((parent_id, [*trail, names.get(parent_id, str(parent_id))]))
    return None


def graph(workflow_id: int) -> dict[int, tuple[str, list[int]]]:
    """Return {node id: (name, [parent ids])} of a workflow, in two queries."""
    rows = WorkflowNode.objects.filter(workflow_id=workflow_id).values_list("pk", "name")
    nodes: dict[int, tuple[str, list[int]]] = {pk: (name, []) for pk, name in rows}
    through = WorkflowNode.parent_nodes.through
    for child, parent in through.objects.filter(from_workflownode__workflow_id=workflow_id).values_list(
        "from_workflownode_id", "to_workflownode_id"
    ):
        if child in nodes:
            nodes[child][1].append(parent)
    return nodes


def check_graph(workflow_id: int) -> list[str]:
    """Return the node names in an order parents-first; ValueError names a cycle or a foreign parent."""
    nodes = graph(workflow_id)
    if not nodes:
        raise ValueError(
            f"workflow {workflow_id} has no nodes: add some with workflow.add_node(name=..., attributes=...) "
            "before execute()"
        )
    foreign = {parent for _, parents in nodes.values() for parent in parents if parent not in nodes}
    if foreign:
        names = dict(WorkflowNode.objects.filter(pk__in=foreign).values_list("pk", "name"))
        raise ValueError(
            f"workflow {workflow_id} has parents from another workflow: {', '.join(sorted(names.values()))}"
        )
    order: list[str] = []
    state: dict[int, int] = {}  # 1: on the current path, 2: done

    def visit(node_id: int, trail: list[int]) -> None:
        if state.get(node_id) == 2:
            return
        if state.get(node_id) == 1:
            loop = trail[trail.index(node_id):] + [node_id]
            raise ValueError(
                f"workflow {workflow_id} has a cycle: {' -> '.join(nodes[n][0] for n in loop)} "
                "(read as child -> parent); remove one of these parent links"
            )
        state[node_id] = 1
        for parent in nodes[node_id][1]:
            visit(parent, [*trail, node_id])
        state[node_id] = 2
        order.append(nodes[node_id][0])

    for node_id in sorted(nodes):
        visit(node_id, [])
    return order


def store_statuses(workflow_id: int, states: Mapping[str, Status], messages: Mapping[str, str]) -> int:
    """Write the nodes' statuses (and messages) of one workflow in one UPDATE; return rows written."""
    names = set(states) | set(messages)
    if not names:
        return 0
    values: dict[str, Any] = {}
    if states:
        values["status"] = models.Case(
            *[models.When(name=name, then=models.Value(Status(code).value)) for name, code in states.items()],
            default=models.F("status"), output_field=models.CharField(),
        )
        now = timezone.now()
        started = [name for name, code in states.items() if Status(code) is not Status.PENDING]
        ended = [name for name, code in states.items() if Status(code).is_terminal]
        pending = [name for name, code in states.items() if Status(code) is Status.PENDING]
        if started or pending:
            values["start_time"] = models.Case(
                models.When(name__in=pending, then=models.Value(None)),
                models.When(name__in=started, then=Coalesce(models.F("start_time"), models.Value(now))),
                default=models.F("start_time"), output_field=models.DateTimeField(),
            )
            values["completion_time"] = models.Case(
                models.When(name__in=ended, then=Coalesce(models.F("completion_time"), models.Value(now))),
                models.When(name__in=[n for n in started if n not in ended] + pending, then=models.Value(None)),
                default=models.F("completion_time"), output_field=models.DateTimeField(),
            )
    if messages:
        values["status_message"] = models.Case(
            *[models.When(name=name, then=models.Value(text)) for name, text in messages.items()],
            default=models.F("status_message"), output_field=models.TextField(),
        )
    return int(WorkflowNode.objects.filter(workflow_id=workflow_id, name__in=names).update(**values))


def reset_for_attempt(workflow_id: int, finished: Iterable[str]) -> int:
    """Start a new attempt's node rows: `finished` nodes (not run again) are Complete, the others Pending
    with no message and no run times, so nothing of an earlier attempt's failure shows. Return rows written.
    """
    done = list(finished)
    nodes = WorkflowNode.objects.filter(workflow_id=workflow_id)
    written = nodes.exclude(name__in=done).update(
        status=Status.PENDING.value, status_message="", start_time=None, completion_time=None,
    )
    if done:
        written += nodes.filter(name__in=done).exclude(status=Status.COMPLETE.value).update(
            status=Status.COMPLETE.value, status_message="",
        )
    return int(written)
