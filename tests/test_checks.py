"""System checks of the JOBTOWER settings."""

from __future__ import annotations

from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test import override_settings

from jobtower.checks import check_settings


def test_known_keys_pass() -> None:
    with override_settings(JOBTOWER={"HOME": "/tmp/x", "WEBHOOKS": []}):
        assert check_settings() == []


def test_a_misspelled_key_is_a_warning_naming_the_valid_ones() -> None:
    with override_settings(JOBTOWER={"HOME": "/tmp/x", "WEBHOKS": []}):
        (warning,) = check_settings()
    assert warning.id == "jobtower.W001" and "JOBTOWER['WEBHOKS'] is not a jobtower setting" in warning.msg
    assert warning.hint.startswith("did you mean 'WEBHOOKS'? valid keys: BACKENDS, CALLBACK_REQUIRES_TOKEN")


def test_the_check_runs_with_djangos_check_command(db: object) -> None:
    with override_settings(JOBTOWER={"HOMEE": "x", "WORKSPACE_ROOT": "y"}):
        try:
            call_command("check", fail_level="WARNING")
        except SystemCheckError as exc:
            text = str(exc)
        else:
            raise AssertionError("the check command passed a misspelled JOBTOWER key")
    assert "jobtower.W001" in text and "did you mean 'HOME'?" in text and "did you mean 'WORKSPACES_ROOT'?" in text


def test_a_jobtower_setting_that_is_not_a_dict_is_an_error() -> None:
    with override_settings(JOBTOWER=["HOME"]):
        (error,) = check_settings()
    assert error.id == "jobtower.E001" and "must be a dict, not list" in error.msg
