"""CONDORWORKFLOW: the node records and their checks (no pool), then real DAGMan workflows on the pool.

The pool tests carry the `condor` marker and fail, never skip, without a pool. Node jobs are short
(`/bin/sh -c ...`): the loopback pool has one execute slot shared with other tests; DAGMan itself
runs in the scheduler universe and needs no slot.
"""

from __future__ import annotations

import contextlib
import itertools
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from jobtower import manager
from jobtower.backends import Capability, get_backend
from jobtower.backends.base import Observation
from jobtower.backends.dagman import read_node_status, rollup
from jobtower.models import CondorWorkflow, CondorWorkflowJobNode, Job, JobEvent, WorkflowNode
from jobtower.monitor import Monitor
from jobtower.statuses import Status
from tests.conftest import drive, ended, fresh, in_queue, wait_for
from tests.test_browser import browser_page, login  # noqa: F401 - the browser fixture, shared

BACKEND_PATH = "jobtower.backends.dagman:DAGManBackend"


def shell(script: str) -> dict[str, str]:
    """Return node attributes that run `script` with /bin/sh (single quotes are HTCondor's own quoting)."""
    return {"executable": "/bin/sh", "arguments": f"\"-c '{script}'\""}


def workflow(job_manager: Any, user: Any, workspace: Path | str = "", **options: Any) -> CondorWorkflow:
    job: CondorWorkflow = job_manager.create_job(
        name=options.pop("name", "wf_{id}"), user=user, job_type="CONDORWORKFLOW", workspace=str(workspace),
        **options,
    )
    job.save()
    return job


# -- records and checks (no pool) ----------------------------------------------------------------


def test_workflow_type_runs_on_dagman_and_declares_nodes(db) -> None:
    backend = get_backend(BACKEND_PATH)
    assert CondorWorkflow.backend_path == BACKEND_PATH
    assert backend.can(Capability.NODES) and backend.can(Capability.STOP) and backend.can(Capability.LOGS)


def test_tethys_form_and_add_node_build_the_same_records(job_manager, user) -> None:
    tethys = workflow(job_manager, user, max_jobs={"runs": 2})
    prep = CondorWorkflowJobNode(name="prep", workflow=tethys, condorpy_template_name="vanilla_transfer_files",
                                 remote_input_files=["prep.py", "input_1"],
                                 attributes=dict(executable="prep.py", transfer_output_files=("params",)))
    prep.save()
    run_a = CondorWorkflowJobNode(name="run_a", workflow=tethys, category="runs", retry=2,
                                  attributes=dict(executable="run.py", arguments="a"))
    run_a.save()
    run_a.add_parent(prep)

    ours = workflow(job_manager, user, max_jobs={"runs": 2})
    prep2 = ours.add_node(name="prep", condorpy_template_name="vanilla_transfer_files",
                          remote_input_files=["prep.py", "input_1"],
                          attributes=dict(executable="prep.py", transfer_output_files=("params",)))
    ours.add_node(name="run_a", category="runs", retry=2, attributes=dict(executable="run.py", arguments="a"),
                  parents=[prep2])

    def shape(wf: CondorWorkflow) -> list[tuple[Any, ...]]:
        return [(n.name, n.category, n.retry, n.condorpy_template_name, n.remote_input_files, n.attributes,
                 [p.name for p in n.parents]) for n in wf.nodes]

    assert shape(tethys) == shape(ours)
    assert [p.name for p in run_a.parents] == ["prep"] and tethys.max_jobs == {"runs": 2}
    assert ours.nodes_status() == {"prep": "Pending", "run_a": "Pending"}
    assert ours.name == f"wf_{ours.pk}"  # {id} expands in workflow names


def test_duplicate_name_cycle_and_foreign_parent_are_refused_naming_the_nodes(job_manager, user) -> None:
    wf = workflow(job_manager, user)
    a = wf.add_node(name="a", attributes=shell("true"))
    b = wf.add_node(name="b", attributes=shell("true"), parents=[a])
    c = wf.add_node(name="c", attributes=shell("true"), parents=[b])
    with pytest.raises(ValueError, match="has a node named 'a' already"):
        wf.add_node(name="a", attributes=shell("true"))
    with pytest.raises(ValueError, match=r"would make a cycle: a -> b -> c -> a"):
        a.add_parent(c)
    with pytest.raises(ValueError, match="cycle: a -> a"):
        a.add_parent(a)
    other = workflow(job_manager, user)
    stranger = other.add_node(name="x", attributes=shell("true"))
    with pytest.raises(ValueError, match=r"node 'x' belongs to workflow \d+, not to workflow \d+ of node 'a'"):
        a.add_parent(stranger)
    # add_node with a bad parent leaves no half-made node behind
    with pytest.raises(ValueError, match="a parent must be a node of the same workflow"):
        wf.add_node(name="d", attributes=shell("true"), parents=[stranger])
    assert sorted(wf.nodes_status()) == ["a", "b", "c"]
    assert [p.name for p in a.parents] == []


def test_a_cycle_made_behind_the_api_is_refused_at_execute_and_nothing_is_submitted(job_manager, user) -> None:
    wf = workflow(job_manager, user)
    a = wf.add_node(name="a", attributes=shell("true"))
    b = wf.add_node(name="b", attributes=shell("true"), parents=[a])
    a.parent_nodes.add(b)  # straight into the table: execute() still checks the whole graph
    with pytest.raises(ValueError, match=r"has a cycle: .*a.*b.*remove one of these parent links"):
        wf.execute()
    stored = fresh(wf)
    assert stored.status_code is Status.PENDING and stored.engine_data == {}
    assert not JobEvent.objects.filter(job=wf).exists()


def test_a_node_without_an_executable_is_refused_at_execute_naming_it(job_manager, user) -> None:
    wf = workflow(job_manager, user)
    wf.add_node(name="empty", attributes={"arguments": "x"})
    with pytest.raises(ValueError, match="node 'empty': a CONDOR job needs an executable"):
        wf.execute()
    assert fresh(wf).status_code is Status.PENDING


@pytest.mark.parametrize("name", ["../escape", "a b", "", "x/y", 'q"', "PARENT", "-lead", "é"])
def test_node_names_that_are_not_one_safe_word_are_refused(job_manager, user, name) -> None:
    wf = workflow(job_manager, user)
    with pytest.raises(ValueError, match="is not allowed: use letters, digits|needs a name"):
        wf.add_node(name=name, attributes=shell("true"))
    assert not WorkflowNode.objects.filter(workflow_id=wf.pk).exists()


@pytest.mark.parametrize("node_settings, expected", [
    ({"category": "two words"}, "category 'two words' must be one word"),
    ({"variables": {"x": 'say "hi"'}}, "variable 'x' = 'say \"hi\"' cannot be written into the DAG"),
    ({"variables": {"1x": "v"}}, "variable '1x'"),
    ({"pre_script": "a.sh\nJOB evil evil.sub"}, "pre_script cannot span lines"),
])
def test_settings_that_would_break_the_dag_file_are_refused(job_manager, user, node_settings, expected) -> None:
    wf = workflow(job_manager, user)
    with pytest.raises(ValueError, match=re.escape(expected)):
        wf.add_node(name="n", attributes=shell("true"), **node_settings)
    with pytest.raises(ValueError, match="max_jobs category 'a b' must be one word"):
        wf.max_jobs = {"a b": 2}
    assert not WorkflowNode.objects.filter(workflow_id=wf.pk).exists()


def test_dag_picture_is_escaped_coloured_and_only_for_those_who_may_see_the_job(
    job_manager, user, other_user, client
) -> None:
    from jobtower.web.dag import COLOURS, dag_svg

    wf = workflow(job_manager, user, name="<b>wf</b>")
    a = wf.add_node(name="a", attributes=shell("true"))
    wf.add_node(name="b", attributes=shell("true"), parents=[a])
    WorkflowNode.objects.filter(workflow_id=wf.pk, name="a").update(status=Status.COMPLETE.value,
                                                                     status_message="<script>x</script>")
    svg = dag_svg(wf.pk)
    assert '<g class="jobtower-dag-node status-COM" data-node="a" data-status="COM">' in svg
    assert COLOURS[Status.COMPLETE] in svg and COLOURS[Status.PENDING] in svg and "<line " in svg
    assert "<script>" not in svg and "&lt;script&gt;" in svg
    client.force_login(user)
    page = client.get(f"/jobs/{wf.pk}/")
    assert page.status_code == 200 and b"data-jobtower-dag" in page.content and b"<svg" in page.content
    picture = client.get(f"/jobs/{wf.pk}/dag.svg")
    assert picture.status_code == 200 and picture["Content-Type"].startswith("image/svg+xml")
    assert picture["X-Jobtower-Active"] == "1"  # Pending: the page keeps fetching it
    client.force_login(other_user)
    assert client.get(f"/jobs/{wf.pk}/dag.svg").status_code == 404
    assert client.post(f"/jobs/{wf.pk}/dag.svg").status_code in (403, 405)


def test_jobs_table_rows_of_many_workflows_cost_one_node_query(job_manager, user, client) -> None:
    for n in range(5):
        wf = workflow(job_manager, user, name=f"wf{n}")
        for name in ("x", "y"):
            wf.add_node(name=name, attributes=shell("true"))
    client.force_login(user)
    with CaptureQueriesContext(connection) as queries:
        page = client.get("/")
    node_queries = [q for q in queries.captured_queries if "workflownode" in q["sql"]]
    assert len(node_queries) == 1, [q["sql"] for q in node_queries]
    html = page.content.decode()
    assert html.count('class="jobtower-node-row"') == 5 and "▸ 2 nodes" in html
    assert '<tr data-node="x">' in html


def test_node_statuses_roll_up() -> None:
    running, done = (Status.RUNNING, ""), (Status.COMPLETE, "")
    assert rollup(running, None).status is Status.RUNNING
    first = rollup(running, {"a": (Status.SUBMITTED, ""), "b": (Status.PENDING, "")})
    assert first.status is Status.RUNNING and first.nodes == {"a": Status.SUBMITTED, "b": Status.PENDING}
    assert rollup(running, {"a": done, "b": (Status.RUNNING, "")}).status is Status.VARIOUS
    finishing = rollup(running, {"a": done, "b": done})
    # Various-Complete is terminal: while DAGMan still runs, the workflow stays Various.
    assert finishing.status is Status.VARIOUS and "DAGMan is finishing" in finishing.message
    assert rollup(done, {"a": done, "b": done}).status is Status.COMPLETE
    failed = rollup((Status.ERROR, "exit code 1"),
                    {"a": done, "b": (Status.ERROR, "Job proc (9.0.0) failed with status 3 (after 2 retries)"),
                     "c": (Status.ABORTED, "")})
    assert failed.status is Status.ERROR
    assert failed.message == "failed nodes: b (Job proc (9.0.0) failed with status 3 (after 2 retries))"
    assert rollup((Status.ABORTED, "removed"), {"a": done}).status is Status.ABORTED


def test_the_node_status_file_is_read_and_a_half_written_one_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "nodes.status"
    assert read_node_status(path) is None
    path.write_text(
        '[ Type = "DagStatus"; NodesTotal = 2; ]\n'
        '[ Type = "NodeStatus"; Node = "a"; NodeStatus = 5; StatusDetails = ""; RetryCount = 0; ]\n'
        '[ Type = "NodeStatus"; Node = "b"; NodeStatus = 6; StatusDetails = "Job proc (7.0.0) failed with '
        'status 3"; RetryCount = 2; ]\n'
        '[ Type = "NodeStatus"; Node = "c"; NodeStatus = 42; ]\n'
    )
    nodes = read_node_status(path)
    assert nodes is not None
    assert nodes["a"] == (Status.COMPLETE, "")
    assert nodes["b"] == (Status.ERROR, "Job proc (7.0.0) failed with status 3 (after 2 retries)")
    assert nodes["c"][0] is Status.OTHER and "NodeStatus 42" in nodes["c"][1]
    path.write_text('[ Type = "NodeStatus"; Node = ')
    assert read_node_status(path) is None


def test_node_statuses_are_stored_in_one_update_and_not_rewritten_when_unchanged(job_manager, user) -> None:
    wf = workflow(job_manager, user)
    for name in "abc":
        wf.add_node(name=name, attributes=shell("true"))
    Job.objects.filter(pk=wf.pk).update(_status=Status.RUNNING.value)
    seen = Observation(Status.VARIOUS, "", nodes={"a": Status.COMPLETE, "b": Status.RUNNING, "c": Status.PENDING},
                       engine_data={"node_messages": {"a": "", "b": "", "c": ""}})
    job = fresh(wf)
    with CaptureQueriesContext(connection) as queries:
        manager.apply_observations([(job, seen)])
    node_writes = [q["sql"] for q in queries.captured_queries
                   if q["sql"].startswith("UPDATE") and "workflownode" in q["sql"]]
    assert len(node_writes) == 1, node_writes
    assert fresh(wf).nodes_status() == {"a": "Complete", "b": "Running", "c": "Pending"}
    assert fresh(wf).status_code is Status.VARIOUS
    job = fresh(wf)
    with CaptureQueriesContext(connection) as again:
        manager.apply_observations([(job, seen)])
    assert not [q for q in again.captured_queries if q["sql"].startswith(("UPDATE", "INSERT"))]


def test_spooled_node_descriptions_name_everything_inside_the_node_s_folder(tmp_path: Path) -> None:
    from jobtower.backends.dagman import _config_environment, spooled_node

    folder = tmp_path / "attempts" / "1" / "run"
    inputs = [str(tmp_path / "ws" / "run.sh"), str(tmp_path / "ws" / "data.csv")]
    commands = {"executable": inputs[0], "Initialdir": str(folder), "output": str(folder / "stdout.txt"),
                "error": str(folder / "stderr.txt"), "log": str(folder / "condor.log"),
                "transfer_input_files": f"{inputs[1]}, local.txt", "+JobtowerJobId": "7"}
    spooled, copies = spooled_node(commands, folder, "run", inputs)
    assert spooled == {"executable": "run/run.sh", "Initialdir": "run", "output": "stdout.txt", "error": "stderr.txt",
                       "log": "condor.log", "transfer_input_files": "data.csv, local.txt", "+JobtowerJobId": "7"}
    assert copies == [(Path(inputs[1]), folder / "data.csv"), (Path(inputs[0]), folder / "run.sh")]
    # A program of the schedd's machine stays as it is.
    assert spooled_node({"executable": "/bin/sh"}, folder, "run")[0] == {"executable": "/bin/sh", "initialdir": "run"}
    with pytest.raises(ValueError, match="initialdir '/elsewhere' cannot be used there"):
        spooled_node({**commands, "Initialdir": "/elsewhere"}, folder, "run", inputs)
    with pytest.raises(ValueError, match="its output '/tmp/out.txt' must be a file name inside the node's folder"):
        spooled_node({**commands, "output": "/tmp/out.txt"}, folder, "run", inputs)
    with pytest.raises(ValueError, match="two of its input files have the same name"):
        spooled_node({**commands, "transfer_input_files": "/a/x.txt, /b/x.txt"}, folder, "run")
    assert _config_environment("# throttles\nDAGMAN_MAX_SUBMITS_PER_INTERVAL = 5\n\n") == [
        "_CONDOR_DAGMAN_MAX_SUBMITS_PER_INTERVAL=5"
    ]
    with pytest.raises(ValueError, match="only NAME = value lines are allowed"):
        _config_environment("include : /etc/passwd")


def test_a_workflow_that_cannot_be_spooled_is_refused_at_execute_and_stays_pending(job_manager, user) -> None:
    from jobtower.models import create_condor_scheduler

    remote = create_condor_scheduler("remote", "cm.example.org", 9618)
    remote.save()
    wf = workflow(job_manager, user, scheduler=remote)
    wf.add_node(name="elsewhere", attributes={**shell("true"), "initialdir": "/srv/shared"})
    with pytest.raises(ValueError, match="workflow node 'elsewhere' on a named scheduler runs in its own folder"):
        wf.execute()
    assert fresh(wf).status_code is Status.PENDING and not fresh(wf).engine_data
    WorkflowNode.objects.filter(workflow_id=wf.pk).update(attributes=shell("true"))
    wf.config = "include : /etc/dagman.conf"
    wf.save()
    with pytest.raises(ValueError, match="only NAME = value lines are allowed"):
        wf.execute()
    assert fresh(wf).status_code is Status.PENDING


# -- real workflows on the loopback pool -----------------------------------------------------------


@pytest.fixture
def dagman(pool: dict[str, str], transactional_db: Any) -> Iterator[Any]:
    """The DAGMan backend; removes whatever DAGMan jobs a failed test left in the queue."""
    import htcondor

    yield get_backend(BACKEND_PATH)
    for data in Job.objects.filter(job_type="CONDORWORKFLOW").values_list("engine_data", flat=True):
        cluster = (data or {}).get("cluster_id")
        if cluster and in_queue(cluster):
            htcondor.Schedd().act(htcondor.JobAction.Remove, f"ClusterId == {int(cluster)}")
            # A spooled one would wait in the queue for its files to be fetched: let it go (unless it left).
            with contextlib.suppress(htcondor.HTCondorException):
                htcondor.Schedd().edit(f"ClusterId == {int(cluster)}", "LeaveJobInQueue", "false")


def stamp(node: str) -> dict[str, str]:
    """A node that prints when it ran (ns) and leaves a file in its own folder."""
    return shell(f"date +%s%N; echo {node} > out.txt")


@pytest.mark.condor
def test_diamond_completes_in_dag_order_and_delete_removes_its_folder_only(
    job_manager, user, workspace, dagman
) -> None:
    neighbour = workspace / "job_999999"
    neighbour.mkdir()
    (neighbour / "keep.txt").write_text("mine")
    (workspace / "user_file.txt").write_text("the user's")
    wf = workflow(job_manager, user, workspace, name="diamond_{id}", max_jobs={"middle": 1})
    top = wf.add_node(name="top", attributes=stamp("top"))
    left = wf.add_node(name="left", attributes=stamp("left"), parents=[top], category="middle")
    right = wf.add_node(name="right", attributes=stamp("right"), parents=[top], category="middle")
    wf.add_node(name="bottom", attributes=stamp("bottom"), parents=[left, right])
    wf.execute()
    assert fresh(wf).status_code is Status.SUBMITTED and wf.name == f"diamond_{wf.pk}"
    seen: set[Status] = set()

    def watch(job: Job) -> bool:
        seen.add(job.status_code)
        return job.status_code.is_terminal

    done = drive(wf, watch, 120, "the diamond to end", interval=0.3)
    assert done.status_code is Status.COMPLETE, done.status_message
    assert Status.VARIOUS in seen  # top finished while the others waited
    assert done.nodes_status() == {"top": "Complete", "left": "Complete", "right": "Complete", "bottom": "Complete"}
    logs = done.get_logs()
    ran_names = ("top", "left", "right", "bottom")
    assert set(logs) == {"stdout", "stderr", "dagman"} | {f"{n}.{s}" for n in ran_names for s in ("stdout", "stderr")}
    ran = {name: int(logs[f"{name}.stdout"].split()[0]) for name in ran_names}
    assert ran["top"] < ran["left"] < ran["bottom"] and ran["top"] < ran["right"] < ran["bottom"], ran
    assert "STARTING UP" in logs["dagman"] and "EXITING WITH STATUS 0" in logs["dagman"]
    for name in ("top", "left", "right", "bottom"):
        assert (done.folder / "attempts" / "1" / name / "out.txt").read_text() == f"{name}\n"
    dag_text = (done.folder / "attempts" / "1" / "workflow.dag").read_text()
    assert "CATEGORY left middle" in dag_text and "MAXJOBS middle 1" in dag_text
    folder = done.folder
    done.delete()
    assert not folder.exists()
    assert (neighbour / "keep.txt").read_text() == "mine"
    assert (workspace / "user_file.txt").read_text() == "the user's"
    assert not WorkflowNode.objects.filter(workflow_id=wf.pk).exists()


@pytest.mark.condor
def test_failing_node_ends_in_error_naming_it_then_resubmit_runs_only_unfinished_nodes(
    job_manager, user, workspace, dagman
) -> None:
    flag = workspace / "fixed"
    wf = workflow(job_manager, user, workspace)
    # The Tethys form: records saved one by one, parents added after.
    prep = CondorWorkflowJobNode(name="prep", workflow=wf, attributes=stamp("prep"))
    prep.save()
    flaky = CondorWorkflowJobNode(name="flaky", workflow=wf, retry=1,
                                  attributes=shell(f"echo try; test -f {flag} || exit 3"))
    flaky.save()
    flaky.add_parent(prep)
    wf.execute()
    failed = ended(wf, 120)
    assert failed.status_code is Status.ERROR, failed.status_message
    assert "flaky" in failed.status_message and "status 3" in failed.status_message, failed.status_message
    assert "prep" not in failed.status_message.replace("flaky", "")
    assert failed.nodes_status() == {"prep": "Complete", "flaky": "Error"}
    assert WorkflowNode.objects.get(workflow_id=wf.pk, name="flaky").status_message.startswith("Job proc")
    assert failed.get_logs()["flaky.stdout"].count("try") == 1  # the retry's stdout replaced the first

    prep_done = WorkflowNode.objects.get(workflow_id=wf.pk, name="prep").completion_time
    assert prep_done is not None

    flag.write_text("")
    flag.chmod(0o644)
    failed.resubmit()
    # Right after the resubmit, nothing of the first attempt's failure shows: flaky waits again, prep
    # (done, not run again) keeps its status and run times.
    restarted = fresh(wf)
    assert restarted.attempt == 2 and restarted.nodes_status() == {"prep": "Complete", "flaky": "Pending"}
    rows = {n.name: n for n in WorkflowNode.objects.filter(workflow_id=wf.pk)}
    assert rows["flaky"].status_message == "" and rows["flaky"].start_time is None
    assert rows["flaky"].completion_time is None and rows["flaky"].run_time == ""
    assert rows["prep"].completion_time == prep_done and rows["prep"].start_time is not None
    second = ended(wf, 120)
    assert second.status_code is Status.COMPLETE and second.attempt == 2, second.status_message
    assert second.nodes_status() == {"prep": "Complete", "flaky": "Complete"}
    rows = {n.name: n for n in WorkflowNode.objects.filter(workflow_id=wf.pk)}
    assert rows["flaky"].status_message == "" and rows["flaky"].completion_time is not None
    assert rows["prep"].completion_time == prep_done  # prep did not run again
    attempt2 = second.folder / "attempts" / "2"
    assert not (attempt2 / "prep" / "stdout.txt").exists()  # prep finished in attempt 1: not run again
    assert (attempt2 / "flaky" / "stdout.txt").read_text().strip() == "try"
    assert "DONE" in (attempt2 / "workflow.dag").read_text()
    assert (second.folder / "attempts" / "1" / "prep" / "out.txt").exists()  # earlier files are kept


@pytest.mark.condor
def test_stop_removes_dagman_and_its_node_jobs(job_manager, user, workspace, dagman) -> None:
    import htcondor

    wf = workflow(job_manager, user, workspace)
    wf.add_node(name="long", attributes=shell("sleep 300"))
    wf.execute()
    cluster = int(fresh(wf).engine_data["cluster_id"])
    schedd = htcondor.Schedd()

    def nodes_in_queue() -> list[Any]:
        return list(schedd.query(f"DAGManJobId == {cluster}", ["ClusterId", "JobStatus"]))

    wait_for(nodes_in_queue, 90, interval=0.3, what="DAGMan to submit its node job")
    running = drive(wf, lambda j: j.status_code in (Status.RUNNING, Status.VARIOUS), 90, "the workflow to run")
    running.stop()
    assert fresh(wf).status_code is Status.ABORTED
    wait_for(lambda: not in_queue(cluster) and not nodes_in_queue(), 60, interval=0.3,
             what="DAGMan and its node jobs to leave the queue")


@pytest.mark.condor
def test_a_monitor_cycle_asks_the_schedd_at_most_twice_for_all_workflows(
    job_manager, user, workspace, dagman
) -> None:
    flows = []
    for n in range(3):
        wf = workflow(job_manager, user, workspace, name=f"many_{n}")
        for name in ("a", "b"):
            wf.add_node(name=name, attributes=shell("true"))
        wf.execute()
        flows.append(wf)
    before = dagman.queries
    start = time.monotonic()
    Monitor(results_threads=0).cycle()
    assert dagman.queries - before <= 2, "one queue query (and one history query) for every workflow"
    assert time.monotonic() - start < 30
    for wf in flows:
        assert ended(wf, 180).status_code is Status.COMPLETE


@pytest.mark.condor
@pytest.mark.browser
def test_workflow_row_expands_and_the_dag_picture_changes_colour_without_reload(
    browser_page, live_server, django_user_model, job_manager, workspace, dagman  # noqa: F811 - the fixture
) -> None:
    page, base = browser_page, live_server.url
    alice = django_user_model.objects.create_user("alice", password="pw-alice-1")
    wf = workflow(job_manager, alice, workspace, name="live_{id}")
    first = wf.add_node(name="first", attributes=shell("true"))
    wf.add_node(name="second", attributes=shell("true"), parents=[first])
    wf.execute()
    login(page, base, "alice", "pw-alice-1")

    page.goto(f"{base}/")
    page.click(f'[data-jt-expand="{wf.pk}"]')
    nodes = page.locator(f'tr[data-parent-job="{wf.pk}"]')
    assert nodes.is_visible() and nodes.locator('tr[data-node="second"]').is_visible()
    assert "Pending" in nodes.locator('tr[data-node="second"]').inner_text()

    assert page.context.browser is not None
    second = page.context.browser.new_context()
    detail = second.new_page()
    login(detail, base, "alice", "pw-alice-1")
    detail.goto(f"{base}/jobs/{wf.pk}/")
    picture = detail.locator('g[data-node="second"]')
    assert picture.get_attribute("data-status") != Status.COMPLETE.value
    detail.evaluate("window.jtNoReload = true")
    monitor = Monitor(results_threads=0)

    def finished_on_screen() -> bool:
        monitor.cycle()
        shown = [detail.locator(f'g[data-node="{name}"]').get_attribute("data-status") for name in ("first", "second")]
        return shown == [Status.COMPLETE.value] * 2

    wait_for(finished_on_screen, 120, interval=0.5, what="the DAG picture to show both nodes Complete")
    assert detail.evaluate("window.jtNoReload") is True  # the same page: no reload happened
    fill = detail.locator('g[data-node="second"] rect').get_attribute("fill")
    from jobtower.web.dag import COLOURS

    assert fill == COLOURS[Status.COMPLETE]
    # The table's open node row follows too, and stays open.
    wait_for(lambda: "Complete" in nodes.locator('tr[data-node="second"]').inner_text() or None, 30,
             interval=0.3, what="the table's node row to show Complete")
    assert nodes.is_visible()
    second.close()


@pytest.fixture
def loopback(pool: dict[str, str], transactional_db: Any) -> Any:
    """A scheduler record that names the local schedd by host and port, with the pool's IDTOKEN."""
    import htcondor

    from jobtower.models import create_condor_scheduler

    token = Path(pool["JOBTOWER_CONDOR_TOKEN_FILE"]).read_text().strip()
    schedd_name = htcondor.Collector().locate(htcondor.DaemonTypes.Schedd)["Name"]
    scheduler = create_condor_scheduler("loopback", "127.0.0.1", 9618, schedd_name=schedd_name, token=token)
    scheduler.save()
    return scheduler


def private_workspace(tmp_path: Path) -> Path:
    """A workspace only root may enter: DAGMan and the nodes (run as the pool's user) cannot read it, so
    only what jobtower spools reaches them, and only what it retrieves comes back."""
    private = tmp_path / "private_ws"
    private.mkdir(mode=0o700)
    (private / "data.txt").write_text("spooled\n")
    script = private / "post.sh"
    script.write_text("#!/bin/sh\nwc -c < note.txt > size.txt\necho post ran\n")
    script.chmod(0o755)
    (private / "note.txt").write_text("four")
    return private


@pytest.mark.condor
def test_workflow_on_a_named_scheduler_spools_its_files_and_fetches_every_node_s_outputs(
    job_manager, user, dagman, loopback, tmp_path
) -> None:
    import htcondor

    private = private_workspace(tmp_path)
    wf = workflow(job_manager, user, private, name="spooled_{id}", scheduler=loopback, max_jobs={"late": 1})
    prep = wf.add_node(name="prep", condorpy_template_name="vanilla_transfer_files",
                       remote_input_files=[str(private / "data.txt")],
                       attributes=shell("tr a-z A-Z < data.txt > result.txt; sleep 3; echo prep ran"))
    wf.add_node(name="post", condorpy_template_name="vanilla_transfer_files", parents=[prep], category="late",
                remote_input_files=[str(private / "post.sh"), str(private / "note.txt")],
                attributes={"executable": "post.sh"})
    wf.execute()
    submitted = fresh(wf)
    assert submitted.engine_data["spool"] is True and submitted.engine_data["scheduler"] == "loopback"
    cluster = int(submitted.engine_data["cluster_id"])
    dag_ad = htcondor.Schedd().query(f"ClusterId == {cluster}", ["Iwd", "LeaveJobInQueue"])[0]
    assert "spool" in dag_ad["Iwd"]  # DAGMan runs in the schedd's spool, not in the private folder

    # While DAGMan runs, the node status file is in the spool: the queue query says which nodes are queued
    # or running, in the same (at most two) schedd queries per cycle.
    seen: list[tuple[Status, dict[str, str]]] = []
    counts: list[int] = []

    def watch(job: Job) -> bool:
        seen.append((job.status_code, job.nodes_status()))  # type: ignore[attr-defined]
        counts.append(dagman.queries)
        return job.status_code.is_terminal

    done = drive(wf, watch, 180, "the spooled workflow to end", interval=0.3)
    assert any(not status.is_terminal and nodes["prep"] in ("Submitted", "Running") and nodes["post"] == "Pending"
               for status, nodes in seen), seen
    assert all(later - earlier <= 2 for earlier, later in itertools.pairwise(counts)), counts
    assert done.status_code is Status.COMPLETE, done.status_message
    assert done.nodes_status() == {"prep": "Complete", "post": "Complete"}
    assert done.engine_data["retrieved"] is True
    attempt = done.folder / "attempts" / "1"
    assert (attempt / "prep" / "result.txt").read_text() == "SPOOLED\n"
    assert (attempt / "post" / "size.txt").read_text().strip() == "4"
    logs = done.get_logs()
    assert logs["prep.stdout"] == "prep ran\n" and logs["post.stdout"] == "post ran\n"
    assert "EXITING WITH STATUS 0" in logs["dagman"]
    dag_text = (attempt / "workflow.dag").read_text()
    assert str(private) not in dag_text and "MAXJOBS late 1" in dag_text
    assert str(private) not in (attempt / "prep.sub").read_text()  # every path relative to the spool
    # Fetched: the schedd lets DAGMan leave its queue.
    wait_for(lambda: not in_queue(cluster), 60, interval=0.3, what="the spooled DAGMan to leave the queue")


@pytest.mark.condor
def test_a_stopped_spooled_workflow_keeps_its_files_and_resubmit_runs_what_did_not_finish(
    job_manager, user, dagman, loopback, tmp_path
) -> None:
    private = private_workspace(tmp_path)
    wf = workflow(job_manager, user, private, scheduler=loopback)
    first = wf.add_node(name="first", attributes=stamp("first"))
    wf.add_node(name="long", attributes=shell("echo started; sleep 300"), parents=[first])
    wf.execute()
    cluster = int(fresh(wf).engine_data["cluster_id"])
    import htcondor

    schedd = htcondor.Schedd()
    wait_for(lambda: list(schedd.query(f'DAGManJobId == {cluster} && DAGNodeName == "long" && JobStatus == 2',
                                       ["ClusterId"])), 120, interval=0.3, what="the long node to run")
    fresh(wf).stop()
    stopped = fresh(wf)
    assert stopped.status_code is Status.ABORTED
    attempt1 = stopped.folder / "attempts" / "1"
    assert (attempt1 / "first" / "out.txt").read_text() == "first\n"  # fetched when stopped
    assert "STARTING UP" in (attempt1 / "workflow.dag.dagman.out").read_text()

    WorkflowNode.objects.filter(workflow_id=wf.pk, name="long").update(attributes=shell("echo second try"))
    stopped.resubmit()
    restarted = fresh(wf)
    assert restarted.attempt == 2 and restarted.nodes_status() == {"first": "Complete", "long": "Pending"}
    assert (attempt1 / "workflow.dag.rescue001").exists()  # fetched again at resubmit, with the rescue DAG
    wait_for(lambda: not in_queue(cluster), 60, interval=0.3, what="the stopped DAGMan to leave the queue")
    done = ended(wf, 180)
    assert done.status_code is Status.COMPLETE, done.status_message
    attempt2 = done.folder / "attempts" / "2"
    assert not (attempt2 / "first" / "out.txt").exists()  # first finished in attempt 1: not run again
    assert (attempt2 / "long" / "stdout.txt").read_text() == "second try\n"
