"""The JobManager and the job record: creation, validation, status, actions, freshness, deletion."""

from __future__ import annotations

import logging
import os
from datetime import timedelta
from pathlib import Path

import pytest
from django.contrib.auth.models import Group
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from jobtower.errors import AlreadyExecuted, InvalidTransition, StopError, SubmitError
from jobtower.models import BasicJob, CondorJob, CondorWorkflow, Job, JobEvent
from jobtower.statuses import Status
from tests import results_functions
from tests.conftest import OtherApp

pytestmark = pytest.mark.django_db


def writes(queries) -> list[str]:  # noqa: ANN001
    return [q["sql"] for q in queries if q["sql"].split()[0].upper() in ("INSERT", "UPDATE", "DELETE")]


# -- create_job --------------------------------------------------------------------------------


def test_unknown_job_type_lists_the_valid_ones(job_manager, user) -> None:
    with pytest.raises(ValueError) as info:
        job_manager.create_job(name="x", user=user, job_type="SLURMISH")
    message = str(info.value)
    assert "'SLURMISH'" in message
    for name in ("BASIC", "CONDOR", "CONDORJOB", "CONDORWORKFLOW"):
        assert name in message


def test_unknown_keyword_is_an_error_naming_it(job_manager, user) -> None:
    with pytest.raises(TypeError, match="'atributes'"):
        job_manager.create_job(name="x", user=user, job_type="CONDOR", atributes={})
    with pytest.raises(TypeError, match="'attributes'.*BASIC"):
        job_manager.create_job(name="x", user=user, job_type="BASIC", attributes={})


def test_job_type_as_class_and_alias(job_manager, user) -> None:
    assert type(job_manager.create_job(name="a", user=user, job_type=CondorJob)) is CondorJob
    job = job_manager.create_job(name="b", user=user, job_type="condorjob")
    assert type(job) is CondorJob and job.job_type == "CONDOR"
    with pytest.raises(ValueError, match="not a registered job type"):
        job_manager.create_job(name="c", user=user, job_type=Job)


def test_anonymous_user_is_refused(job_manager) -> None:
    from django.contrib.auth.models import AnonymousUser

    with pytest.raises(ValueError, match="logged-in user"):
        job_manager.create_job(name="x", user=AnonymousUser(), job_type="BASIC")


@pytest.mark.parametrize("job_type", ["BASIC", "CONDOR", "CONDORWORKFLOW"])
def test_id_is_expanded_in_the_name_for_every_type(job_manager, user, job_type) -> None:
    job = job_manager.create_job(name="myjob_{id}", user=user, job_type=job_type)
    job.save()
    assert job.name == f"myjob_{job.pk}"
    assert Job.objects.get(pk=job.pk).name == f"myjob_{job.pk}"


def test_default_workspace_is_the_users_workspace_and_job_folder_is_inside(app, job_manager, user) -> None:
    job = job_manager.create_job(name="w", user=user, job_type="BASIC")
    job.save()
    assert job.workspace == app.get_user_workspace(user).path
    assert job.folder == Path(job.workspace) / f"job_{job.pk}"
    assert not job.folder.exists()
    assert job.ensure_folder().is_dir()


def test_extended_properties_must_be_json(job_manager, user) -> None:
    job = job_manager.create_job(name="j", user=user, job_type="BASIC")
    with pytest.raises(TypeError, match=r"extended_properties\['when'\].*datetime"):
        job.extended_properties = {"when": timezone.now()}
    with pytest.raises(TypeError, match="extended_properties"):
        job_manager.create_job(name="j", user=user, job_type="BASIC", extended_properties={"s": {1}})
    job.extended_properties = {"ok": [1, 2.5, "x", None, True]}
    job.save()
    job.extended_properties["later"] = object()  # mutation in place is caught at save
    with pytest.raises(TypeError, match=r"extended_properties\['later'\]"):
        job.save()
    assert Job.objects.get(pk=job.pk).extended_properties == {"ok": [1, 2.5, "x", None, True]}


def test_condor_settings_are_stored_and_read_back(app, job_manager, user) -> None:
    ws = app.get_app_workspace().path
    job = job_manager.create_job(
        name="myjob_{id}", user=user, job_type="CONDOR",
        attributes=dict(attribute1="attr1"), condorpy_template_name="vanilla_transfer_files",
        remote_input_files=(os.path.join(ws, "my_script.py"), os.path.join(ws, "input_1")),
    )
    job.set_attribute("executable", "my_script.py")
    job.save()
    again = job_manager.get_job(job.pk)
    assert type(again) is CondorJob
    assert again.attributes == {"attribute1": "attr1", "executable": "my_script.py"}
    assert again.get_attribute("executable") == "my_script.py"
    assert again.get_attribute("missing") is None
    assert again.condorpy_template_name == "vanilla_transfer_files"
    assert again.remote_input_files == [os.path.join(ws, "my_script.py"), os.path.join(ws, "input_1")]
    with pytest.raises(TypeError, match="remote_input_files"):
        again.remote_input_files = "just_one_string.py"


def test_workflow_record(job_manager, user) -> None:
    wf = job_manager.create_job(name="wf_{id}", user=user, job_type="CONDORWORKFLOW", max_jobs={"a": 2})
    wf.save()
    got = job_manager.get_job(wf.pk)
    assert type(got) is CondorWorkflow and got.max_jobs == {"a": 2} and got.name == f"wf_{wf.pk}"


def test_executing_a_workflow_without_nodes_is_a_clear_error_and_loses_nothing(job_manager, user) -> None:
    # Workflows run on DAGMan (tests/test_workflow.py); one with no nodes is refused before anything moves.
    job = job_manager.create_job(name="c", user=user, job_type="CONDORWORKFLOW", description="keep me")
    with pytest.raises(ValueError, match="has no nodes: add some with workflow.add_node"):
        job.execute()
    stored = Job.objects.get(pk=job.pk)
    assert stored.status_code is Status.PENDING and stored.description == "keep me"
    assert not JobEvent.objects.filter(job=job).exists()


# -- read-only attributes and the status setter --------------------------------------------------


@pytest.mark.parametrize(
    "attribute",
    ["user", "label", "creation_time", "execute_time", "start_time", "completion_time",
     "status_message", "run_time"],
)
def test_read_only_attributes(job_manager, user, other_user, attribute) -> None:
    job = job_manager.create_job(name="r", user=user, job_type="BASIC")
    job.save()
    value = other_user if attribute == "user" else "x"
    with pytest.raises(AttributeError):
        setattr(job, attribute, value)


def test_status_setter_accepts_codes_and_display_strings(job_manager, user) -> None:
    job = job_manager.create_job(name="s", user=user, job_type="BASIC")
    job.save()
    job.status = "SUB"
    job.status = "Running"
    assert job.status == "Running"
    assert job.start_time is not None and job.completion_time is None
    with pytest.raises(ValueError, match="'Complete' \\('COM'\\)"):
        job.status = "Finished"
    job.status = "complete"
    assert job.status == "Complete" and job.completion_time is not None
    assert isinstance(job.run_time, timedelta)
    with pytest.raises(InvalidTransition, match="Complete is final"):
        job.status = "Running"


def test_run_time_is_empty_before_start(job_manager, user) -> None:
    job = job_manager.create_job(name="rt", user=user, job_type="BASIC")
    job.save()
    assert job.run_time == ""


def test_save_never_overwrites_a_newer_status(job_manager, user) -> None:
    job = job_manager.create_job(name="stale", user=user, job_type="BASIC")
    job.execute()
    stale = Job.objects.get(pk=job.pk)
    job.status = "Running"
    stale.description = "edited in another request"
    stale.save()
    fresh = Job.objects.get(pk=job.pk)
    assert fresh.status_code is Status.RUNNING
    assert fresh.description == "edited in another request"


# -- execute ---------------------------------------------------------------------------------------


def test_execute_runs_exactly_once(job_manager, user, memory) -> None:
    job = job_manager.create_job(name="once", user=user, job_type="MEMORY")
    job.execute()
    assert job.status_code is Status.SUBMITTED and job.execute_time is not None
    with pytest.raises(AlreadyExecuted, match="resubmit"):
        job.execute()
    other_copy = Job.objects.get(pk=job.pk)
    with pytest.raises(AlreadyExecuted):
        other_copy.execute()
    assert memory.submitted == [job.pk]
    assert [(e.from_status, e.to_status) for e in job.history()] == [("PEN", "SUB")]


def test_submit_error_leaves_error_with_reason_and_is_not_swallowed(job_manager, user, memory, caplog) -> None:
    memory.fail_submit = ConnectionRefusedError("schedd at 127.0.0.1:9618 refused")
    job = job_manager.create_job(name="bad", user=user, job_type="MEMORY")
    with caplog.at_level(logging.ERROR, logger="jobtower"):
        with pytest.raises(SubmitError, match="schedd at 127.0.0.1:9618 refused"):
            job.execute()
    stored = Job.objects.get(pk=job.pk)
    assert stored.status_code is Status.ERROR
    assert "ConnectionRefusedError" in stored.status_message and "refused" in stored.status_message
    assert any("submitting job" in r.message for r in caplog.records)
    assert [(e.from_status, e.to_status) for e in stored.history()] == [("PEN", "SUB"), ("SUB", "ERR")]


# -- freshness -------------------------------------------------------------------------------------


def test_fresh_status_read_makes_no_query_and_no_write(job_manager, user, memory) -> None:
    job = job_manager.create_job(name="fresh", user=user, job_type="MEMORY")
    job.execute()
    job.status  # noqa: B018 - first read may ask the engine
    with CaptureQueriesContext(connection) as queries:
        for _ in range(20):
            assert job.status == "Submitted"
    assert len(queries) == 0


def test_status_asks_engine_at_most_once_per_interval_and_persists_check(job_manager, user, memory, settings) -> None:
    settings.JOBTOWER = {**settings.JOBTOWER, "STATUS_REFRESH_INTERVAL": 60}
    job = job_manager.create_job(name="poll", user=user, job_type="MEMORY")
    job.execute()
    memory.calls.clear()
    memory.set(job, Status.RUNNING)
    assert job.status == "Running"  # never checked: asks at once
    memory.set(job, Status.COMPLETE)
    assert job.status == "Running"  # checked just now: no new poll
    assert [c for c in memory.calls if c[0] == "poll"] == [("poll", None)]
    # Another process loading the job sees the persisted check time and does not poll either.
    other = Job.objects.get(pk=job.pk)
    assert other.last_status_check is not None
    with CaptureQueriesContext(connection) as queries:
        assert other.status == "Running"
    assert writes(queries) == []
    # Once the interval has passed, the next read asks and moves it.
    Job.objects.filter(pk=job.pk).update(last_status_check=timezone.now() - timedelta(seconds=61))
    other = Job.objects.get(pk=job.pk)
    assert other.status == "Complete"


def test_unchanged_poll_writes_only_the_check_time(job_manager, user, memory) -> None:
    job = job_manager.create_job(name="same", user=user, job_type="MEMORY")
    job.execute()
    with CaptureQueriesContext(connection) as queries:
        assert job.status == "Submitted"
    assert len(writes(queries)) == 1 and "last_status_check" in writes(queries)[0]
    assert JobEvent.objects.filter(job=job).count() == 1


def test_engine_down_changes_no_status(job_manager, user, memory, caplog) -> None:
    job = job_manager.create_job(name="down", user=user, job_type="MEMORY")
    job.execute()
    memory.fail_poll = ConnectionError("engine down")
    with caplog.at_level(logging.WARNING, logger="jobtower"):
        assert job.update_status() is False
    assert Job.objects.get(pk=job.pk).status_code is Status.SUBMITTED
    assert "engine down" in caplog.text


def test_interval_none_never_polls_on_read(job_manager, user, memory, settings) -> None:
    settings.JOBTOWER = {**settings.JOBTOWER, "STATUS_REFRESH_INTERVAL": None}
    job = job_manager.create_job(name="mon", user=user, job_type="MEMORY")
    job.execute()
    memory.calls.clear()
    memory.set(job, Status.RUNNING)
    assert job.status == "Submitted"
    assert memory.calls == []


# -- results ---------------------------------------------------------------------------------------


def test_process_results_function_runs_once_via_results_ready(job_manager, user, memory) -> None:
    results_functions.CALLS.clear()
    job = job_manager.create_job(
        name="res", user=user, job_type="MEMORY", process_results_function=results_functions.record
    )
    job.execute()
    assert job._process_results_function == "tests.results_functions:record"
    memory.set(job, Status.COMPLETE)
    job.update_status()
    job.update_status()
    assert job.status == "Complete"
    assert results_functions.CALLS == [job.pk]
    assert (job.folder / "processed.txt").read_text() == f"{job.pk}\n"
    assert [(e.from_status, e.to_status) for e in job.history()] == [
        ("PEN", "SUB"), ("SUB", "RES"), ("RES", "COM")
    ]


def test_failing_results_function_ends_in_error_with_reason(job_manager, user) -> None:
    job = job_manager.create_job(name="boom", user=user, job_type="BASIC")
    job.process_results_function = "tests.results_functions.explode"
    job.execute()
    job.status = "Complete"
    stored = Job.objects.get(pk=job.pk)
    assert stored.status_code is Status.ERROR
    assert "RuntimeError: the output file was empty" in stored.status_message


def test_process_results_function_must_be_importable(job_manager, user) -> None:
    job = job_manager.create_job(name="bad", user=user, job_type="BASIC")
    with pytest.raises(ValueError, match="lambda"):
        job.process_results_function = lambda j: None
    with pytest.raises(ValueError, match="cannot import"):
        job.process_results_function = "tests.results_functions:nope"


# -- BASIC actions ---------------------------------------------------------------------------------


def test_basic_job_actions(job_manager, user) -> None:
    job = job_manager.create_job(name="basic_{id}", user=user, job_type="BASIC")
    job.execute()
    job.status = "Running"
    job.pause()
    assert job.status == "Paused"
    with pytest.raises(InvalidTransition, match="already Paused"):
        job_manager.get_job(job.pk).pause()
    job.resume()
    assert job.status == "Running"
    with pytest.raises(InvalidTransition, match="not Paused"):
        job.resume()
    job.stop()
    assert job.status == "Aborted" and job.completion_time is not None
    with pytest.raises(InvalidTransition, match="nothing to stop"):
        job.stop()
    job.resubmit()
    assert job.status == "Submitted" and job.attempt == 2
    assert job.completion_time is None and job.start_time is None
    moves = [(e.from_status, e.to_status, e.source, e.attempt) for e in job.history()]
    assert moves == [
        ("PEN", "SUB", "execute", 1), ("SUB", "RUN", "app", 1), ("RUN", "PAS", "pause", 1),
        ("PAS", "RUN", "resume", 1), ("RUN", "ABT", "stop", 1), ("ABT", "PEN", "resubmit", 2),
        ("PEN", "SUB", "execute", 2),
    ]


def test_engine_actions_call_the_engine(job_manager, user, memory) -> None:
    job = job_manager.create_job(name="eng", user=user, job_type="MEMORY")
    job.execute()
    job.pause()
    job.resume()
    job.stop()
    assert [c[0] for c in memory.calls] == ["submit", "hold", "release", "cancel"]
    assert job.get_logs() == {"stdout": f"memory job {job.pk}\n", "stderr": ""}
    assert BasicJob(name="x").get_logs() == {}


def test_resubmit_of_a_running_job_stops_it_first(job_manager, user, memory) -> None:
    job = job_manager.create_job(name="again", user=user, job_type="MEMORY")
    job.execute()
    memory.set(job, Status.RUNNING)
    job.update_status()
    job.resubmit()
    assert [c[0] for c in memory.calls if c[0] != "poll"] == ["submit", "cancel", "submit"]
    assert job.status_code is Status.SUBMITTED and job.attempt == 2


def test_resubmit_of_pending_job_says_execute(job_manager, user) -> None:
    job = job_manager.create_job(name="p", user=user, job_type="BASIC")
    job.save()
    with pytest.raises(InvalidTransition, match="call execute"):
        job.resubmit()


# -- retrieving ----------------------------------------------------------------------------------


def test_list_and_get_are_filtered_by_app_and_user(job_manager, user, other_user) -> None:
    mine = [job_manager.create_job(name=f"m{i}", user=user, job_type="BASIC") for i in range(3)]
    for job in mine:
        job.save()
    theirs = job_manager.create_job(name="t", user=other_user, job_type="CONDOR")
    theirs.save()
    foreign = OtherApp.get_job_manager().create_job(name="f", user=user, job_type="BASIC")
    foreign.save()
    assert [j.pk for j in job_manager.list_jobs()] == [j.pk for j in mine] + [theirs.pk]
    assert [j.pk for j in job_manager.list_jobs(user=user)] == [j.pk for j in mine]
    assert [j.pk for j in job_manager.list_jobs(user, order_by="-id")] == [j.pk for j in reversed(mine)]
    assert job_manager.get_job(theirs.pk, user=user) is None
    assert type(job_manager.get_job(theirs.pk)) is CondorJob
    assert job_manager.get_job(foreign.pk) is None
    assert job_manager.get_job(999999) is None
    with pytest.raises(ValueError, match="integer"):
        job_manager.get_job("abc")


def test_list_jobs_status_filters_and_groups(job_manager, user, other_user) -> None:
    team = Group.objects.create(name="team")
    shared = job_manager.create_job(name="shared", user=other_user, job_type="BASIC", groups=[team])
    shared.save()
    assert list(shared.groups.all()) == [team]
    done = job_manager.create_job(name="done", user=user, job_type="BASIC")
    done.execute()
    done.status = "Complete"
    pending = job_manager.create_job(name="pending", user=user, job_type="BASIC")
    pending.save()
    assert [j.pk for j in job_manager.list_jobs(groups=[team])] == [shared.pk]
    assert {j.pk for j in job_manager.list_jobs(user=user, groups=[team])} == {shared.pk, done.pk, pending.pk}
    assert [j.pk for j in job_manager.list_jobs(user=user, filters={"status": "Complete"})] == [done.pk]
    by_status = [j.status_code for j in job_manager.list_jobs(order_by="-status")]
    assert by_status == sorted(by_status, key=lambda s: s.value, reverse=True)
    got = {j.pk for j in job_manager.list_jobs(filters={"status__in": ["PEN", "Complete"]})}
    assert got == {shared.pk, done.pk, pending.pk}
    with pytest.raises(ValueError, match="not a job status"):
        list(job_manager.list_jobs(filters={"status": "Finished"}))


def test_callback_url(job_manager, rf) -> None:
    request = rf.get("/", HTTP_HOST="example.com")
    url = job_manager.get_job_status_callback_url(request, 27)
    assert url.startswith("http://example.com/update-job-status/27/?token=")


# -- delete ----------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_delete_removes_record_history_and_only_its_folder(job_manager, user) -> None:
    first = job_manager.create_job(name="a", user=user, job_type="BASIC")
    second = job_manager.create_job(name="b", user=user, job_type="BASIC")
    first.execute()
    second.execute()
    (first.ensure_folder() / "out.txt").write_text("a")
    (second.ensure_folder() / "out.txt").write_text("b")
    neighbour = Path(first.workspace) / "user_file.txt"
    neighbour.write_text("mine")
    first_folder, pk = first.folder, first.pk
    first.delete()
    assert not first_folder.exists()
    assert (second.folder / "out.txt").read_text() == "b"
    assert neighbour.read_text() == "mine"
    assert not Job.objects.filter(pk=pk).exists() and not JobEvent.objects.filter(job_id=pk).exists()


@pytest.mark.django_db(transaction=True)
def test_delete_stops_an_active_job_first(job_manager, user, memory) -> None:
    job = job_manager.create_job(name="d", user=user, job_type="MEMORY")
    job.execute()
    job.delete()
    assert ("cancel", memory.submitted[0]) in memory.calls
    assert not Job.objects.exists()


def test_delete_keeps_everything_when_the_engine_cannot_stop(job_manager, user, memory, monkeypatch) -> None:
    job = job_manager.create_job(name="d", user=user, job_type="MEMORY")
    job.execute()
    folder = job.ensure_folder()

    def refuse(job):  # noqa: ANN001, ANN202
        raise ConnectionError("engine down")

    monkeypatch.setattr(memory, "cancel", refuse)
    with pytest.raises(StopError, match="engine down"):
        job.delete()
    assert Job.objects.get(pk=job.pk).status_code is Status.SUBMITTED
    assert folder.is_dir()


def test_delete_of_a_job_whose_folder_is_a_symlink_removes_the_link_only(
    job_manager, user, tmp_path, django_capture_on_commit_callbacks
) -> None:
    job = job_manager.create_job(name="l", user=user, job_type="BASIC", workspace=str(tmp_path / "ws"))
    job.save()
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "data").write_text("keep")
    Path(job.workspace).mkdir(parents=True)
    job.folder.symlink_to(precious)
    with django_capture_on_commit_callbacks(execute=True):
        job.delete()
    assert (precious / "data").read_text() == "keep"
    assert not (tmp_path / "ws" / f"job_{job.pk}").exists()


def test_fast_insert_stores_every_field_and_sends_save_signals(job_manager, user) -> None:
    from django.db.models.signals import post_save, pre_save

    seen: list[tuple[str, bool]] = []

    def on_pre(sender, instance, **kwargs):  # noqa: ANN001, ANN202
        seen.append(("pre", instance.pk is None))

    def on_post(sender, instance, created, **kwargs):  # noqa: ANN001, ANN202
        seen.append(("post", created))

    pre_save.connect(on_pre, sender=CondorJob)
    post_save.connect(on_post, sender=CondorJob)
    try:
        job = job_manager.create_job(
            name="fields_{id}", user=user, job_type="CONDOR", description="d ü",
            extended_properties={"a": [1, {"b": None}]}, attributes={"request_cpus": 2},
        )
        job.save()
    finally:
        pre_save.disconnect(on_pre, sender=CondorJob)
        post_save.disconnect(on_post, sender=CondorJob)
    assert seen == [("pre", True), ("post", True)]
    stored = Job.objects.get(pk=job.pk)
    for field in ("name", "description", "label", "job_type", "user_id", "workspace",
                  "extended_properties", "spec", "_status", "attempt", "creation_time"):
        assert getattr(stored, field) == getattr(job, field), field
    assert stored.execute_time is None and stored.status_message == ""
    job.description = "changed"
    job.save()  # an existing row goes through the ORM's UPDATE of the app fields
    assert Job.objects.get(pk=job.pk).description == "changed"


def test_saving_a_new_job_is_one_statement_with_the_id_in_its_name(job_manager, user) -> None:
    job = job_manager.create_job(name="run_{id}_of_{id}", user=user, job_type="BASIC")
    with CaptureQueriesContext(connection) as queries:
        job.save()
    statements = [q["sql"] for q in queries if not q["sql"].upper().startswith(("BEGIN", "SAVEPOINT", "RELEASE"))]
    assert len(statements) == 1 and statements[0].upper().lstrip().startswith("WITH"), statements
    assert job.name == f"run_{job.pk}_of_{job.pk}" == Job.objects.get(pk=job.pk).name
    plain = job_manager.create_job(name="plain", user=user, job_type="BASIC")
    plain.save()
    assert plain.pk > job.pk and Job.objects.get(pk=plain.pk).name == "plain"


def test_ids_of_deleted_jobs_are_never_given_again(job_manager, user) -> None:
    first = job_manager.create_job(name="a_{id}", user=user, job_type="BASIC")
    first.save()
    swept = job_manager.create_jobs([{"name": "s_{id}", "user": user, "job_type": "BASIC"} for _ in range(3)])
    newest = swept[-1].pk
    Job.objects.filter(pk__in=[job.pk for job in swept]).delete()
    again = job_manager.create_job(name="b_{id}", user=user, job_type="BASIC")
    again.save()
    assert again.pk > newest > first.pk and again.name == f"b_{again.pk}"


def test_a_new_job_is_built_as_the_model_constructor_builds_it(job_manager, user) -> None:
    from django.contrib.auth.models import Group

    team = Group.objects.create(name="team")
    job = job_manager.create_job(name="n", user=user, job_type="CONDOR", groups=[team], description="d",
                                 extended_properties={"k": 1}, attributes={"request_cpus": 2},
                                 process_results_function="tests.results_functions:record")
    built = CondorJob(name="n", user=user, label=job.label, workspace=job.workspace, groups=[team], description="d",
                      extended_properties={"k": 1}, attributes={"request_cpus": 2},
                      process_results_function="tests.results_functions:record")
    skip = {"creation_time", "_state"}
    assert {k: v for k, v in vars(job).items() if k not in skip} == {
        k: v for k, v in vars(built).items() if k not in skip}
    assert job.user is user and job._state.db == built._state.db and job._state.adding
    with pytest.raises(AttributeError, match="read-only"):
        job.label = "other"
    job.save()
    assert list(Job.objects.get(pk=job.pk).groups.all()) == [team]


def test_get_job_reads_every_field_as_the_orm_does(job_manager, user, other_user) -> None:
    job = job_manager.create_job(name="g_{id}", user=user, job_type="CONDOR", description="d ü",
                                 extended_properties={"a": [1, {"b": None}]}, attributes={"request_cpus": 2})
    job.save()
    Job.objects.filter(pk=job.pk).update(progress=12.5, result={"r": [1.5]}, start_time=timezone.now())
    expected = Job.objects.get(pk=job.pk)
    with CaptureQueriesContext(connection) as queries:
        got = job_manager.get_job(job.pk, user=user)
    assert len(queries) == 1
    assert type(got) is CondorJob and got._state.db == expected._state.db and not got._state.adding
    for field in Job._meta.concrete_fields:
        assert getattr(got, field.attname) == getattr(expected, field.attname), field.attname
    assert got.start_time.tzinfo is not None and got.attributes == {"request_cpus": 2}
    assert job_manager.get_job(job.pk, user=other_user) is None
    assert job_manager.get_job(job.pk, filters={"status": "Pending"}).pk == job.pk
    assert job_manager.get_job(job.pk, filters={"status": "Running"}) is None


def test_pending_basic_job_marked_complete_still_processes_results(job_manager, user) -> None:
    results_functions.CALLS.clear()
    job = job_manager.create_job(name="p", user=user, job_type="BASIC",
                                 process_results_function="tests.results_functions:record")
    job.save()
    job.status = "Complete"
    assert job.status == "Complete" and results_functions.CALLS == [job.pk]


def test_database_urls() -> None:
    from pathlib import Path

    from jobtower.db import database_settings

    home = Path("/h")
    assert database_settings(None, home)["NAME"] == "/h/jobtower.sqlite3"
    assert database_settings("sqlite:///srv/x.sqlite3", home)["NAME"] == "/srv/x.sqlite3"
    assert database_settings("sqlite:////srv/x.sqlite3", home)["NAME"] == "/srv/x.sqlite3"
    pg = database_settings("postgresql://u:p%40ss@db.example:5433/jobs?sslmode=require", home)
    assert (pg["USER"], pg["PASSWORD"], pg["HOST"], pg["PORT"], pg["NAME"]) == (
        "u", "p@ss", "db.example", "5433", "jobs"
    )
    assert pg["OPTIONS"] == {"sslmode": "require"}


def test_results_ready_is_never_polled_or_finished_by_the_engine(job_manager, user, memory) -> None:
    from django.utils import timezone

    from jobtower.monitor import Monitor

    job = job_manager.create_job(name="r", user=user, job_type="MEMORY")
    job.execute()
    # Someone else holds the results step (a live claim): neither the engine nor we finish it.
    Job.objects.filter(pk=job.pk).update(_status=Status.RESULTS_READY.value, results_claimed_at=timezone.now())
    memory.set(job, Status.ERROR, "the engine changed its mind")
    memory.calls.clear()
    stale = Job.objects.get(pk=job.pk)
    assert stale.update_status() is False
    Monitor(results_threads=0).cycle()
    assert memory.calls == []
    assert Job.objects.get(pk=job.pk).status_code is Status.RESULTS_READY


def test_unclaimed_results_ready_is_finished_by_the_results_step_not_the_engine(job_manager, user, memory) -> None:
    from jobtower.monitor import Monitor

    job = job_manager.create_job(name="r", user=user, job_type="MEMORY")
    job.execute()
    Job.objects.filter(pk=job.pk).update(_status=Status.RESULTS_READY.value, results_status="COM")
    memory.set(job, Status.ERROR, "the engine changed its mind")
    memory.calls.clear()
    Monitor(results_threads=0).cycle()
    assert memory.calls == []
    done = Job.objects.get(pk=job.pk)
    assert done.status_code is Status.COMPLETE
    assert done.history().last().source == "results"


def test_engine_message_survives_results_processing(job_manager, user, memory) -> None:
    results_functions.CALLS.clear()
    job = job_manager.create_job(name="m", user=user, job_type="MEMORY",
                                 process_results_function="tests.results_functions:record")
    job.execute()
    memory.set(job, Status.VARIOUS_COMPLETE, "2 Complete, 1 Error")
    job.update_status()
    done = Job.objects.get(pk=job.pk)
    assert done.status_code is Status.VARIOUS_COMPLETE and done.status_message == "2 Complete, 1 Error"


def test_create_jobs_saves_a_sweep_in_one_go_with_ids_names_and_groups(job_manager, user, db) -> None:
    from django.contrib.auth.models import Group

    team = Group.objects.create(name="team")
    jobs = job_manager.create_jobs(
        {"name": f"sweep_{{id}}_{n}", "user": user, "job_type": "LOCAL", "command": ["echo", str(n)],
         "groups": [team] if n % 2 else []}
        for n in range(50)
    )
    stored = list(job_manager.list_jobs(user=user))
    assert [j.pk for j in stored] == [j.pk for j in jobs] and len(set(j.pk for j in jobs)) == 50
    assert all(j.name == f"sweep_{j.pk}_{n}" for n, j in enumerate(stored))
    assert [j.command for j in stored] == [["echo", str(n)] for n in range(50)]
    assert all(j.status_code is Status.PENDING for j in stored)
    assert sorted(team.jobtower_jobs.values_list("pk", flat=True)) == [j.pk for j in jobs[1::2]]
    jobs[3].execute()  # they are ordinary saved jobs
    assert Job.objects.get(pk=jobs[3].pk).status_code is Status.SUBMITTED


def test_create_jobs_with_one_bad_spec_saves_none(job_manager, user, db) -> None:
    specs = [{"name": "ok", "user": user, "job_type": "BASIC"}, {"name": "bad", "user": user, "job_type": "NOPE"}]
    with pytest.raises(ValueError, match="unknown job type 'NOPE'"):
        job_manager.create_jobs(specs)
    assert not Job.objects.exists()


def test_prune_deletes_only_jobs_that_ended_long_ago_with_their_folders(job_manager, user, transactional_db) -> None:
    import datetime

    from django.utils import timezone

    from jobtower import manager

    old, recent, running = (job_manager.create_job(name=n, user=user, job_type="BASIC") for n in ("o", "r", "a"))
    for job in (old, recent, running):
        job.execute()
        job.ensure_folder().joinpath("out.txt").write_text("x")
    old.status = "Complete"
    recent.status = "Error"
    running.status = "Running"
    long_ago = timezone.now() - datetime.timedelta(days=100)
    Job.objects.filter(pk__in=[old.pk, running.pk]).update(completion_time=long_ago, start_time=long_ago)
    assert manager.prune(datetime.timedelta(days=90), dry_run=True) == 1
    assert Job.objects.count() == 3
    assert manager.prune(datetime.timedelta(days=90)) == 1
    assert sorted(Job.objects.values_list("pk", flat=True)) == sorted([recent.pk, running.pk])
    assert not old.folder.exists() and recent.folder.exists() and running.folder.exists()
    assert not JobEvent.objects.filter(job_id=old.pk).exists()
    with pytest.raises(ValueError, match="positive age"):
        manager.prune(datetime.timedelta(0))
