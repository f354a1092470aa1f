"""schemathesis against the served OpenAPI schema, through Django's WSGI app: no request makes a 5xx.

The schema is loaded from /api/openapi.json as any client would load it. Every operation gets
generated requests (valid and invalid), authenticated with a Bearer token; path ids point at real jobs
most of the time, so actions, logs and history run on jobs that exist. Runs are derandomized so the
same requests are sent every time.
"""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from django.core.wsgi import get_wsgi_application
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

import tests.jobtypes  # noqa: F401  - the test-only job types are registered, so the schema never varies
from jobtower.statuses import Status
from jobtower.web.tokens import make_token

application = get_wsgi_application()
schema = schemathesis.openapi.from_wsgi("/api/openapi.json", application)

#: Job types that are safe to run from generated requests: no engine outside this process is called.
SAFE_TYPES = {"BASIC", "LOCAL"}


def test_the_served_schema_is_valid_openapi_3_1_and_covers_every_endpoint() -> None:
    schema.validate()  # the OpenAPI 3.1 meta-schema, as schemathesis ships it
    assert schema.raw_schema["openapi"].startswith("3.1")
    operations = {(path, method) for path, item in schema.raw_schema["paths"].items() for method in item}
    one = "/api/jobs/{job_id}/"
    expected = {("/api/jobs/", "get"), ("/api/jobs/", "post"), (one, "get"), (one, "delete"),
                *((f"{one}{verb}/", "post") for verb in ("run", "stop", "pause", "resume", "resubmit")),
                (f"{one}logs/", "get"), (f"{one}history/", "get"), ("/api/openapi.json", "get"),
                (f"{one}nodes/", "get"), (f"{one}nodes/{{name}}/logs/", "get")}
    assert operations == expected and len(operations) == 14
    for path, item in schema.raw_schema["paths"].items():
        for method, operation in item.items():
            codes = set(operation["responses"])
            assert codes & {"200", "201", "204"}, (path, method)
            if path.endswith("openapi.json"):
                assert operation["security"] == []
            else:
                assert {"401", "404"} <= codes or (path, method) == ("/api/jobs/", "post"), (path, method)


@pytest.fixture
def wsgi_in_test_transaction(db: Any) -> Any:
    """Keep the test's connection across WSGI requests, as Django's test client does.

    The WSGI handler closes database connections when a request ends; inside a test that would end the
    test's transaction, so (like django.test.Client) the connection-closing signal handlers are
    detached for the test.
    """
    from django.core import signals
    from django.db import close_old_connections

    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


@pytest.fixture
def jobs(wsgi_in_test_transaction: Any, django_user_model: Any, job_manager: Any) -> tuple[str, list[int]]:
    """A user with a token and jobs of theirs in several statuses; another user's job too."""
    owner = django_user_model.objects.create_user("fuzz", password="pw-fuzz")
    stranger = django_user_model.objects.create_user("stranger", password="pw-stranger")
    ids = []
    for status in (Status.PENDING, Status.SUBMITTED, Status.RUNNING, Status.PAUSED, Status.COMPLETE):
        job = job_manager.create_job(name=f"fuzz-{status.value}", user=owner, job_type="BASIC")
        job.save()
        if status is not Status.PENDING:
            job.execute()
        if status in (Status.RUNNING, Status.PAUSED, Status.COMPLETE):
            job.update_status(Status.RUNNING)
        if status in (Status.PAUSED, Status.COMPLETE):
            job.update_status(status)
        ids.append(job.pk)
    theirs = job_manager.create_job(name="not-yours", user=stranger, job_type="BASIC")
    theirs.save()
    ids.append(theirs.pk)
    return make_token(owner), ids


@schema.parametrize()
@settings(
    max_examples=12,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_no_request_makes_a_server_error(case: Any, jobs: tuple[str, list[int]]) -> None:
    token, ids = jobs
    job_id = case.path_parameters.get("job_id") if case.path_parameters else None
    if isinstance(job_id, int) and job_id % 5:
        case.path_parameters["job_id"] = ids[job_id % len(ids)]  # most requests hit a real job
    job_type = case.body.get("job_type") if isinstance(case.body, dict) else None
    if isinstance(case.body, dict) and not (isinstance(job_type, str) and job_type.upper() in SAFE_TYPES):
        # Generated jobs of engine-backed types are stored, never sent to an engine.
        case.body["execute"] = False
    case.call_and_validate(
        headers={"Authorization": f"Bearer {token}"},
        checks=[not_a_server_error],
    )


@pytest.mark.django_db
def test_a_new_job_type_s_settings_appear_in_the_create_schema_and_are_validated(client, django_user_model) -> None:
    """A job type registered here, with one extra setting, reaches the API without any edit to it."""
    from jobtower.models import Job
    from jobtower.models.job import SpecField
    from jobtower.registry import register_job_type, registered_classes
    from jobtower.web.api import openapi_schema, schemas
    from jobtower.web.tokens import make_token

    if "THROWAWAY" not in {name for name, _ in registered_classes()}:

        @register_job_type("THROWAWAY")
        class ThrowawayJob(Job):
            """A job type only this test knows."""

            wavelength = SpecField(None, schema={"type": ["number", "null"], "exclusiveMinimum": 0},
                                   description="in nanometres")

            class Meta:
                proxy = True
                app_label = "jobtower"

    document = openapi_schema()
    create = document["components"]["schemas"]["JobCreateThrowaway"]
    assert create["properties"]["wavelength"]["description"] == "in nanometres"
    one_of = document["components"]["schemas"]["JobCreate"]["oneOf"]
    assert {"$ref": "#/components/schemas/JobCreateThrowaway"} in one_of
    assert any("wavelength" in model.model_fields for model in schemas.create_models())
    served = client.get("/api/openapi.json").json()
    assert "wavelength" in served["components"]["schemas"]["JobCreateThrowaway"]["properties"]
    user = django_user_model.objects.create_user("nm", password="pw-nm")
    headers = {"HTTP_AUTHORIZATION": f"Bearer {make_token(user)}"}
    body = {"job_type": "THROWAWAY", "name": "t", "wavelength": 532.0}
    created = client.post("/api/jobs/", body, content_type="application/json", **headers)
    assert created.status_code == 201 and created.json()["spec"] == {"wavelength": 532.0}
    bad = client.post("/api/jobs/", {**body, "wavelength": -1}, content_type="application/json", **headers)
    assert bad.status_code == 400 and bad.json()["error"] == "wavelength must be a number above 0 or null, not integer"
