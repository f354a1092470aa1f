"""Django system checks of the JOBTOWER settings: a misspelled key is a warning, not silently ignored."""

from __future__ import annotations

import difflib
from typing import Any

from django.core.checks import CheckMessage, Error, Warning


def check_settings(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Return a warning for every unknown key of settings.JOBTOWER (an error when it is not a dict)."""
    from django.conf import settings

    from jobtower.conf import DEFAULTS

    configured = getattr(settings, "JOBTOWER", {})
    if not isinstance(configured, dict):
        return [Error(f"JOBTOWER must be a dict, not {type(configured).__name__}",
                      hint="write JOBTOWER = {'HOME': ...} in your settings", id="jobtower.E001")]
    messages: list[CheckMessage] = []
    for key in sorted(k for k in configured if k not in DEFAULTS):
        close = difflib.get_close_matches(str(key), DEFAULTS, n=1)
        guess = f"did you mean {close[0]!r}? " if close else ""
        messages.append(Warning(
            f"JOBTOWER[{key!r}] is not a jobtower setting and is ignored",
            hint=f"{guess}valid keys: {', '.join(sorted(DEFAULTS))}", id="jobtower.W001",
        ))
    return messages
