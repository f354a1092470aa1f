"""Bad input on the web side: answered with a 4xx (or a safe value), never a 500 or invalid output."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.test import Client

from jobtower.gizmos import JobsTable
from jobtower.models import Job
from jobtower.statuses import Status
from jobtower.web import views
from jobtower.web.tokens import make_token

pytestmark = pytest.mark.django_db


def strict_json(response: Any) -> Any:
    """Parse a response as JSON the way browsers do: NaN and Infinity are not JSON."""

    def refuse(name: str) -> None:
        raise AssertionError(f"{name} in {response.content[:300]!r}")

    return json.loads(response.content, parse_constant=refuse)


def grant_run(user: Any) -> None:
    user.user_permissions.add(Permission.objects.get(codename="add_job", content_type__app_label="jobtower"))


# -- (10) bad input -----------------------------------------------------------------------------------


@pytest.mark.parametrize("progress", [float("inf"), float("-inf"), float("nan")])
def test_non_finite_progress_is_null_in_the_api_and_rows_stay_json(client, job_manager, user, set_status,
                                                                    progress) -> None:
    job = job_manager.create_job(name="p", user=user, job_type="BASIC")
    job.save()
    set_status(job, Status.RUNNING)
    Job.objects.filter(pk=job.pk).update(progress=progress)  # a FloatField takes them (SQLite stores NaN as NULL)
    auth = {"HTTP_AUTHORIZATION": f"Bearer {make_token(user)}"}
    assert strict_json(client.get("/api/jobs/", **auth))["results"][0]["progress"] is None
    assert strict_json(client.get(f"/api/jobs/{job.pk}/", **auth))["progress"] is None
    client.force_login(user)
    token = JobsTable(jobs=[], column_fields=("id", "progress")).config().sign()
    rows = strict_json(client.get("/jobs-table/rows/", {"config": token, "ids": str(job.pk)}))["rows"]
    assert list(rows) == [str(job.pk)]


def test_finite_replaces_only_non_finite_numbers() -> None:
    from jobtower.web.api import finite

    value = {"a": [1, 2.5, float("nan"), {"b": float("-inf")}], "c": "inf", "d": None, "e": True}
    assert finite(value) == {"a": [1, 2.5, None, {"b": None}], "c": "inf", "d": None, "e": True}


@pytest.mark.parametrize("ids", ["9223372036854775808", "1,99999999999999999999", "0", "-1", "1_0", "٣",
                                 "9" * 5000])
def test_table_rows_refuses_ids_outside_the_64_bit_range(client, user, ids) -> None:
    client.force_login(user)
    token = JobsTable(jobs=[]).config().sign()
    response = client.get("/jobs-table/rows/", {"config": token, "ids": ids})
    assert response.status_code == 400 and "ids must be" in response.json()["error"]


def test_table_rows_accepts_the_largest_id(client, user) -> None:
    client.force_login(user)
    token = JobsTable(jobs=[]).config().sign()
    response = client.get("/jobs-table/rows/", {"config": token, "ids": str(views.MAX_ID)})
    assert response.status_code == 200 and response.json() == {"rows": {}}


def test_a_nul_in_the_table_search_is_a_400(client, user) -> None:
    client.force_login(user)
    response = client.get("/?jt_q=%00")
    assert response.status_code == 400 and b"NUL" in response.content
    assert client.get("/?jt_q=ok").status_code == 200


@pytest.mark.parametrize("field", ["command", "name", "description"])
def test_a_nul_in_the_submit_form_is_a_form_error(client, user, field) -> None:
    grant_run(user)
    client.force_login(user)
    data = {"command": "true", "name": "n", "description": "d"}
    data[field] = data[field] + "\x00x"
    response = client.post("/submit/", data)
    assert response.status_code == 400 and f"{field} contains a NUL character" in response.content.decode()
    assert not Job.objects.exists()


def _job_with_folder(job_manager: Any, user: Any) -> tuple[Job, Path]:
    job = job_manager.create_job(name="files", user=user, job_type="BASIC")
    job.save()
    return job, job.ensure_folder()


def test_files_of_a_deeply_nested_folder_are_listed_without_recursion(client, job_manager, user) -> None:
    job, folder = _job_with_folder(job_manager, user)
    (folder / "top.txt").write_text("t")
    nested = folder
    for _ in range(1200):  # one level at a time: mkdir(parents=True) recurses too
        nested = nested / "d"
        nested.mkdir()
    try:
        client.force_login(user)
        response = client.get(f"/jobs/{job.pk}/")
        assert response.status_code == 200 and "top.txt" in response.content.decode()
        depth = views.MAX_FILES_DEPTH
        (folder / ("d/" * depth) / "deep.txt").write_text("x")
        (folder / ("d/" * (depth + 1)) / "deeper.txt").write_text("x")
        assert [f["path"] for f in views.job_files(job)] == ["d/" * depth + "deep.txt", "top.txt"]
    finally:
        for level in range(1200, 0, -1):  # shutil.rmtree recurses too: take it down from the bottom
            for name in os.listdir(folder / ("d/" * level)):
                os.unlink(folder / ("d/" * level) / name)
            os.rmdir(folder / ("d/" * level))


def test_files_listing_is_in_path_order_and_stops_at_the_cap(job_manager, user) -> None:
    job, folder = _job_with_folder(job_manager, user)
    for name in ("b.txt", "a/z.txt", "a/b/c.txt", "a.txt", "ab/x.txt"):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(name)
    os.symlink("/etc", folder / "link")
    os.symlink("/etc/hostname", folder / "host")
    assert [f["path"] for f in views.job_files(job)] == ["a/b/c.txt", "a/z.txt", "a.txt", "ab/x.txt", "b.txt"]
    assert views.job_files(job)[0]["size"] == len("a/b/c.txt")
    assert [f["path"] for f in views.job_files(job, limit=2)] == ["a/b/c.txt", "a/z.txt"]


def test_files_listing_stops_walking_at_the_cap(job_manager, user, monkeypatch) -> None:
    job, folder = _job_with_folder(job_manager, user)
    for index in range(100):
        sub = folder / f"part{index:03}"
        sub.mkdir()
        for number in range(100):
            (sub / f"f{number:02}").touch()
    scanned = []
    real_scandir = os.scandir

    def counting_scandir(path: Any) -> Any:
        scanned.append(path)
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", counting_scandir)
    listed = views.job_files(job)
    assert len(listed) == 500 and listed[0]["path"] == "part000/f00" and listed[-1]["path"] == "part004/f99"
    assert len(scanned) == 6, "only the job folder and the five folders listed are read"


def test_a_job_folder_replaced_by_a_symlink_is_never_followed(client, job_manager, user, tmp_path) -> None:
    job, folder = _job_with_folder(job_manager, user)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "secret.txt").write_text("not the job's")
    folder.rmdir()
    folder.symlink_to(elsewhere, target_is_directory=True)
    client.force_login(user)
    assert client.get(f"/jobs/{job.pk}/files/secret.txt").status_code == 404
    assert "secret.txt" not in client.get(f"/jobs/{job.pk}/").content.decode()


def test_a_nul_in_a_file_path_is_a_404(client, job_manager, user) -> None:
    job, folder = _job_with_folder(job_manager, user)
    (folder / "a").write_text("a")
    client.force_login(user)
    assert client.get(f"/jobs/{job.pk}/files/a%00b").status_code == 404


def test_the_site_logs_every_500(tmp_path: Path) -> None:
    import subprocess
    import sys

    import jobtower

    script = (
        "import django; django.setup()\n"
        "from django.test import Client\n"
        "print(Client(raise_request_exception=False).get('/update-job-status/1/').status_code)\n"
        "from django.conf import settings\n"
        "print('jobtower.web.middleware.DatabaseBusyMiddleware' in settings.MIDDLEWARE)\n"
    )
    env = {key: value for key, value in os.environ.items() if not key.startswith(("JOBTOWER_", "DJANGO_"))}
    env.update(
        DJANGO_SETTINGS_MODULE="jobtower.site.settings",
        JOBTOWER_HOME=str(tmp_path),  # a new SQLite database without tables: the view fails
        JOBTOWER_ALLOWED_HOSTS="testserver",
        PYTHONPATH=str(Path(jobtower.__file__).parents[1]),
    )
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.stdout.split() == ["500", "True"], done.stderr[-2000:]
    assert "Internal Server Error: /update-job-status/1/" in done.stderr and "no such table" in done.stderr


# -- (11) the status callback does not reveal which ids exist ---------------------------------------


@pytest.mark.parametrize("caller", ["anonymous", "forged token", "token of another id", "another user"])
def test_callback_answers_unauthorized_callers_alike_for_existing_and_missing_jobs(
    client, job_manager, user, other_user, caller
) -> None:
    from jobtower import manager

    job = job_manager.create_job(name="cb", user=user, job_type="BASIC")
    job.save()
    missing = job.pk + 1000
    query = {"anonymous": "", "forged token": "?token=forged", "another user": "",
             "token of another id": f"?token={manager.callback_token(job.pk + 2000)}"}[caller]
    if caller == "another user":
        client.force_login(other_user)
    existing = client.get(f"/update-job-status/{job.pk}/{query}")
    absent = client.get(f"/update-job-status/{missing}/{query}")
    assert existing.status_code == absent.status_code == 403
    assert existing.content == absent.content and existing["Content-Type"] == absent["Content-Type"]


def test_callback_tells_staff_and_token_holders_that_a_job_is_gone(client, django_user_model) -> None:
    from jobtower import manager

    assert client.get(f"/update-job-status/9999/?token={manager.callback_token(9999)}").status_code == 404
    client.force_login(django_user_model.objects.create_user("staff", is_staff=True))
    assert client.get("/update-job-status/9999/").status_code == 404


# -- (12) a database locked for longer than the busy timeout ------------------------------------------


@contextlib.contextmanager
def jobs_table_locked() -> Any:
    """Hold the job table's lock from another connection; this one gives up waiting after 0.1 s."""
    from django.db import connection

    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute("PRAGMA busy_timeout = 100")
        else:
            cursor.execute("SET lock_timeout = '100ms'")
    other = connection.copy()  # a second connection to the same database
    other.connect()
    other.set_autocommit(False)
    with other.cursor() as cursor:
        if other.vendor == "sqlite":
            cursor.execute("BEGIN EXCLUSIVE")  # in WAL mode: nobody else may write
        else:
            cursor.execute('LOCK TABLE "jobtower_job" IN ACCESS EXCLUSIVE MODE')
    try:
        yield
    finally:
        other.rollback()
        other.close()
        connection.close()  # the next query reconnects with the configured timeouts


@pytest.mark.django_db(transaction=True)
def test_a_locked_database_is_a_503_with_retry_after_in_the_api(client, user) -> None:
    auth = {"HTTP_AUTHORIZATION": f"Bearer {make_token(user)}"}
    body = json.dumps({"job_type": "BASIC", "name": "x", "execute": False})
    with jobs_table_locked():
        response = client.post("/api/jobs/", body, content_type="application/json", **auth)
    assert response.status_code == 503 and response["Retry-After"] == "5"
    assert "database is busy" in response.json()["error"]
    assert client.post("/api/jobs/", body, content_type="application/json", **auth).status_code == 201


@pytest.mark.django_db(transaction=True)
def test_a_locked_database_is_a_503_with_retry_after_in_the_site(user) -> None:
    grant_run(user)
    client = Client(raise_request_exception=False)
    client.force_login(user)
    with jobs_table_locked():
        response = client.post("/submit/", {"command": "true"})
    assert response.status_code == 503 and response["Retry-After"] == "5"
    assert "database is busy" in response.json()["error"]
    assert not Job.objects.exists()


def test_other_database_errors_stay_500s() -> None:
    from django.db import OperationalError

    from jobtower.web.middleware import database_busy

    assert database_busy(OperationalError("database is locked"))
    assert not database_busy(OperationalError("no such table: jobtower_job"))
    assert not database_busy(ValueError("database is locked"))


# -- (9) the API creates jobs only under apps the caller may use ---------------------------------------


def _create(client: Client, user: Any, app: str) -> Any:
    body = json.dumps({"job_type": "BASIC", "name": "x", "app": app, "execute": False})
    auth = {"HTTP_AUTHORIZATION": f"Bearer {make_token(user)}"}
    return client.post("/api/jobs/", body, content_type="application/json", **auth)


def test_the_api_refuses_labels_of_no_installed_app(client, user) -> None:
    response = _create(client, user, "no_such_app")
    assert response.status_code == 400
    assert response.json()["error"] == "there is no app 'no_such_app'; you may create jobs for: api, jobtower_site"
    assert not Job.objects.exists()


def test_the_api_refuses_apps_the_caller_may_not_use(client, user, job_manager) -> None:
    response = _create(client, user, "other_app")
    assert response.status_code == 403 and "may not create jobs for the app 'other_app'" in response.json()["error"]
    assert not Job.objects.exists()
    from tests.conftest import OtherApp

    assert not OtherApp.get_job_manager().list_jobs().exists()


def test_the_api_lets_users_use_apps_they_hold_a_permission_of(client, user, other_user, django_user_model) -> None:
    from tests.conftest import OtherApp
    from tests.test_api import allow_app

    for label in ("api", "jobtower_site"):  # open to everyone
        assert _create(client, user, label).status_code == 201
    allow_app(user, "other_app")
    assert _create(client, user, "other_app").status_code == 201
    assert _create(client, other_user, "other_app").status_code == 403
    staff = django_user_model.objects.create_user("staff", is_staff=True)
    assert _create(client, staff, "other_app").status_code == 201
    assert sorted(job.user.username for job in OtherApp.get_job_manager().list_jobs()) == ["alice", "staff"]


# -- (7) the admin: settings that decide what runs need "Can add job"; every edit is in the history --


def _staff(django_user_model: Any, name: str, *codenames: str) -> Any:
    staff = django_user_model.objects.create_user(name, is_staff=True)
    staff.user_permissions.add(*Permission.objects.filter(content_type__app_label="jobtower", codename__in=codenames))
    return staff


def _admin_form(job: Job, **changes: Any) -> dict[str, Any]:
    data = {"name": job.name, "description": job.description, "workspace": job.workspace,
            "extended_properties": json.dumps(job.extended_properties), "spec": json.dumps(job.spec),
            "_process_results_function": job._process_results_function,
            "initial-spec": json.dumps(job.spec), "initial-extended_properties": json.dumps(job.extended_properties),
            "events-TOTAL_FORMS": "0", "events-INITIAL_FORMS": "0", "_save": "Save"}
    data.update(changes)
    return data


def _local_job(job_manager: Any, user: Any) -> Job:
    job = job_manager.create_job(name="adm", user=user, job_type="LOCAL", command=["true"])
    job.save()
    return job


def test_admin_staff_who_may_only_change_jobs_cannot_change_what_runs(client, django_user_model, job_manager,
                                                                        user) -> None:
    job = _local_job(job_manager, user)
    client.force_login(_staff(django_user_model, "carol", "view_job", "change_job"))
    url = f"/admin/jobtower/job/{job.pk}/change/"
    page = client.get(url).content.decode()
    assert 'name="name"' in page and 'name="spec"' not in page and 'name="workspace"' not in page
    assert 'name="_process_results_function"' not in page
    response = client.post(url, _admin_form(job, name="renamed", spec=json.dumps({"command": ["rm", "-rf", "/"]}),
                                            workspace="/tmp", _process_results_function="os:getcwd"))
    assert response.status_code == 302
    saved = Job.objects.get(pk=job.pk)
    assert saved.name == "renamed" and saved.command == ["true"] and saved.workspace == job.workspace
    assert saved._process_results_function == ""
    assert not job.events.filter(source="admin").exists()


def test_admin_edits_of_what_runs_are_recorded_in_the_history(client, django_user_model, job_manager, user) -> None:
    job = _local_job(job_manager, user)
    client.force_login(_staff(django_user_model, "dave", "view_job", "change_job", "add_job"))
    new_workspace = str(Path(job.workspace) / "elsewhere")
    response = client.post(f"/admin/jobtower/job/{job.pk}/change/", _admin_form(
        job, spec=json.dumps({"command": ["echo", "hi"]}), workspace=new_workspace,
        _process_results_function="tests.results_functions:record"))
    assert response.status_code == 302, response.content.decode()[-3000:]
    saved = Job.objects.get(pk=job.pk)
    assert saved.command == ["echo", "hi"] and saved.workspace == new_workspace
    event = saved.events.get(source="admin")
    assert event.from_status == event.to_status == saved._status == Status.PENDING.value
    assert event.attempt == saved.attempt
    assert event.message == "dave changed spec, workspace, process_results_function in the admin"
    client.post(f"/admin/jobtower/job/{job.pk}/change/", _admin_form(saved, name="only the name"))
    assert list(saved.events.filter(source="admin").values_list("message", flat=True)) == [event.message]
    # The browser sends the "initial-" values back: claiming the new spec as initial hides nothing.
    hidden = {"command": ["echo", "hidden"]}
    client.post(f"/admin/jobtower/job/{job.pk}/change/",
                _admin_form(saved, spec=json.dumps(hidden), **{"initial-spec": json.dumps(hidden)}))
    assert Job.objects.get(pk=job.pk).command == ["echo", "hidden"]
    assert saved.events.filter(source="admin").last().message == "dave changed spec in the admin"


@pytest.mark.parametrize("where", ["/etc", "..", "relative/path", "link"])
def test_admin_never_sets_a_workspace_outside_the_workspaces_root(client, django_user_model, job_manager, user,
                                                                  where, tmp_path) -> None:
    from jobtower import conf

    job = _local_job(job_manager, user)
    root = conf.workspaces_root()
    root.mkdir(parents=True, exist_ok=True)
    os.symlink(tmp_path, root / "link")
    workspace = {"..": str(root / ".." / "outside"), "link": str(root / "link")}.get(where, where)
    client.force_login(_staff(django_user_model, "erin", "view_job", "change_job", "add_job"))
    response = client.post(f"/admin/jobtower/job/{job.pk}/change/", _admin_form(job, workspace=workspace))
    assert response.status_code == 200 and "the workspace must be a folder inside" in response.content.decode()
    assert Job.objects.get(pk=job.pk).workspace == job.workspace


# -- (12) the standalone site behind a TLS reverse proxy, configured from the environment ---------------

_PROXY_PROBE = (
    "import django; django.setup()\n"
    "from django.core.management import call_command\n"
    "call_command('migrate', verbosity=0)\n"
    "from django.test import Client\n"
    "client = Client(enforce_csrf_checks=True, HTTP_HOST='jobs.example.org', HTTP_X_FORWARDED_PROTO='https')\n"
    "page = client.get('/accounts/login/')\n"
    "token = page.cookies['csrftoken']\n"
    "posted = client.post('/accounts/login/', {'username': 'x', 'password': 'y', 'csrfmiddlewaretoken': token.value},"
    " HTTP_ORIGIN='https://jobs.example.org', HTTP_REFERER='https://jobs.example.org/accounts/login/')\n"
    "print(posted.status_code, bool(token['secure']), page.wsgi_request.is_secure())\n"
)


def _site_probe(tmp_path: Path, **variables: str) -> Any:
    import subprocess
    import sys

    import jobtower

    env = {key: value for key, value in os.environ.items() if not key.startswith(("JOBTOWER_", "DJANGO_"))}
    env.update(DJANGO_SETTINGS_MODULE="jobtower.site.settings", JOBTOWER_HOME=str(tmp_path),
               JOBTOWER_ALLOWED_HOSTS="jobs.example.org", PYTHONPATH=str(Path(jobtower.__file__).parents[1]),
               **variables)
    return subprocess.run([sys.executable, "-c", _PROXY_PROBE], env=env, capture_output=True, text=True,
                          timeout=120, check=False)


def test_standalone_site_behind_a_tls_proxy_accepts_posts_from_its_public_origin(tmp_path: Path) -> None:
    behind = _site_probe(tmp_path / "a", JOBTOWER_CSRF_TRUSTED_ORIGINS="https://jobs.example.org",
                         JOBTOWER_BEHIND_TLS_PROXY="1")
    # 200: the login form answered (wrong password), not a CSRF refusal; the cookie is HTTPS-only
    assert behind.stdout.split() == ["200", "True", "True"], behind.stderr[-2000:]
    plain = _site_probe(tmp_path / "b")
    # without the two variables the same request over the proxy is refused as cross-site (Django's default)
    assert plain.stdout.split() == ["403", "False", "False"], plain.stderr[-2000:]


def test_standalone_site_refuses_an_origin_without_scheme_by_name(tmp_path: Path) -> None:
    done = _site_probe(tmp_path, JOBTOWER_CSRF_TRUSTED_ORIGINS="jobs.example.org")
    assert done.returncode != 0
    assert "JOBTOWER_CSRF_TRUSTED_ORIGINS: 'jobs.example.org' has no scheme" in done.stderr
    assert "https://jobs.example.org" in done.stderr
    bad = _site_probe(tmp_path, JOBTOWER_BEHIND_TLS_PROXY="maybe")
    assert bad.returncode != 0 and "JOBTOWER_BEHIND_TLS_PROXY='maybe'" in bad.stderr
