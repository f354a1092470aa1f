"""CONDORWORKFLOW jobs: DAGMan workflows, through the `htcondor` bindings' own DAG support.

Each attempt of a workflow lives in ``job_<id>/attempts/<n>/``: the DAG file written by
``htcondor.dags.write_dag`` (``workflow.dag``, one submit description per node), DAGMan's own files
(``workflow.dag.dagman.out``, the node status file ``nodes.status``, a rescue DAG when it stops
early), and one folder per node, ``<node>/``, where the node runs and writes ``stdout.txt`` and
``stderr.txt``. ``max_jobs`` categories become DAGMan ``CATEGORY``/``MAXJOBS`` throttles.

Tracking costs no schedd query per node or per workflow: the DAGMan jobs of every active workflow
are asked about in the same (at most two) schedd queries per schedd as CONDOR jobs
(:class:`~jobtower.backends.condor.CondorBackend`), and each node's state is read from the DAG's
node status file, which DAGMan rewrites as nodes move. A resubmit runs the rescue DAG of the last
attempt: nodes that finished are marked ``DONE`` and do not run again.

A workflow on a named :class:`~jobtower.models.Scheduler` is submitted with spool, as CONDOR jobs on
one are (the same :class:`~jobtower.backends.condor.CondorBackend` code sends and fetches the files):
the attempt's folder (DAG file, node submit files, and each node's input files, copied into the node's
folder first) travels with the submission, DAGMan runs in the schedd's spool with every path relative
to it, and the folder comes back with ``schedd.retrieve`` when DAGMan ends (and, as far as it has got,
when the workflow is stopped). Until then the same queue query that asks about DAGMan brings its
node jobs (which nodes are queued or running); the nodes' final states are read from the node status
file that comes back with the rest.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import os
import pwd
import re
import shutil
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jobtower.backends.base import Capability, Observation, PollResult
from jobtower.backends.condor import (
    COMPLETED,
    REMOVED,
    CondorBackend,
    _value,
    bindings,
    condor_error,
    proc_status,
)
from jobtower.backends.condor_templates import attempt_folder, node_folder, quote_arguments
from jobtower.backends.local import LOG_TAIL_BYTES, tail
from jobtower.errors import EngineUnavailable
from jobtower.statuses import Status

if TYPE_CHECKING:
    from jobtower.models import Job, Scheduler

log = logging.getLogger("jobtower.dagman")

DAG_FILE = "workflow.dag"
STATUS_FILE = "nodes.status"
_PATH_LOCK = threading.Lock()
#: Seconds between DAGMan's rewrites of the node status file (it also writes one when the DAG ends).
STATUS_UPDATE_SECONDS = 1
#: At most this many bytes of a node status file are read (it is written by DAGMan, but it is a file).
STATUS_FILE_LIMIT = 4_000_000
#: How long a spooled workflow that ended (or was removed) waits in the schedd's queue for its files.
SPOOL_KEEP_SECONDS = 7 * 24 * 3600
#: Seconds stop() waits for a removed spooled DAGMan to be marked removed before fetching its files.
STOP_FETCH_WAIT = 10.0
_CONFIG_LINE = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_.]*)\s*=\s*(.*?)\s*")

# DAGMan's node states in the node status file (NodeStatus).
NOT_READY, READY, PRERUN, SUBMITTED, POSTRUN, DONE, ERROR, FUTILE = range(8)
NODE_STATES: dict[int, Status] = {
    NOT_READY: Status.PENDING,  # waits for its parents
    READY: Status.PENDING,  # may run; waits for a throttle or DAGMan's next submit round
    PRERUN: Status.RUNNING,  # its PRE script runs
    SUBMITTED: Status.SUBMITTED,  # its job is in the queue (refined to Running from JobProcsRunning)
    POSTRUN: Status.RUNNING,  # its POST script runs
    DONE: Status.COMPLETE,
    ERROR: Status.ERROR,
    FUTILE: Status.ABORTED,  # never runs: a parent failed
}


def _dags() -> Any:
    bindings()
    import htcondor.dags as dags

    return dags


def _find_dagman(htcondor: Any) -> None:
    """Make condor_dagman findable by Submit.from_dag, which looks on PATH only: add HTCondor's BIN."""
    if shutil.which("condor_dagman"):
        return
    folder = str(htcondor.param.get("BIN") or "")
    if not folder or not os.access(os.path.join(folder, "condor_dagman"), os.X_OK):
        raise EngineUnavailable(
            "condor_dagman was found neither on PATH nor in HTCondor's BIN folder "
            f"({folder or 'BIN is not set'}): install HTCondor's DAGMan, or put its bin folder on PATH"
        )
    with _PATH_LOCK:
        if folder not in os.environ.get("PATH", "").split(os.pathsep):
            os.environ["PATH"] = os.pathsep.join(p for p in (os.environ.get("PATH", ""), folder) if p)
            log.info("added HTCondor's BIN folder %s to PATH, so condor_dagman is found", folder)


def _formatter() -> Any:
    dags = _dags()

    class NodeNames(dags.NodeNameFormatter):  # type: ignore[misc, name-defined]
        """One node per layer, named as the app named it (no ``:0`` suffix)."""

        def generate(self, layer_name: str, node_index: int) -> str:
            return layer_name

        def parse(self, node_name: str) -> tuple[str, int]:
            return node_name, 0

    return NodeNames()


def read_node_status(path: Path) -> dict[str, tuple[Status, str]] | None:
    """Return {node: (status, message)} from a DAGMan node status file, or None if not written yet."""
    try:
        with path.open("rb") as handle:
            text = handle.read(STATUS_FILE_LIMIT).decode("utf-8", "replace")
    except FileNotFoundError:
        return None
    import classad  # type: ignore[import-untyped]

    nodes: dict[str, tuple[Status, str]] = {}
    try:
        ads = list(classad.parseAds(text))
    except Exception:  # noqa: BLE001 - a half-written file: read it again next cycle
        return None
    for ad in ads:
        if _value(ad, "Type") != "NodeStatus":
            continue
        name = str(_value(ad, "Node") or "")
        state = _value(ad, "NodeStatus")
        status = NODE_STATES.get(state if isinstance(state, int) else -1, Status.OTHER)
        if status is Status.SUBMITTED and (_value(ad, "JobProcsRunning") or 0) > 0:
            status = Status.RUNNING
        details = str(_value(ad, "StatusDetails") or "")
        retries = _value(ad, "RetryCount") or 0
        if status is Status.ERROR and retries:
            details = f"{details} (after {retries} {'retry' if retries == 1 else 'retries'})".strip()
        if status is Status.OTHER:
            details = f"DAGMan reports NodeStatus {state!r}, which jobtower does not know"
        nodes[name] = (status, details)
    return nodes if nodes else None


def rollup(dag: tuple[Status, str], nodes: Mapping[str, tuple[Status, str]] | None) -> Observation:
    """Return the workflow's observation from its DAGMan job's state and its nodes' states."""
    dag_status, dag_message = dag
    states = {name: state for name, (state, _) in (nodes or {}).items()}
    messages = {name: message for name, (_, message) in (nodes or {}).items()}
    failed = [f"{name} ({messages[name] or 'failed'})" for name, s in sorted(states.items()) if s is Status.ERROR]
    extra: dict[str, Any] = {"node_messages": messages} if nodes else {}
    if dag_status is Status.COMPLETE:
        return Observation(Status.COMPLETE, "", nodes=states or None, engine_data=extra or None)
    if dag_status is Status.ERROR:
        message = (f"failed nodes: {'; '.join(failed)}" if failed else f"DAGMan ended with {dag_message}")
        return Observation(Status.ERROR, message, nodes=states or None, engine_data=extra or None)
    if dag_status in (Status.ABORTED, Status.PAUSED, Status.OTHER) or not states:
        return Observation(dag_status, dag_message, nodes=states or None, engine_data=extra or None)
    finished = [s for s in states.values() if s.is_terminal]
    moving = [s for s in states.values() if s in (Status.SUBMITTED, Status.RUNNING)]
    # The counts change every cycle while the status may not: they live in the node rows, and the
    # message names only what a user must act on.
    note = f"failed nodes: {'; '.join(failed)}" if failed else ""
    if len(finished) == len(states):
        # Various-Complete is terminal in jobtower's status table, so while DAGMan still runs (its
        # final bookkeeping, a rescue file) the workflow stays Various and ends with DAGMan's exit.
        return Observation(Status.VARIOUS, "; ".join(filter(None, ["all nodes finished, DAGMan is finishing", note])),
                           nodes=states, engine_data=extra)
    if finished:
        return Observation(Status.VARIOUS, note, nodes=states, engine_data=extra)
    status = Status.RUNNING if moving or dag_status is Status.RUNNING else dag_status
    return Observation(status, "", nodes=states, engine_data=extra)


class FetchFailed(Exception):
    """A spooled workflow ended, but its files could not be fetched (the poll tries again)."""


def spooled_node(
    commands: Mapping[str, str], folder: Path, node: str, inputs: Sequence[str] = ()
) -> tuple[dict[str, str], list[tuple[Path, Path]]]:
    """Return a node's submit commands for a spooled workflow, and the files to copy into its folder first.

    On the schedd DAGMan runs in the spooled copy of the attempt's folder, so the node runs in ``<node>``
    (relative to the DAG), its logs are named inside it, and its input files (`inputs`, the node's
    remote_input_files, and transfer_input_files) are copied into it here and named by their file names.
    An executable outside the node's folder that is not one of its inputs is a program of the schedd's
    machine. ValueError names what cannot be spooled.
    """
    out = dict(commands)
    keys = {key.lower(): key for key in out}

    def get(key: str) -> str:
        return str(out.get(keys.get(key, key)) or "")

    def put(key: str, value: str) -> None:
        out[keys.setdefault(key, key)] = value

    where = f"workflow node {node!r} on a named scheduler"
    if get("initialdir") and Path(get("initialdir")) != folder:
        raise ValueError(
            f"{where} runs in its own folder on the schedd; initialdir {get('initialdir')!r} cannot be used "
            "there (leave it unset, or run the workflow on the local pool with scheduler=None)"
        )
    put("initialdir", node)
    for key in ("output", "error", "log"):
        if get(key):
            path = Path(get(key))
            if path.parent != folder:
                raise ValueError(f"{where}: its {key} {get(key)!r} must be a file name inside the node's folder")
            put(key, path.name)
    copies: list[tuple[Path, Path]] = []
    names: list[str] = []
    for item in (part.strip() for part in get("transfer_input_files").split(",")):
        if not item:
            continue
        source = Path(item) if os.path.isabs(item) else folder / item
        names.append(source.name)
        if source.parent != folder:
            copies.append((source, folder / source.name))
    if len(set(names)) != len(names):
        raise ValueError(f"{where}: two of its input files have the same name ({', '.join(names)}); "
                         "they would land on each other in the node's folder")
    if names:
        put("transfer_input_files", ", ".join(names))
    executable = get("executable")
    if executable:
        path = Path(executable)
        sent = {os.path.abspath(item) for item in inputs}
        # HTCondor takes a relative executable from the submitter's folder (the DAG's), not initialdir.
        if path.parent == folder:
            put("executable", f"{node}/{path.name}")
        elif str(path) in sent:
            copies.append((path, folder / path.name))
            put("executable", f"{node}/{path.name}")
    return out, copies


def _config_environment(text: str) -> list[str]:
    """Return a workflow's DAGMan configuration as _CONDOR_ variables (a spooled DAGMan gets no file)."""
    found = []
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = _CONFIG_LINE.fullmatch(line)
        if match is None:
            raise ValueError(
                f"DAGMan configuration line {line.strip()!r:.80} cannot be sent to a named scheduler: there "
                "the configuration is passed as variables, so only NAME = value lines are allowed"
            )
        found.append(f"_CONDOR_{match.group(1)}={match.group(2)}")
    return found


class DAGManBackend(CondorBackend):
    """Submits CONDORWORKFLOW jobs as DAGMan workflows and tracks their nodes in the same batched poll."""

    name = "HTCondor DAGMan"
    capabilities = frozenset({
        Capability.SUBMIT, Capability.POLL, Capability.STOP, Capability.HOLD, Capability.LOGS,
        Capability.LOG_FILES, Capability.NODES, Capability.CALLBACKS,
    })

    # -- submission ---------------------------------------------------------------------------------

    def build_dag(self, job: Job, *, spool: bool = False, copies: list[tuple[Path, Path]] | None = None) -> Any:
        """Return the htcondor.dags.DAG of the workflow's current attempt (nothing written yet).

        With `spool` every path is relative to the DAG's folder (DAGMan runs in the schedd's spool),
        and the input files each node needs in its folder are added to `copies`.
        """
        htcondor = bindings()
        dags = _dags()
        descriptions = job.node_descriptions()  # type: ignore[attr-defined]
        # A spooled DAGMan names the status file from the spool's top, where it starts.
        status_file = (Path(str(job.attempt)) if spool else Path(attempt_folder(job.folder, job.attempt))) / STATUS_FILE
        dag = dags.DAG(node_status_file=dags.NodeStatusFile(status_file, update_time=STATUS_UPDATE_SECONDS))
        layers: dict[str, Any] = {}
        rows = list(job.node_set.order_by("id").prefetch_related("parent_nodes"))
        for node in rows:
            commands = descriptions[node.name].commands
            if spool:
                commands, needed = spooled_node(
                    commands, Path(node_folder(job.folder, job.attempt, node.name)), node.name,
                    node.remote_input_files,
                )
                if copies is not None:
                    copies.extend(needed)
            abort = None
            if node.abort_dag_on is not None:
                abort = dags.DAGAbortCondition(node.abort_dag_on, node.abort_dag_on_return_value)
            layers[node.name] = dag.layer(
                name=node.name,
                submit_description=htcondor.Submit(commands),
                vars=[{str(k): str(v) for k, v in (node.variables or {}).items()}],
                retries=node.retry or None,
                retry_unless_exit=node.retry_unless_exit_value,
                pre=dags.Script(node.pre_script, node.pre_script_args.split()) if node.pre_script else None,
                post=dags.Script(node.post_script, node.post_script_args.split()) if node.post_script else None,
                pre_skip_exit_code=node.pre_skip,
                priority=node.priority or 0,
                category=node.category or None,
                abort=abort,
                dir=Path(node.dir) if node.dir else None,
                noop=node.noop,
            )
        for node in rows:
            parents = [layers[p.name] for p in node.parent_nodes.all() if p.name in layers]
            if parents:
                layers[node.name].add_parents(*parents)
        return dag

    def _rescue_file(self, job: Job) -> Path | None:
        """Return the newest rescue DAG of the attempts before this one (what has finished), or None."""
        for attempt in range(job.attempt - 1, 0, -1):
            found = sorted(Path(attempt_folder(job.folder, attempt)).glob(f"{DAG_FILE}.rescue*"))
            if found:
                return found[-1]
        return None

    def submit(self, job: Job) -> None:
        """Write the attempt's DAG and node folders, then submit DAGMan; its cluster id goes to engine_data.

        On a named scheduler the attempt's folder is spooled with the submission (see the module's text).
        """
        htcondor = bindings()
        dags = _dags()
        scheduler = job.get_scheduler()  # type: ignore[attr-defined]
        spool = scheduler is not None
        if spool:
            self._collect_previous(job)  # the last attempt's rescue DAG, if it is still in the spool
        copies: list[tuple[Path, Path]] = []
        dag = self.build_dag(job, spool=spool, copies=copies)
        config_lines = _config_environment(job.config or "") if spool else []  # type: ignore[attr-defined]
        attempt_dir = Path(attempt_folder(job.folder, job.attempt))
        attempt_dir.mkdir(parents=True, exist_ok=True)
        names = [layer.name for layer in dag.nodes]
        for name in names:
            Path(node_folder(job.folder, job.attempt, name)).mkdir(exist_ok=True)
        for source, target in copies:
            self._copy_input(source, target)
        rescued = self._rescue_file(job)
        if rescued is not None:
            dags.rescue(dag, rescued, formatter=_formatter())
        config = attempt_dir / "dagman.config"
        config.write_text((job.config or "") + "\n")  # type: ignore[attr-defined]
        dag_file = dags.write_dag(dag, attempt_dir, dag_file_name=DAG_FILE, node_name_formatter=_formatter())
        throttles = job.max_jobs  # type: ignore[attr-defined]
        if throttles:
            # The bindings' writer (23.x) writes these as CATEGORY lines, which DAGMan refuses.
            with dag_file.open("a") as handle:
                handle.writelines(f"MAXJOBS {category} {limit}\n" for category, limit in throttles.items())
        _find_dagman(htcondor)
        if spool:
            submit = htcondor.Submit.from_dag(str(dag_file), {"force": True, "UseDagDir": True})
            self._spool_description(job, submit, attempt_dir, config_lines)
        else:
            submit = htcondor.Submit.from_dag(str(dag_file), {"config": str(config), "force": True})
            # DAGMan reads the node submit files (named relative to the DAG) from its working directory.
            submit["initialdir"] = str(attempt_dir)
        submit["+JobtowerJobId"] = str(int(job.pk))
        submit["+JobtowerAttempt"] = str(int(job.attempt))
        if os.geteuid() == 0:
            # DAGMan runs as the user the schedd maps us to, who cannot read root's tokens: it
            # authenticates its node submissions as that local user (FS) instead.
            env = (submit["environment"] if "environment" in submit.keys() else "").strip('"')
            submit["environment"] = f'"{env} _CONDOR_SEC_CLIENT_AUTHENTICATION_METHODS=FS,IDTOKENS"'
        submit["batch_name"] = f"{job.name}"[:200].replace("\n", " ") or f"workflow_{job.pk}"

        def prepare(schedd: Any) -> None:
            if not spool:  # the local pool runs DAGMan in the attempt's folder itself
                self._prepare_folder(job, schedd, attempt_dir)  # type: ignore[arg-type]
                self._give_nodes(job, attempt_dir, names)

        cluster = self._submit_cluster(scheduler, submit, procs=1, spool=spool, prepare=prepare)
        from jobtower.models.workflow import reset_for_attempt

        # The new attempt starts clean: what the rescue DAG marks done stays Complete, the rest waits.
        reset_for_attempt(job.pk, [layer.name for layer in dag.nodes if (layer.done or {}).get(0)])
        job.engine_data = {
            "cluster_id": cluster,
            "procs": 1,
            "attempt": job.attempt,
            "scheduler": scheduler.name if scheduler is not None else None,
            "spool": spool,
            "dag_file": str(dag_file),
            "node_names": names,
            "rescued_from": str(rescued) if rescued is not None else None,
            "submitted": datetime.datetime.now(datetime.UTC).isoformat(),
        }
        log.info("workflow %s attempt %s: DAGMan cluster %s, %d nodes%s%s", job.pk, job.attempt, cluster,
                 len(names), f", rescued from {rescued}" if rescued else "",
                 f", spooled to {scheduler.name}" if scheduler is not None else "")

    @staticmethod
    def _copy_input(source: Path, target: Path) -> None:
        """Copy one of a spooled node's input files (or folders) into the node's folder."""
        if not source.exists():
            raise FileNotFoundError(
                f"input file {source} of workflow node {target.parent.name!r} does not exist, so it cannot be "
                "sent to the scheduler"
            )
        if source.is_dir():
            shutil.copytree(source, target, dirs_exist_ok=True)
        else:
            shutil.copy2(source, target)

    @staticmethod
    def _spool_description(job: Job, submit: Any, attempt_dir: Path, config_lines: Sequence[str]) -> None:
        """Make DAGMan's description spoolable: the attempt's folder goes and comes back whole, every path in it
        relative to the spool, and the finished (or removed) job waits in the queue for retrieve()."""
        relative = f"{job.attempt}/"
        for key in ("output", "error", "log", "arguments", "environment"):
            if key in submit.keys():
                submit[key] = submit[key].replace(f"{attempt_dir}{os.sep}", relative)
        if config_lines:
            env = (submit["environment"] if "environment" in submit.keys() else "").strip('"')
            extra = quote_arguments(config_lines).strip('"')
            submit["environment"] = f'"{env} {extra}"'
        submit["initialdir"] = str(attempt_dir.parent)
        submit["should_transfer_files"] = "YES"
        submit["transfer_input_files"] = str(job.attempt)
        submit["transfer_output_files"] = str(job.attempt)
        # The schedd's own condor_dagman runs, not a copy of this machine's.
        submit["transfer_executable"] = "false"
        submit["LeaveJobInQueue"] = (
            f"(JobStatus == {COMPLETED} || JobStatus == {REMOVED}) && "
            f"(time() - EnteredCurrentStatus) < {SPOOL_KEEP_SECONDS}"
        )

    def _collect_previous(self, job: Job) -> None:
        """Fetch the files of the attempt before this one if it was spooled and not fetched (stopped, say),
        so its rescue DAG is here; then let it leave the schedd's queue. Failing that, every node runs again."""
        from jobtower.models.scheduler import get_scheduler

        data = job.engine_data or {}
        if not data.get("spool") or data.get("retrieved") or not data.get("cluster_id"):
            return
        if data.get("attempt") != job.attempt - 1:
            return
        try:
            scheduler = get_scheduler(str(data.get("scheduler") or ""))
            if scheduler is None:
                raise LookupError(f"the scheduler {data.get('scheduler')!r} was deleted")
            self._retrieve(scheduler, int(data["cluster_id"]), states=(COMPLETED, REMOVED))
        except Exception as exc:  # noqa: BLE001 - the new attempt runs anyway, from the start
            log.warning("workflow %s: the files of attempt %s could not be fetched (%s); nodes it finished "
                        "run again", job.pk, data.get("attempt"), condor_error(exc))

    def _give_nodes(self, job: Job, attempt_dir: Path, names: Sequence[str]) -> None:
        """Give the attempt's files and node folders to the user jobs run as (never root)."""
        if os.geteuid() != 0:
            return
        owner = attempt_dir.stat()
        entry = pwd.getpwuid(owner.st_uid)
        for path in attempt_dir.iterdir():
            os.chown(path, owner.st_uid, entry.pw_gid)

    # -- tracking -----------------------------------------------------------------------------------

    def poll(self, jobs: Sequence[Job]) -> PollResult:
        """Report on many workflows: their DAGMan jobs in the batched schedd queries, nodes from files."""
        answer = PollResult()
        for scheduler, members, ads in self._schedd_answers(jobs, answer):
            for job in members:
                try:
                    answer.observations[job.pk] = self._observe_workflow(job, ads, scheduler)
                except FetchFailed as exc:
                    answer.unreachable[job.pk] = str(exc)
        return answer

    # The node jobs of spooled workflows come with the same queue query: their node status file is in
    # the schedd's spool until DAGMan ends, so while it runs the queue tells which nodes are queued or
    # running. Their ads are kept under the negated DAGMan cluster id (no real cluster is negative).
    also_project = ["DAGManJobId", "DAGNodeName"]

    def _also_ask(self, jobs: Sequence[Job]) -> str:
        """Ask for the node jobs of the spooled workflows among `jobs` too."""
        clusters = sorted(
            cluster for job in jobs
            if (job.engine_data or {}).get("spool") and (cluster := self._cluster(job)) is not None
        )
        return f"member(DAGManJobId, {{{', '.join(map(str, clusters))}}})" if clusters else ""

    def _keep_other(self, ad: Any, found: dict[int, dict[int, Any]]) -> None:
        """Keep a node job's ad under its DAGMan's negated cluster id."""
        dagman = _value(ad, "DAGManJobId")
        if isinstance(dagman, int) and _value(ad, "DAGNodeName"):
            found.setdefault(-dagman, {})[int(_value(ad, "ClusterId") or 0)] = ad

    @staticmethod
    def _queued_nodes(job: Job, ads: Mapping[int, Mapping[int, Any]], cluster: int) -> dict[str, tuple[Status, str]]:
        """Return {node: (status, "")} of a spooled workflow's node jobs now in the queue."""
        found: dict[str, tuple[Status, str]] = {}
        for ad in ads.get(-cluster, {}).values():
            if _value(ad, "JobtowerJobId") != job.pk or _value(ad, "JobtowerAttempt") != job.attempt:
                continue
            state, message = proc_status(ad)
            if state in (Status.SUBMITTED, Status.RUNNING, Status.PAUSED):
                found[str(_value(ad, "DAGNodeName"))] = (state, message)
        return found

    def _observe_workflow(
        self, job: Job, ads: Mapping[int, Mapping[int, Any]], scheduler: Scheduler | None = None
    ) -> Observation:
        """Return one workflow's observation from its DAGMan job's ad and its node status file.

        A spooled workflow whose DAGMan ended has its files fetched first (once): the node status file
        comes back with them.
        """
        cluster = self._cluster(job)
        ad = ads.get(cluster, {}).get(0)  # type: ignore[arg-type]
        data = job.engine_data or {}
        fetched = False
        if (data.get("spool") and not data.get("retrieved") and ad is not None
                and _value(ad, "JobStatus") in (COMPLETED, REMOVED)):
            try:
                self._retrieve(scheduler, cluster, states=(COMPLETED, REMOVED))  # type: ignore[arg-type]
            except Exception as exc:
                where = scheduler.name if scheduler is not None else "the local pool"
                raise FetchFailed(
                    f"DAGMan ended, but fetching the workflow's files from {where} failed: {condor_error(exc)}; "
                    "trying again next cycle"
                ) from exc
            fetched = True
        nodes = read_node_status(Path(attempt_folder(job.folder, job.attempt)) / STATUS_FILE)
        if nodes is None and data.get("spool") and not fetched and cluster is not None:
            # Until it is fetched, a node that left the queue keeps the status last stored for it.
            nodes = self._queued_nodes(job, ads, cluster) or None
        if ad is None:
            dag = (Status.ERROR, f"lost: HTCondor has no record of DAGMan job {cluster}, neither in the "
                   "queue nor in its history (was the schedd reinstalled?)")
        elif _value(ad, "JobStatus") == REMOVED:
            dag = (Status.ABORTED, "DAGMan was removed from the queue")
        else:
            dag = proc_status(ad)
            if dag[0] is Status.COMPLETE and _value(ad, "JobStatus") == COMPLETED and nodes and any(
                state is not Status.COMPLETE for state, _ in nodes.values()
            ):
                dag = (Status.ERROR, "DAGMan ended but not every node completed")
        observation = rollup(dag, nodes)
        if fetched:
            observation = dataclasses.replace(
                observation, engine_data={**(observation.engine_data or {}), "retrieved": True}
            )
        return observation

    def cancel(self, job: Job) -> None:
        """Remove DAGMan (it removes its node jobs); a spooled workflow's files so far are fetched too."""
        super().cancel(job)
        cluster = self._cluster(job)
        if cluster is None or not (job.engine_data or {}).get("spool"):
            return
        scheduler = job.get_scheduler()  # type: ignore[attr-defined]
        try:
            # The removal takes effect a moment later: only a removed (or ended) DAGMan's files are sent.
            deadline = time.monotonic() + STOP_FETCH_WAIT
            with self._security(scheduler):
                schedd = self._schedd(scheduler)
                while time.monotonic() < deadline and any(
                    _value(ad, "JobStatus") not in (COMPLETED, REMOVED)
                    for ad in schedd.query(f"ClusterId == {cluster}", ["JobStatus"])
                ):
                    time.sleep(0.2)
            # Kept in the queue: a resubmit fetches it again, with the rescue DAG DAGMan writes as it stops.
            self._retrieve(scheduler, cluster, states=(COMPLETED, REMOVED), release=False)
        except Exception as exc:  # noqa: BLE001 - stopped all the same; the files stay in the spool
            log.warning("workflow %s: stopped, but its files could not be fetched: %s", job.pk, condor_error(exc))

    # -- files --------------------------------------------------------------------------------------

    def logs(self, job: Job) -> dict[str, Any]:
        """Return the tails of the workflow's logs, by the names log_files() gives them."""
        return {name: tail(path, LOG_TAIL_BYTES) for name, path in self.log_files(job).items()}

    def log_files(self, job: Job) -> dict[str, Path]:
        """Return the workflow's log files, all in its own folder: DAGMan's stdout and stderr ("stdout",
        "stderr"), its log ("dagman", dagman.out), then each node's ("<node>.stdout", "<node>.stderr")."""
        from jobtower.models.workflow import NODE_NAME

        if self._cluster(job) is None:
            return {}
        attempt_dir = Path(attempt_folder(job.folder, job.attempt))
        files = {
            "stdout": attempt_dir / f"{DAG_FILE}.lib.out",
            "stderr": attempt_dir / f"{DAG_FILE}.lib.err",
            "dagman": attempt_dir / f"{DAG_FILE}.dagman.out",
        }
        for name in (job.engine_data or {}).get("node_names") or []:
            if NODE_NAME.fullmatch(str(name)):  # never a path out of the node's own folder
                folder = Path(node_folder(job.folder, job.attempt, str(name)))
                files[f"{name}.stdout"] = folder / "stdout.txt"
                files[f"{name}.stderr"] = folder / "stderr.txt"
        return files

    def fetch_results(self, job: Job) -> None:
        """Nothing to fetch here: local nodes write into their folders, and a spooled workflow's files
        are fetched by the poll that sees DAGMan end (its node statuses come with them)."""
