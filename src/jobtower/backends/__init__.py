"""Engines as plug-ins: each backend implements the small interface of `base.Backend`.

Which backend runs a job type is a setting: `JOBTOWER["BACKENDS"] = {"CONDOR": "pkg.mod:Backend"}` or
`{"CONDOR": {"BACKEND": "pkg.mod:Backend", "OPTIONS": {...}}}`; a type not named there runs on the
backend its class declares (`backend_path`). One instance is built per backend and options, per process.
"""

from __future__ import annotations

import functools
import importlib
import json
from typing import TYPE_CHECKING, Any

from django.core.exceptions import ImproperlyConfigured

from jobtower.backends.base import CORE, Backend, Capability, Observation, PollResult

if TYPE_CHECKING:
    from jobtower.models import Job

__all__ = [
    "CORE", "Backend", "Capability", "EngineKey", "Observation", "PollResult", "backend_at", "backend_for",
    "engine_key", "get_backend",
]

#: (dotted path, options as canonical JSON): what identifies one backend instance.
EngineKey = tuple[str, str]


def get_backend(path: str, options: dict[str, Any] | None = None) -> Backend:
    """Return the (shared) backend instance named by a "module:Class" path, built with `options`."""
    return _load(path, json.dumps(options or {}, sort_keys=True))


@functools.cache
def _load(path: str, options: str) -> Backend:
    module_name, sep, class_name = path.partition(":")
    if not sep:
        module_name, _, class_name = path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ImportError(f"cannot load the job backend {path!r}: {exc}") from exc
    if not (isinstance(cls, type) and issubclass(cls, Backend)):
        raise ImproperlyConfigured(f"{path!r} is not a jobtower backend (a subclass of jobtower.backends.Backend)")
    return cls(**json.loads(options))


def engine_key(job_class: type[Job]) -> EngineKey | None:
    """Return which backend and options run `job_class` (settings first), or None for app-driven types."""
    from jobtower import conf

    default = job_class.backend_path
    if default is None:
        return None
    entry = (conf.get("BACKENDS") or {}).get(job_class.job_type_name)
    if entry is None:
        return default, "{}"
    if isinstance(entry, str):
        return entry, "{}"
    if isinstance(entry, dict) and isinstance(entry.get("BACKEND", default), str):
        unknown = set(entry) - {"BACKEND", "OPTIONS"}
        if unknown:
            raise ImproperlyConfigured(
                f"JOBTOWER['BACKENDS'][{job_class.job_type_name!r}] has unknown keys {sorted(unknown)}; "
                "use {'BACKEND': 'module:Class', 'OPTIONS': {...}}"
            )
        try:
            options = json.dumps(entry.get("OPTIONS") or {}, sort_keys=True)
        except TypeError as exc:
            raise ImproperlyConfigured(
                f"JOBTOWER['BACKENDS'][{job_class.job_type_name!r}]['OPTIONS'] must be JSON values: {exc}"
            ) from None
        return entry.get("BACKEND", default), options
    raise ImproperlyConfigured(
        f"JOBTOWER['BACKENDS'][{job_class.job_type_name!r}] must be 'module:Class' or "
        "{'BACKEND': 'module:Class', 'OPTIONS': {...}}"
    )


def backend_at(key: EngineKey) -> Backend:
    """Return the backend instance an engine key (from engine_key()) names."""
    return _load(*key)


def backend_for(job_class: type[Job]) -> Backend | None:
    """Return the backend that runs jobs of `job_class`, or None when the app drives them itself."""
    key = engine_key(job_class)
    return _load(*key) if key is not None else None
