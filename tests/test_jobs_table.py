"""The Jobs Table and the job pages over HTTP: rendering, paging, live rows, actions, permissions."""

from __future__ import annotations

import os
import re

import pytest
from django.contrib.auth.models import Group
from django.template import Context, Template
from django.test import Client, RequestFactory

from jobtower.gizmos import JobsTable
from jobtower.models import Job
from jobtower.statuses import Status
from jobtower.web.actions import CustomAction

pytestmark = pytest.mark.django_db


def render(table: JobsTable, user, query: str = "") -> str:  # noqa: ANN001
    request = RequestFactory().get("/page/" + query)
    request.user = user
    return str(table.render(request))


def ids_in(html: str) -> list[int]:
    return [int(i) for i in re.findall(r'data-job-id="(\d+)"', html)]


def make(job_manager, user, n: int, **kwargs) -> list[Job]:  # noqa: ANN001
    jobs = []
    for i in range(n):
        job = job_manager.create_job(name=kwargs.pop("name", f"job {i}"), user=user, job_type="BASIC", **kwargs)
        job.save()
        jobs.append(job)
    return jobs


def test_spec_sample_renders_with_template_tag(job_manager, user) -> None:
    job = job_manager.create_job(name="<b>bold</b>", user=user, job_type="BASIC", description="d1",
                                 extended_properties={"model": {"years": 30}})
    job.save()
    options = JobsTable(jobs=job_manager.list_jobs(user), column_fields=("id", "description", "run_time",
                        ("Years", "extended_properties.model.years")), hover=True, striped=False,
                        bordered=False, condensed=False)
    request = RequestFactory().get("/")
    request.user = user
    html = Template("{% load jobtower %}{% jobs_table opts %}").render(Context({"opts": options, "request": request}))
    assert ids_in(html) == [job.pk]
    assert "<b>bold</b>" not in html
    assert '<td class="col-extended_propertiesmodelyears">30</td>' in html
    assert "jobtower-table hover" in html and "Pending" in html
    assert 'data-action="run"' not in html and 'data-jt-action="run"' in html  # run is a POST button


def test_pages_sort_filter_and_search_happen_in_the_database(job_manager, user) -> None:
    jobs = make(job_manager, user, 120)
    done = jobs[7]
    done.execute()
    done.status = "Complete"
    special = job_manager.create_job(name="needle in haystack", user=user, job_type="BASIC")
    special.save()
    table = JobsTable(jobs=job_manager.list_jobs(user), page_size=50)
    first = ids_in(render(table, user))
    assert first == [j.pk for j in jobs[:50]]
    second = render(table, user, "?jt_page=2")
    assert ids_in(second) == [j.pk for j in jobs[50:100]] and 'rel="prev"' in second and 'rel="next"' in second
    last = render(table, user, "?jt_page=3")
    assert ids_in(last)[-1] == special.pk and 'rel="next"' not in last
    assert ids_in(render(table, user, "?jt_sort=-id"))[0] == special.pk
    assert ids_in(render(table, user, "?jt_status=COM")) == [done.pk]
    assert ids_in(render(table, user, "?jt_q=needle")) == [special.pk]
    assert ids_in(render(table, user, "?jt_sort=__class__&jt_page=x")) == first  # bad input: defaults
    assert ids_in(render(table, user, "?jt_page=" + "9" * 40)) == []  # a huge page is empty, not a 500
    assert ids_in(render(JobsTable(jobs=job_manager.list_jobs(user), reverse_sort=True), user))[0] == special.pk


def test_table_options_are_checked(job_manager, user) -> None:
    with pytest.raises(ValueError, match="unknown Jobs Table action"):
        JobsTable(jobs=[], actions=["run", "__delete__"])
    with pytest.raises(ValueError, match="monitor_url"):
        JobsTable(jobs=[], actions=["monitor"])
    with pytest.raises(ValueError, match="exactly one of"):
        CustomAction(name="x", label="X")


def test_live_rows_endpoint_serves_visible_rows_from_the_database(client, job_manager, user, other_user,
                                                                  memory) -> None:
    mine = job_manager.create_job(name="m", user=user, job_type="MEMORY")
    mine.execute()
    theirs = job_manager.create_job(name="t", user=other_user, job_type="MEMORY")
    theirs.execute()
    token = JobsTable(jobs=[]).config().sign()
    memory.set(mine, Status.RUNNING)  # the engine knows more, but the endpoint never asks it
    memory.calls.clear()
    client.force_login(user)
    response = client.get("/jobs-table/rows/", {"config": token, "ids": f"{mine.pk},{theirs.pk}"})
    rows = response.json()["rows"]
    assert list(rows) == [str(mine.pk)] and "Submitted" in rows[str(mine.pk)]
    assert memory.calls == []
    assert client.get("/jobs-table/rows/", {"config": token + "x", "ids": "1"}).status_code == 400
    assert client.get("/jobs-table/rows/", {"config": token, "ids": "1;DROP"}).status_code == 400


def test_actions_need_post_csrf_configuration_and_the_right_status(job_manager, user) -> None:
    job = job_manager.create_job(name="a", user=user, job_type="BASIC")
    job.save()
    only_run = JobsTable(jobs=[], actions=["run"]).config().sign()
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    url = f"/jobs-table/action/{job.pk}/run/"
    assert client.get(url).status_code == 405
    assert client.post(url, {"config": only_run}).status_code == 403  # no CSRF token
    client.get("/")  # sets the csrftoken cookie
    csrf = client.cookies["csrftoken"].value

    def post(u, token):
        return client.post(u, {"config": token, "csrfmiddlewaretoken": csrf}, HTTP_ACCEPT="application/json")

    assert post(f"/jobs-table/action/{job.pk}/delete/", only_run).status_code == 400  # not configured
    assert post(f"/jobs-table/action/{job.pk}/__init__/", only_run).status_code == 400
    response = post(url, only_run)
    assert response.status_code == 200 and "Submitted" in response.json()["row"]
    assert Job.objects.get(pk=job.pk).status_code is Status.SUBMITTED
    again = post(url, only_run)
    assert again.status_code == 409 and "Submitted" in again.json()["error"]


def test_delete_action_removes_the_row(client, job_manager, user) -> None:
    job = make(job_manager, user, 1)[0]
    token = JobsTable(jobs=[]).config().sign()
    client.force_login(user)
    response = client.post(f"/jobs-table/action/{job.pk}/delete/", {"config": token}, HTTP_ACCEPT="application/json")
    assert response.json() == {"ok": True, "row": None}
    assert not Job.objects.filter(pk=job.pk).exists()
    redirect = client.post(f"/jobs-table/action/{make(job_manager, user, 1)[0].pk}/delete/",
                           {"config": token, "next": "https://evil.example/"})
    assert redirect.status_code == 302 and redirect["Location"] == "/"


def test_custom_actions_by_url_name_and_by_function(client, job_manager, user) -> None:
    job = make(job_manager, user, 1, description="before")[0]
    table = JobsTable(jobs=job_manager.list_jobs(user), actions=[], custom_actions=[
        CustomAction(name="details", label="Details", url_name="jobtower:job-detail"),
        CustomAction(name="touch", label="Touch", function="tests.table_actions:touch"),
    ])
    html = render(table, user)
    assert f'href="/jobs/{job.pk}/"' in html and 'data-jt-action="touch"' in html
    client.force_login(user)
    token = table.config().sign()
    assert client.post(f"/jobs-table/action/{job.pk}/touch/", {"config": token}).status_code == 302
    assert Job.objects.get(pk=job.pk).description == "touched"


OWNER, MEMBER, OTHER, STAFF, ANON = "owner", "member", "other", "staff", "anonymous"
OUTSIDER = "outsider"  # a member of a group the job is NOT shared with: must be treated as a stranger
WHO = [OWNER, MEMBER, OTHER, STAFF, ANON, OUTSIDER]
SEE = {OWNER, MEMBER, STAFF}

# endpoint -> method -> expected code per caller (owner, member, other, staff, anonymous); the outsider's
# code is the stranger's (OTHER), added below so the two can never drift apart.
MATRIX = {
    "rows": {"GET": (200, 200, 200, 200, 401), "POST": (405, 405, 405, 405, 405)},
    "action": {"GET": (405, 405, 405, 405, 405), "POST": (200, 200, 404, 200, 401)},
    "detail": {"GET": (200, 200, 404, 200, 302), "POST": (405, 405, 405, 405, 302)},
    "logs": {"GET": (200, 200, 404, 200, 302), "POST": (405, 405, 405, 405, 302)},
    "chunk": {"GET": (200, 200, 404, 200, 401), "POST": (405, 405, 405, 405, 405)},
    "file": {"GET": (200, 200, 404, 200, 302), "POST": (405, 405, 405, 405, 302)},
    "home": {"GET": (200, 200, 200, 200, 302), "POST": (405, 405, 405, 405, 302)},
    # Running a program needs jobtower.add_job, which none of these callers has (see test_worker_monitor).
    "submit": {"GET": (405, 405, 405, 405, 302), "POST": (403, 403, 403, 403, 302)},
}
for _methods in MATRIX.values():
    for _method, _codes in _methods.items():
        _methods[_method] = (*_codes, _codes[WHO.index(OTHER)])


@pytest.mark.parametrize("endpoint", sorted(MATRIX))
@pytest.mark.parametrize("method", ["GET", "POST"])
@pytest.mark.parametrize("who", WHO)
def test_permission_matrix(endpoint, method, who, job_manager, user, django_user_model, memory) -> None:
    team = Group.objects.create(name="team")
    member = django_user_model.objects.create_user("member")
    member.groups.add(team)
    other = django_user_model.objects.create_user("other")
    staff = django_user_model.objects.create_user("staff", is_staff=True)
    outsider = django_user_model.objects.create_user("outsider")
    outsider.groups.add(Group.objects.create(name="elsewhere"))
    # the outsider's group has jobs of its own, so a query that mixes groups up has something to leak
    theirs = job_manager.create_job(name="elsewhere's", user=other, job_type="BASIC", groups=[outsider.groups.get()])
    theirs.save()
    job = job_manager.create_job(name="shared", user=user, job_type="MEMORY", groups=[team])
    job.save()
    job.ensure_folder().joinpath("out.txt").write_text("data")
    token = JobsTable(jobs=[]).config().sign()
    client = Client()
    caller = {OWNER: user, MEMBER: member, OTHER: other, STAFF: staff, ANON: None, OUTSIDER: outsider}[who]
    if caller is not None:
        client.force_login(caller)
    url, data = {
        "rows": ("/jobs-table/rows/", {"config": token, "ids": str(job.pk)}),
        "action": (f"/jobs-table/action/{job.pk}/run/", {"config": token}),
        "detail": (f"/jobs/{job.pk}/", {}),
        "logs": (f"/jobs/{job.pk}/logs/", {}),
        "chunk": (f"/jobs/{job.pk}/logs.json", {"stream": "stdout"}),
        "file": (f"/jobs/{job.pk}/files/out.txt", {}),
        "home": ("/", {}),
        "submit": ("/submit/", {"command": "true"}),
    }[endpoint]
    if endpoint == "chunk":
        job.execute()
    response = client.get(url, data) if method == "GET" else client.post(url, data, HTTP_ACCEPT="application/json")
    expected = MATRIX[endpoint][method][WHO.index(who)]
    assert response.status_code == expected, (endpoint, method, who, response.status_code)
    if endpoint == "rows" and method == "GET" and expected == 200:
        assert (str(job.pk) in response.json()["rows"]) == (who in SEE)
    if endpoint == "rows" and method == "GET" and expected == 200:  # the live rows of the other group's job
        again = client.get(url, {"config": token, "ids": str(theirs.pk)}).json()["rows"]
        assert (str(theirs.pk) in again) == (who in (STAFF, OUTSIDER, OTHER)), (who, again)
    if endpoint == "home" and method == "GET" and expected == 200:  # the site's table: one's own jobs only
        shown = ids_in(response.content.decode())
        assert (job.pk in shown, theirs.pk in shown) == (who == OWNER, who == OTHER), (who, shown)
    if endpoint == "action" and method == "POST":
        assert (Job.objects.get(pk=job.pk).status_code is Status.SUBMITTED) == (expected == 200)


def test_logs_are_escaped_and_read_in_pieces(client, job_manager, user, tmp_path) -> None:
    from jobtower.web import views

    job = job_manager.create_job(name="log", user=user, job_type="LOCAL", command=["true"])
    job.execute()
    stdout = job.ensure_folder() / "attempts" / "1" / "stdout.txt"
    stdout.parent.mkdir(parents=True, exist_ok=True)
    body = "<script>alert('x')</script>\n" + "x" * (views.LOG_TAIL * 2)
    stdout.write_text(body)
    client.force_login(user)
    page = client.get(f"/jobs/{job.pk}/logs/").content.decode()
    assert "alert(" not in page  # the page holds no log text: the browser fetches it as JSON
    tail = client.get(f"/jobs/{job.pk}/logs.json", {"stream": "stdout"}).json()
    assert len(tail["text"]) == views.LOG_TAIL and tail["skipped"] == len(body) - views.LOG_TAIL
    head = client.get(f"/jobs/{job.pk}/logs.json", {"stream": "stdout", "offset": 0}).json()
    assert head["text"].startswith("<script>") and head["offset"] == len(body)
    assert client.get(f"/jobs/{job.pk}/logs.json", {"stream": "../../etc/passwd"}).status_code == 404


def test_status_message_with_markup_is_shown_as_text(job_manager, user) -> None:
    job = make(job_manager, user, 1)[0]
    job.execute()
    job.update_status("Error", message="<img src=x onerror=alert(1)>")
    html = render(JobsTable(jobs=job_manager.list_jobs(user)), user)
    assert "<img src=x" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html


SECRET = b"not yours: a neighbour of the job folder"
#: Paths that leave the job folder; each one names a file that EXISTS there, so a 404 proves a refusal.
ESCAPES = [
    "../secret.txt",  # the workspace, beside the job folder
    "..%2fsecret.txt", "%2e%2e%2fsecret.txt", "%2E%2E/secret.txt",  # encoded once (decoded by the server)
    "%252e%252e%252fsecret.txt", "..%252fsecret.txt",  # encoded twice: decoding again would be a bug
    "sub/../../secret.txt", "./../secret.txt", "sub/..%2f..%2fsecret.txt",
    "../job_{sibling}/sibling.txt",  # another job's folder in the same workspace
    "link-out.txt",  # a symlink inside the folder pointing at the neighbour
    "up/secret.txt",  # a symlinked folder pointing at the workspace
    "{absolute}",  # the neighbour's absolute path
]


@pytest.mark.parametrize("path", ESCAPES)
def test_files_never_leave_the_job_folder(client, job_manager, user, other_user, path) -> None:
    job = make(job_manager, user, 1)[0]
    folder = job.ensure_folder()
    (folder / "sub").mkdir()
    (folder / "inside.txt").write_bytes(SECRET)
    neighbour = folder.parent / "secret.txt"
    neighbour.write_bytes(SECRET)
    sibling = job_manager.create_job(name="sibling", user=other_user, job_type="BASIC", workspace=str(folder.parent))
    sibling.save()
    sibling.ensure_folder().joinpath("sibling.txt").write_bytes(SECRET)
    os.symlink(neighbour, folder / "link-out.txt")
    os.symlink(folder.parent, folder / "up")
    client.force_login(user)
    # the route works: the same bytes inside the folder are served
    inside = client.get(f"/jobs/{job.pk}/files/inside.txt")
    assert inside.status_code == 200 and b"".join(inside.streaming_content) == SECRET
    assert neighbour.exists() and sibling.folder.joinpath("sibling.txt").exists()
    url_path = path.format(sibling=sibling.pk, absolute=str(neighbour).lstrip("/"))
    response = client.get(f"/jobs/{job.pk}/files/" + ("/" if path == "{absolute}" else "") + url_path)
    assert response.status_code == 404, (path, response.status_code)
    assert SECRET not in b"".join(getattr(response, "streaming_content", [response.content]))


def test_job_page_shows_history_files_and_results_link(client, job_manager, user) -> None:
    job = make(job_manager, user, 1)[0]
    job.execute()
    job.status = "Complete"
    job.ensure_folder().joinpath("result.csv").write_text("a,b\n")
    client.force_login(user)
    page = client.get(f"/jobs/{job.pk}/", {"results_url": "jobtower:job-logs"}).content.decode()
    assert "Pending" in page and "Complete" in page and "result.csv" in page
    assert f'href="/jobs/{job.pk}/logs/"' in page
    download = client.get(f"/jobs/{job.pk}/files/result.csv")
    assert download.status_code == 200 and b"".join(download.streaming_content) == b"a,b\n"


def test_site_submit_form_runs_no_shell_and_reports_errors(client, user) -> None:
    from django.contrib.auth.models import Permission

    user.user_permissions.add(Permission.objects.get(codename="add_job", content_type__app_label="jobtower"))
    client.force_login(user)
    response = client.post("/submit/", {"command": "echo 'a b' ; rm -rf /", "timeout": "30"})
    assert response.status_code == 302
    job = Job.objects.get(user=user)
    assert job.command == ["echo", "a b", ";", "rm", "-rf", "/"] and job.timeout == 30.0
    bad = client.post("/submit/", {"command": "no-such-program-abc"})
    assert bad.status_code == 400 and "was not found on PATH" in bad.content.decode()
    unbalanced = client.post("/submit/", {"command": "echo 'oops"})
    assert unbalanced.status_code == 400 and "cannot be split" in unbalanced.content.decode()


def test_infinite_progress_is_not_drawn_and_a_nul_in_the_search_finds_nothing_harmful(job_manager, user) -> None:
    (job,) = make(job_manager, user, 1, name="inf")
    Job.objects.filter(pk=job.pk).update(_status=Status.RUNNING.value, progress=float("inf"))
    html = render(JobsTable(jobs=Job.objects.all()), user, "?jt_q=in%00f")
    assert ids_in(html) == [job.pk]  # the NUL is dropped: "inf" is searched for, on every database
    assert "inf%" not in html and "<progress" not in html
    client = Client()
    client.force_login(user)
    page = client.get(f"/jobs/{job.pk}/")
    assert page.status_code == 200 and b"<progress" not in page.content
