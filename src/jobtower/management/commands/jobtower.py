"""`python manage.py jobtower COMMAND`: the `jobtower` command inside a host project (its settings)."""

from __future__ import annotations

import argparse
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from jobtower import cli


class Command(BaseCommand):
    """Run jobtower's commands (worker, monitor, submit, list, show, logs, wait, stop, token)."""

    help = "Run jobtower's commands against this project's settings and database: worker, monitor, list, ..."

    def add_arguments(self, parser: CommandParser) -> None:
        cli.add_commands(parser, managed=True)

    def get_version(self) -> str:
        return cli._version()

    def handle(self, *args: Any, **options: Any) -> None:
        code = options["func"](argparse.Namespace(**options))
        if code:
            raise SystemExit(code)
