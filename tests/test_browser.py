"""The Jobs Table in a real browser (Debian's Chromium driven by Playwright) against a live server."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest
from django.utils import timezone

from jobtower.models import Job

pytestmark = pytest.mark.browser

# Playwright's sync API keeps an event loop in this thread; the test's own ORM calls are safe.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture
def browser_page():
    from playwright.sync_api import sync_playwright

    assert os.path.exists(CHROMIUM), "Debian's chromium is needed: scripts/browser.sh installs it"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"],
        )
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(20_000)
        yield page
        browser.close()


def login(page, base: str, username: str, password: str) -> None:  # noqa: ANN001
    page.goto(f"{base}/accounts/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/")


def row(page, job_id: int):  # noqa: ANN001, ANN201
    return page.locator(f'tr[data-job-id="{job_id}"]')


def test_jobs_table_in_a_browser(browser_page, live_server, django_user_model, job_manager, local_worker) -> None:
    page, base = browser_page, live_server.url
    alice = django_user_model.objects.create_user("alice", password="pw-alice-1")
    bob = django_user_model.objects.create_user("bob", password="pw-bob-1")
    theirs = job_manager.create_job(name="bobs private job", user=bob, job_type="BASIC")
    theirs.save()
    now = timezone.now()
    Job.objects.bulk_create(
        [Job(job_type="BASIC", label="my_first_app", name=f"bulk job {i:04d}", user=alice,
             workspace="/nonexistent", creation_time=now) for i in range(1000)], batch_size=500
    )
    runnable = job_manager.create_job(
        name="runnable", user=alice, job_type="LOCAL",
        command=["sh", "-c", "sleep 1.5; echo '<script>window.pwned=1</script>'; echo finished"],
    )
    runnable.save()

    login(page, base, "alice", "pw-alice-1")
    assert "bobs private job" not in page.content()
    # Newest first: the runnable job heads the first page; 1,001 jobs page by 50.
    assert page.locator("tbody tr").count() == 50
    assert page.locator(".jobtower-pages span").inner_text() == "1–50"
    page.click("a[rel=next]")
    assert page.locator(".jobtower-pages span").inner_text() == "51–100"
    page.goto(f"{base}/?jt_page=21")
    assert page.locator(".jobtower-pages span").inner_text() == "1001–1001"
    assert page.locator("a[rel=next]").count() == 0
    page.goto(f"{base}/")

    # Run: the row moves Pending -> Submitted -> Running -> Complete with no reload of the page.
    page.evaluate("window.__sameDocument = true")
    row(page, runnable.pk).locator("button[data-jt-action=run]").click()
    row(page, runnable.pk).locator(".jobtower-badge", has_text="Submitted").or_(
        row(page, runnable.pk).locator(".jobtower-badge", has_text="Running")).wait_for()
    row(page, runnable.pk).locator(".jobtower-badge", has_text="Complete").wait_for(timeout=30_000)
    assert page.evaluate("window.__sameDocument") is True
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "jobs_table.png"), full_page=False)

    # Logs: text, escaped, never run.
    row(page, runnable.pk).locator("a[data-action=logs]").click()
    page.wait_for_url(re.compile(r".*/jobs/\d+/logs/$"))
    stdout = page.locator("[data-stream=stdout] pre")
    stdout.filter(has_text="finished").wait_for()
    assert "<script>window.pwned=1</script>" in stdout.inner_text()
    assert page.evaluate("window.pwned") is None
    page.screenshot(path=str(ARTIFACTS / "job_logs.png"))

    # Delete asks first: dismissing keeps the job, accepting removes the row and the record.
    page.goto(f"{base}/")
    target = Job.objects.filter(user=alice, name="bulk job 0999").get()
    page.once("dialog", lambda dialog: dialog.dismiss())
    row(page, target.pk).locator("button[data-jt-action=delete]").click()
    page.wait_for_timeout(300)
    assert row(page, target.pk).count() == 1 and Job.objects.filter(pk=target.pk).exists()
    questions: list[str] = []

    def accept(dialog) -> None:  # noqa: ANN001
        questions.append(dialog.message)
        dialog.accept()

    page.once("dialog", accept)
    row(page, target.pk).locator("button[data-jt-action=delete]").click()
    row(page, target.pk).wait_for(state="detached")
    assert not Job.objects.filter(pk=target.pk).exists()
    assert questions == ["Delete job bulk job 0999 and its files? This cannot be undone."]


HTTP_METHODS = {"get", "put", "post", "delete", "patch", "head", "options"}


def test_the_api_page_lists_the_endpoints_from_local_files(browser_page, live_server, django_user_model) -> None:
    """The site links the interactive API page; it loads from this server alone and lists every endpoint."""
    page, base = browser_page, live_server.url
    django_user_model.objects.create_user("apiuser", password="pw-apiuser")
    elsewhere: list[str] = []
    page.on("request", lambda request: None if request.url.startswith(base) else elsewhere.append(request.url))
    login(page, base, "apiuser", "pw-apiuser")
    page.click("text=REST API")
    page.wait_for_url(f"{base}/api/docs/")
    paths = page.locator(".opblock-summary-path")
    paths.first.wait_for()
    shown = {text.strip().replace("\u200b", "") for text in paths.all_inner_texts()}
    assert {"/api/jobs/", "/api/jobs/{job_id}/", "/api/jobs/{job_id}/run/", "/api/jobs/{job_id}/logs/",
            "/api/jobs/{job_id}/history/", "/api/openapi.json"} <= shown, shown
    schema = page.request.get(f"{base}/api/openapi.json").json()
    operations = sum(1 for item in schema["paths"].values() for method in item if method in HTTP_METHODS)
    assert operations >= 14  # jobs, their actions, logs, history, workflow nodes and their logs, the schema
    assert {"/api/jobs/{job_id}/nodes/", "/api/jobs/{job_id}/nodes/{name}/logs/"} <= shown, shown
    assert page.locator(".opblock").count() == operations  # every endpoint of the schema, each once
    assert not elsewhere, f"the API page fetched from other hosts: {elsewhere}"
