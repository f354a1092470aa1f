"""The registry of job types: a name (as apps pass it to create_job) -> the job class that runs it."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from jobtower.models import Job

J = TypeVar("J", bound="type[Job]")

_BY_NAME: dict[str, type[Job]] = {}


def register_job_type(name: str, *, aliases: tuple[str, ...] = ()) -> Callable[[J], J]:
    """Register a Job proxy class under `name` (and `aliases`); use as a class decorator."""

    def decorate(cls: J) -> J:
        if not getattr(cls._meta, "proxy", False):
            raise TypeError(
                f"{cls.__name__} must be a proxy model of jobtower.models.Job "
                "(class Meta: proxy = True) so that every job type shares one table"
            )
        for key in (name, *aliases):
            existing = _BY_NAME.get(key.upper())
            if existing is not None and existing is not cls:
                raise ValueError(f"job type {key!r} is already registered to {existing.__name__}")
        cls.job_type_name = name.upper()
        for key in (name, *aliases):
            _BY_NAME[key.upper()] = cls
        return cls

    return decorate


def job_types() -> list[str]:
    """Return every registered job type name, aliases included, sorted."""
    return sorted(_BY_NAME)


def job_class(job_type: str | type[Job]) -> type[Job]:
    """Return the job class for a registered name or a registered class; else a ValueError."""
    if isinstance(job_type, type):
        name = getattr(job_type, "job_type_name", None)
        if name and _BY_NAME.get(name) is job_type:
            return job_type
        raise ValueError(
            f"{job_type.__name__} is not a registered job type; decorate it with "
            "@jobtower.register_job_type('NAME')"
        )
    if isinstance(job_type, str):
        cls = _BY_NAME.get(job_type.upper())
        if cls is not None:
            return cls
    raise ValueError(
        f"unknown job type {job_type!r}; valid job types are: {', '.join(job_types())}"
    )


def class_for_stored(job_type: str) -> type[Job] | None:
    """Return the class for a stored job_type value, or None when it is not registered."""
    return _BY_NAME.get(job_type)


def registered_classes() -> list[tuple[str, type[Job]]]:
    """Return (canonical name, class) for every registered job type, aliases left out."""
    return sorted({(cls.job_type_name, cls) for cls in _BY_NAME.values()}, key=lambda item: item[0])
