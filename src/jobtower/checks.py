"""Django system checks: of the JOBTOWER settings (a misspelled key is a warning, not silently ignored), and,
as a database check, of the Slurm cluster records (a rest_url that would send a JWT in clear is an error)."""

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


def check_slurm_clusters(app_configs: Any = None, databases: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Return an error for every Slurm cluster whose rest_url would send its JWT in clear (a database check).

    Django runs database checks only when asked for a database (`manage.py check --database default`) and
    at `migrate`; the records are refused when saved and the backend refuses them before sending a token,
    so this finds the ones written around save() (QuerySet.update(), raw SQL, an older jobtower).
    """
    from django.db import DatabaseError

    from jobtower.backends.slurmrest import rest_url_problem
    from jobtower.models import SlurmCluster

    messages: list[CheckMessage] = []
    for alias in databases or ():
        try:
            clusters = list(SlurmCluster.objects.using(alias).exclude(rest_url="").values_list("name", "rest_url"))
        except DatabaseError:
            continue  # not migrated yet: no records to check
        for name, url in clusters:
            problem = rest_url_problem(name, url)
            if problem:
                messages.append(Error(
                    problem, id="jobtower.E002",
                    hint=f"change it in the admin (Slurm clusters > {name}) or with "
                         f"SlurmCluster.objects.filter(name={name!r}).update(rest_url='https://...')",
                ))
    return messages
