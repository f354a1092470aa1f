"""AppBase: what an app declares (package, name) and gets (a job manager, workspaces)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from django.conf import settings

from jobtower import conf

if TYPE_CHECKING:
    from jobtower.manager import JobManager


class Workspace:
    """A folder that belongs to an app or to one user of an app."""

    def __init__(self, path: str | Path) -> None:
        self._path = Path(path)

    @property
    def path(self) -> str:
        """Return the folder's absolute path as a string (the Tethys API)."""
        return str(self._path)

    def files(self) -> list[str]:
        """Return the paths of the files directly in the workspace."""
        return sorted(str(p) for p in self._path.iterdir() if p.is_file())

    def directories(self) -> list[str]:
        """Return the paths of the folders directly in the workspace."""
        return sorted(str(p) for p in self._path.iterdir() if p.is_dir())

    def clear(self) -> None:
        """Remove everything inside the workspace, keeping the folder."""
        for child in self._path.iterdir():
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()

    def __repr__(self) -> str:
        return f"<Workspace {self._path}>"


class AppBase:
    """Subclass it with `package` and `name`; the class is the app (no instance is needed)."""

    #: The app's package name: every job it creates carries it as its read-only `label`.
    package: ClassVar[str] = ""
    #: The app's human-readable name.
    name: ClassVar[str] = ""
    #: Where this app's workspaces live; default <WORKSPACES_ROOT>/<package>.
    workspaces_root: ClassVar[str | None] = None

    #: Tethys's scheduler settings: {setting name: scheduler name}. A name not listed is taken as the
    #: scheduler's own name (jobtower has no portal admin to assign schedulers to settings).
    schedulers: ClassVar[dict[str, str]] = {}

    _job_managers: ClassVar[dict[type, JobManager]] = {}

    @classmethod
    def get_scheduler(cls, name: str) -> Any:
        """Return the scheduler for the app's scheduler setting `name` (Tethys's `app.get_scheduler`)."""
        from jobtower.models import get_scheduler

        scheduler_name = cls.schedulers.get(name, name)
        scheduler = get_scheduler(scheduler_name)
        if scheduler is None:
            via = f" (setting {name!r} of {cls.__name__}.schedulers)" if name in cls.schedulers else ""
            raise LookupError(
                f"there is no scheduler {scheduler_name!r}{via}; create it with "
                f"create_condor_scheduler({scheduler_name!r}, host=...).save() or in the admin"
            )
        return scheduler

    @classmethod
    def get_job_manager(cls) -> JobManager:
        """Return the app's JobManager."""
        from jobtower.manager import JobManager

        manager = AppBase._job_managers.get(cls)
        if manager is None:
            manager = AppBase._job_managers[cls] = JobManager(cls)
        return manager

    @classmethod
    def get_app_workspace(cls) -> Workspace:
        """Return the app's workspace, creating its folder if needed."""
        return _make(app_root(cls) / "app_workspace")

    @classmethod
    def get_user_workspace(cls, user: Any) -> Workspace:
        """Return `user`'s workspace in this app, creating its folder if needed."""
        return _make(user_workspace_path(cls, user))


def app_root(app: Any) -> Path:
    """Return the folder that holds an app's workspaces."""
    package = getattr(app, "package", "")
    if not package or "/" in package or package in (".", ".."):
        raise ValueError(f"{app!r} needs a plain `package` name such as 'my_first_app'")
    configured = getattr(app, "workspaces_root", None)
    return Path(configured).absolute() if configured else conf.workspaces_root() / package


def user_workspace_path(app: Any, user: Any) -> Path:
    """Return the path of `user`'s workspace in `app` (without creating it)."""
    username = str(getattr(user, "get_username", lambda: "")() or "")
    if not username or "/" in username or "\\" in username or username in (".", ".."):
        username = f"user_{user.pk}"  # never let a username walk out of the workspaces folder
    return app_root(app) / "user_workspaces" / username


def user_workspace(app: Any, user: Any) -> str:
    """Return the path of `user`'s workspace in `app` as text: user_workspace_path(), remembered.

    Every create_job() needs it: the answer is kept per app, user and everything it is made from
    (the settings, $JOBTOWER_HOME, the current folder), so a changed setting gives a new answer.
    """
    environ = os.environ
    configured = getattr(settings, "JOBTOWER", None) or {}  # what conf.home() and conf.workspaces_root() read
    key = (
        getattr(app, "package", ""), getattr(app, "workspaces_root", None), configured.get("HOME"),
        configured.get("WORKSPACES_ROOT"), environ.get("JOBTOWER_HOME"), environ.get("HOME"), os.getcwd(), user.pk,
        str(getattr(user, "get_username", lambda: "")() or ""),
    )
    found = _user_workspaces.get(key)
    if found is None:
        if len(_user_workspaces) >= 4096:
            _user_workspaces.clear()
        found = _user_workspaces[key] = str(user_workspace_path(app, user))
    return found


_user_workspaces: dict[tuple[Any, ...], str] = {}


def _make(path: Path) -> Workspace:
    path.mkdir(parents=True, exist_ok=True)
    return Workspace(path)
