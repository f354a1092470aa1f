"""The job page, the filters, keyboard use and an axe-core scan, in Debian's Chromium (Playwright)."""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from typing import Any

import pytest

from jobtower.models import Job
from jobtower.statuses import Status

from .test_browser import ARTIFACTS, login, row

pytestmark = pytest.mark.browser
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

AXE = Path(__file__).resolve().parent.parent / ".jobtower" / "axe" / "node_modules" / "axe-core" / "axe.min.js"

#: A job that reports progress and writes a line, then waits for the test's go-ahead file, three times.
STEPS = """
import json, os, sys, time, pathlib
flags = pathlib.Path(sys.argv[1])
for step, pct in ((1, 30), (2, 70)):
    target = pathlib.Path(os.environ["JOBTOWER_PROGRESS_FILE"])
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(json.dumps({"percent": pct, "message": f"step {step}"}))
    tmp.replace(target)
    print(f"line of step {step}", flush=True)
    while not (flags / f"go{step}").exists():
        time.sleep(0.05)
print("all done", flush=True)
"""


@pytest.fixture
def browser_page():  # noqa: ANN201 - the page in both colour schemes comes from new_context
    from playwright.sync_api import sync_playwright

    from .test_browser import CHROMIUM

    assert os.path.exists(CHROMIUM), "Debian's chromium is needed: scripts/browser.sh installs it"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-sync",
                  "--disable-background-networking", "--disable-component-update"],
        )
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.set_default_timeout(20_000)
        yield page
        browser.close()


@pytest.fixture
def monitor(transactional_db: Any) -> Any:
    """A monitor cycling in a thread: it stores the progress a LOCAL job reports."""
    import threading

    from jobtower.monitor import Monitor

    stop = threading.Event()
    watcher = Monitor(results_threads=0)

    def loop() -> None:
        while not stop.wait(0.2):
            watcher.cycle()

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    yield watcher
    stop.set()
    thread.join(10)


def stepping_job(job_manager: Any, user: Any, flags: Path) -> Job:
    job = job_manager.create_job(name="stepping <b>job</b>", user=user, job_type="LOCAL",
                                 command=[sys.executable, "-c", STEPS, str(flags)])
    job.save()
    return job


def test_the_job_page_follows_a_running_job_then_shows_complete(
    browser_page, live_server, django_user_model, job_manager, local_worker, monitor, tmp_path  # noqa: ANN001
) -> None:
    page, base = browser_page, live_server.url
    alice = django_user_model.objects.create_user("alice", password="pw-alice-1")
    job = stepping_job(job_manager, alice, tmp_path)
    job.execute()
    login(page, base, "alice", "pw-alice-1")
    page.goto(f"{base}/jobs/{job.pk}/")
    page.evaluate("window.__sameDocument = true")
    status = page.locator('[data-jt-fragment="status"]')
    progress = page.locator('[data-jt-fragment="progress"]')
    stdout = page.locator('[data-jt-log="stdout"]')
    progress.filter(has_text="30%").wait_for()
    stdout.filter(has_text="line of step 1").wait_for()
    status.locator(".jobtower-badge", has_text="Running").wait_for()
    (tmp_path / "go1").touch()
    progress.filter(has_text="70%").wait_for()
    stdout.filter(has_text="line of step 2").wait_for()
    page.locator('[data-jt-fragment="run_time"]').filter(has_text=re.compile(r"\d:\d\d:\d\d")).wait_for()
    (tmp_path / "go2").touch()
    status.locator(".jobtower-badge", has_text="Complete").wait_for(timeout=30_000)
    stdout.filter(has_text="all done").wait_for()
    assert page.evaluate("window.__sameDocument") is True, "the page was reloaded"
    # The timeline has one span per status the job went through, in order.
    spans = page.locator(".jobtower-timeline .jobtower-span")
    spans.last.wait_for()
    moves = [e.to_status for e in job.history()]
    assert [spans.nth(i).get_attribute("data-status") for i in range(spans.count())] == moves
    assert moves[-1] == "COM" and len(moves) >= 3
    # Only what a complete job allows is offered.
    actions = page.locator('[data-jt-fragment="actions"] [data-jt-action]')
    assert sorted(actions.evaluate_all("els => els.map(e => e.dataset.jtAction)")) == ["delete", "resubmit"]


def test_stop_from_the_job_page(
    browser_page, live_server, django_user_model, job_manager, local_worker, tmp_path  # noqa: ANN001
) -> None:
    page, base = browser_page, live_server.url
    alice = django_user_model.objects.create_user("alice", password="pw-alice-1")
    job = stepping_job(job_manager, alice, tmp_path)
    job.execute()
    login(page, base, "alice", "pw-alice-1")
    page.goto(f"{base}/jobs/{job.pk}/")
    page.locator('[data-jt-log="stdout"]').filter(has_text="line of step 1").wait_for()
    questions: list[str] = []
    page.once("dialog", lambda dialog: (questions.append(dialog.message), dialog.accept()))
    page.locator('[data-jt-action="terminate"]').click()
    page.locator('[data-jt-fragment="status"] .jobtower-badge', has_text="Aborted").wait_for()
    assert questions and questions[0].startswith("Stop job stepping <b>job</b>?")
    assert Job.objects.get(pk=job.pk).status_code is Status.ABORTED
    assert page.locator('[data-jt-action="terminate"]').count() == 0


def test_filters_live_in_the_url_and_survive_reload_and_back(
    browser_page, live_server, django_user_model  # noqa: ANN001
) -> None:
    page, base = browser_page, live_server.url
    alice = django_user_model.objects.create_user("alice", password="pw-alice-1")
    for i, (status, kind) in enumerate([("RUN", "LOCAL"), ("ERR", "LOCAL"), ("COM", "BASIC"), ("COM", "LOCAL")]):
        Job.objects.create(name=f"job {i}", user=alice, job_type=kind, _status=status, workspace="/nonexistent")
    login(page, base, "alice", "pw-alice-1")
    assert page.locator("tbody tr[data-job-id]").count() == 4
    page.check('input[name=jt_status][value=RUN]')
    page.check('input[name=jt_status][value=COM]')
    page.fill("input[name=jt_type]", "LOCAL")
    page.click(".jobtower-filters button[type=submit]")
    page.wait_for_url(re.compile(r".*jt_status=RUN.*jt_status=COM.*jt_type=LOCAL"))
    assert page.locator("tbody tr[data-job-id]").count() == 2
    filtered = page.url
    page.reload()
    assert page.locator("tbody tr[data-job-id]").count() == 2
    assert page.is_checked('input[name=jt_status][value=COM]') and page.input_value("input[name=jt_type]") == "LOCAL"
    # The counts follow the other filters (type LOCAL): Complete 1, Error 1, Running 1.
    assert page.locator("label.status-COM .jobtower-n").inner_text() == "1"
    page.locator('th a', has_text="Name").click()
    page.wait_for_url(re.compile(r".*jt_sort=name.*"))
    assert "jt_type=LOCAL" in page.url and page.locator("tbody tr[data-job-id]").count() == 2
    page.go_back()
    page.wait_for_url(filtered)
    assert page.locator("tbody tr[data-job-id]").count() == 2
    page.go_back()
    page.wait_for_url(f"{base}/")
    assert page.locator("tbody tr[data-job-id]").count() == 4


def test_keyboard_focus_on_a_stop_button_survives_refreshes(
    browser_page, live_server, django_user_model, job_manager, local_worker, tmp_path  # noqa: ANN001
) -> None:
    page, base = browser_page, live_server.url
    alice = django_user_model.objects.create_user("alice", password="pw-alice-1")
    job = stepping_job(job_manager, alice, tmp_path)
    job.execute()
    login(page, base, "alice", "pw-alice-1")
    stop = row(page, job.pk).locator("button[data-jt-action=terminate]")
    stop.wait_for()
    # Tab (keyboard only) until the Stop button has the focus.
    for _ in range(200):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.dataset.jtAction") == "terminate":
            break
    assert page.evaluate("document.activeElement.closest('tr').dataset.jobId") == str(job.pk)
    page.evaluate("window.__focusedBefore = document.activeElement")
    # Two refreshes of the table's rows (the row's age text changes, so the row is rebuilt) ...
    for _ in range(2):
        page.wait_for_event("requestfinished", predicate=lambda r: "/jobs-table/rows/" in r.url, timeout=15_000)
    # ... and the button that had the focus was replaced by a new one (else this test proves nothing).
    page.wait_for_function("() => !document.contains(window.__focusedBefore)")
    focused = page.evaluate(
        "[document.activeElement.dataset.jtAction, document.activeElement.closest('tr')?.dataset.jobId]")
    assert focused == ["terminate", str(job.pk)]
    # Enter on the focused button stops the job (keyboard-operable actions).
    page.once("dialog", lambda dialog: dialog.accept())
    page.keyboard.press("Enter")
    row(page, job.pk).locator(".jobtower-badge", has_text="Aborted").wait_for()
    (tmp_path / "go1").touch()
    (tmp_path / "go2").touch()


def axe_scan(page: Any) -> list[dict[str, Any]]:
    assert AXE.exists(), f"axe-core is missing at {AXE}: run scripts/browser.sh (it installs it with npm)"
    page.add_script_tag(content=AXE.read_text())
    result = page.evaluate("async () => JSON.stringify((await axe.run(document)).violations)")
    return [v for v in json.loads(result) if v["impact"] in ("serious", "critical")]


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_axe_finds_no_serious_violation_on_the_table_job_and_logs_pages(
    browser_page, live_server, django_user_model, job_manager, local_worker, tmp_path, scheme  # noqa: ANN001
) -> None:
    page, base = browser_page, live_server.url
    alice = django_user_model.objects.create_user("alice", password="pw-alice-1")
    for status in Status:
        Job.objects.create(name=f"a {status.display} job", user=alice, job_type="BASIC", _status=status.value,
                           workspace="/nonexistent")
    job = job_manager.create_job(name="scanned", user=alice, job_type="LOCAL", command=["echo", "hello"])
    job.save()
    job.execute()
    from .conftest import ended

    ended(job)
    page.emulate_media(color_scheme=scheme)
    login(page, base, "alice", "pw-alice-1")
    ARTIFACTS.mkdir(exist_ok=True)
    found = {}
    pages = (("table", f"{base}/"), ("job", f"{base}/jobs/{job.pk}/"), ("logs", f"{base}/jobs/{job.pk}/logs/"))
    for name, url in pages:
        page.goto(url)
        if name == "logs":
            page.locator("[data-stream=stdout] pre").filter(has_text="hello").wait_for()
        page.screenshot(path=str(ARTIFACTS / f"page_{name}_{scheme}.png"), full_page=True)
        found[name] = [(v["id"], v["impact"], [n["target"] for n in v["nodes"]][:3]) for v in axe_scan(page)]
    assert not any(found.values()), f"axe-core, {scheme} theme: {found}"


def test_the_table_fits_a_phone(browser_page, live_server, django_user_model) -> None:  # noqa: ANN001
    page, base = browser_page, live_server.url
    alice = django_user_model.objects.create_user("alice", password="pw-alice-1")
    Job.objects.create(name="a rather long job name " * 3, user=alice, job_type="BASIC", workspace="/nonexistent")
    page.set_viewport_size({"width": 375, "height": 800})
    login(page, base, "alice", "pw-alice-1")
    assert page.evaluate("document.documentElement.scrollWidth") <= 375, "the page scrolls sideways on a phone"
    page.screenshot(path=str(ARTIFACTS / "page_table_phone.png"), full_page=True)
