"""What a Jobs Table row shows and offers, read from the parsed row (not from its exact markup).

The buttons each status offers are written out here by hand, not derived from web/actions.py.
"""

from __future__ import annotations

import datetime
from html.parser import HTMLParser
from typing import Any

import pytest
from django.utils import timezone

from jobtower.gizmos import JobsTable, with_status_since
from jobtower.models import Job, JobEvent
from jobtower.statuses import Status
from jobtower.web.actions import CustomAction

pytestmark = pytest.mark.django_db


class Element:
    def __init__(self, tag: str, attrs: dict[str, str]) -> None:
        self.tag, self.attrs, self.text = tag, attrs, ""
        self.children: list[Element] = []

    def classes(self) -> set[str]:
        return set(self.attrs.get("class", "").split())


class Row(HTMLParser):
    """Every element of a row with its attributes and the text inside it."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[Element] = []
        self._open: list[Element] = []
        #: text outside any cell's content: between cells, or loose in the status and actions cells
        self.stray = ""
        self.feed(html)
        self.close()
        assert not self._open, f"unclosed elements {[e.tag for e in self._open]} in {html}"

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = Element(tag, {k: v or "" for k, v in attrs})
        if self._open:
            self._open[-1].children.append(element)
        self.elements.append(element)
        self._open.append(element)

    def handle_endtag(self, tag: str) -> None:
        assert self._open and self._open[-1].tag == tag, f"</{tag}> closes {self._open[-1].tag if self._open else None}"
        self._open.pop()

    def handle_data(self, data: str) -> None:
        parent = self._open[-1] if self._open else None
        if parent is None or parent.tag == "tr" or parent.classes() & {"jobtower-status", "jobtower-actions"}:
            self.stray += data
        for element in self._open:
            element.text += data

    def find(self, tag: str, **attrs: str) -> list[Element]:
        return [e for e in self.elements if e.tag == tag and all(e.attrs.get(k.replace("_", "-")) == v
                                                                   for k, v in attrs.items())]

    def cell(self, css: str) -> Element:
        (found,) = [e for e in self.elements if e.tag == "td" and css in e.classes()]
        return found


ALL_ACTIONS = ["run", "resubmit", "pause", "resume", "terminate", "delete", "logs", "monitor", "results"]
#: status -> the actions its row offers (a BASIC job's engine can do everything). Written by hand.
OFFERS = {
    "PEN": {"run", "delete"},
    "SUB": {"pause", "terminate", "delete", "logs", "monitor"},
    "RUN": {"pause", "terminate", "delete", "logs", "monitor"},
    "VAR": {"pause", "terminate", "delete", "logs", "monitor"},
    "PAS": {"resume", "terminate", "delete", "logs", "monitor"},
    "RES": {"terminate", "delete", "logs", "monitor"},
    "OTH": {"pause", "terminate", "delete", "logs", "monitor"},
    "COM": {"resubmit", "delete", "logs", "results"},
    "VCP": {"resubmit", "delete", "logs", "results"},
    "ERR": {"resubmit", "delete", "logs"},
    "ABT": {"resubmit", "delete", "logs"},
}
LINKS = {"logs", "monitor", "results"}
CONFIRMS = {"resubmit": "Run job {name} again", "terminate": "Stop job {name}?", "delete": "Delete job {name} and"}


def row_of(job: Job, **options: Any) -> Row:
    options.setdefault("column_fields", ("id", "name"))
    config = JobsTable(jobs=[], **options).config()
    row = Row(config.row_html(with_status_since(Job.objects.filter(pk=job.pk)).get()))
    assert not row.stray.strip(), f"text outside the cells' content: {row.stray!r}"
    return row


@pytest.fixture
def job(job_manager: Any, user: Any) -> Job:
    made = job_manager.create_job(name="row's job", user=user, job_type="BASIC")
    made.save()
    return made


@pytest.mark.parametrize("code", list(OFFERS))
def test_each_status_offers_exactly_its_actions(job: Job, set_status: Any, code: str) -> None:
    set_status(job, Status(code))
    row = row_of(job, actions=ALL_ACTIONS, monitor_url="jobtower:job-detail", results_url="jobtower:job-logs")
    posts = {b.attrs["data-jt-action"]: b for b in row.find("button")}
    links = {a.attrs["data-action"]: a for a in row.elements if a.tag == "a" and "data-action" in a.attrs}
    assert set(posts) | set(links) == OFFERS[code]
    assert set(links) == OFFERS[code] & LINKS
    tr = row.find("tr")[0]
    assert set(tr.attrs) == {"data-job-id", "class"} | ({"data-active"} if Status(code).is_active else set())
    for name, button in posts.items():
        assert set(button.attrs) - {"data-confirm"} == {"type", "class", "formaction", "data-jt-action"}, button.attrs
        assert button.attrs["type"] == "submit"
        assert button.attrs["formaction"] == f"/jobs-table/action/{job.pk}/{name}/"
        assert ("danger" in button.classes()) == (name in ("terminate", "delete"))
        if name in CONFIRMS:
            assert button.attrs["data-confirm"].startswith(CONFIRMS[name].format(name="row's job"))
        else:
            assert "data-confirm" not in button.attrs
    expected_links = {"logs": f"/jobs/{job.pk}/logs/", "monitor": f"/jobs/{job.pk}/",
                      "results": f"/jobs/{job.pk}/logs/"}
    for name, link in links.items():
        assert link.attrs["href"] == expected_links[name] and "jobtower-button" in link.classes()
        assert set(link.attrs) == {"class", "href", "data-action"}
    assert (row.find("tr")[0].attrs.get("data-active") == "1") == Status(code).is_active
    assert f"status-{code}" in row.find("tr")[0].classes() and row.find("tr")[0].attrs["data-job-id"] == str(job.pk)
    assert row.cell("jobtower-status").text.startswith(Status(code).display)


def test_a_custom_link_and_a_custom_post_action(job: Job) -> None:
    link = CustomAction(name="inspect", label="Inspect <it>", url_name="jobtower:job-detail",
                        enabled_in=("PEN",))
    post = CustomAction(name="touch", label="Touch", function="tests.table_actions.touch",
                        confirm="Touch {name} now?", enabled_in=("PEN", "RUN"))
    never = CustomAction(name="later", label="Later", function="tests.table_actions.touch", enabled_in=("COM",))
    row = row_of(job, actions=[], custom_actions=[link, post, never])
    (anchor,) = [a for a in row.elements if a.tag == "a" and a.attrs.get("data-action") == "inspect"]
    assert anchor.attrs["href"] == f"/jobs/{job.pk}/" and anchor.text == "Inspect <it>"
    (button,) = row.find("button")
    assert button.attrs["data-jt-action"] == "touch" and button.attrs["data-confirm"] == "Touch row's job now?"
    assert button.attrs["formaction"] == f"/jobs-table/action/{job.pk}/touch/"


def test_the_id_cell_links_to_the_job_page(job: Job) -> None:
    row = row_of(job)
    (link,) = row.cell("col-id").children
    assert link.tag == "a" and link.attrs["href"] == f"/jobs/{job.pk}/" and link.text == str(job.pk)
    assert row.cell("col-id").text == str(job.pk)
    assert row.cell("col-name").text == "row's job" and not row.cell("col-name").children


def test_a_row_without_status_or_actions_has_only_its_columns(job: Job) -> None:
    row = row_of(job, show_status=False, actions=[])
    assert [sorted(e.classes()) for e in row.find("td")] == [["col-id"], ["col-name"]]
    row = row_of(job, actions=[], custom_actions=[CustomAction(name="x", label="X", url_name="jobtower:job-detail")])
    assert [td for td in row.find("td") if "jobtower-actions" in td.classes()]


@pytest.mark.parametrize(("code", "progress", "drawn"), [
    ("RUN", 42.4, True), ("SUB", 0.0, True), ("COM", 42.0, False), ("RUN", None, False), ("RUN", float("inf"), False),
])
def test_progress_is_drawn_for_active_jobs_with_a_finite_value(job: Job, set_status: Any, code: str,
                                                                progress: float | None, drawn: bool) -> None:
    set_status(job, Status(code))
    Job.objects.filter(pk=job.pk).update(progress=progress, progress_message="reading input")
    status = row_of(job).cell("jobtower-status")
    bars = [e for e in status.children if e.tag == "progress"]
    assert bool(bars) == drawn
    if drawn:
        assert bars[0].attrs["max"] == "100" and float(bars[0].attrs["value"]) == progress
        assert bars[0].attrs["title"] == f"{progress:.0f}% reading input"
        assert f"{progress:.0f}%" in status.text


def test_status_message_is_cut_at_300_characters_and_detail_shown_only_when_asked(job: Job, set_status: Any) -> None:
    set_status(job, Status.RUNNING)
    Job.objects.filter(pk=job.pk).update(status_message="m" * 300, progress_message="step 2")
    status = row_of(job).cell("jobtower-status")
    assert ("m" * 300) in status.text and "…" not in status.text and "step 2" not in status.text
    Job.objects.filter(pk=job.pk).update(status_message="m" * 301)
    detailed = row_of(job, show_detailed_status=True).cell("jobtower-status")
    assert ("m" * 299 + "…") in detailed.text and ("m" * 300) not in detailed.text
    assert [e.text for e in detailed.children if "jobtower-progress-message" in e.classes()] == ["step 2"]
    Job.objects.filter(pk=job.pk).update(status_message="")
    assert not [e for e in row_of(job).cell("jobtower-status").children if "jobtower-status-message" in e.classes()]


def test_the_age_says_since_when_the_status_holds(job: Job) -> None:
    since = timezone.now() - datetime.timedelta(hours=3, minutes=5)
    Job.objects.filter(pk=job.pk).update(creation_time=since)
    (age,) = [e for e in row_of(job).cell("jobtower-status").children if "jobtower-age" in e.classes()]
    assert age.text == "3 h" and datetime.datetime.fromisoformat(age.attrs["title"]) == since
    # once the job has moved, the age counts from its last move, not from its creation
    job.execute()
    moved = JobEvent.objects.filter(job=job).latest("id")
    JobEvent.objects.filter(pk=moved.pk).update(time=timezone.now() - datetime.timedelta(minutes=7))
    (age,) = [e for e in row_of(job).cell("jobtower-status").children if "jobtower-age" in e.classes()]
    assert age.text == "7 min"
