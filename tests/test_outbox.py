"""The outbox: notifications written with the move, delivered by the monitor, signed, retried, in order."""

from __future__ import annotations

import base64
import http.server
import json
import logging
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.core import mail
from django.db import connection
from django.test.utils import CaptureQueriesContext

from jobtower import manager, outbox, webhooks
from jobtower.models import Delivery, Job
from jobtower.monitor import Monitor
from jobtower.statuses import Status
from tests.conftest import wait_for


def inserts_into(table: str, queries: Any) -> int:
    """Count the INSERT statements into `table`, whatever the database's quoting and spacing."""
    return sum(1 for q in queries if q["sql"].lstrip().upper().startswith("INSERT") and table in q["sql"].split("(")[0])



class Request:
    """One request the test endpoint received."""

    def __init__(self, handler: http.server.BaseHTTPRequestHandler, body: bytes) -> None:
        self.path = handler.path
        self.headers = handler.headers  # case-insensitive, as HTTP header names are
        self.body = body
        self.payload = json.loads(body) if body else None
        self.at = time.monotonic()


class Endpoint:
    """A real HTTP server on 127.0.0.1 whose answer to each POST the test chooses."""

    def __init__(self, answer: Callable[[Request], tuple[int, dict[str, str]]]) -> None:
        self.received: list[Request] = []
        received, lock = self.received, threading.Lock()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                request = Request(self, self.rfile.read(int(self.headers.get("Content-Length") or 0)))
                with lock:
                    received.append(request)
                    code, headers = answer(request)
                self.send_response(code)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_GET = do_POST  # noqa: N815  (a followed redirect would arrive as a GET)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_port
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str = "/hook", userinfo: str = "") -> str:
        return f"http://{userinfo}127.0.0.1:{self.port}{path}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def endpoint() -> Iterator[Callable[..., Endpoint]]:
    made: list[Endpoint] = []

    def make(answer: Callable[[Request], tuple[int, dict[str, str]]] = lambda r: (204, {})) -> Endpoint:
        made.append(Endpoint(answer))
        return made[-1]

    yield make
    for server in made:
        server.close()


@pytest.fixture
def hooks(settings: Any) -> Callable[..., None]:
    def configure(*urls: str, secret: str = "s3cret", **options: Any) -> None:
        settings.JOBTOWER = {
            **settings.JOBTOWER, "WEBHOOKS": [{"url": url, "secret": secret} for url in urls],
            "DELIVERY_BACKOFF": 0.2, "DELIVERY_TIMEOUT": 5.0, **options,
        }

    return configure


def deliver_until(predicate: Callable[[], Any], timeout: float = 30, what: str = "deliveries") -> None:
    """Run the monitor's delivery round until `predicate` holds (the rows' backoff decides the pace)."""
    wait_for(lambda: outbox.deliver_due() >= 0 and predicate(), timeout, interval=0.02, what=what)


def moved_basic_job(job_manager: Any, user: Any, *moves: str) -> Job:
    job = job_manager.create_job(name="hooked", user=user, job_type="BASIC")
    job.execute()
    for status in moves:
        job.status = status
    return job


# -- written with the move -------------------------------------------------------------------------


def test_nothing_configured_writes_no_rows_and_asks_nothing(job_manager, user, transactional_db) -> None:
    with CaptureQueriesContext(connection) as queries:
        job = moved_basic_job(job_manager, user, "Running", "Complete")
    assert Job.objects.get(pk=job.pk).status_code is Status.COMPLETE
    assert not [q for q in queries if "jobtower_delivery" in q["sql"] or "auth_user" in q["sql"]]
    assert Delivery.objects.count() == 0


def test_a_batch_of_moves_writes_its_rows_in_one_insert(job_manager, user, memory, hooks,
                                                         transactional_db) -> None:
    hooks("http://127.0.0.1:9/a", "http://127.0.0.1:9/b")
    jobs = [job_manager.create_job(name=f"m{i}", user=user, job_type="MEMORY") for i in range(10)]
    for job in jobs:
        job.execute()
        memory.set(job, Status.RUNNING)
    assert Delivery.objects.count() == 20  # Pending -> Submitted, one per endpoint
    with CaptureQueriesContext(connection) as queries:
        assert manager.apply_poll(jobs, manager.poll(memory, jobs)) == 10
    assert inserts_into("jobtower_delivery", queries) <= 1  # one statement for the batch, however spelt
    assert Delivery.objects.filter(payload__new="Running").count() == 20


def test_the_workers_claim_writes_its_rows_in_one_insert(job_manager, user, hooks, transactional_db) -> None:
    hooks("http://127.0.0.1:9/a")
    for i in range(5):
        job_manager.create_job(name=f"l{i}", user=user, job_type="LOCAL", command=["true"]).execute()
    with CaptureQueriesContext(connection) as queries:
        assert len(manager.claim(["LOCAL"], 5, source="worker")) == 5
    assert inserts_into("jobtower_delivery", queries) <= 1
    assert Delivery.objects.filter(payload__new="Running").count() == 5


def test_a_move_rolled_back_leaves_no_row(job_manager, user, hooks, transactional_db) -> None:
    from django.db import transaction

    hooks("http://127.0.0.1:9/a")
    job = moved_basic_job(job_manager, user)
    with pytest.raises(RuntimeError), transaction.atomic():
        job.status = "Running"
        raise RuntimeError("the app's transaction fails after the move")
    assert list(Delivery.objects.values_list("payload__new", flat=True)) == ["Submitted"]


def test_a_process_killed_right_after_the_move_loses_no_notification(job_manager, user, hooks, endpoint,
                                                                      engine_env) -> None:
    server = endpoint()
    hooks(server.url())
    job = moved_basic_job(job_manager, user, "Running")
    Delivery.objects.all().delete()
    code = (
        "import os, signal, django\n"
        "django.setup()\n"
        "from django.conf import settings\n"
        f"settings.JOBTOWER = {{**settings.JOBTOWER, 'WEBHOOKS': [{{'url': {server.url()!r}, 'secret': 's3cret'}}]}}\n"
        "from jobtower import manager\n"
        "from jobtower.models import Job\n"
        "from jobtower.statuses import Status\n"
        f"manager.transition(Job.objects.get(pk={job.pk}), Status.COMPLETE, source='app')\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    process = subprocess.run([sys.executable, "-c", code], env=engine_env, timeout=60, check=False)
    assert process.returncode == -9
    assert Job.objects.get(pk=job.pk).status_code is Status.COMPLETE
    assert server.received == []  # the process died before anything was sent
    row = Delivery.objects.get(job_id=job.pk)
    assert row.state == Delivery.PENDING and row.payload["new"] == "Complete"
    stop = threading.Event()
    monitor = Monitor(interval=0.2, check_interval=0.05, results_threads=0)
    thread = threading.Thread(target=monitor.run, args=(stop,), daemon=True)
    thread.start()
    try:
        wait_for(lambda: server.received, 30, what="the monitor started afterwards to deliver it")
    finally:
        stop.set()
        thread.join(timeout=30)
    [request] = server.received
    assert request.payload["job_id"] == job.pk and request.payload["new"] == "Complete"
    assert request.headers["webhook-id"] == str(row.key)
    assert webhooks.verify("s3cret", request.body, request.headers)
    assert Delivery.objects.get(pk=row.pk).state == Delivery.SENT


# -- delivery --------------------------------------------------------------------------------------


def test_delivered_signed_per_standard_webhooks_and_a_dead_endpoint_fails_nothing(
    job_manager, user, hooks, endpoint, transactional_db
) -> None:
    server = endpoint()
    hooks(server.url(), "http://127.0.0.1:9/nothing-listens-here", DELIVERY_MAX_ATTEMPTS=2, DELIVERY_BACKOFF=0.05)
    job = moved_basic_job(job_manager, user, "Running", "Complete")
    assert Job.objects.get(pk=job.pk).status_code is Status.COMPLETE
    deliver_until(lambda: not Delivery.objects.filter(state=Delivery.PENDING).exists())
    moves = [(r.payload["old"], r.payload["new"]) for r in server.received]
    assert moves == [("Pending", "Submitted"), ("Submitted", "Running"), ("Running", "Complete")]
    keys = [str(k) for k in Delivery.objects.filter(state=Delivery.SENT).values_list("key", flat=True)]
    assert [r.headers["webhook-id"] for r in server.received] == keys
    for request in server.received:
        assert request.payload["job_id"] == job.pk and request.payload["type"] == "job.status_changed"
        assert webhooks.verify("s3cret", request.body, request.headers)
        assert not webhooks.verify("wrong", request.body, request.headers)
    dead = Delivery.objects.filter(state=Delivery.FAILED)
    assert dead.count() == 3 and {row.attempts for row in dead} == {2}
    assert all(row.last_error.startswith("unreachable") for row in dead)


def test_retries_back_off_exponentially_until_the_endpoint_answers(job_manager, user, hooks, endpoint,
                                                                    transactional_db) -> None:
    server = endpoint(lambda request: (500, {}) if len(server.received) <= 2 else (204, {}))
    hooks(server.url(), DELIVERY_BACKOFF=0.3)
    moved_basic_job(job_manager, user)
    deliver_until(lambda: Delivery.objects.filter(state=Delivery.SENT).exists())
    row = Delivery.objects.get()
    assert row.attempts == 3 and row.last_error == "" and row.sent_at is not None
    assert len(server.received) == 3
    assert len({r.headers["webhook-id"] for r in server.received}) == 1  # one message, retried
    gaps = [b.at - a.at for a, b in zip(server.received, server.received[1:], strict=False)]
    assert gaps[0] >= 0.3 and gaps[1] >= 0.6  # the delay doubles


def test_attempts_are_bounded_and_the_failure_is_kept(job_manager, user, hooks, endpoint, transactional_db) -> None:
    server = endpoint(lambda request: (503, {}))
    hooks(server.url(), DELIVERY_BACKOFF=0.01, DELIVERY_MAX_ATTEMPTS=3)
    moved_basic_job(job_manager, user)
    deliver_until(lambda: Delivery.objects.filter(state=Delivery.FAILED).exists())
    for _ in range(3):
        outbox.deliver_due()
    row = Delivery.objects.get()
    assert row.attempts == 3 and len(server.received) == 3
    assert row.last_error.startswith("HTTP 503")


def test_a_redirect_is_a_failed_attempt_never_followed(job_manager, user, hooks, endpoint, transactional_db) -> None:
    server = endpoint(lambda r: (204, {}) if r.path == "/elsewhere" else (307, {"Location": "/elsewhere"}))
    hooks(server.url(), DELIVERY_MAX_ATTEMPTS=1)
    moved_basic_job(job_manager, user)
    deliver_until(lambda: Delivery.objects.filter(state=Delivery.FAILED).exists())
    assert [r.path for r in server.received] == ["/hook"]
    assert "redirects are not followed" in Delivery.objects.get().last_error


def test_credentials_in_the_url_go_as_basic_auth_and_logs_show_no_secret(job_manager, user, hooks, endpoint,
                                                                         caplog, transactional_db) -> None:
    failing = {"left": 1}

    def answer(request: Request) -> tuple[int, dict[str, str]]:
        failing["left"] -= 1
        return (500 if failing["left"] >= 0 else 204), {}

    server = endpoint(answer)
    url = server.url("/hook?token=qs-secret", userinfo="hooker:pa%40ss-secret@")
    hooks(url, secret="signing-secret", DELIVERY_BACKOFF=0.05)
    caplog.set_level(logging.DEBUG)
    moved_basic_job(job_manager, user)
    deliver_until(lambda: Delivery.objects.filter(state=Delivery.SENT).exists())
    first = server.received[0]
    assert first.path == "/hook?token=qs-secret"  # the query string is the endpoint's: it is sent
    assert first.headers["Authorization"] == "Basic " + base64.b64encode(b"hooker:pa@ss-secret").decode()
    assert webhooks.verify("signing-secret", first.body, first.headers)
    row = Delivery.objects.get()
    assert row.target == server.url("/hook")
    shown = caplog.text + row.target + row.last_error + json.dumps(row.payload)
    assert server.url("/hook") in caplog.text  # the failed attempt is logged, as scheme://host/path
    for secret in ("qs-secret", "pa%40ss", "pa@ss", "hooker", "signing-secret"):
        assert secret not in shown


def test_a_jobs_later_event_waits_for_its_earlier_one(job_manager, user, hooks, endpoint, transactional_db) -> None:
    tries: dict[str, int] = {}

    def answer(request: Request) -> tuple[int, dict[str, str]]:
        key = request.headers["webhook-id"]
        tries[key] = tries.get(key, 0) + 1
        # The first event of job A fails twice; everything else is accepted at once.
        first_of_a = request.payload["name"] == "A" and request.payload["new"] == "Submitted"
        return (500 if first_of_a and tries[key] <= 2 else 204), {}

    server = endpoint(answer)
    hooks(server.url(), DELIVERY_BACKOFF=0.2)
    a = job_manager.create_job(name="A", user=user, job_type="BASIC")
    b = job_manager.create_job(name="B", user=user, job_type="BASIC")
    for job in (a, b):
        job.execute()
        job.status = "Running"
        job.status = "Complete"
    deliver_until(lambda: not Delivery.objects.filter(state=Delivery.PENDING).exists())
    of_a = [r.payload["new"] for r in server.received if r.payload["name"] == "A"]
    of_b = [r.payload["new"] for r in server.received if r.payload["name"] == "B"]
    assert of_a == ["Submitted", "Submitted", "Submitted", "Running", "Complete"]
    assert of_b == ["Submitted", "Running", "Complete"]
    # B was not held up by A's failing endpoint attempts: it was done before A's retries ended.
    done_b = max(r.at for r in server.received if r.payload["name"] == "B")
    assert done_b < max(r.at for r in server.received if r.payload["name"] == "A" and r.payload["new"] == "Submitted")


def test_a_claimed_row_is_never_sent_by_a_second_sender(job_manager, user, hooks, transactional_db) -> None:
    hooks("http://127.0.0.1:9/a")
    moved_basic_job(job_manager, user)
    first, second = outbox.due(10), outbox.due(10)
    assert [r.pk for r in first] == [r.pk for r in second]
    assert outbox.claim(first[0], lease=60) and not outbox.claim(second[0], lease=60)
    assert outbox.due(10) == []  # claimed: due to nobody until its lease ends


# -- signatures --------------------------------------------------------------------------------------


def test_signature_matches_the_standard_webhooks_reference_vector() -> None:
    # The example of the Standard Webhooks specification and its libraries.
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    body = b'{"test": 2432232314}'
    signature = webhooks.sign(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body)
    assert signature == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_verify_checks_signature_body_and_replay_window() -> None:
    now = time.time()
    body = b'{"job_id": 1}'
    headers = {"webhook-id": "abc", "webhook-timestamp": str(int(now)),
               "webhook-signature": webhooks.sign("s3cret", "abc", int(now), body)}
    assert webhooks.verify("s3cret", body, headers)
    assert webhooks.verify("s3cret", body, {k.title(): v for k, v in headers.items()})  # any header case
    assert not webhooks.verify("other", body, headers)
    assert not webhooks.verify("s3cret", b'{"job_id": 2}', headers)
    assert not webhooks.verify("s3cret", body, {**headers, "webhook-id": "abd"})
    assert not webhooks.verify("s3cret", body, {k: v for k, v in headers.items() if k != "webhook-signature"})
    rotated = {**headers, "webhook-signature": "v1,bm90LWl0 " + headers["webhook-signature"]}
    assert webhooks.verify("s3cret", body, rotated)
    # Replays: a message signed 5 minutes ago is still accepted, one older (or from the future) is not.
    assert webhooks.verify("s3cret", body, headers, now=now + 299)
    assert not webhooks.verify("s3cret", body, headers, now=now + 301)
    assert not webhooks.verify("s3cret", body, headers, now=now - 301)
    assert webhooks.verify("s3cret", body, headers, now=now + 3000, tolerance=3600)


def test_redact_keeps_scheme_host_and_path_only() -> None:
    assert webhooks.redact("https://u:p@example.org:8443/a/b?token=x#frag") == "https://example.org:8443/a/b"
    assert webhooks.redact("http://[::1]:80/h") == "http://[::1]:80/h"


# -- e-mail ------------------------------------------------------------------------------------------


def test_owners_get_an_email_when_their_job_ends(job_manager, user, other_user, settings,
                                                 transactional_db) -> None:
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.JOBTOWER = {**settings.JOBTOWER, "NOTIFY_EMAIL": {"statuses": ["Complete", "Error"],
                                                               "from_email": "jobs@example.org"}}
    user.email = "alice@example.org"
    user.save()
    mail.outbox.clear()
    ended = moved_basic_job(job_manager, user, "Running", "Complete")
    failed = moved_basic_job(job_manager, user, "Running", "Error")
    moved_basic_job(job_manager, other_user, "Running", "Complete")  # bob has no e-mail address
    rows = Delivery.objects.filter(kind=Delivery.EMAIL)
    assert sorted(rows.values_list("job_id", "payload__new")) == [(ended.pk, "Complete"), (failed.pk, "Error")]
    assert mail.outbox == []  # nothing is sent by the process that moved the jobs
    Monitor(results_threads=0).cycle()
    assert sorted(m.subject for m in mail.outbox) == [
        f"Job hooked ({ended.pk}): Complete", f"Job hooked ({failed.pk}): Error",
    ]
    assert all(m.to == ["alice@example.org"] and m.from_email == "jobs@example.org" for m in mail.outbox)
    assert set(rows.values_list("state", flat=True)) == {Delivery.SENT}
