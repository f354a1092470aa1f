"""The API's data as pydantic models: responses, and one create request per registered job type.

A job type's create model is generated from its SpecField declarations (jobtower.models.job.spec_fields):
each setting's JSON Schema hint (`SpecField(schema=...)`, else the type of its default) becomes a
pydantic field, so a new engine's settings are validated and appear in the OpenAPI document without
any edit here.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, RootModel, create_model

from jobtower.backends import Capability
from jobtower.models import Job
from jobtower.models.job import spec_fields
from jobtower.registry import job_class, job_types, registered_classes
from jobtower.statuses import Status

#: The app label of jobs created through the API when the body names none.
DEFAULT_APP = "api"
APP_LABEL = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}")
MAX_NAME = Job._meta.get_field("name").max_length or 1024
#: Fields of a create request besides the job type's own settings.
COMMON_FIELDS = ("job_type", "name", "description", "app", "execute", "groups", "extended_properties")

_Time = Optional[str]  # noqa: UP045 - pydantic evaluates it at runtime


class Error(BaseModel):
    """Every error: what was wrong and how to fix it."""

    error: str


class JobOut(BaseModel):
    """A job as the API shows it (read from the database; no engine is asked)."""

    model_config = ConfigDict(title="Job")

    id: int
    url: str = Field(description="this job in the API")
    name: str
    description: str
    job_type: str
    label: str = Field(description="the app the job belongs to")
    user: str = Field(description="the owner's username")
    groups: list[str] = Field(description="groups it is shared with")
    status: str = Field(json_schema_extra={"enum": [s.display for s in Status]})
    status_code: str = Field(json_schema_extra={"enum": [s.value for s in Status]})
    status_message: str
    progress: Optional[float] = Field(description="percent done, as the job reports it")  # noqa: UP045
    progress_message: str
    attempt: int = Field(ge=1)
    creation_time: str = Field(json_schema_extra={"format": "date-time"})
    execute_time: _Time = Field(json_schema_extra={"format": "date-time"})
    start_time: _Time = Field(json_schema_extra={"format": "date-time"})
    completion_time: _Time = Field(json_schema_extra={"format": "date-time"})
    run_time: Optional[float] = Field(description="seconds it ran (so far); null before it starts")  # noqa: UP045
    result: Any = Field(description="what the job returned (any JSON value)")
    extended_properties: dict[str, Any]
    spec: dict[str, Any] = Field(description="the job type's settings")
    stale_since: _Time = Field(
        json_schema_extra={"format": "date-time"},
        description="set while the job's engine does not answer: the status is the last it gave",
    )
    capabilities: list[str] = Field(
        json_schema_extra={"items": {"type": "string", "enum": [c.value for c in Capability]}},
        description="what the job's engine can do; actions needing anything else answer 409",
    )


class JobPage(BaseModel):
    """A page of jobs."""

    count: int
    #: True when `count` (and `pages`) is the database's estimate: a manager's unfiltered list of a large
    #: table on PostgreSQL is not counted row by row.
    count_estimated: bool = False
    page: int
    page_size: int
    pages: int
    next: Optional[str]  # noqa: UP045
    previous: Optional[str]  # noqa: UP045
    results: list[JobOut]


class JobEvent(BaseModel):
    """One status move of a job."""

    id: int
    attempt: int
    from_status: str
    from_status_code: str
    to_status: str
    to_status_code: str
    time: str = Field(json_schema_extra={"format": "date-time"})
    source: str = Field(description="who moved it: execute, engine, stop, app, ...")
    message: str


class History(BaseModel):
    """A job's status moves, oldest first."""

    results: list[JobEvent]


class Logs(RootModel[dict[str, str]]):
    """The end of each log by stream name: {"stdout": "...", "stderr": "..."}."""


class Node(BaseModel):
    """One node of a workflow, as last stored (no engine is asked)."""

    name: str
    status: str = Field(json_schema_extra={"enum": [s.display for s in Status]})
    status_code: str = Field(json_schema_extra={"enum": [s.value for s in Status]})
    status_message: str
    parents: list[str] = Field(description="the names of the nodes that run before this one")
    category: str = Field(description="its throttle category (the workflow's max_jobs), or empty")
    retry: Optional[int] = Field(description="how often DAGMan runs it again after a failure")  # noqa: UP045
    start_time: _Time = Field(json_schema_extra={"format": "date-time"},
                              description="when it was first seen queued or running in this attempt")
    completion_time: _Time = Field(json_schema_extra={"format": "date-time"})
    run_time: Optional[float] = Field(  # noqa: UP045
        description="seconds since it was first seen queued (so far); null before that"
    )
    logs: str = Field(description="its stdout and stderr in the API")


class Nodes(BaseModel):
    """A workflow's nodes, in the order they were added."""

    results: list[Node]


# -- settings: from SpecField declarations to pydantic ---------------------------------------------

_PLAIN = {list: "array", dict: "object", str: "string", bool: "boolean", int: "integer", float: "number"}
_SCALARS: dict[str, Any] = {"string": str, "integer": int, "number": float, "boolean": bool}


def setting_schema(spec: Any) -> dict[str, Any]:
    """Return the JSON Schema of a SpecField: its own hint, else the type of its default."""
    hint = getattr(spec, "schema", None)
    if hint is not None:
        found = dict(hint)
    else:
        default = spec.default() if callable(spec.default) else spec.default
        found = {"type": _PLAIN[type(default)]} if type(default) in _PLAIN else {}
    description = getattr(spec, "description", "")
    if description:
        found.setdefault("description", description)
    return found


def python_type(schema: Mapping[str, Any]) -> Any:
    """Return the Python type pydantic validates `schema` with (the JSON Schema words SpecField hints use)."""
    kinds = schema.get("type")
    if kinds is None:
        return Any
    names = [kinds] if isinstance(kinds, str) else list(kinds)
    options = [_one_type(name, schema) for name in names if name != "null"]
    found: Any = options[0] if len(options) == 1 else functools.reduce(lambda a, b: a | b, options)
    return Optional[found] if "null" in names else found  # noqa: UP045


def _one_type(name: str, schema: Mapping[str, Any]) -> Any:
    constraints: dict[str, Any] = {}
    if name == "array":
        kind: Any = list[python_type(schema.get("items", {}))]  # type: ignore[misc]
        if schema.get("minItems"):
            constraints["min_length"] = schema["minItems"]
    elif name == "object":
        extra = schema.get("additionalProperties")
        kind = dict[str, python_type(extra) if isinstance(extra, Mapping) else Any]  # type: ignore[misc]
    else:
        kind = _SCALARS[name]
        if "exclusiveMinimum" in schema:
            constraints["gt"] = schema["exclusiveMinimum"]
        if "minimum" in schema:
            constraints["ge"] = schema["minimum"]
    return Annotated[kind, Field(**constraints)] if constraints else kind


def setting_schemas(cls: type[Job]) -> dict[str, dict[str, Any]]:
    """Return the JSON Schema of each setting of a job class."""
    return {name: setting_schema(spec) for name, spec in spec_fields(cls).items()}


def aliases(cls: type[Job]) -> list[str]:
    """Return every registered name of `cls` other than its own."""
    return sorted(name for name in job_types() if job_class(name) is cls and name != cls.job_type_name)


def model_name(cls: type[Job]) -> str:
    """Return the component name of a job type's create request ("JobCreateLocal")."""
    return f"JobCreate{cls.job_type_name.title().replace('_', '')}"


def create_model_for(cls: type[Job]) -> type[BaseModel]:
    """Return the pydantic model of a create request for `cls`: the common fields and its settings."""
    key = (cls, cls.job_type_name, tuple(aliases(cls)), tuple(
        (name, repr(schema)) for name, schema in setting_schemas(cls).items()))
    return _create_model(key)


@functools.lru_cache(maxsize=256)
def _create_model(key: tuple[Any, ...]) -> type[BaseModel]:
    cls = key[0]
    fields: dict[str, Any] = {
        "job_type": (Literal[tuple([cls.job_type_name, *aliases(cls)])], ...),
        "name": (str, Field(min_length=1, max_length=MAX_NAME, description="'{id}' in it becomes the job's id")),
        "description": (str, ""),
        "app": (str, Field(DEFAULT_APP, pattern=f"^{APP_LABEL.pattern}$",
                           description="the app label the job belongs to: the default, the site's, or an "
                           "installed app you may use")),
        "execute": (bool, Field(True, description="false: store it Pending")),
        "groups": (list[str], Field(default_factory=list, description="names of your groups to share the job with")),
        "extended_properties": (dict[str, Any], Field(default_factory=dict)),
    }
    for name, spec in spec_fields(cls).items():
        schema = setting_schema(spec)
        default = spec.default
        extra = {"description": schema["description"]} if "description" in schema else {}
        if callable(default):
            fields[name] = (python_type(schema), Field(default_factory=default, **extra))
        else:
            fields[name] = (python_type(schema), Field(default, **extra))
    return create_model(
        model_name(cls),
        __config__=ConfigDict(extra="forbid", strict=True, title=model_name(cls)),
        __doc__=f"A new {cls.job_type_name} job.",
        **fields,
    )


def create_models() -> list[type[BaseModel]]:
    """Return the create model of every registered job type (read when asked: types register late)."""
    return [create_model_for(cls) for _name, cls in registered_classes()]


_WORDS = {"array": "a list", "object": "a JSON object", "string": "a string", "number": "a number",
          "integer": "a whole number", "boolean": "true or false"}


def describe(schema: Mapping[str, Any]) -> str:
    """Return what a value of `schema` must be, in words ("a number above 0 or null")."""
    types = schema.get("type")
    if types is None:
        return "any JSON value"
    kinds = [types] if isinstance(types, str) else list(types)
    text = " or ".join(_WORDS[kind] for kind in kinds if kind != "null")
    if "items" in schema:
        text += f" of {schema['items'].get('type', 'value')}s"
    if schema.get("minItems"):
        text += " (not empty)"
    extra = schema.get("additionalProperties")
    if isinstance(extra, Mapping):
        text += f" with {extra.get('type', 'any')} values"
    if "exclusiveMinimum" in schema:
        text += f" above {schema['exclusiveMinimum']}"
    return text + (" or null" if "null" in kinds else "")
