"""Engines as plug-ins: each backend implements the small interface of `base.Backend`."""

from __future__ import annotations

import functools
import importlib

from jobtower.backends.base import Backend, Observation

__all__ = ["Backend", "Observation", "get_backend"]


@functools.cache
def get_backend(path: str) -> Backend:
    """Return the (shared) backend instance named by a "module:Class" path."""
    module_name, _, class_name = path.partition(":")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as exc:
        raise ImportError(f"cannot load the job backend {path!r}: {exc}") from exc
    return cls()
