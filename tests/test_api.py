"""The REST API end to end: tokens and sessions, every endpoint, the permission matrix, JSON errors."""

from __future__ import annotations

import json
import sys
from typing import Any

import pytest
from django.contrib.auth.models import Group, Permission
from django.test import Client

from jobtower.errors import EngineUnavailable
from jobtower.models import Job
from jobtower.statuses import Status
from jobtower.web import api
from jobtower.web.api import endpoints
from jobtower.web.tokens import make_token, user_for_token
from tests.conftest import ended, gone, group_frozen, status_is, wait_for

CSRF_SECRET = "a" * 32  # a well-formed CSRF secret, sent as cookie and header by "browser" sessions


@pytest.fixture(autouse=True)
def _user_may_run_programs(request: Any) -> None:
    """The main caller may create engine jobs (jobtower.add_job); the others may not."""
    if "user" in request.fixturenames:
        user = request.getfixturevalue("user")
        user.user_permissions.add(Permission.objects.get(codename="add_job", content_type__app_label="jobtower"))


def bearer(user: Any) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {make_token(user)}"}


def post_json(client: Client, path: str, body: Any, **headers: Any) -> Any:
    return client.post(path, json.dumps(body), content_type="application/json", **headers)


def error_of(response: Any) -> str:
    """Return the JSON error message of a response, checking it is JSON and nothing else."""
    assert response["Content-Type"] == "application/json", response.content[:200]
    body = response.json()
    assert set(body) <= {"error", "job"} and isinstance(body["error"], str) and body["error"]
    assert "Traceback" not in body["error"] and "<html" not in response.content.decode().lower()
    return body["error"]


# -- tokens -------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_cli_prints_a_token_that_authenticates(client, user, capsys) -> None:
    from jobtower import cli

    assert cli.main(["token", "--user", "alice"]) == 0
    token = capsys.readouterr().out.strip()
    assert user_for_token(token) == user
    response = client.get("/api/jobs/", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 200 and response.json()["count"] == 0


@pytest.mark.django_db
def test_cli_token_for_a_missing_user_says_so(capsys) -> None:
    from jobtower import cli

    with pytest.raises(SystemExit, match="there is no user 'nobody'"):
        cli.main(["token", "--user", "nobody"])


@pytest.mark.django_db
def test_changing_the_password_revokes_tokens(client, user) -> None:
    headers = bearer(user)
    assert client.get("/api/jobs/", **headers).status_code == 200
    user.set_password("a new one")
    user.save()
    response = client.get("/api/jobs/", **headers)
    assert response.status_code == 401 and "changed their password" in error_of(response)
    assert response["WWW-Authenticate"] == 'Bearer realm="jobtower"'
    assert client.get("/api/jobs/", **bearer(user)).status_code == 200  # a new token works


@pytest.mark.django_db
def test_tokens_of_inactive_users_forged_or_malformed_are_refused(client, user, other_user, settings) -> None:
    token = make_token(user)
    forged = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    for header in (f"Bearer {forged}", "Bearer ", "Bearer not-a-token", f"Token {token}", "Basic YWxpY2U6cHc="):
        response = client.get("/api/jobs/", HTTP_AUTHORIZATION=header)
        assert response.status_code == 401, header
        error_of(response)
    # A token is bound to its user and this site's key: another salt or key does not pass.
    from django.core import signing

    other = signing.dumps({"u": str(other_user.pk), "p": "x" * 24}, salt="jobtower.api-token")
    assert client.get("/api/jobs/", HTTP_AUTHORIZATION=f"Bearer {other}").status_code == 401
    user.is_active = False
    user.save()
    assert client.get("/api/jobs/", HTTP_AUTHORIZATION=f"Bearer {token}").status_code == 401


@pytest.mark.django_db
def test_tokens_survive_a_key_rotation_with_fallbacks_only(client, user, settings) -> None:
    token = make_token(user)
    settings.SECRET_KEY, settings.SECRET_KEY_FALLBACKS = "a-brand-new-key-" * 4, [settings.SECRET_KEY]
    assert client.get("/api/jobs/", HTTP_AUTHORIZATION=f"Bearer {token}").status_code == 200
    settings.SECRET_KEY_FALLBACKS = []
    assert client.get("/api/jobs/", HTTP_AUTHORIZATION=f"Bearer {token}").status_code == 401


@pytest.mark.django_db
def test_token_does_not_contain_the_password_hash(user) -> None:
    import base64

    payload = make_token(user).split(":")[0]
    decoded = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)).decode()
    assert user.password not in decoded and user.password.split("$")[-1][:12] not in decoded


# -- sessions and CSRF --------------------------------------------------------------------------------


def browser(user: Any) -> Client:
    """A logged-in client that enforces CSRF as a real browser session would be checked."""
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    return client


@pytest.mark.django_db
def test_session_requests_need_csrf_for_changes_only(job_manager, user) -> None:
    job = job_manager.create_job(name="s", user=user, job_type="BASIC")
    job.save()
    client = browser(user)
    assert client.get("/api/jobs/").status_code == 200
    assert client.get(f"/api/jobs/{job.pk}/").status_code == 200
    for response in (
        client.post(f"/api/jobs/{job.pk}/run/"),
        client.delete(f"/api/jobs/{job.pk}/"),
        post_json(client, "/api/jobs/", {"job_type": "BASIC", "name": "x"}),
    ):
        assert response.status_code == 403 and "CSRF" in error_of(response)
    assert Job.objects.get(pk=job.pk).status_code is Status.PENDING and Job.objects.count() == 1
    client.cookies["csrftoken"] = CSRF_SECRET
    response = client.post(f"/api/jobs/{job.pk}/run/", HTTP_X_CSRFTOKEN=CSRF_SECRET)
    assert response.status_code == 200 and response.json()["status"] == "Submitted"
    wrong = client.post(f"/api/jobs/{job.pk}/stop/", HTTP_X_CSRFTOKEN="b" * 32)
    assert wrong.status_code == 403 and "CSRF" in error_of(wrong)


@pytest.mark.django_db
def test_token_requests_need_no_csrf_even_with_a_session(job_manager, user) -> None:
    job = job_manager.create_job(name="t", user=user, job_type="BASIC")
    job.save()
    client = browser(user)  # logged in too, and enforcing CSRF: the token still needs none
    response = client.post(f"/api/jobs/{job.pk}/run/", **bearer(user))
    assert response.status_code == 200 and response.json()["status"] == "Submitted"
    created = post_json(client, "/api/jobs/", {"job_type": "BASIC", "name": "t2"}, **bearer(user))
    assert created.status_code == 201
    assert client.delete(f"/api/jobs/{job.pk}/", **bearer(user)).status_code == 204


@pytest.mark.django_db
def test_a_bad_token_is_refused_even_with_a_valid_session(job_manager, user) -> None:
    client = browser(user)
    response = client.get("/api/jobs/", HTTP_AUTHORIZATION="Bearer forged")
    assert response.status_code == 401


# -- the permission matrix ----------------------------------------------------------------------------

ROLES = ("owner", "member", "other", "staff", "holder", "anonymous", "outsider")
# "outsider" is in a group the job is not shared with: it must get exactly what a stranger ("other") gets.
# Each endpoint with the status its job must be in for the action to be legal.
ENDPOINTS = {
    "list": ("/api/jobs/", Status.PENDING),
    "detail": ("/api/jobs/{id}/", Status.PENDING),
    "run": ("/api/jobs/{id}/run/", Status.PENDING),
    "stop": ("/api/jobs/{id}/stop/", Status.SUBMITTED),
    "pause": ("/api/jobs/{id}/pause/", Status.RUNNING),
    "resume": ("/api/jobs/{id}/resume/", Status.PAUSED),
    "resubmit": ("/api/jobs/{id}/resubmit/", Status.COMPLETE),
    "logs": ("/api/jobs/{id}/logs/", Status.SUBMITTED),
    "history": ("/api/jobs/{id}/history/", Status.SUBMITTED),
    "openapi": ("/api/openapi.json", Status.PENDING),
}
SEES = (200, 200, 404, 200, 200, 401)  # a job's owner, group members and managers; others get a 404
NOT_ALLOWED = (405,) * 6
#: (endpoint, method) -> the expected code for each of ROLES.
MATRIX: dict[tuple[str, str], tuple[int, ...]] = {
    ("list", "GET"): (200, 200, 200, 200, 200, 401),
    ("list", "POST"): (201, 201, 201, 201, 201, 401),
    ("detail", "GET"): SEES,
    ("detail", "POST"): NOT_ALLOWED,
    ("detail", "DELETE"): (204, 204, 404, 204, 204, 401),
    ("run", "GET"): NOT_ALLOWED,
    ("run", "POST"): SEES,
    ("stop", "GET"): NOT_ALLOWED,
    ("stop", "POST"): SEES,
    ("pause", "GET"): NOT_ALLOWED,
    ("pause", "POST"): SEES,
    ("resume", "GET"): NOT_ALLOWED,
    ("resume", "POST"): SEES,
    ("resubmit", "GET"): NOT_ALLOWED,
    ("resubmit", "POST"): SEES,
    ("logs", "GET"): SEES,
    ("logs", "POST"): NOT_ALLOWED,
    ("history", "GET"): SEES,
    ("history", "POST"): NOT_ALLOWED,
    ("openapi", "GET"): (200,) * 6,
    ("openapi", "POST"): NOT_ALLOWED,
}
MATRIX = {key: (*codes, codes[ROLES.index("other")]) for key, codes in MATRIX.items()}
#: Where an allowed action leaves the job.
AFTER = {"run": Status.SUBMITTED, "stop": Status.ABORTED, "pause": Status.PAUSED, "resume": Status.RUNNING,
         "resubmit": Status.SUBMITTED}


@pytest.fixture
def people(django_user_model: Any, user: Any, other_user: Any) -> dict[str, Any]:
    lab = Group.objects.create(name="lab")
    member = django_user_model.objects.create_user("carol", password="pw-carol")
    member.groups.add(lab)
    staff = django_user_model.objects.create_user("dave", password="pw-dave", is_staff=True)
    holder = django_user_model.objects.create_user("erin", password="pw-erin")
    holder.user_permissions.add(Permission.objects.get(codename="jobs_table_actions"))
    outsider = django_user_model.objects.create_user("frank", password="pw-frank")
    outsider.groups.add(Group.objects.create(name="elsewhere"))
    return {"owner": user, "member": member, "other": other_user, "staff": staff, "holder": holder,
            "anonymous": None, "outsider": outsider, "group": lab}


def _job_in(job_manager: Any, owner: Any, group: Any, status: Status) -> Job:
    job = job_manager.create_job(name="matrix", user=owner, job_type="BASIC", groups=[group])
    job.save()
    if status is not Status.PENDING:
        job.execute()
    if status in (Status.RUNNING, Status.PAUSED, Status.COMPLETE):
        job.update_status(Status.RUNNING)
    if status in (Status.PAUSED, Status.COMPLETE):
        job.update_status(status)
    assert Job.objects.get(pk=job.pk).status_code is status
    return job


def _client_for(who: Any, auth: str) -> tuple[Client, dict[str, str]]:
    if who is None:
        return Client(enforce_csrf_checks=True), {}
    if auth == "token":
        return Client(enforce_csrf_checks=True), bearer(who)
    client = browser(who)
    client.cookies["csrftoken"] = CSRF_SECRET
    return client, {"HTTP_X_CSRFTOKEN": CSRF_SECRET}


CELLS = [
    (endpoint, method, index, role)
    for (endpoint, method), codes in MATRIX.items()
    for index, role in enumerate(ROLES)
]


@pytest.mark.django_db
@pytest.mark.parametrize("auth", ["token", "session"])
@pytest.mark.parametrize(("endpoint", "method", "index", "role"), CELLS,
                         ids=[f"{e}-{m}-{r}" for e, m, _, r in CELLS])
def test_permission_matrix(people, job_manager, endpoint, method, index, role, auth) -> None:
    expected = MATRIX[(endpoint, method)][index]
    template, status = ENDPOINTS[endpoint]
    job = _job_in(job_manager, people["owner"], people["group"], status)
    client, headers = _client_for(people[role], auth)
    path = template.format(id=job.pk)
    if method == "GET":
        response = client.get(path, **headers)
    elif method == "DELETE":
        response = client.delete(path, **headers)
    elif endpoint == "list":
        response = post_json(client, path, {"job_type": "BASIC", "name": f"by {role}"}, **headers)
    else:
        response = client.post(path, **headers)

    assert response.status_code == expected, (endpoint, method, role, response.content[:300])
    if expected >= 400:
        error_of(response)
    if expected == 405:
        assert method not in response["Allow"] and response["Allow"]
    fresh = Job.objects.filter(pk=job.pk).first()
    if expected in (401, 404, 405):  # refused: nothing changed
        assert fresh is not None and fresh.status_code is status
        assert Job.objects.count() == 1
    elif endpoint in AFTER and method == "POST":
        assert fresh.status_code is AFTER[endpoint] and response.json()["status"] == AFTER[endpoint].display
    elif endpoint == "detail" and method == "DELETE":
        assert fresh is None
    elif endpoint == "list" and method == "GET":
        ids = [row["id"] for row in response.json()["results"]]
        assert (job.pk in ids) == (role not in ("other", "outsider")), ids
    elif endpoint == "list" and method == "POST":
        assert response.json()["user"] == people[role].username and Job.objects.count() == 2
    elif endpoint == "detail" and method == "GET":
        assert response.json()["id"] == job.pk and response.json()["groups"] == ["lab"]


# -- listing ------------------------------------------------------------------------------------------


@pytest.fixture
def many(job_manager, user, other_user) -> list[Job]:
    jobs = []
    for i in range(12):
        job = job_manager.create_job(
            name=f"run {i:02d}", user=user, job_type="BASIC",
            description="wind model" if i % 3 == 0 else "rain model",
        )
        job.save()
        if i % 2:
            job.execute()
        if i % 4 == 3:
            job.update_status("Complete")
        jobs.append(job)
    theirs = job_manager.create_job(name="run secret", user=other_user, job_type="BASIC")
    theirs.save()
    return jobs


@pytest.mark.django_db
def test_a_superusers_unfiltered_list_of_a_large_table_is_counted_from_the_estimate(
    client, user, many, django_user_model, monkeypatch
) -> None:
    from django.db import connection

    from jobtower import db as jobtower_db

    boss = django_user_model.objects.create_superuser("boss", password="pw-boss")
    monkeypatch.setattr(jobtower_db, "EXACT_COUNT_BELOW", 10)  # 13 jobs make a "large" table here
    postgres = connection.vendor == "postgresql"
    if postgres:
        with connection.cursor() as cursor:
            cursor.execute(f"ANALYZE {Job._meta.db_table}")
            # What the planner believes now: an estimate that is not the true count, as after many inserts.
            cursor.execute("UPDATE pg_class SET reltuples = 20 WHERE oid = %s::regclass", [Job._meta.db_table])
    first = client.get("/api/jobs/?page_size=5", **bearer(boss)).json()
    assert first["count_estimated"] is postgres and first["count"] == (20 if postgres else 13)
    assert first["pages"] == (4 if postgres else 3) and first["next"] is not None
    assert [row["name"] for row in first["results"]] == [f"run {i:02d}" for i in range(5)]
    last = client.get("/api/jobs/?page=3&page_size=5", **bearer(boss)).json()
    assert len(last["results"]) == 3 and last["next"] is None and last["pages"] == 3
    past = client.get("/api/jobs/?page=4&page_size=5", **bearer(boss))
    assert past.status_code == 404 and "past the last page" in error_of(past)
    filtered = client.get("/api/jobs/?page_size=5&status=Pending", **bearer(boss)).json()
    assert filtered["count_estimated"] is False and filtered["count"] == sum(
        1 for job in Job.objects.all() if job.status_code is Status.PENDING)
    own = client.get("/api/jobs/?page_size=5", **bearer(user)).json()
    assert own["count_estimated"] is False and own["count"] == 12


@pytest.mark.django_db
def test_list_pages_through_own_jobs(client, user, many) -> None:
    headers = bearer(user)
    first = client.get("/api/jobs/?page_size=5", **headers).json()
    assert first["count"] == 12 and first["pages"] == 3 and first["page"] == 1 and first["previous"] is None
    assert [row["name"] for row in first["results"]] == [f"run {i:02d}" for i in range(5)]
    second = client.get(first["next"], **headers).json()
    assert [row["name"] for row in second["results"]] == [f"run {i:02d}" for i in range(5, 10)]
    third = client.get(second["next"], **headers).json()
    assert len(third["results"]) == 2 and third["next"] is None
    assert client.get(third["previous"], **headers).json() == second
    past = client.get("/api/jobs/?page=4&page_size=5", **headers)
    assert past.status_code == 404 and "last page (3)" in error_of(past)
    assert "run secret" not in json.dumps([first, second, third])
    row = first["results"][1]
    assert row["status"] == "Submitted" and row["status_code"] == "SUB" and row["user"] == "alice"
    assert set(row) >= {
        "id", "name", "description", "job_type", "label", "user", "status", "status_code", "status_message",
        "progress", "progress_message", "attempt", "creation_time", "execute_time", "start_time",
        "completion_time", "run_time", "result", "extended_properties", "spec",
    }


@pytest.mark.django_db
def test_list_filters_search_and_order(client, user, many) -> None:
    headers = bearer(user)

    def names(query: str) -> list[str]:
        response = client.get(f"/api/jobs/?{query}", **headers)
        assert response.status_code == 200, response.content
        return [row["name"] for row in response.json()["results"]]

    assert names("status=COM") == ["run 03", "run 07", "run 11"]
    assert names("status=Complete") == names("status=complete") == names("status=COM")
    assert names("status=Pending&status=COM") == names("status=PEN,Complete")
    assert len(names("status=Pending&status=COM")) == 9
    assert names("q=WIND") == ["run 00", "run 03", "run 06", "run 09"]
    assert names("q=run 1") == ["run 10", "run 11"]
    assert names("q=wind&status=COM") == ["run 03"]
    assert names("job_type=basic") == names("") and names("job_type=LOCAL") == []
    assert names("app=my_first_app") == names("") and names("app=other") == []
    assert names("order=-id")[:2] == ["run 11", "run 10"]
    assert names("order=-name")[:2] == ["run 11", "run 10"]
    assert names("order=status&status=SUB,COM")[:3] == ["run 03", "run 07", "run 11"]  # COM sorts first
    never_run = [f"run {i:02d}" for i in range(0, 12, 2)]
    assert names("order=execute_time")[-6:] == never_run  # never executed: last, both ways
    assert names("order=-execute_time")[-6:] == never_run[::-1]
    assert names("order=-execute_time")[:6] == [f"run {i:02d}" for i in range(11, 0, -2)]


@pytest.mark.django_db
@pytest.mark.parametrize(("query", "words"), [
    ("status=Finished", "not a job status"),
    ("job_type=NOPE", "unknown job type"),
    ("order=password", "order must be one of"),
    ("order=--id", "order must be one of"),
    ("page=0", "page must be from 1"),
    ("page=two", "page must be a whole number"),
    ("page_size=201", "page_size must be from 1 to 200"),
    ("page_size=-1", "page_size must be a whole number"),
    ("colour=red", "unknown query parameter(s) 'colour'"),
    ("q=a&q=b", "may be given only once"),
    ("q=%00", "NUL"),
])
def test_list_refuses_bad_parameters_naming_them(client, user, query, words) -> None:
    response = client.get(f"/api/jobs/?{query}", **bearer(user))
    assert response.status_code == 400 and words in error_of(response)


# -- creating -----------------------------------------------------------------------------------------


def allow_app(user: Any, label: str) -> None:
    """Give `user` a permission of the app `label`, so the API lets them create its jobs."""
    from django.contrib.contenttypes.models import ContentType

    kind, _ = ContentType.objects.get_or_create(app_label=label, model="app")
    permission, _ = Permission.objects.get_or_create(codename="use_app", content_type=kind,
                                                     defaults={"name": "Can use the app"})
    user.user_permissions.add(permission)


@pytest.mark.django_db
def test_create_basic_without_executing_and_sharing_with_own_group(client, user) -> None:
    lab = Group.objects.create(name="lab")
    user.groups.add(lab)
    allow_app(user, "my_first_app")
    body = {"job_type": "basic", "name": "calib {id}", "description": "d", "app": "my_first_app",
            "execute": False, "groups": ["lab"], "extended_properties": {"a": {"b": [1, 2]}}}
    response = post_json(client, "/api/jobs/", body, **bearer(user))
    assert response.status_code == 201, response.content
    data = response.json()
    job = Job.objects.get(pk=data["id"])
    assert response["Location"] == data["url"] == f"/api/jobs/{job.pk}/"
    assert data["name"] == f"calib {job.pk}" and data["status"] == "Pending" and data["execute_time"] is None
    assert data["label"] == "my_first_app" and data["groups"] == ["lab"] and data["job_type"] == "BASIC"
    assert data["extended_properties"] == {"a": {"b": [1, 2]}} and job.extended_properties == {"a": {"b": [1, 2]}}


@pytest.mark.django_db
def test_create_shares_only_with_groups_the_user_is_in(client, user, people) -> None:
    response = post_json(client, "/api/jobs/", {"job_type": "BASIC", "name": "x", "groups": ["lab"]}, **bearer(user))
    assert response.status_code == 403 and "'lab'" in error_of(response)
    staff = post_json(client, "/api/jobs/", {"job_type": "BASIC", "name": "x", "groups": ["lab"]},
                      **bearer(people["staff"]))
    assert staff.status_code == 201 and staff.json()["groups"] == ["lab"]
    missing = post_json(client, "/api/jobs/", {"job_type": "BASIC", "name": "x", "groups": ["nope"]},
                        **bearer(people["staff"]))
    assert missing.status_code == 400 and "no group 'nope'" in error_of(missing)


@pytest.mark.django_db
def test_create_local_job_stores_its_settings(client, user) -> None:
    body = {"job_type": "LOCAL", "name": "fn", "function": "tests.local_functions:add", "args": [1, 2],
            "kwargs": {"scale": 3}, "environment": {"OMP_NUM_THREADS": "1"}, "timeout": 30}
    response = post_json(client, "/api/jobs/", body, **bearer(user))
    assert response.status_code == 201, response.content
    data = response.json()
    assert data["label"] == "api" and data["status"] == "Submitted"
    assert data["spec"] == {"command": None, "function": "tests.local_functions:add", "args": [1, 2],
                            "kwargs": {"scale": 3}, "environment": {"OMP_NUM_THREADS": "1"}, "timeout": 30.0,
                            "remote_input_files": []}


@pytest.mark.django_db
@pytest.mark.parametrize(("body", "status", "words"), [
    ({"name": "x"}, 400, "job_type is required"),
    ({"job_type": "NOPE", "name": "x"}, 400, "unknown job type 'NOPE'"),
    ({"job_type": "BASIC"}, 400, "name is required"),
    ({"job_type": "BASIC", "name": "  "}, 400, "name is required"),
    ({"job_type": "BASIC", "name": "x" * 1025}, 400, "longer than 1024"),
    ({"job_type": "BASIC", "name": "x" * 1010 + "{id}"}, 400, "longer than 1024 characters (with {id} expanded)"),
    ({"job_type": "BASIC", "name": "x", "colour": 1, "size": 2}, 400, "unknown field(s) 'colour', 'size'"),
    ({"job_type": "BASIC", "name": "x", "command": ["ls"]}, 400, "unknown field(s) 'command' for a BASIC job"),
    ({"job_type": "LOCAL", "name": "x", "workspace": "/etc"}, 400, "workspace cannot be set through the API"),
    ({"job_type": "LOCAL", "name": "x", "process_results_function": "os:getcwd"}, 400,
     "process_results_function cannot be set"),
    ({"job_type": "LOCAL", "name": "x", "command": "ls -l"}, 400, "command must be a list of strings"),
    ({"job_type": "LOCAL", "name": "x", "command": []}, 400, "command must be a list of strings (not empty)"),
    ({"job_type": "LOCAL", "name": "x", "command": [""]}, 400, "command: command must name a program"),
    ({"job_type": "LOCAL", "name": "x", "timeout": "soon"}, 400, "timeout must be a number above 0 or null"),
    ({"job_type": "LOCAL", "name": "x", "timeout": -1}, 400, "timeout must be a number above 0"),
    ({"job_type": "LOCAL", "name": "x", "environment": {"A": 1}}, 400, "environment must be a JSON object"),
    ({"job_type": "LOCAL", "name": "x", "args": "abc"}, 400, "args must be a list, not string"),
    ({"job_type": "LOCAL", "name": "x"}, 400, "the job cannot run, so it was not created: LOCAL job"),
    ({"job_type": "LOCAL", "name": "x", "command": ["ls"], "function": "os:getcwd"}, 400, "needs exactly one of"),
    ({"job_type": "LOCAL", "name": "x", "command": ["no-such-program-xyz"]}, 400, "was not found on PATH"),
    ({"job_type": "LOCAL", "name": "x", "function": "no.such.module:f"}, 400, "cannot import"),
    ({"job_type": "BASIC", "name": "x", "execute": "yes"}, 400, "execute must be true or false, not string"),
    ({"job_type": "BASIC", "name": "x", "app": "../etc"}, 400, "app must be an app label"),
    ({"job_type": "BASIC", "name": "x", "app": 7}, 400, "app must be a string, not integer"),
    ({"job_type": "BASIC", "name": "x", "extended_properties": [1]}, 400, "extended_properties must be a JSON object"),
    ({"job_type": "BASIC", "name": "x", "groups": "lab"}, 400, "groups must be a list"),
    ({"job_type": "BASIC", "name": "x", "groups": [1]}, 400, "groups must be a list of group names"),
    ({"job_type": "BASIC", "name": "a\u0000b"}, 400, "NUL"),
    ({"job_type": "BASIC", "name": "x", "extended_properties": {"k\u0000": 1}}, 400, "NUL"),
])
def test_create_refuses_bad_bodies_naming_the_field(client, user, body, status, words) -> None:
    response = post_json(client, "/api/jobs/", body, **bearer(user))
    assert response.status_code == status and words in error_of(response), response.content
    assert Job.objects.count() == 0  # nothing was created


@pytest.mark.django_db
@pytest.mark.parametrize(("payload", "content_type", "status", "words"), [
    (b"{bad json", "application/json", 400, "not valid JSON"),
    (b"  ", "application/json", 400, "body is empty"),
    (b"[1, 2]", "application/json", 400, "must be a JSON object, not array"),
    (b'{"job_type": "BASIC", "name": "x", "extended_properties": {"a": NaN}}', "application/json", 400, "NaN"),
    (b'{"job_type": "BASIC", "name": "\\ud800"}', "application/json", 400, "surrogate"),
    (b"\xff\xfe\x00", "application/json", 400, "not valid JSON"),
    (b"[" * 100_000 + b"]" * 100_000, "application/json", 400, "JSON"),
    (b"job_type=BASIC&name=x", "application/x-www-form-urlencoded", 415, "application/json"),
    (b"name=x", "text/plain", 415, "application/json"),
])
def test_create_refuses_bodies_that_are_not_a_json_object(client, user, payload, content_type, status, words) -> None:
    response = client.post("/api/jobs/", payload, content_type=content_type, **bearer(user))
    assert response.status_code == status and words in error_of(response), response.content


@pytest.mark.django_db
def test_create_refuses_a_body_over_djangos_limit(client, user, settings) -> None:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    body = {"job_type": "BASIC", "name": "x", "description": "d" * 2000}
    response = post_json(client, "/api/jobs/", body, **bearer(user))
    assert response.status_code == 413 and "too large" in error_of(response)


@pytest.mark.django_db
def test_an_engine_that_fails_the_submission_leaves_the_job_in_error(client, user, memory) -> None:
    memory.fail_submit = ConnectionRefusedError("schedd refused")
    response = post_json(client, "/api/jobs/", {"job_type": "MEMORY", "name": "m"}, **bearer(user))
    assert response.status_code == 201
    data = response.json()
    assert data["status"] == "Error" and "schedd refused" in data["status_message"]
    assert Job.objects.get(pk=data["id"]).status_code is Status.ERROR


@pytest.mark.django_db
def test_an_unavailable_engine_is_a_503_and_the_job_stays_pending(client, user, memory, monkeypatch) -> None:
    def unavailable(job: Any) -> None:
        raise EngineUnavailable(f"job {job.pk}: the memory engine is down.")

    monkeypatch.setattr(memory, "check", unavailable)
    response = post_json(client, "/api/jobs/", {"job_type": "MEMORY", "name": "m"}, **bearer(user))
    assert response.status_code == 503 and response["Retry-After"] == "60"
    job = Job.objects.get()
    assert error_of(response) == (
        f"job {job.pk}: the memory engine is down. To run it later: POST /api/jobs/{job.pk}/run/"
    )
    assert response.json()["job"]["status"] == "Pending" and response["Location"] == f"/api/jobs/{job.pk}/"
    assert job.status_code is Status.PENDING
    again = client.post(f"/api/jobs/{job.pk}/run/", **bearer(user))
    assert again.status_code == 503 and "engine is down" in error_of(again)
    stored = post_json(client, "/api/jobs/", {"job_type": "MEMORY", "name": "m2", "execute": False}, **bearer(user))
    assert stored.status_code == 201 and stored.json()["status"] == "Pending"
    monkeypatch.undo()
    assert client.post(f"/api/jobs/{job.pk}/run/", **bearer(user)).json()["status"] == "Submitted"


# -- one job: get, actions, delete --------------------------------------------------------------------


@pytest.mark.django_db
def test_actions_follow_the_status_table_with_409_messages(client, job_manager, user) -> None:
    job = job_manager.create_job(name="b", user=user, job_type="BASIC")
    job.save()
    headers = bearer(user)

    def act(action: str) -> Any:
        return client.post(f"/api/jobs/{job.pk}/{action}/", **headers)

    for action, words in (("stop", None), ("resume", "not Paused"), ("resubmit", "it has not run yet")):
        if words:
            response = act(action)
            assert response.status_code == 409 and words in error_of(response)
    assert act("run").json()["status"] == "Submitted"
    again = act("run")
    assert again.status_code == 409 and "was executed already" in error_of(again)
    assert act("pause").json()["status"] == "Paused"
    assert act("resume").json()["status"] == "Running"
    assert act("stop").json()["status"] == "Aborted"
    for action, words in (("stop", "nothing to stop"), ("pause", "Aborted is final"), ("run", "executed already")):
        response = act(action)
        assert response.status_code == 409 and words in error_of(response), action
    resubmitted = act("resubmit").json()
    assert resubmitted["status"] == "Submitted" and resubmitted["attempt"] == 2
    history = client.get(f"/api/jobs/{job.pk}/history/", **headers).json()["results"]
    assert [(e["from_status_code"], e["to_status_code"], e["attempt"]) for e in history] == [
        ("PEN", "SUB", 1), ("SUB", "PAS", 1), ("PAS", "RUN", 1), ("RUN", "ABT", 1), ("ABT", "PEN", 2),
        ("PEN", "SUB", 2),
    ]
    assert history[3] == {**history[3], "from_status": "Running", "to_status": "Aborted", "source": "stop",
                          "message": "stopped by a user"}


@pytest.mark.django_db
def test_delete_stops_an_active_job_first(client, job_manager, user, memory) -> None:
    job = job_manager.create_job(name="m", user=user, job_type="MEMORY")
    job.execute()
    memory.set(job, Status.RUNNING)
    response = client.delete(f"/api/jobs/{job.pk}/", **bearer(user))
    assert response.status_code == 204 and response.content == b""
    assert ("cancel", job.pk) in memory.calls and not Job.objects.filter(pk=job.pk).exists()
    assert client.get(f"/api/jobs/{job.pk}/", **bearer(user)).status_code == 404


@pytest.mark.django_db
def test_an_engine_that_cannot_stop_a_job_keeps_it(client, job_manager, user, memory, monkeypatch) -> None:
    job = job_manager.create_job(name="m", user=user, job_type="MEMORY")
    job.execute()

    def refuse(job: Any) -> None:
        raise ConnectionError("schedd is down")

    monkeypatch.setattr(memory, "cancel", refuse)
    for response in (client.delete(f"/api/jobs/{job.pk}/", **bearer(user)),
                     client.post(f"/api/jobs/{job.pk}/stop/", **bearer(user))):
        assert response.status_code == 502 and "schedd is down" in error_of(response)
    assert Job.objects.get(pk=job.pk).status_code is Status.SUBMITTED


@pytest.mark.django_db
def test_an_engine_without_pause_is_a_409(client, job_manager, user, monkeypatch, memory) -> None:
    job = job_manager.create_job(name="m", user=user, job_type="MEMORY")
    job.execute()

    def unsupported(job: Any) -> None:
        raise NotImplementedError

    monkeypatch.setattr(memory, "hold", unsupported)
    response = client.post(f"/api/jobs/{job.pk}/pause/", **bearer(user))
    assert response.status_code == 409 and "MEMORY jobs cannot pause: memory does not support it" in error_of(response)


@pytest.mark.django_db
@pytest.mark.parametrize("job_id", ["abc", "0", "-1", "1.5", "99999999999999999999999", "%C2%B2", "12345"])
def test_ids_that_are_not_jobs_are_json_404s(client, user, job_id) -> None:
    for path in (f"/api/jobs/{job_id}/", f"/api/jobs/{job_id}/logs/", f"/api/jobs/{job_id}/history/"):
        response = client.get(path, **bearer(user))
        assert response.status_code == 404 and "there is no job" in error_of(response)
    response = client.post(f"/api/jobs/{job_id}/stop/", **bearer(user))
    assert response.status_code == 404


@pytest.mark.django_db
def test_every_error_is_json(client, user, monkeypatch) -> None:
    headers = bearer(user)
    unknown = client.get("/api/nope/", **headers)
    assert unknown.status_code == 404 and "no API endpoint" in error_of(unknown)
    slash = client.post("/api/jobs", **headers)
    assert slash.status_code == 404 and "did you mean /api/jobs/ ?" in error_of(slash)
    for method in ("put", "patch", "head", "options"):
        response = getattr(client, method)("/api/jobs/", **headers)
        assert response.status_code == 405 and response["Allow"] == "GET, POST"
        if method != "head":
            assert "not allowed here" in error_of(response)
    anonymous = client.get("/api/jobs/")
    assert anonymous.status_code == 401 and "authentication required" in error_of(anonymous)



@pytest.mark.django_db
def test_an_unexpected_failure_is_a_json_500_without_details(client, job_manager, user, monkeypatch) -> None:
    job = job_manager.create_job(name="b", user=user, job_type="BASIC")
    job.save()

    def broken(job: Any) -> Any:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(endpoints, "job_json", broken)  # the endpoints' seam (web/api/endpoints.py)
    response = client.get(f"/api/jobs/{job.pk}/", **bearer(user))
    assert response.status_code == 500
    message = error_of(response)
    assert "internal error" in message and "secret" not in message and "RuntimeError" not in message


# -- a workflow's nodes -------------------------------------------------------------------------------


def _workflow_with_nodes(job_manager: Any, owner: Any, groups: Any = ()) -> Job:
    """A stored (not executed) workflow: prep -> run_a, with run_a's stdout/stderr in its own folder."""
    from pathlib import Path

    from jobtower.backends.condor_templates import node_folder

    wf = job_manager.create_job(name="flow", user=owner, job_type="CONDORWORKFLOW", groups=list(groups))
    wf.save()
    prep = wf.add_node(name="prep", attributes={"executable": "/bin/true"})
    wf.add_node(name="run_a", attributes={"executable": "/bin/true"}, parents=[prep], category="runs", retry=2)
    folder = Path(node_folder(wf.folder, wf.attempt, "run_a"))
    folder.mkdir(parents=True)
    (folder / "stdout.txt").write_text("<b>out</b> é\n")
    (folder / "stderr.txt").write_text("err\n")
    return wf


NODE_ENDPOINTS = ("/api/jobs/{id}/nodes/", "/api/jobs/{id}/nodes/run_a/logs/")
NODE_CELLS = [(path, index, role) for path in NODE_ENDPOINTS for index, role in enumerate(ROLES)]


@pytest.mark.django_db
@pytest.mark.parametrize("auth", ["token", "session"])
@pytest.mark.parametrize(("template", "index", "role"), NODE_CELLS,
                         ids=[f"{p.split('/')[-2]}-{r}" for p, _, r in NODE_CELLS])
def test_node_endpoints_follow_the_job_s_permissions(people, job_manager, template, index, role, auth) -> None:
    wf = _workflow_with_nodes(job_manager, people["owner"], [people["group"]])
    client, headers = _client_for(people[role], auth)
    path = template.format(id=wf.pk)
    response = client.get(path, **headers)
    expected = MATRIX[("detail", "GET")][index]  # what the same caller gets for the job itself
    assert response.status_code == expected == client.get(f"/api/jobs/{wf.pk}/", **headers).status_code
    if response.status_code == 200:
        assert response["Content-Type"] == "application/json"
    else:
        error_of(response)
    posted = client.post(path, **headers)
    assert posted.status_code == 405 and "GET" in posted["Allow"]
    error_of(posted)


@pytest.mark.django_db
def test_nodes_are_listed_as_stored_with_parents_throttles_and_run_times(client, job_manager, user) -> None:
    import datetime

    from django.utils import timezone

    from jobtower.models import WorkflowNode

    wf = _workflow_with_nodes(job_manager, user)
    started = timezone.now() - datetime.timedelta(seconds=30)
    WorkflowNode.objects.filter(workflow_id=wf.pk, name="prep").update(
        status=Status.ERROR.value, status_message="<script>x</script> exit 3", start_time=started,
        completion_time=started + datetime.timedelta(seconds=12),
    )
    response = client.get(f"/api/jobs/{wf.pk}/nodes/", **bearer(user))
    assert response.status_code == 200 and response["Content-Type"] == "application/json"
    assert b"&lt;" not in response.content  # user text is JSON data, as stored: never HTML
    prep, run_a = response.json()["results"]
    assert prep == {
        "name": "prep", "status": "Error", "status_code": "ERR", "status_message": "<script>x</script> exit 3",
        "parents": [], "category": "", "retry": None, "start_time": started.isoformat(),
        "completion_time": (started + datetime.timedelta(seconds=12)).isoformat(), "run_time": 12.0,
        "logs": f"/api/jobs/{wf.pk}/nodes/prep/logs/",
    }
    assert run_a["name"] == "run_a" and run_a["parents"] == ["prep"] and run_a["status"] == "Pending"
    assert run_a["category"] == "runs" and run_a["retry"] == 2
    assert run_a["start_time"] is None and run_a["run_time"] is None and run_a["completion_time"] is None


@pytest.mark.django_db
def test_node_logs_come_from_the_node_s_own_folder_only(client, job_manager, user, tmp_path) -> None:
    from pathlib import Path

    from jobtower.backends.condor_templates import node_folder

    wf = _workflow_with_nodes(job_manager, user)
    logs = f"/api/jobs/{wf.pk}/nodes/run_a/logs/"
    response = client.get(logs, **bearer(user))
    assert response.status_code == 200 and response["Content-Type"] == "application/json"
    assert response.json() == {"stdout": "<b>out</b> é\n", "stderr": "err\n"}
    assert client.get(f"{logs}?stream=stderr", **bearer(user)).json() == {"stderr": "err\n"}
    assert client.get(f"{logs}?stream=stdout&tail=4", **bearer(user)).json() == {"stdout": " é\n"}
    # A node that has not run yet has empty logs.
    assert client.get(f"/api/jobs/{wf.pk}/nodes/prep/logs/", **bearer(user)).json() == {"stdout": "", "stderr": ""}
    # A node job that leaves a link where its log was does not make the server read what it points at.
    secret = tmp_path / "secret.txt"
    secret.write_text("the server's secret")
    folder = Path(node_folder(wf.folder, wf.attempt, "run_a"))
    (folder / "stdout.txt").unlink()
    (folder / "stdout.txt").symlink_to(secret)
    (folder / "stderr.txt").unlink()
    (folder / "stderr.txt").symlink_to(folder / ".." / ".." / ".." / "job.txt")
    assert client.get(logs, **bearer(user)).json() == {"stdout": "", "stderr": ""}
    bad = client.get(f"{logs}?stream=log", **bearer(user))
    assert bad.status_code == 400 and "stream must be stdout or stderr" in error_of(bad)
    assert client.get(f"{logs}?tail=0", **bearer(user)).status_code == 400


@pytest.mark.django_db
@pytest.mark.parametrize("name", ["nope", "..", ".hidden", "a%20b", "%2E%2E", "prep%2F..%2F.."])
def test_an_unknown_node_is_a_json_404_naming_the_nodes(client, job_manager, user, name) -> None:
    wf = _workflow_with_nodes(job_manager, user)
    response = client.get(f"/api/jobs/{wf.pk}/nodes/{name}/logs/", **bearer(user))
    assert response.status_code == 404
    message = error_of(response)
    if "/" not in name and "%2F" not in name:
        assert "its nodes are: prep, run_a" in message


@pytest.mark.django_db
def test_a_job_that_is_not_a_workflow_has_no_nodes(client, job_manager, user) -> None:
    job = job_manager.create_job(name="b", user=user, job_type="BASIC")
    job.save()
    for path in (f"/api/jobs/{job.pk}/nodes/", f"/api/jobs/{job.pk}/nodes/prep/logs/"):
        response = client.get(path, **bearer(user))
        assert response.status_code == 404 and "is a BASIC job, not a workflow" in error_of(response)
    missing = client.get("/api/jobs/999999/nodes/", **bearer(user))
    assert missing.status_code == 404 and "there is no job 999999 that you may see" in error_of(missing)


# -- logs and real LOCAL jobs -------------------------------------------------------------------------


@pytest.mark.django_db
def test_logs_of_a_job_without_engine_are_empty(client, job_manager, user) -> None:
    job = job_manager.create_job(name="b", user=user, job_type="BASIC")
    job.save()
    assert client.get(f"/api/jobs/{job.pk}/logs/", **bearer(user)).json() == {}
    response = client.get(f"/api/jobs/{job.pk}/logs/?stream=stdout", **bearer(user))
    assert response.status_code == 404 and "has no log 'stdout'; it has: none" in error_of(response)


@pytest.mark.django_db
def test_logs_of_engines_without_files_are_tailed_too(client, job_manager, user, memory) -> None:
    job = job_manager.create_job(name="m", user=user, job_type="MEMORY")
    job.execute()
    logs = f"/api/jobs/{job.pk}/logs/"
    assert client.get(logs, **bearer(user)).json() == {"stdout": f"memory job {job.pk}\n", "stderr": ""}
    tail = client.get(f"{logs}?tail=3&stream=stdout", **bearer(user)).json()
    assert tail == {"stdout": f"memory job {job.pk}\n"[-3:]}


def _create(client: Client, user: Any, **body: Any) -> dict[str, Any]:
    response = post_json(client, "/api/jobs/", {"job_type": "LOCAL", **body}, **bearer(user))
    assert response.status_code == 201, response.content
    return response.json()


def test_a_local_command_runs_end_to_end(client, user, local_worker) -> None:
    script = "import sys\nfor i in range(20000): print(f'line {i:05d}')\nprint('done', file=sys.stderr)"
    created = _create(client, user, name="big {id}", command=[sys.executable, "-c", script])
    job_id = created["id"]
    done = ended(job_id)
    assert done.status_code is Status.COMPLETE, done.status_message
    data = client.get(f"/api/jobs/{job_id}/", **bearer(user)).json()
    assert data["status"] == "Complete" and data["run_time"] >= 0 and data["completion_time"] and data["start_time"]
    full_size = len("".join(f"line {i:05d}\n" for i in range(20000)))  # 220,000 bytes
    logs = client.get(f"/api/jobs/{job_id}/logs/", **bearer(user)).json()
    assert set(logs) == {"stdout", "stderr"} and logs["stderr"] == "done\n"
    assert len(logs["stdout"]) == api.DEFAULT_LOG_TAIL < full_size and logs["stdout"].endswith("line 19999\n")
    tail = client.get(f"/api/jobs/{job_id}/logs/?stream=stdout&tail=22", **bearer(user)).json()
    assert tail == {"stdout": "line 19998\nline 19999\n"}
    whole = client.get(f"/api/jobs/{job_id}/logs/?stream=stdout&tail={api.MAX_LOG_TAIL}", **bearer(user)).json()
    assert len(whole["stdout"]) == full_size
    for query, status in (("stream=engine", 404), ("tail=0", 400), (f"tail={api.MAX_LOG_TAIL + 1}", 400)):
        response = client.get(f"/api/jobs/{job_id}/logs/?{query}", **bearer(user))
        assert response.status_code == status, query
        error_of(response)
    history = client.get(f"/api/jobs/{job_id}/history/", **bearer(user)).json()["results"]
    assert [(e["from_status"], e["to_status"]) for e in history] == [
        ("Pending", "Submitted"), ("Submitted", "Running"), ("Running", "Complete")]


def test_a_stored_local_function_is_run_then_resubmitted(client, user, local_worker) -> None:
    created = _create(client, user, name="fn", function="tests.local_functions:add", args=[1, 2],
                      kwargs={"scale": 10}, execute=False)
    job_id = created["id"]
    assert created["status"] == "Pending"
    # A worker is running: by the time the answer is built it may have claimed (or even finished) the job.
    ran = client.post(f"/api/jobs/{job_id}/run/", **bearer(user)).json()
    assert ran["status"] in ("Submitted", "Running", "Complete")
    done = ended(job_id)
    assert done.status_code is Status.COMPLETE, done.status_message
    data = client.get(f"/api/jobs/{job_id}/", **bearer(user)).json()
    assert data["result"] == {"sum": 30, "cwd": str(done.folder)} and data["attempt"] == 1
    again = client.post(f"/api/jobs/{job_id}/resubmit/", **bearer(user)).json()
    assert again["attempt"] == 2 and again["status"] in ("Submitted", "Running", "Complete")
    assert ended(job_id).status_code is Status.COMPLETE
    history = client.get(f"/api/jobs/{job_id}/history/", **bearer(user)).json()["results"]
    assert [(e["attempt"], e["to_status_code"]) for e in history] == [
        (1, "SUB"), (1, "RUN"), (1, "COM"), (2, "PEN"), (2, "SUB"), (2, "RUN"), (2, "COM")]


def test_a_running_local_job_is_paused_resumed_stopped_and_deleted(client, user, local_worker) -> None:
    created = _create(client, user, name="ticks",
                      command=["sh", "-c", "i=0; while true; do i=$((i+1)); echo $i > ticks; sleep 0.05; done"])
    job_id = created["id"]
    status_is(job_id, Status.RUNNING)
    ticks = Job.objects.get(pk=job_id).folder / "ticks"
    wait_for(lambda: ticks.exists() and ticks.read_text().strip(), what="ticks")
    headers = bearer(user)
    assert client.post(f"/api/jobs/{job_id}/pause/", **headers).json()["status"] == "Paused"
    attempt = Job.objects.get(pk=job_id).folder / "attempts" / "1"
    # a state read from /proc, not "the ticks file did not change", which is true on its first read
    wait_for(lambda: group_frozen(attempt), 10, what="SIGSTOP to reach every process of the job")
    frozen = ticks.read_text()
    assert client.post(f"/api/jobs/{job_id}/resume/", **headers).json()["status"] == "Running"
    wait_for(lambda: ticks.read_text() != frozen, 5, what="ticks to go on")
    stopped = client.post(f"/api/jobs/{job_id}/stop/", **headers).json()
    assert stopped["status"] == "Aborted" and stopped["status_message"] == "stopped by a user"
    folder = Job.objects.get(pk=job_id).folder
    assert client.delete(f"/api/jobs/{job_id}/", **headers).status_code == 204
    assert not Job.objects.filter(pk=job_id).exists() and not folder.exists()


def test_deleting_a_running_local_job_stops_it(client, user, local_worker) -> None:
    created = _create(client, user, name="sleepy", command=["sleep", "300"])
    job_id = created["id"]
    status_is(job_id, Status.RUNNING)
    job = Job.objects.get(pk=job_id)
    pid_file = job.folder / "attempts" / "1" / "supervisor.pid"
    pid = int(wait_for(lambda: pid_file.exists() and pid_file.read_text().strip(), what="supervisor pid"))
    assert client.delete(f"/api/jobs/{job_id}/", **bearer(user)).status_code == 204
    wait_for(lambda: gone(pid), 10, what="the supervisor to end")
