"""Every place a user's (or a job's) text appears is shown as text: Jobs Table rows, job page, logs page.

The assertions are about behaviour, not markup: the page is parsed, and the text must create no element
and no attribute, and must read back unchanged as text. Each field gets its own test so a failure names it.
"""

from __future__ import annotations

from html.parser import HTMLParser
from typing import Any

import pytest
from django.test import Client

from jobtower.gizmos import JobsTable
from jobtower.models import Job
from jobtower.statuses import Status
from jobtower.web.actions import CustomAction

pytestmark = pytest.mark.django_db

#: Breaks out of element content, of double- and single-quoted attributes, and carries an entity.
EVIL = """<jt-evil data-x="1">"><jt-evil2 onmouseover="jtEvil()" ' onfocus='jtEvil()' &amp; é"""


class Page(HTMLParser):
    """The elements, attribute names and text of a page, as a browser would build them."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.attributes: list[str] = []
        self.attribute_values: list[str] = []
        self.text: list[str] = []
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attributes.extend(name for name, _ in attrs)
        self.attribute_values.extend(value or "" for _, value in attrs)

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def assert_shown_as_text(html: str, *, where: str, in_attribute: bool = False) -> None:
    page = Page(html)
    assert not [t for t in page.tags if t.startswith("jt-evil")], f"{where}: user text became an element"
    assert not [a for a in page.attributes if a in ("onmouseover", "onfocus")], f"{where}: it became an attribute"
    shown = page.attribute_values if in_attribute else ["".join(page.text)]
    assert any(EVIL in value for value in shown), f"{where}: the text does not read back unchanged"


def _row(job: Job, **table: Any) -> str:
    config = JobsTable(jobs=[], **table).config()
    stored = Job.objects.get(pk=job.pk)
    return config.row_html(stored)


@pytest.fixture
def evil_job(job_manager: Any, user: Any) -> Job:
    job = job_manager.create_job(
        name=EVIL, user=user, job_type="BASIC", description=EVIL,
        extended_properties={"model": {"title": EVIL}, "raw": EVIL},
    )
    job.save()
    return job


@pytest.mark.parametrize("column", ["name", "description", "extended_properties.model.title",
                                    "extended_properties.raw", "extended_properties"])
def test_every_text_column_of_the_table_is_escaped(evil_job: Job, column: str) -> None:
    html = _row(evil_job, column_fields=("id", column))
    page = Page(html)
    assert not [t for t in page.tags if t.startswith("jt-evil")], column
    assert not [a for a in page.attributes if a in ("onmouseover", "onfocus")], column
    # a whole dict is shown as its text (its repr escapes the quotes): the tag still reads back as text
    assert (EVIL if column != "extended_properties" else "<jt-evil data-x=") in "".join(page.text), column


def test_a_column_named_by_the_host_app_cannot_break_the_row_either(evil_job: Job) -> None:
    html = _row(evil_job, column_fields=(("Title", 'extended_properties.model.title"><jt-evil x="'),))
    page = Page(html)
    assert not [t for t in page.tags if t.startswith("jt-evil")]
    assert not [a for a in page.attributes if a in ("onmouseover", "onfocus", "x")]


def test_status_message_is_escaped_in_the_row_and_the_job_page(evil_job: Job, user: Any) -> None:
    evil_job.execute()
    evil_job.update_status("Error", message=EVIL)
    assert_shown_as_text(_row(evil_job), where="row status message")
    page = _get(user, f"/jobs/{evil_job.pk}/")
    assert_shown_as_text(page, where="job page status message")


def test_progress_message_is_escaped_in_the_row_title_the_detailed_status_and_the_job_page(
    evil_job: Job, user: Any
) -> None:
    evil_job.execute()  # Submitted: an active status, so progress is drawn
    Job.objects.filter(pk=evil_job.pk).update(progress=42.0, progress_message=EVIL[:255])
    stored = Job.objects.get(pk=evil_job.pk)
    assert stored.status_code is Status.SUBMITTED
    plain = _row(evil_job)
    assert_shown_as_text(plain, where="progress title", in_attribute=True)
    assert_shown_as_text(_row(evil_job, show_detailed_status=True), where="detailed status")
    assert_shown_as_text(_get(user, f"/jobs/{evil_job.pk}/"), where="job page progress")


def test_a_confirm_message_naming_the_job_is_escaped(evil_job: Job) -> None:
    action = CustomAction(name="touch", label="Touch", function="tests.table_actions.touch", confirm="Touch {name}?")
    html = _row(evil_job, actions=[], custom_actions=[action])
    page = Page(html)
    assert not [t for t in page.tags if t.startswith("jt-evil")]
    assert not [a for a in page.attributes if a in ("onmouseover", "onfocus")]
    assert f"Touch {EVIL}?" in page.attribute_values


def _get(user: Any, url: str) -> str:
    client = Client()
    client.force_login(user)
    response = client.get(url)
    assert response.status_code == 200, (url, response.status_code)
    return response.content.decode()


@pytest.mark.parametrize("field", ["name", "description", "extended_properties", "event message", "file name"])
def test_every_user_text_on_the_job_page_is_escaped(evil_job: Job, user: Any, field: str) -> None:
    if field == "event message":
        evil_job.execute()
        evil_job.update_status("Running", message=EVIL)
    if field == "file name":
        folder = evil_job.ensure_folder()
        (folder / EVIL.replace("/", "")).write_text("x")  # a job may name its files anything but "/"
        page = _get(user, f"/jobs/{evil_job.pk}/")
        parsed = Page(page)
        assert not [t for t in parsed.tags if t.startswith("jt-evil")]
        assert not [a for a in parsed.attributes if a in ("onmouseover", "onfocus")]
        assert EVIL.replace("/", "") in "".join(parsed.text)
        return
    page = _get(user, f"/jobs/{evil_job.pk}/")
    parsed = Page(page)
    assert not [t for t in parsed.tags if t.startswith("jt-evil")], field
    assert not [a for a in parsed.attributes if a in ("onmouseover", "onfocus")], field
    if field == "extended_properties":  # shown as the dict's text: the value appears inside its repr
        assert "jt-evil data-x=" in "".join(parsed.text)
    else:
        assert EVIL in "".join(parsed.text), field


def test_the_logs_page_escapes_the_job_name(evil_job: Job, user: Any) -> None:
    assert_shown_as_text(_get(user, f"/jobs/{evil_job.pk}/logs/"), where="logs page")


def test_live_rows_endpoint_escapes_like_the_page(evil_job: Job, user: Any) -> None:
    client = Client()
    client.force_login(user)
    token = JobsTable(jobs=[], column_fields=("name", "description", "extended_properties.model.title")).config().sign()
    rows = client.get("/jobs-table/rows/", {"config": token, "ids": str(evil_job.pk)}).json()["rows"]
    page = Page(rows[str(evil_job.pk)])
    assert not [t for t in page.tags if t.startswith("jt-evil")]
    assert "".join(page.text).count(EVIL) == 3
