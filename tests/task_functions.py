"""A host project's Django tasks (`@task`), run as jobtower jobs in tests/test_tasks.py."""

from __future__ import annotations

try:  # Django 6
    from django.tasks import task
except ImportError:  # Django 5.2 with the django-tasks backport
    from django_tasks import task


@task()
def add(a: int, b: int, *, scale: int = 1) -> dict:
    """Return a JSON result."""
    return {"sum": (a + b) * scale}


@task()
def diverge(reason: str) -> None:
    """Raise like a broken model does."""
    raise ArithmeticError(f"model diverged: {reason}")
