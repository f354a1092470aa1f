"""The `jobtower` command: migrate the database, serve the standalone site, run Django commands."""

from __future__ import annotations

import argparse
import os
import secrets
import sys
from typing import Any, Sequence

DEFAULT_SETTINGS = "jobtower.site.settings"


def _setup() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", DEFAULT_SETTINGS)
    import django

    django.setup()


def cmd_migrate(args: argparse.Namespace) -> int:
    """Create or upgrade jobtower's tables."""
    _setup()
    from django.core.management import call_command

    call_command("migrate", interactive=False, verbosity=args.verbosity)
    return 0


def ensure_first_user() -> tuple[str, str] | None:
    """Create an `admin` superuser with a random password when the site has no user at all."""
    from django.contrib.auth import get_user_model

    User = get_user_model()
    if User.objects.exists():
        return None
    password = secrets.token_urlsafe(12)
    User.objects.create_superuser("admin", "", password)
    return "admin", password


def cmd_serve(args: argparse.Namespace) -> int:
    """Migrate, then serve the site with gunicorn (a production WSGI server)."""
    _setup()
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connections

    call_command("migrate", interactive=False, verbosity=0)
    first = ensure_first_user()
    connections.close_all()  # workers open their own connections after the fork
    bind = f"{args.host}:{args.port}"
    print(f"jobtower: serving http://{bind}/  (database: {settings.DATABASES['default']['NAME']})")
    if first:
        print(f"jobtower: created the first user: {first[0]} / {first[1]}  (change it in /admin/)")
    sys.stdout.flush()
    _Gunicorn({"bind": bind, "workers": args.workers, "accesslog": "-" if args.access_log else None}).run()
    return 0


def cmd_manage(args: argparse.Namespace) -> int:
    """Run any Django management command against jobtower's settings."""
    _setup()
    from django.core.management import execute_from_command_line

    execute_from_command_line(["jobtower manage", *args.rest])
    return 0


class _Gunicorn:
    """gunicorn run in-process on the site's WSGI application."""

    def __init__(self, options: dict[str, Any]) -> None:
        from gunicorn.app.base import BaseApplication

        outer = self

        class App(BaseApplication):  # type: ignore[misc]
            def load_config(self) -> None:
                for key, value in outer.options.items():
                    if value is not None:
                        self.cfg.set(key, value)

            def load(self) -> Any:
                from jobtower.site.wsgi import application

                return application

        self.options = options
        self.app = App()

    def run(self) -> None:
        self.app.run()


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of the `jobtower` command."""
    parser = argparse.ArgumentParser(prog="jobtower", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    migrate = sub.add_parser("migrate", help="create or upgrade the database tables")
    migrate.add_argument("-v", "--verbosity", type=int, default=1)
    migrate.set_defaults(func=cmd_migrate)
    serve = sub.add_parser("serve", help="serve the standalone site (migrates first)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=2)
    serve.add_argument("--access-log", action="store_true")
    serve.set_defaults(func=cmd_serve)
    manage = sub.add_parser("manage", help="run a Django management command, e.g. createsuperuser")
    manage.add_argument("rest", nargs=argparse.REMAINDER)
    manage.set_defaults(func=cmd_manage)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the `jobtower` command."""
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
