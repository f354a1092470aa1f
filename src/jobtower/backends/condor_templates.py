"""Submit descriptions for CONDOR jobs: templates by name, and the description of one attempt.

A template is a set of submit-description defaults (HTCondor's own command names) chosen by the name
Tethys apps pass as ``condorpy_template_name``; the job's ``attributes`` override them. Nothing here
imports htcondor or touches the disk, so jobs are checked before anything moves and the mapping is
tested without a pool.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any


@dataclass(frozen=True)
class Template:
    """Defaults for a kind of job; `{folder}` and `{workspace}` are filled in per job."""

    name: str
    summary: str
    commands: Mapping[str, str] = field(default_factory=dict)
    #: Send inputs and fetch outputs through the schedd's spool even on the local pool.
    spool: bool = False


_TRANSFER = {
    "universe": "vanilla",
    "should_transfer_files": "YES",
    "when_to_transfer_output": "ON_EXIT_OR_EVICT",
    "transfer_executable": "true",
}

#: The templates by name: condorpy's own (base, vanilla_base, vanilla_transfer_files, vanilla_nfs)
#: and the names Tethys apps use for a shared workspace and for a schedd that shares no file system.
TEMPLATES: dict[str, Template] = {
    t.name: t
    for t in (
        Template("base", "HTCondor's defaults; the job runs in its own folder"),
        Template("vanilla_base", "the vanilla universe; the job runs in its own folder",
                 {"universe": "vanilla"}),
        Template(
            "vanilla_transfer_files",
            "vanilla universe with file transfer: the executable and remote_input_files go to the "
            "execute machine, new files come back into the job's folder",
            _TRANSFER,
        ),
        Template(
            "vanilla_nfs",
            "vanilla universe on a shared file system: no file transfer, the job runs in its own folder",
            {"universe": "vanilla", "should_transfer_files": "NO"},
        ),
        Template(
            "vanilla_nfs_workspace",
            "vanilla universe on a shared file system, run in the job's workspace (not its own folder)",
            {"universe": "vanilla", "should_transfer_files": "NO", "initialdir": "{workspace}"},
        ),
        Template(
            "remote_transfer_files",
            "file transfer through the schedd's spool: inputs are sent with the job and outputs "
            "fetched back, so the schedd needs no shared file system",
            _TRANSFER,
            spool=True,
        ),
    )
}

#: The template of a job that names none (as Tethys falls back to condorpy's base).
DEFAULT_TEMPLATE = "base"


def template(name: str | None) -> Template:
    """Return the template called `name` (None: the default); ValueError lists the valid names."""
    found = TEMPLATES.get(name or DEFAULT_TEMPLATE)
    if found is None:
        raise ValueError(
            f"unknown condorpy_template_name {name!r}; valid templates are: {', '.join(sorted(TEMPLATES))}"
        )
    return found


def submit_value(value: Any) -> str | None:
    """Return a setting as submit-description text; None and "" mean "not set"."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        value = ", ".join(str(item) for item in value)
    text = str(value)
    if "\n" in text:
        raise ValueError(f"a submit-description value cannot span lines: {text!r}")
    return text or None


def _dollar_run(match: re.Match[str]) -> str:
    pairs, odd = divmod(len(match.group()), 2)
    return "$$(DOLLARDOLLAR)" * pairs + "$(DOLLAR)" * odd


def _escape_dollars(text: str) -> str:
    """Return `text` with each run of $ written so that neither condor_submit nor the schedd expands it.

    condor_submit turns $(DOLLAR) into $, but two of them in a row make "$$(", which the schedd then
    reads as a match-time macro and refuses ("Cannot expand $$ expression"). So a run of dollars is
    written as $$(DOLLARDOLLAR) per pair (the schedd's own $$) and $(DOLLAR) for an odd one left.
    """
    return _DOLLARS.sub(_dollar_run, text)


_DOLLARS = re.compile(r"\$+")


def quote_arguments(items: Iterable[str]) -> str:
    """Return items as HTCondor's new argument syntax: one double-quoted string, nothing interpreted.

    Each item is put in single quotes (a ' inside is doubled), a double quote is doubled, and dollars
    are escaped so that no macro is expanded in them (see `_escape_dollars`). Used for `arguments` and,
    with NAME=value items, for `environment`; a line break cannot be written there and is refused.
    """
    quoted = []
    for item in items:
        if "\n" in item or "\r" in item or "\0" in item:
            raise ValueError(f"an HTCondor argument or environment value cannot hold a line break: {item!r}")
        text = _escape_dollars(item.replace("'", "''").replace('"', '""'))
        quoted.append(f"'{text}'")
    return '"' + " ".join(quoted) + '"'


#: HTCondor's HoldReasonCode when a job ran longer than its allowed_job_duration.
HOLD_JOB_DURATION_EXCEEDED = 46


def attempt_folder(folder: str | os.PathLike[str], attempt: int) -> str:
    """Return the folder that holds one attempt's stdout, stderr and event log."""
    return os.path.join(os.fspath(folder), "attempts", str(attempt))


def node_folder(folder: str | os.PathLike[str], attempt: int, node: str) -> str:
    """Return the folder a workflow node runs in for one attempt (its stdout and stderr are there)."""
    return os.path.join(attempt_folder(folder, attempt), node)


@dataclass
class Description:
    """One attempt's submit description and what jobtower needs to know about it."""

    #: The submit description, command -> value, as htcondor.Submit takes it.
    commands: dict[str, str]
    #: Submit with spool (inputs sent, outputs fetched by the client).
    spool: bool
    #: How many procs the cluster has (`queue N`).
    procs: int
    #: Absolute paths of the event log and of stdout/stderr (with $(Process) when procs > 1).
    log: str
    output: str
    error: str


_PROCESS_MACROS = re.compile(r"\$\((Process|ProcId|Cluster|ClusterId)\)", re.IGNORECASE)


def expand(path: str, cluster: int, proc: int) -> str:
    """Fill $(Cluster)/$(Process) in a file name as HTCondor does for one proc."""
    return _PROCESS_MACROS.sub(
        lambda m: str(cluster if m.group(1).lower().startswith("cluster") else proc), path
    )


def describe(
    *,
    template_name: str | None,
    attributes: Mapping[str, Any],
    folder: str,
    workspace: str,
    attempt: int,
    job_id: int,
    name: str = "",
    remote_input_files: Iterable[str] = (),
    procs: int = 1,
    remote: bool = False,
    node: bool = False,
    command: Sequence[str] | None = None,
    environment: Mapping[str, str] | None = None,
    timeout: float | None = None,
    shared_folder: bool = False,
) -> Description:
    """Return the submit description of one attempt of a CONDOR job; ValueError says what is wrong.

    Template defaults first, then jobtower's per-attempt files (``attempts/<n>/stdout.txt``,
    ``stderr.txt``, ``condor.log`` in the job's folder, so a resubmit keeps the old ones), then the
    job's attributes, which override anything (an attribute set to None or "" removes a default).
    Relative paths are taken from the job's initial directory, which is its own folder by default.
    A workflow node (`node`) runs in `folder`, its own per-attempt folder, and writes its files there.

    `command`, `environment` and `timeout` mean what they mean on LOCAL and SLURM: the command is
    the executable and the arguments (argv, never a shell; a bare program name is looked up on the
    job's PATH, else this machine's, and not transferred), the environment is the job's own variables only, and the
    timeout is HTCondor's allowed_job_duration (the job is held, then ends in Error "timed out").

    `shared_folder` (function jobs) runs the job in its folder on a file system the execute machine
    shares: no file transfer, the executable is the machine's own, and remote_input_files are copied
    into the folder at submission (as on LOCAL and SLURM) instead of being transferred.
    """
    chosen = template(template_name)
    attributes = dict(attributes)
    lowered = {str(key).lower() for key, value in attributes.items() if submit_value(value) is not None}
    if command:
        for key in ("executable", "arguments", "args"):
            if key in lowered:
                raise ValueError(f"give either command=[...] or the {key!r} attribute, not both")
    if environment and ({"environment", "env", "getenv"} & lowered):
        raise ValueError("give either environment={...} or the 'environment'/'getenv' attributes, not both")
    if timeout and "allowed_job_duration" in lowered:
        raise ValueError("give either timeout= (seconds) or the 'allowed_job_duration' attribute, not both")
    if not isinstance(procs, int) or isinstance(procs, bool) or procs < 1:
        raise ValueError(f"num_jobs must be a whole number of at least 1, got {procs!r}")
    filler = {"folder": folder, "workspace": workspace or folder}
    per_attempt = folder if node else attempt_folder(folder, attempt)
    suffix = ".$(Process)" if procs > 1 else ""
    commands: dict[str, str] = {key: value.format(**filler) for key, value in chosen.commands.items()}
    commands.setdefault("initialdir", folder)
    if command:
        program = command[0]
        inputs_by_name = {PurePosixPath(str(p)).name for p in remote_input_files}
        if "/" not in program and program not in inputs_by_name:
            found = shutil.which(program, path=(environment or {}).get("PATH", os.environ.get("PATH", "")))
            if found is None:
                raise ValueError(
                    f"CONDOR job command {program!r} was not found on PATH; give its full path, or "
                    "send it with remote_input_files"
                )
            program = found
            commands["transfer_executable"] = "false"  # a program of the machine, as on LOCAL and SLURM
        commands["executable"] = program
        if len(command) > 1:
            commands["arguments"] = quote_arguments(command[1:])
        if shared_folder:
            commands.update(should_transfer_files="NO", transfer_executable="false")
            commands.pop("when_to_transfer_output", None)
            remote_input_files = ()
        elif not chosen.commands:  # the default template: the job's inputs go with it, outputs come back
            commands.update(should_transfer_files="YES", when_to_transfer_output="ON_EXIT_OR_EVICT")
    own = {
        **{str(k): str(v) for k, v in (environment or {}).items()},
        "JOBTOWER_JOB_ID": str(int(job_id)), "JOBTOWER_ATTEMPT": str(int(attempt)), "JOBTOWER_JOB_FOLDER": folder,
    }
    if environment is not None:
        for variable in own:
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", variable):
                raise ValueError(f"environment variable name {variable!r} is not valid: use letters, digits and _")
        commands["environment"] = quote_arguments(f"{k}={v}" for k, v in own.items())
    if timeout:
        commands["allowed_job_duration"] = str(max(1, int(-(-float(timeout) // 1))))
    commands.update(
        output=os.path.join(per_attempt, f"stdout{suffix}.txt"),
        error=os.path.join(per_attempt, f"stderr{suffix}.txt"),
        log=os.path.join(per_attempt, "condor.log"),
    )
    label = re.sub(r"[^\w.@:+-]+", "_", name).strip("_")
    if label:
        commands["batch_name"] = label
    # Submit commands are case-insensitive: an attribute replaces the default of any spelling.
    keys = {key.lower(): key for key in commands}
    for key, raw in attributes.items():
        key = str(key)
        value = submit_value(raw)
        old = keys.pop(key.lower(), None)
        if old is not None:
            del commands[old]
        if value is not None:
            commands[key] = value
            keys[key.lower()] = key

    def get(key: str) -> str | None:
        actual = keys.get(key)
        return commands[actual] if actual is not None else None

    def put(key: str, value: str | None) -> None:
        actual = keys.pop(key, key)
        commands.pop(actual, None)
        if value:
            commands[actual] = value
            keys[key] = actual

    initialdir = os.path.join(folder, get("initialdir") or folder)
    put("initialdir", initialdir)
    inputs = [str(path) for path in remote_input_files]
    executable = get("executable")
    if not executable:
        raise ValueError(
            "a CONDOR job needs an executable: job.set_attribute('executable', 'my_script.py') "
            "(a file of remote_input_files, or a path from the job's folder)"
        )
    if not os.path.isabs(executable):
        by_name = {PurePosixPath(p).name: p for p in inputs}
        if "/" not in executable and executable in by_name:
            executable = os.path.abspath(by_name[executable])
            inputs = [p for p in inputs if PurePosixPath(p).name != PurePosixPath(executable).name]
        else:
            executable = os.path.normpath(os.path.join(initialdir, executable))
        put("executable", executable)
    transfers = (get("should_transfer_files") or "").upper() != "NO"
    if inputs and transfers:
        listed = [item.strip() for item in (get("transfer_input_files") or "").split(",") if item.strip()]
        put("transfer_input_files", ", ".join(dict.fromkeys(listed + inputs)))
    # Our identity on the job ad: polls match ads to jobs with it, whatever else is in the queue.
    commands["+JobtowerJobId"] = str(int(job_id))
    commands["+JobtowerAttempt"] = str(int(attempt))

    def absolute(key: str) -> str:
        value = get(key) or ""
        return os.path.join(initialdir, value) if value else ""

    return Description(
        commands=commands,
        spool=chosen.spool or remote,
        procs=procs,
        log=absolute("log"),
        output=absolute("output"),
        error=absolute("error"),
    )
