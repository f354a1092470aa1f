"""The built-in job types: thin proxies of Job that add their own settings and engine."""

from __future__ import annotations

import os
import shutil
from typing import TYPE_CHECKING, Any

from jobtower.models.job import Job, SpecField
from jobtower.registry import register_job_type

if TYPE_CHECKING:
    from jobtower.backends.condor_templates import Description
    from jobtower.models.scheduler import Scheduler


def _paths(value: Any) -> list[str]:
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise TypeError(
            "remote_input_files must be a list or tuple of file paths, "
            f"not {type(value).__name__}"
        )
    return [str(item) for item in value]


def _scheduler_name(value: Any) -> str:
    # Tethys passes a Scheduler record; the job stores its name (the record's token stays in its table).
    return str(getattr(value, "name", value))


def _count(value: Any) -> int:
    if isinstance(value, bool) or int(value) != value or int(value) < 1:
        raise ValueError(f"num_jobs must be a whole number of at least 1, got {value!r}")
    return int(value)


@register_job_type("BASIC")
class BasicJob(Job):
    """A job with no engine: the app sets its status itself."""

    class Meta:
        proxy = True
        app_label = "jobtower"


class CondorBase(Job):
    """Settings shared by the HTCondor job types."""

    backend_path = "jobtower.backends.condor:CondorBackend"
    #: The name of a Scheduler record; None submits to the local pool.
    scheduler = SpecField(None, coerce=_scheduler_name, schema={"type": ["string", "null"]},
                          description="the name of the scheduler")
    remote_input_files = SpecField(list, coerce=_paths, schema={"type": "array", "items": {"type": "string"}})

    class Meta:
        proxy = True
        app_label = "jobtower"

    @property
    def cluster_id(self) -> int:
        """Return the HTCondor cluster id of the current attempt (0 before it is submitted)."""
        return int((self.engine_data or {}).get("cluster_id") or 0)

    def get_scheduler(self) -> Scheduler | None:
        """Return the job's Scheduler record (None: the local pool); ValueError if it is gone."""
        if not self.scheduler:
            return None
        from jobtower.models.scheduler import get_scheduler

        found = get_scheduler(self.scheduler)
        if found is None:
            raise ValueError(
                f"there is no HTCondor scheduler named {self.scheduler!r}; create it with "
                "jobtower.create_condor_scheduler(name, host, token=...).save(), or pass scheduler=None "
                "for the local pool"
            )
        return found


@register_job_type("CONDOR", aliases=("CONDORJOB",))
class CondorJob(CondorBase):
    """One HTCondor job described by a template plus submit-description attributes."""

    attributes = SpecField(dict, coerce=dict, description="HTCondor submit-description attributes")
    condorpy_template_name = SpecField(None, coerce=str, schema={"type": ["string", "null"]})
    #: How many procs the cluster has (HTCondor's `queue N`); execute(queue=N) sets it too.
    num_jobs = SpecField(1, coerce=_count)
    #: The same settings as LOCAL and SLURM jobs: one definition runs on any engine.
    command = SpecField(None, coerce=lambda value: _argv(value),
                        schema={"type": ["array", "null"], "items": {"type": "string"}, "minItems": 1},
                        description="the program and its arguments (argv); never run by a shell")
    environment = SpecField(dict, coerce=lambda value: _environment(value),
                            schema={"type": "object", "additionalProperties": {"type": "string"}},
                            description="the job's own environment variables (nothing else is passed)")
    timeout = SpecField(None, coerce=lambda value: _timeout(value),
                        schema={"type": ["number", "null"], "exclusiveMinimum": 0},
                        description="seconds after which the job is ended as an Error")
    function = SpecField(None, coerce=lambda value: _function(value), schema={"type": ["string", "null"]},
                         description="'package.module:function' run on the pool (its folder on a shared file system)")
    args = SpecField(list, coerce=list, description="positional arguments of `function` (JSON values)")
    kwargs = SpecField(dict, coerce=dict, description="keyword arguments of `function` (JSON values)")

    class Meta:
        proxy = True
        app_label = "jobtower"

    def submit_description(self) -> Description:
        """Return the submit description of the current attempt; ValueError says what is wrong."""
        from jobtower.backends import functions
        from jobtower.backends.condor_templates import attempt_folder, describe, template

        command, environment = self.command, self.environment if (self.command or self.environment) else None
        if self.function:
            if self.command:
                raise ValueError("give either command=[...] or function='package.module:function', not both")
            given = {str(key).lower() for key, value in self.attributes.items() if value not in (None, "")}
            for key in ("executable", "arguments", "args"):
                if key in given:
                    raise ValueError(
                        f"give either function='package.module:function' or the {key!r} attribute, not both"
                    )
            if self.num_jobs != 1:
                raise ValueError(f"a function job is one proc: num_jobs must be 1, not {self.num_jobs}")
            if self.scheduler or template(self.condorpy_template_name).spool:
                raise ValueError(
                    "a CONDOR function job needs its folder on a file system the execute machines share: run "
                    "it on the local pool (scheduler=None) with a template that does not spool"
                )
            _, ours = functions.interpreter(self.job_type)
            command = functions.command(self, attempt_folder(self.folder, self.attempt))
            environment = functions.environment(self, ours)
        return describe(
            template_name=self.condorpy_template_name,
            attributes=self.attributes,
            folder=str(self.folder),
            workspace=self.workspace,
            attempt=self.attempt,
            job_id=self.pk,
            name=self.name,
            remote_input_files=self.remote_input_files,
            procs=self.num_jobs,
            remote=bool(self.scheduler),
            command=command,
            environment=environment,
            timeout=self.timeout,
            shared_folder=bool(self.function),
        )

    def clean_spec(self) -> None:
        """Check the template, the attributes and the scheduler before anything moves."""
        self.submit_description()
        self.get_scheduler()

    def execute(self, queue: int | None = None, *args: Any, **kwargs: Any) -> None:
        """Submit the job (as Tethys's, `queue=N` makes a cluster of N procs)."""
        if queue:
            self.num_jobs = queue
        super().execute()

    def set_attribute(self, name: str, value: Any) -> None:
        """Set one submit-description attribute (e.g. "executable")."""
        attributes = dict(self.attributes)
        attributes[name] = value
        self.attributes = attributes

    def get_attribute(self, name: str) -> Any:
        """Return one submit-description attribute, or None when it is not set."""
        return self.attributes.get(name)


def _max_jobs(value: Any) -> dict[str, int]:
    if not isinstance(value, dict):
        raise TypeError("max_jobs must be a dict of category -> most nodes running at once, e.g. {'runs': 2}")
    from jobtower.models.workflow import NODE_NAME

    limits = {}
    for category, limit in value.items():
        if not NODE_NAME.fullmatch(str(category)):
            raise ValueError(
                f"max_jobs category {category!r} must be one word of letters, digits, '_', '.' and '-' "
                "(the category a node names)"
            )
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ValueError(f"max_jobs[{category!r}] must be a whole number of at least 1, got {limit!r}")
        limits[str(category)] = limit
    return limits


@register_job_type("CONDORWORKFLOW")
class CondorWorkflow(CondorBase):
    """An HTCondor DAGMan workflow: nodes (their own table) run as a DAG by the DAGMan engine."""

    backend_path = "jobtower.backends.dagman:DAGManBackend"
    #: Category -> the most nodes of that category running at once (DAGMan's MAXJOBS).
    max_jobs = SpecField(
        dict, coerce=_max_jobs, schema={"type": "object", "additionalProperties": {"type": "integer"}}
    )
    #: Extra DAGMan configuration lines (a DAGMan config file's text).
    config = SpecField("", coerce=str)

    class Meta:
        proxy = True
        app_label = "jobtower"

    @property
    def nodes(self) -> Any:
        """Return the workflow's nodes (a QuerySet of WorkflowNode)."""
        return self.node_set.all()

    def add_node(self, *, name: str, parents: Any = (), **settings: Any) -> Any:
        """Create and save one node (Tethys's node fields as keywords), with its parents; return it."""
        from jobtower.models.workflow import WorkflowNode

        if self.pk is None:
            self.save()
        node = WorkflowNode(name=name, workflow=self, **settings)
        node.save()
        try:
            node.add_parents(parents)
        except Exception:
            node.delete()  # bad input loses nothing, and leaves nothing half made
            raise
        return node

    def get_node(self, name: str) -> Any:
        """Return the node called `name`; KeyError lists the names there are."""
        found = self.node_set.filter(name=name).first()
        if found is None:
            names = ", ".join(self.node_set.values_list("name", flat=True)) or "none"
            raise KeyError(f"workflow {self.pk} has no node {name!r}; its nodes are: {names}")
        return found

    def nodes_status(self) -> dict[str, str]:
        """Return {node name: display status} as last stored (this never asks the schedd)."""
        from jobtower.statuses import Status

        return {
            name: Status(code).display
            for name, code in self.node_set.order_by("id").values_list("name", "status")
        }

    def node_descriptions(self) -> dict[str, Description]:
        """Return each node's submit description for the current attempt; ValueError names the node."""
        from jobtower.backends.condor_templates import describe, node_folder

        found: dict[str, Description] = {}
        for node in self.node_set.order_by("id"):
            folder = node_folder(self.folder, self.attempt, node.name)
            try:
                found[node.name] = describe(
                    template_name=node.condorpy_template_name,
                    attributes=node.attributes,
                    folder=folder,
                    workspace=self.workspace,
                    attempt=self.attempt,
                    job_id=self.pk,
                    name=f"{self.name}.{node.name}",
                    remote_input_files=node.remote_input_files,
                    node=True,
                )
            except ValueError as exc:
                raise ValueError(f"workflow {self.pk}, node {node.name!r}: {exc}") from None
        return found

    def clean_spec(self) -> None:
        """Check the graph (no cycle, no foreign parent) and every node's description; nothing moves."""
        from jobtower.models.workflow import check_graph

        check_graph(self.pk)
        descriptions = self.node_descriptions()
        if self.get_scheduler() is not None:
            # Spooled: what cannot go to the schedd's spool is refused now, while the job is still Pending.
            from pathlib import Path

            from jobtower.backends.condor_templates import node_folder
            from jobtower.backends.dagman import _config_environment, spooled_node

            _config_environment(self.config or "")
            for node in self.node_set.order_by("id"):
                folder = Path(node_folder(self.folder, self.attempt, node.name))
                spooled_node(descriptions[node.name].commands, folder, node.name, node.remote_input_files)


def _argv(value: Any) -> list[str]:
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise TypeError(
            "command must be an argv list such as ['python', 'run_model.py', '--years', '30']; "
            "it never runs through a shell"
        )
    argv = [str(item) for item in value]
    if not argv or not argv[0]:
        raise ValueError("command must name a program: ['python', 'run_model.py']")
    return argv


def _environment(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        raise TypeError("environment must be a dict of names to strings, e.g. {'OMP_NUM_THREADS': '1'}")
    return {str(k): str(v) for k, v in value.items()}


def _function(value: Any) -> str:
    from jobtower.backends.functions import function_setting

    return function_setting(value)


def _timeout(value: Any) -> float:
    seconds = float(value)
    if seconds <= 0:
        raise ValueError(f"timeout must be a positive number of seconds, got {value!r}")
    return seconds


@register_job_type("LOCAL")
class LocalJob(Job):
    """A command or a Python function run on this machine by `jobtower worker`, supervised."""

    backend_path = "jobtower.backends.local:LocalBackend"
    command = SpecField(None, coerce=_argv,
                        schema={"type": ["array", "null"], "items": {"type": "string"}, "minItems": 1},
                        description="the program and its arguments (argv); never run by a shell")
    function = SpecField(None, coerce=str, schema={"type": ["string", "null"]},
                         description="'package.module:function' the worker calls")
    args = SpecField(list, coerce=list, description="positional arguments of `function` (JSON values)")
    kwargs = SpecField(dict, coerce=dict, description="keyword arguments of `function` (JSON values)")
    environment = SpecField(dict, coerce=_environment,
                            schema={"type": "object", "additionalProperties": {"type": "string"}},
                            description="environment variables added to the job's")
    timeout = SpecField(None, coerce=_timeout, schema={"type": ["number", "null"], "exclusiveMinimum": 0},
                        description="seconds after which the job is ended as an Error")
    #: Copied into the job's folder before it starts (as SLURM does; CONDOR transfers them).
    remote_input_files = SpecField(list, coerce=_paths, schema={"type": "array", "items": {"type": "string"}},
                                   description="files copied into the job's folder before it starts")

    class Meta:
        proxy = True
        app_label = "jobtower"

    def clean_spec(self) -> None:
        """Check that the job says what to run: exactly one of `command` and `function`."""
        if bool(self.command) == bool(self.function):
            raise ValueError(
                f"LOCAL job {self.pk or ''} needs exactly one of command=['prog', 'arg', ...] or "
                "function='package.module:function' (with args=[...], kwargs={...})"
            )
        names = {os.path.basename(path) for path in self.remote_input_files or ()}
        if self.command and "/" not in self.command[0] and self.command[0] not in names:
            path = (self.environment or {}).get("PATH", os.environ.get("PATH", ""))
            if shutil.which(self.command[0], path=path) is None:
                raise ValueError(
                    f"LOCAL job command {self.command[0]!r} was not found on PATH; give its full "
                    "path or install it (the job runs with the worker's PATH plus `environment`)"
                )
        if self.function:
            from jobtower.dotted import function_path

            function_path(self.function)
