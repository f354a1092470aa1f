"""HTCondor schedulers: where CONDOR jobs go when they do not go to the local pool."""

from __future__ import annotations

from typing import Any

from django.db import models


class Scheduler(models.Model):
    """A named HTCondor schedd, reached through its pool's collector.

    `token` is an IDTOKEN the schedd accepts (``condor_token_create -identity user@domain``); jobs
    submitted with it run as that identity. It is write-only for people: the admin never shows it, it
    is left out of serialization (dumpdata, the serializers) and out of repr() and str().
    """

    name = models.CharField(max_length=255, unique=True)
    host = models.CharField(
        max_length=1024,
        help_text="the pool's collector: host or host:port (9618 when no port is given)",
    )
    schedd_name = models.CharField(
        max_length=1024, blank=True, default="",
        help_text="the schedd's Name in the collector; empty when the pool has exactly one schedd",
    )
    token = models.TextField(
        blank=True, default="", serialize=False,
        help_text="an IDTOKEN for this schedd (kept out of the admin and of serialized data)",
    )
    description = models.TextField(blank=True, default="")

    class Meta:
        app_label = "jobtower"
        ordering = ["name"]
        verbose_name = "HTCondor scheduler"

    @property
    def has_token(self) -> bool:
        """Return True when the scheduler authenticates with its own IDTOKEN."""
        return bool(self.token)

    def __str__(self) -> str:
        where = f"{self.schedd_name}@{self.host}" if self.schedd_name else self.host
        return f"{self.name} ({where})"

    def __repr__(self) -> str:
        return f"<Scheduler {self.name!r}: host={self.host!r} schedd_name={self.schedd_name!r}>"


_SSH_ONLY = ("username", "password", "private_key_path", "private_key_pass")


def create_condor_scheduler(
    name: str,
    host: str,
    port: int | None = None,
    *,
    schedd_name: str = "",
    token: str = "",
    description: str = "",
    **ssh: Any,
) -> Scheduler:
    """Return a new, unsaved HTCondor scheduler record (as Tethys's does); save() it to use it.

    `host` is the pool's collector (with `port`, or "host:port"). Tethys's SSH settings (username,
    password, private_key_path, private_key_pass) have no meaning here: jobtower talks to the schedd
    with HTCondor's own protocol and authenticates with an IDTOKEN (`token`).
    """
    given = sorted(key for key, value in ssh.items() if value is not None)
    unknown = [key for key in given if key not in _SSH_ONLY]
    if unknown:
        raise TypeError(f"create_condor_scheduler() got unexpected keyword arguments: {', '.join(unknown)}")
    if given:
        raise TypeError(
            f"create_condor_scheduler(): {', '.join(given)} are SSH settings, and jobtower does not use "
            "SSH: it reaches the schedd through the collector with HTCondor's own protocol. Give "
            "token=<an IDTOKEN from condor_token_create> to submit as a user of that pool."
        )
    if not name or not host:
        raise ValueError("a scheduler needs a name and the host of its pool's collector")
    if port is not None:
        host = f"{host}:{int(port)}"
    return Scheduler(name=name, host=host, schedd_name=schedd_name, token=token.strip(), description=description)


def get_scheduler(name: str) -> Scheduler | None:
    """Return the scheduler called `name`, or None when there is none."""
    return Scheduler.objects.filter(name=name).first()
