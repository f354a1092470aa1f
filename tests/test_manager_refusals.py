"""What the JobManager refuses and what it keeps: tests written from mutants of manager.py that survived."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest

from jobtower import JobManager
from jobtower.errors import SubmitError
from jobtower.manager import translate_filters
from jobtower.models import Job
from jobtower.statuses import Status

pytestmark = pytest.mark.django_db


# -- the manager itself ----------------------------------------------------------------------------


@pytest.mark.parametrize("app", [object(), SimpleNamespace(package=""), SimpleNamespace(package=None)])
def test_an_app_without_a_package_is_refused_with_the_fix(app) -> None:
    with pytest.raises(ValueError) as info:
        JobManager(app)
    assert "has no `package`" in str(info.value)
    assert "set package = " in str(info.value)


def test_the_label_is_the_apps_package() -> None:
    assert JobManager(SimpleNamespace(package="flood_app")).label == "flood_app"


# -- create_job ------------------------------------------------------------------------------------


def test_a_missing_job_type_is_refused_with_an_example(job_manager, user) -> None:
    with pytest.raises(TypeError) as info:
        job_manager.create_job(name="x", user=user)
    assert "needs job_type" in str(info.value) and "job_type='BASIC'" in str(info.value)


def test_an_unexpected_keyword_error_lists_what_the_type_accepts(job_manager, user) -> None:
    with pytest.raises(TypeError) as info:
        job_manager.create_job(name="x", user=user, job_type="BASIC", atributes={})
    message = str(info.value)
    assert message.startswith("create_job() got an unexpected keyword argument 'atributes' for a BASIC job")
    accepted = message.split("it accepts: ", 1)[1].split(", ")
    assert accepted == sorted(accepted)
    assert {"description", "workspace", "extended_properties", "process_results_function"} <= set(accepted)


@pytest.mark.parametrize("name", ["", None, 123, b"bytes", ["a"]])
def test_a_name_that_is_not_a_non_empty_string_is_refused(job_manager, user, name) -> None:
    with pytest.raises(ValueError) as info:
        job_manager.create_job(name=name, user=user, job_type="BASIC")
    assert "needs a name: a non-empty string" in str(info.value)
    assert Job.objects.count() == 0


@pytest.mark.parametrize(
    "who",
    [
        SimpleNamespace(pk=7),  # saved, but not a user: nothing says it logged in
        SimpleNamespace(pk=7, is_authenticated=False),  # saved, logged out
        SimpleNamespace(pk=None, is_authenticated=True),  # logged in, never saved
        None,
    ],
)
def test_only_a_saved_logged_in_user_may_own_a_job(job_manager, who) -> None:
    with pytest.raises(ValueError) as info:
        job_manager.create_job(name="x", user=who, job_type="BASIC")
    assert "needs a saved, logged-in user" in str(info.value)
    assert "login_required" in str(info.value)


def test_an_explicit_workspace_is_kept_made_absolute_and_expanded(job_manager, user, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    relative = job_manager.create_job(name="r", user=user, job_type="BASIC", workspace="runs")
    assert relative.workspace == str(tmp_path / "runs")
    home = job_manager.create_job(name="h", user=user, job_type="BASIC", workspace="~/runs")
    assert home.workspace == str(tmp_path / "home" / "runs")
    relative.save()
    assert relative.folder == tmp_path / "runs" / f"job_{relative.pk}"


def test_an_empty_workspace_means_the_users_own(app, job_manager, user) -> None:
    job = job_manager.create_job(name="e", user=user, job_type="BASIC", workspace="")
    assert job.workspace == app.get_user_workspace(user).path


# -- create_jobs -----------------------------------------------------------------------------------


def test_create_jobs_keeps_each_specs_workspace_and_gives_the_rest_their_owners(
    app, job_manager, user, other_user, tmp_path
) -> None:
    jobs = job_manager.create_jobs([
        {"name": "a_{id}", "user": user, "job_type": "BASIC"},
        {"name": "b_{id}", "user": user, "job_type": "BASIC", "workspace": str(tmp_path / "mine")},
        {"name": "c_{id}", "user": other_user, "job_type": "BASIC"},
        {"name": "d_{id}", "user": user, "job_type": "BASIC"},
    ])
    stored = {job.pk: job.workspace for job in Job.objects.filter(pk__in=[j.pk for j in jobs])}
    assert [stored[j.pk] for j in jobs] == [
        app.get_user_workspace(user).path,
        str(tmp_path / "mine"),
        app.get_user_workspace(other_user).path,
        app.get_user_workspace(user).path,
    ]


def test_create_jobs_refuses_a_spec_without_a_user_and_saves_none(job_manager, user) -> None:
    with pytest.raises(TypeError, match="'user'"):
        job_manager.create_jobs([
            {"name": "ok", "user": user, "job_type": "BASIC"},
            {"name": "no owner", "job_type": "BASIC"},
        ])
    assert Job.objects.count() == 0


# -- list_jobs, get_job and their filters ----------------------------------------------------------


@pytest.fixture
def three(job_manager, user, set_status):
    jobs = []
    for name, status in (("one", Status.COMPLETE), ("two", Status.ERROR), ("three", Status.PENDING)):
        job = job_manager.create_job(name=name, user=user, job_type="BASIC")
        job.save()
        if status is not Status.PENDING:
            set_status(job, status)
        jobs.append(job)
    return jobs


def test_list_filters_select_rows_by_any_field(job_manager, user, three) -> None:
    assert [j.name for j in job_manager.list_jobs(user=user, filters={"name": "two"})] == ["two"]
    assert [j.name for j in job_manager.list_jobs(user=user, filters={"name__startswith": "t"}, order_by="name")] == [
        "three", "two"]


@pytest.mark.parametrize("key", ["status", "status__exact"])
@pytest.mark.parametrize("value", ["COM", "Complete", "complete"])
def test_status_filters_take_codes_and_display_strings(job_manager, user, three, key, value) -> None:
    assert [j.name for j in job_manager.list_jobs(user=user, filters={key: value})] == ["one"]


def test_other_status_lookups_pass_through_on_the_stored_code(job_manager, user, three) -> None:
    assert translate_filters({"status__startswith": "CO"}) == {"_status__startswith": "CO"}
    assert [j.name for j in job_manager.list_jobs(user=user, filters={"status__startswith": "ER"})] == ["two"]
    assert translate_filters({"name": "Complete"}) == {"name": "Complete"}


def test_an_unknown_status_in_a_filter_is_an_error_naming_it(job_manager, user) -> None:
    with pytest.raises(ValueError, match="'Finished'"):
        list(job_manager.list_jobs(user=user, filters={"status": "Finished"}))


def test_ordering_by_status_orders_by_the_stored_code(job_manager, user, three) -> None:
    codes = [j.status_code.value for j in job_manager.list_jobs(user=user, order_by="-status")]
    assert codes == sorted(codes, reverse=True)


def test_get_job_applies_its_filters(job_manager, user, three) -> None:
    one = three[0]
    assert job_manager.get_job(one.pk, user=user, filters={"status": "Complete"}).pk == one.pk
    assert job_manager.get_job(one.pk, user=user, filters={"status": "Error"}) is None
    assert job_manager.get_job(str(one.pk)).pk == one.pk


@pytest.mark.parametrize("bad", ["x", None, "1.5", [1]])
def test_get_job_needs_an_integer_id(job_manager, bad) -> None:
    with pytest.raises(ValueError, match="job_id must be an integer"):
        job_manager.get_job(bad)


# -- logging ---------------------------------------------------------------------------------------


def test_the_manager_logs_under_the_jobtower_logger(job_manager, user, memory, caplog) -> None:
    """Operators configure one logger, "jobtower"; the manager's records must reach it."""
    memory.fail_submit = ConnectionRefusedError("refused")
    job = job_manager.create_job(name="l", user=user, job_type="MEMORY")
    with caplog.at_level(logging.WARNING, logger="jobtower"), pytest.raises(SubmitError):
        job.execute()
    assert any(r.name == "jobtower" for r in caplog.records), [r.name for r in caplog.records]


# -- the status callback's token -------------------------------------------------------------------


def test_a_callback_token_is_valid_for_its_own_job_only() -> None:
    from django.core import signing

    from jobtower.manager import callback_token, valid_callback_token

    token = callback_token(41)
    assert valid_callback_token(41, token)
    assert not valid_callback_token(42, token)
    assert not valid_callback_token(41, "forged")
    assert not valid_callback_token(41, signing.Signer(salt="another.purpose").signature("41"))


# -- transition(), the one writer of status --------------------------------------------------------


@pytest.fixture
def job(job_manager, user):
    made = job_manager.create_job(name="t", user=user, job_type="BASIC")
    made.save()
    return made


def stored(job: Job) -> Job:
    return Job.objects.get(pk=job.pk)


def test_a_move_without_a_message_leaves_none(job) -> None:
    from jobtower.manager import transition

    Job.objects.filter(pk=job.pk).update(status_message="old news")
    assert transition(job, Status.SUBMITTED, source="test")
    assert stored(job).status_message == ""
    assert [e.message for e in stored(job).history()] == [""]


def test_a_move_records_the_check_time_only_when_given_one(job) -> None:
    import datetime

    from jobtower.manager import transition

    checked = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)
    transition(job, Status.SUBMITTED, source="test", check_time=checked)
    assert stored(job).last_status_check == checked
    transition(job, Status.RUNNING, source="test")
    assert stored(job).last_status_check == checked


def test_reaching_results_ready_gives_the_results_step_all_its_tries(job_manager, user, set_status) -> None:
    from jobtower.manager import transition

    job = job_manager.create_job(name="r", user=user, job_type="BASIC",
                                 process_results_function="tests.results_functions.record")
    job.save()
    set_status(job, Status.RUNNING)
    Job.objects.filter(pk=job.pk).update(results_tries=2)
    assert transition(job, Status.COMPLETE, source="test")
    after = stored(job)
    assert after.status_code is Status.RESULTS_READY and after.results_tries == 0


def test_a_move_from_an_outdated_status_rereads_the_stored_one_and_moves_from_it(job) -> None:
    from jobtower.manager import transition

    Job.objects.filter(pk=job.pk).update(_status=Status.RUNNING.value)  # another process moved it
    assert job.status_code is Status.PENDING
    assert transition(job, Status.COMPLETE, source="test")
    assert [(e.from_status, e.to_status) for e in stored(job).history()] == [("RUN", "COM")]


def test_a_move_that_expected_another_status_is_refused_or_ignored(job) -> None:
    from jobtower.errors import InvalidTransition
    from jobtower.manager import transition

    Job.objects.filter(pk=job.pk).update(_status=Status.RUNNING.value)
    assert transition(job, Status.SUBMITTED, source="test", expected=Status.PENDING, strict=False) is False
    with pytest.raises(InvalidTransition, match="another request changed it first"):
        transition(job, Status.SUBMITTED, source="test", expected=Status.PENDING)
    assert stored(job).status_code is Status.RUNNING and not stored(job).history()


def test_a_move_of_a_job_deleted_meanwhile_is_ignored_or_refused(job) -> None:
    from jobtower.manager import transition

    Job.objects.filter(pk=job.pk).delete()
    assert transition(job, Status.SUBMITTED, source="engine", strict=False) is False
    with pytest.raises(Job.DoesNotExist, match="no longer exists"):
        transition(job, Status.SUBMITTED, source="test")


# -- what engines report ---------------------------------------------------------------------------


def test_an_engines_message_is_kept_up_to_its_bound_and_cut_beyond() -> None:
    from jobtower.backends.base import Observation
    from jobtower.manager import sanitize

    assert sanitize(Observation(Status.RUNNING, "m" * 4000)).message == "m" * 4000
    assert sanitize(Observation(Status.RUNNING, "m" * 4001)).message == "m" * 4000
    assert sanitize(Observation(Status.RUNNING, "m" * 4001, progress=5)).message == "m" * 4000


def test_a_result_is_kept_up_to_a_million_bytes_of_json() -> None:
    from jobtower.backends.base import Observation
    from jobtower.manager import sanitize

    largest = "r" * (1_000_000 - 2)  # its JSON adds two quotes
    assert sanitize(Observation(Status.COMPLETE, result=largest)).result == largest
    refused = sanitize(Observation(Status.COMPLETE, result=largest + "r"))
    assert refused.status is Status.ERROR and "1,000,001 bytes" in refused.message


def test_a_polls_moves_are_recorded_as_the_engines(job, set_status) -> None:
    from jobtower.backends.base import Observation, PollResult
    from jobtower.manager import apply_poll

    set_status(job, Status.SUBMITTED)
    assert apply_poll([job], PollResult(observations={job.pk: Observation(Status.RUNNING)})) == 1
    assert [e.source for e in stored(job).history()] == ["engine"]


def test_an_unknown_status_from_an_engine_is_an_error_naming_it_within_bounds() -> None:
    from jobtower.backends.base import Observation
    from jobtower.manager import sanitize

    named = sanitize(Observation("FINISHED?", progress=1))  # type: ignore[arg-type]
    assert named.status is Status.ERROR and named.message == "the engine reported an unknown status 'FINISHED?'"
    long = sanitize(Observation("S" * 1000))  # type: ignore[arg-type]
    assert long.status is Status.ERROR and len(long.message) == 500


@pytest.mark.parametrize(("reported", "kept"), [(150, 100.0), (100, 100.0), (-5, 0.0), (0.5, 0.5), ("42", 42.0),
                                                (float("nan"), None), ("lots", None)])
def test_progress_is_a_percentage_between_0_and_100(reported, kept) -> None:
    from jobtower.backends.base import Observation
    from jobtower.manager import sanitize

    assert sanitize(Observation(Status.RUNNING, progress=reported)).progress == kept
