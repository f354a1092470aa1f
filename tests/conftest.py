"""Fixtures shared by the tests: users, an app, its job manager, the in-memory engine."""

from __future__ import annotations

import os
from typing import Any

import pytest

import jobtower


class MyFirstApp(jobtower.AppBase):
    """The app of the Jobs API document's samples."""

    package = "my_first_app"
    name = "My First App"


class OtherApp(jobtower.AppBase):
    package = "other_app"
    name = "Other App"


# The fixtures that need an engine outside the test process, and the marker each of their tests carries, so
# that `pytest -m "not condor and not browser"` leaves out exactly the tests that need the pool or Chromium.
ENGINE_FIXTURES = {"pool": "condor", "browser_page": "browser"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Refuse a test that uses an engine's fixture without carrying that engine's marker."""
    unmarked = [
        f"{item.nodeid} uses {fixture!r} but is not marked {marker!r}"
        for item in items
        for fixture, marker in ENGINE_FIXTURES.items()
        if fixture in getattr(item, "fixturenames", ()) and item.get_closest_marker(marker) is None
    ]
    if unmarked:
        raise pytest.UsageError("\n".join(unmarked))


@pytest.fixture(autouse=True, scope="session")
def _database_is_what_ci_asked_for(django_db_setup: Any, django_db_blocker: Any) -> None:
    """Fail (never skip) when the run was asked for PostgreSQL and is not on it."""
    from django.db import connection

    wanted = "postgresql" if os.environ.get("JOBTOWER_DATABASE_URL", "").startswith("postgres") else "sqlite"
    with django_db_blocker.unblock():
        assert connection.vendor == wanted, f"tests asked for {wanted} but run on {connection.vendor}"


@pytest.fixture(autouse=True)
def _own_workspaces(settings: Any, tmp_path: Any) -> None:
    """Give every test its own workspaces: job ids repeat after a rollback, folders must not."""
    settings.JOBTOWER = {**settings.JOBTOWER, "WORKSPACES_ROOT": str(tmp_path / "workspaces")}


@pytest.fixture
def app() -> type[jobtower.AppBase]:
    return MyFirstApp


@pytest.fixture
def job_manager(app: type[jobtower.AppBase]) -> Any:
    return app.get_job_manager()


@pytest.fixture
def user(django_user_model: Any) -> Any:
    return django_user_model.objects.create_user("alice", password="pw-alice")


@pytest.fixture
def other_user(django_user_model: Any) -> Any:
    return django_user_model.objects.create_user("bob", password="pw-bob")


@pytest.fixture
def memory() -> Any:
    from tests.jobtypes import memory_backend

    backend = memory_backend()
    backend.reset()
    yield backend
    backend.reset()


@pytest.fixture
def set_status() -> Any:
    """Force a job's stored status (test set-up only: production code goes through transition())."""

    def force(job: Any, status: jobtower.Status) -> None:
        from jobtower.models import Job

        Job.objects.filter(pk=job.pk).update(_status=status.value)
        job._set(_status=status.value)

    return force


def wait_for(predicate: Any, timeout: float = 30.0, interval: float = 0.05, what: str = "condition") -> Any:
    """Poll `predicate` until it returns something true; fail with `what` after `timeout` seconds."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


@pytest.fixture
def local_worker(transactional_db: Any) -> Any:
    """A LOCAL worker running in a thread of the test process (jobs are real processes)."""
    import threading

    from jobtower.worker import LocalWorker

    stop = threading.Event()
    worker = LocalWorker(concurrency=4, idle_sleep=0.02)
    thread = threading.Thread(target=worker.run, args=(stop,), daemon=True)
    thread.start()
    yield worker
    stop.set()
    thread.join(timeout=30)


@pytest.fixture
def engine_env(transactional_db: Any) -> dict[str, str]:
    """Environment for a `jobtower worker`/`monitor` subprocess on the test database."""
    import sys
    from pathlib import Path

    from django.conf import settings
    from django.db import connection

    db = connection.settings_dict
    if connection.vendor == "postgresql":
        url = f"postgresql://{db['USER']}@{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}"
    else:
        url = f"sqlite://{db['NAME']}"
    root = str(Path(__file__).resolve().parent.parent)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JOBTOWER_", "DJANGO_"))}
    env.update(
        DJANGO_SETTINGS_MODULE="tests.settings",
        JOBTOWER_DATABASE_URL=url,
        JOBTOWER_TEST_HOME=str(settings.JOBTOWER["HOME"]),
        PYTHONPATH=os.pathsep.join([root, env.get("PYTHONPATH", "")]),
        PATH=os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", ""),
    )
    return env
