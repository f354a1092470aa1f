"""The Tethys compatibility layer: a Tethys-style app runs with its imports changed (tests/tethys_app)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.template import Context, Template, TemplateSyntaxError
from django.test import Client, RequestFactory, override_settings

import jobtower.models
from jobtower import tethys
from jobtower.models import Job, Scheduler
from tests.tethys_app.app import TethysTestApp

TEMPLATES = [{
    "BACKEND": "django.template.backends.django.DjangoTemplates",
    "DIRS": [str(Path(__file__).parent / "tethys_app" / "templates")],
    "APP_DIRS": True,
    "OPTIONS": {"context_processors": ["django.template.context_processors.request",
                                       "django.contrib.auth.context_processors.auth"]},
}]

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_module_offers_every_name_a_tethys_app_imports() -> None:
    for name in ("TethysJob", "BasicJob", "CondorJob", "CondorWorkflow", "CondorWorkflowJobNode", "DaskJob",
                 "JobsTable", "CustomJobAction", "list_schedulers", "get_scheduler", "create_scheduler",
                 "create_condor_scheduler", "create_dask_scheduler", "TethysAppBase"):
        assert name in tethys.__all__
        assert getattr(tethys, name) is not None
    assert tethys.TethysJob is Job and tethys.BasicJob is jobtower.models.BasicJob
    with pytest.raises(AttributeError, match="it offers: BasicJob"):
        tethys.NoSuchThing  # noqa: B018


def test_the_names_of_the_workflow_and_dask_engines_are_the_real_ones(db: Any) -> None:
    from jobtower.models import DaskJob, DaskScheduler, WorkflowNode, create_dask_scheduler

    assert tethys.CondorWorkflowJobNode is WorkflowNode and tethys.DaskJob is DaskJob
    assert tethys.create_dask_scheduler is create_dask_scheduler
    dask = tethys.create_scheduler("d", "tcp://127.0.0.1:8786", scheduler_type="dask")
    assert isinstance(dask, DaskScheduler) and dask.pk is None
    dask.save()
    assert dask in tethys.list_schedulers()


def test_schedulers_as_tethys_names_them() -> None:
    assert tethys.list_schedulers() == []
    made = tethys.create_scheduler("pool", "condor.example.org", port=9618)
    assert isinstance(made, Scheduler) and made.pk is None and made.host == "condor.example.org:9618"
    made.save()
    assert tethys.list_schedulers() == [made] and tethys.get_scheduler("pool") == made
    with pytest.raises(ValueError, match='"slurm" is not a valid scheduler_type'):
        tethys.create_scheduler("s", "h", scheduler_type="slurm")

    class App(TethysTestApp):
        schedulers = {"primary_condor": "pool"}

    assert App.get_scheduler("primary_condor") == made and App.get_scheduler("pool") == made
    with pytest.raises(LookupError, match=r"no scheduler 'nowhere'; create it with create_condor_scheduler"):
        App.get_scheduler("nowhere")


def test_custom_job_action_refuses_what_it_cannot_keep_with_reasons() -> None:
    with pytest.raises(TypeError, match="enabled_callback is not supported; give enabled_in="):
        tethys.CustomJobAction("A", "app:view", enabled_callback=lambda job: True)
    with pytest.raises(ValueError, match="module-level function"):
        tethys.CustomJobAction("A", lambda job: None)
    with pytest.raises(ValueError, match='requires either "callback_or_url" or "modal_url"'):
        tethys.CustomJobAction("A")
    with pytest.raises(ValueError, match="names a method of the job"):
        tethys.CustomJobAction("A", "archive")
    link = tethys.CustomJobAction("Details", "tethys_test_app:results", enabled_in=["COM"])
    assert link.action.url_name == "tethys_test_app:results" and link.action.enabled_in == ("COM",)


def test_jobs_table_options_keep_their_tethys_meaning() -> None:
    table = tethys.JobsTable(jobs=Job.objects.none(), column_fields=("id", "name"),
                             actions=["run", "|", "logs", "monitor", "results", "|", "delete"])
    # '|' is a section break of Tethys's menu; monitor and results go without their URLs, as in Tethys.
    assert table.action_names == ["run", "logs", "delete"]
    default = tethys.JobsTable(jobs=[], column_fields=("id",), monitor_url="app:monitor")
    assert default.action_names == ["run", "resubmit", "logs", "monitor", "terminate", "delete"]
    paged = tethys.JobsTable(jobs=[], column_fields=("id",), enable_data_table=True,
                             data_table_options={"pageLength": 7, "ordering": False})
    assert paged.page_size == 7 and paged.sort is False
    assert paged.delay_loading_status is True and paged.data_table_options["pageLength"] == 7
    by_key = tethys.JobsTable(jobs=[], column_fields=("id",), sort=lambda job: job.name, reverse_sort=True)
    assert by_key.sort is True and by_key.reverse_sort and by_key.sort_field == "creation_time"


@override_settings(ROOT_URLCONF="tests.tethys_app.site_urls", TEMPLATES=TEMPLATES)
def test_a_tethys_style_app_runs_with_its_imports_changed() -> None:
    alice = User.objects.create_user("alice", password="pw-alice-1")
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    page = client.get("/apps/tethys-test-app/")
    assert page.status_code == 200 and "No jobs." in page.content.decode()
    token = client.cookies["csrftoken"].value
    for _ in range(3):
        assert client.post("/apps/tethys-test-app/run/", {"csrfmiddlewaretoken": token}).status_code == 302
    assert client.get("/apps/tethys-test-app/run/").status_code == 405  # state changes need a POST
    jobs = list(Job.objects.order_by("id"))
    assert [j.name for j in jobs] == [f"job_{j.pk}" for j in jobs]
    assert {j.label for j in jobs} == {"tethys_test_app"} and {j.status_code.value for j in jobs} == {"SUB"}
    jobs[0].update_status("COM")

    html = client.get("/apps/tethys-test-app/").content.decode()
    # pageLength 2: two rows and a link to the next page; oldest first, as Tethys sorts.
    assert re.findall(r'data-job-id="(\d+)"', html) == [str(jobs[0].pk), str(jobs[1].pk)]
    assert 'rel="next"' in html and "hover" in html and "striped" in html
    assert f'href="/apps/tethys-test-app/results/{jobs[0].pk}/"' in html  # results_url, for the complete job
    assert f"/apps/tethys-test-app/results/{jobs[1].pk}/" not in html
    assert 'data-jt-action="archive"' in html and "Archive this job?" in html
    config = re.search(r'name="config" value="([^"]+)"', html)
    assert config
    done = client.post(f"/jobs-table/action/{jobs[1].pk}/archive/",
                       {"csrfmiddlewaretoken": token, "config": config[1], "next": "/apps/tethys-test-app/"})
    assert done.status_code in (200, 302)
    jobs[1].refresh_from_db()
    assert jobs[1].extended_properties == {"archived": True}
    results = client.get(f"/apps/tethys-test-app/results/{jobs[0].pk}/")
    assert results.status_code == 200 and f"Results of job_{jobs[0].pk}" in results.content.decode()
    # Another user sees none of alice's jobs in the same table.
    bob = Client()
    bob.force_login(User.objects.create_user("bob"))
    assert "No jobs." in bob.get("/apps/tethys-test-app/").content.decode()


def test_the_gizmo_tag_renders_jobs_tables_and_refuses_anything_else() -> None:
    alice = User.objects.create_user("alice")
    request = RequestFactory().get("/")
    request.user = alice
    options = tethys.JobsTable(jobs=Job.objects.none(), column_fields=("id", "name"))
    for source in ("{% load jobtower %}{% gizmo options %}", "{% load tethys_gizmos %}{% gizmo options %}",
                   "{% load tethys_gizmos %}{% gizmo 'jobs_table' options %}"):
        html = Template(source).render(Context({"options": options, "request": request}))
        assert "jobtower-table" in html and "No jobs." in html
    with pytest.raises(TemplateSyntaxError, match="renders jobtower's JobsTable only; got str"):
        Template("{% load jobtower %}{% gizmo options %}").render(Context({"options": "x", "request": request}))
