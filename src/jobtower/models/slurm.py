"""SLURM jobs, and the Slurm clusters they may go to.

A SLURM job runs a command (an argv list, never a shell), a batch script, or a Python function (run by
jobtower's runner) with ``sbatch`` on a Slurm cluster, in the job's own folder, which the cluster's
nodes must see (a shared file system).
"""

from __future__ import annotations

import math
import re
from typing import Any

from django.core.exceptions import ValidationError
from django.db import models

from jobtower.models.job import Job, SpecField
from jobtower.models.types import _argv, _environment, _function, _paths, _scheduler_name, _timeout
from jobtower.registry import register_job_type

#: The sbatch options a job may set in `sbatch` (long names, without the dashes). What jobtower sets
#: itself (output and error files, the working directory, the environment, the array, the job's tag)
#: is not among them: `array`, `environment` and `timeout` are settings of their own.
SBATCH_OPTIONS = frozenset({
    "account", "acctg-freq", "batch", "begin", "clusters", "constraint", "container", "contiguous",
    "core-spec", "cores-per-socket", "cpu-freq", "cpus-per-gpu", "cpus-per-task", "deadline", "delay-boot",
    "dependency", "distribution", "exclude", "exclusive", "extra-node-info", "gpu-bind", "gpu-freq",
    "gpus", "gpus-per-node", "gpus-per-socket", "gpus-per-task", "gres", "gres-flags", "hint", "job-name",
    "licenses", "mail-type", "mail-user", "mcs-label", "mem", "mem-bind", "mem-per-cpu", "mem-per-gpu",
    "mincpus", "network", "nice", "no-requeue", "nodefile", "nodelist", "nodes", "ntasks",
    "ntasks-per-core", "ntasks-per-gpu", "ntasks-per-node", "ntasks-per-socket", "overcommit",
    "oversubscribe", "partition", "power", "priority", "profile", "qos", "reboot", "requeue",
    "reservation", "signal", "sockets-per-node", "spread-job", "switches", "thread-spec",
    "threads-per-core", "time", "time-min", "tmp", "use-min-nodes", "wckey",
})
#: Options jobtower sets itself, and the setting to use instead.
RESERVED_OPTIONS = {
    "output": "logs go to attempts/<n>/ in the job's folder", "error": "logs go to attempts/<n>/",
    "chdir": "jobs run in their own folder", "export": "use environment={...}",
    "export-file": "use environment={...}", "get-user-env": "use environment={...}",
    "array": "use array='0-9'", "wrap": "use command=[...]", "parsable": "jobtower sets it",
    "comment": "jobtower tags its jobs with it", "hold": "use pause()", "wait": "jobs never block a request",
    "test-only": "jobtower submits for real", "uid": "jobs run as the submitting user",
    "gid": "jobs run as the submitting user", "input": "jobs read no standard input",
}
_ARRAY = re.compile(r"^\d+(-\d+(:\d+)?)?(,\d+(-\d+(:\d+)?)?)*(%\d+)?$")
#: More array tasks than this is refused (their logs and states are tracked one by one).
MAX_ARRAY_TASKS = 10_000


def array_indices(spec: str) -> list[int]:
    """Return the task indices of an sbatch --array string ("0-9", "1,3,5-7", "0-15:4%2")."""
    indices: list[int] = []
    for part in spec.split("%", 1)[0].split(","):
        bounds, _, step = part.partition(":")
        low, _, high = bounds.partition("-")
        first, last = int(low), int(high or low)
        if last < first:
            raise ValueError(f"array range {part!r} ends before it starts")
        indices.extend(range(first, last + 1, int(step or 1)))
        if len(indices) > MAX_ARRAY_TASKS:
            raise ValueError(f"array {spec!r} has more than {MAX_ARRAY_TASKS} tasks")
    return sorted(set(indices))


def _array(value: Any) -> str | None:
    if value is None or value == "":
        return None
    text = str(value).replace(" ", "")
    if not _ARRAY.match(text):
        raise ValueError(
            f"array must be an sbatch --array string such as '0-9', '1,3,5-7' or '0-99%10', got {value!r}"
        )
    array_indices(text)
    return text


def _sbatch(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise TypeError("sbatch must be a dict of sbatch options, e.g. {'partition': 'debug', 'mem': '1G'}")
    options: dict[str, Any] = {}
    for key, option in value.items():
        name = str(key).strip().lstrip("-").replace("_", "-")
        if name in RESERVED_OPTIONS:
            raise ValueError(f"sbatch option {key!r} is set by jobtower ({RESERVED_OPTIONS[name]})")
        if name not in SBATCH_OPTIONS:
            raise ValueError(
                f"{key!r} is not an sbatch option jobtower passes on; use the long name of one of: "
                f"{', '.join(sorted(SBATCH_OPTIONS))}"
            )
        if option is None or option is False:
            continue
        if option is not True:
            if not isinstance(option, (str, int, float)) or "\n" in str(option) or "\0" in str(option):
                raise ValueError(f"sbatch option {key!r} must be a string or a number on one line, got {option!r}")
            option = str(option)
        options[name] = option
    return options


def _script(value: Any) -> str | None:
    if value is None or value == "":
        return None
    return str(value)


class SlurmCluster(models.Model):
    """A named Slurm cluster, reached with the Slurm commands on this machine or through slurmrestd.

    `slurm_conf` names the cluster's slurm.conf (the SLURM_CONF the commands use; empty: this machine's
    default). A cluster with a `rest_url` is reached through slurmrestd instead, with `token`, a JWT
    (`scontrol token username=<user> lifespan=<seconds>`): jobs run as the token's user, and this
    machine needs no Slurm commands, munge key or slurm.conf. `token` is write-only for people, as a
    Scheduler's IDTOKEN: left out of the admin, of serialization, of repr() and str(). A `rest_url` must be
    https://, or http:// to this machine's loopback: clean() and save() refuse one that would send the
    token in clear, and so do the system check (`manage.py check --database default`) and the backend.
    """

    name = models.CharField(max_length=255, unique=True)
    slurm_conf = models.CharField(
        max_length=1024, blank=True, default="",
        help_text="path of the cluster's slurm.conf on this machine; empty: the default (/etc/slurm/slurm.conf)",
    )
    rest_url = models.CharField(
        max_length=1024, blank=True, default="",
        help_text="slurmrestd URL (e.g. https://hpc.example.org:6820): when set, jobs go through slurmrestd with "
                  "the token instead of the Slurm commands on this machine",
    )
    token = models.TextField(
        blank=True, default="", serialize=False,
        help_text="a JWT for slurmrestd, from `scontrol token username=<user> lifespan=<seconds>` (jobs run as "
                  "that user; kept out of the admin and of serialized data)",
    )
    description = models.TextField(blank=True, default="")

    class Meta:
        app_label = "jobtower"
        ordering = ["name"]
        verbose_name = "Slurm cluster"

    @property
    def has_token(self) -> bool:
        """Return True when the cluster has a JWT of its own."""
        return bool(self.token)

    def clean(self) -> None:
        """Refuse a rest_url that would send the JWT in clear (plain http:// to a host that is not loopback)."""
        from jobtower.backends.slurmrest import rest_url_problem

        super().clean()
        problem = rest_url_problem(self.name, self.rest_url)
        if problem:
            raise ValidationError({"rest_url": problem})

    def save(self, *args: Any, **kwargs: Any) -> None:
        """Save the record; ValueError when its rest_url would send the JWT in clear (see clean())."""
        from jobtower.backends.slurmrest import rest_url_problem

        problem = rest_url_problem(self.name, self.rest_url)
        if problem:
            raise ValueError(problem)
        super().save(*args, **kwargs)

    def __str__(self) -> str:
        return f"{self.name} ({self.rest_url or self.slurm_conf or 'default slurm.conf'})"

    def __repr__(self) -> str:
        return f"<SlurmCluster {self.name!r}: slurm_conf={self.slurm_conf!r} rest_url={self.rest_url!r}>"


@register_job_type("SLURM")
class SlurmJob(Job):
    """A command, batch script or Python function run with sbatch on a Slurm cluster (commands may be arrays)."""

    backend_path = "jobtower.backends.slurm:SlurmBackend"
    command = SpecField(None, coerce=_argv)
    script = SpecField(None, coerce=_script)
    #: A Python function run on the cluster ('package.module:function'), with JSON args and kwargs.
    function = SpecField(None, coerce=_function, schema={"type": ["string", "null"]},
                         description="'package.module:function' run on the cluster")
    args = SpecField(list, coerce=list, description="positional arguments of `function` (JSON values)")
    kwargs = SpecField(dict, coerce=dict, description="keyword arguments of `function` (JSON values)")
    remote_input_files = SpecField(list, coerce=_paths)
    sbatch = SpecField(dict, coerce=_sbatch)
    environment = SpecField(dict, coerce=_environment)
    array = SpecField(None, coerce=_array)
    timeout = SpecField(None, coerce=_timeout)
    #: The name of a SlurmCluster record; None: the cluster this machine's Slurm commands reach.
    scheduler = SpecField(None, coerce=_scheduler_name)

    class Meta:
        proxy = True
        app_label = "jobtower"

    @property
    def slurm_job_id(self) -> int:
        """Return the Slurm job id of the current attempt (the array's id for an array; 0 before)."""
        return int((self.engine_data or {}).get("slurm_job_id") or 0)

    def tasks(self) -> list[int]:
        """Return the array's task indices ([] for a single job)."""
        return array_indices(self.array) if self.array else []

    def time_limit(self) -> str | None:
        """Return the sbatch --time of the job: its own `time` option, or `timeout` in whole minutes."""
        if self.timeout:
            return str(max(1, math.ceil(self.timeout / 60)))
        time = (self.sbatch or {}).get("time")
        return str(time) if time else None

    def get_scheduler(self) -> SlurmCluster | None:
        """Return the job's SlurmCluster record (None: this machine's cluster); ValueError if it is gone."""
        if not self.scheduler:
            return None
        found = SlurmCluster.objects.filter(name=self.scheduler).first()
        if found is None:
            raise ValueError(
                f"there is no Slurm cluster named {self.scheduler!r}; create it with "
                "SlurmCluster.objects.create(name=..., slurm_conf=...), or pass scheduler=None for the "
                "cluster this machine's Slurm commands reach"
            )
        return found

    def clean_spec(self) -> None:
        """Check that the job says what to run, once, and that its cluster exists."""
        if [bool(self.command), bool(self.script), bool(self.function)].count(True) != 1:
            raise ValueError(
                f"SLURM job {self.pk or ''} needs exactly one of command=['prog', 'arg', ...] (run "
                "without a shell), script='run.sbatch' (a batch script, relative to the job's folder) or "
                "function='package.module:function' (with args=[...], kwargs={...})"
            )
        if self.function and self.array:
            raise ValueError("a function job is one Slurm job: give no array (create one job per set of arguments)")
        if self.function:
            from jobtower.backends.functions import interpreter

            interpreter(self.job_type)  # a misconfigured FUNCTION_PYTHON is said before anything moves
        if self.timeout and (self.sbatch or {}).get("time"):
            raise ValueError("give either timeout= (seconds) or sbatch={'time': ...}, not both")
        self.get_scheduler()
