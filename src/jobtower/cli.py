"""The `jobtower` command: migrate the database, serve the standalone site, run Django commands."""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

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
    """Migrate, start a LOCAL worker and the monitor, and serve the site with gunicorn."""
    _setup()
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connections

    call_command("migrate", interactive=False, verbosity=0)
    first = ensure_first_user()
    connections.close_all()  # every process opens its own connections
    bind = f"{args.host}:{args.port}"
    print(f"jobtower: serving http://{bind}/  (database: {settings.DATABASES['default']['NAME']})")
    if first:
        print(f"jobtower: created the first user: {first[0]} / {first[1]}  (change it in /admin/)")
    sys.stdout.flush()
    commands: dict[str, list[str]] = {}
    if not args.no_worker:
        worker = [sys.executable, "-m", "jobtower.cli", "worker"]
        if args.concurrency:
            worker += ["--concurrency", str(args.concurrency)]
        commands = {"worker": worker, "monitor": [sys.executable, "-m", "jobtower.cli", "monitor"]}
    helpers = _Helpers(commands)
    helpers.start()
    try:
        options = {"bind": bind, "workers": args.workers, "accesslog": "-" if args.access_log else None,
                   **_runtime_options()}
        _Gunicorn(options, helpers).run()
    finally:
        helpers.stop()
    return 0


def _runtime_options() -> dict[str, Any]:
    """Return gunicorn options that keep this instance's runtime files in <JOBTOWER_HOME>/run."""
    from jobtower import conf

    run = conf.home() / "run"
    run.mkdir(parents=True, exist_ok=True)
    control = run / "gunicorn.ctl"
    # gunicorn's default is one socket per user ($XDG_RUNTIME_DIR or ~/.gunicorn), which every
    # instance on the machine would share. A Unix socket path holds at most 107 bytes: with a home
    # deeper than that, no control socket is better than a shared one.
    if len(os.fsencode(control)) > 107:
        print(f"jobtower: no gunicorn control socket: {control} is too long for a socket path", flush=True)
        return {"control_socket_disable": True}
    return {"control_socket": str(control)}


#: Seconds before a dead helper is started again: doubling from the first to the last, and back to
#: the first once a helper has run for RESTART_RESET_AFTER seconds.
RESTART_DELAYS = (1.0, 60.0)
RESTART_RESET_AFTER = 60.0


class _Helpers:
    """The worker and the monitor that `serve` runs beside gunicorn, started again when they die."""

    def __init__(self, commands: dict[str, list[str]]) -> None:
        self.commands = commands
        self.processes: dict[str, subprocess.Popen[bytes] | None] = {}
        self.started: dict[str, float] = {}
        self.delay: dict[str, float] = {name: 0.0 for name in commands}
        self.due: dict[str, float] = {}

    def start(self) -> None:
        """Start every helper."""
        for name in self.commands:
            self._spawn(name)

    def _spawn(self, name: str) -> None:
        self.processes[name] = subprocess.Popen(self.commands[name])
        self.started[name] = time.monotonic()

    def reap(self) -> None:
        """Collect the exit status of helpers that ended (before gunicorn reaps every child)."""
        for process in self.processes.values():
            if process is not None:
                process.poll()

    def check(self) -> None:
        """Start again, after a growing delay, each helper that ended; called about once a second."""
        now = time.monotonic()
        for name, process in self.processes.items():
            if process is None:
                if now >= self.due[name]:
                    print(f"jobtower: starting the {name} again", file=sys.stderr, flush=True)
                    self._spawn(name)
                continue
            code = process.poll()
            if code is None:
                continue
            first, last = RESTART_DELAYS
            ran = now - self.started[name]
            self.delay[name] = first if ran >= RESTART_RESET_AFTER else min(max(2 * self.delay[name], first), last)
            how = f"was killed by {signal.Signals(-code).name}" if code < 0 else f"exited with code {code}"
            print(f"jobtower: the {name} (pid {process.pid}) {how} after {ran:.0f} s; "
                  f"starting it again in {self.delay[name]:g} s", file=sys.stderr, flush=True)
            self.processes[name] = None
            self.due[name] = now + self.delay[name]

    def stop(self) -> None:
        """Stop every helper (SIGTERM, then SIGKILL after 15 s)."""
        running = [p for p in self.processes.values() if p is not None]
        self.processes = {}
        for process in running:
            process.terminate()
        for process in running:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()


def cmd_worker(args: argparse.Namespace) -> int:
    """Run LOCAL jobs: claim Submitted ones and run up to --concurrency at once."""
    _setup()
    from jobtower.worker import LocalWorker

    LocalWorker(concurrency=args.concurrency, name=args.name).run(until_idle=args.until_idle)
    return 0


def cmd_monitor(args: argparse.Namespace) -> int:
    """Keep every active job's status current."""
    _setup()
    from jobtower.monitor import Monitor

    Monitor(interval=args.interval, name=args.name).run()
    return 0


def _cli_user(name: str | None) -> Any:
    from django.contrib.auth import get_user_model

    User = get_user_model()
    name = name or os.environ.get("JOBTOWER_USER") or "admin"
    try:
        return User.objects.get_by_natural_key(name)
    except User.DoesNotExist:
        raise SystemExit(
            f"jobtower: there is no user {name!r}; pass --user NAME or create one with "
            "`jobtower manage createsuperuser`"
        ) from None


def _cli_job(job_id: int) -> Any:
    from jobtower.models import Job

    job = Job.objects.filter(pk=job_id).first()
    if job is None:
        raise SystemExit(f"jobtower: there is no job {job_id}")
    return job


class CliApp:
    """The app that jobs submitted from the command line belong to."""

    package = "jobtower_cli"
    name = "jobtower command line"


def cmd_submit(args: argparse.Namespace) -> int:
    """Create and execute a LOCAL job running the given command."""
    _setup()
    from jobtower.manager import JobManager

    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        raise SystemExit("jobtower submit: give the command after --, e.g. jobtower submit -- python run.py")
    options: dict[str, Any] = {"command": command}
    if args.timeout:
        options["timeout"] = args.timeout
    if args.env:
        options["environment"] = dict(item.split("=", 1) for item in args.env)
    job = JobManager(CliApp).create_job(
        name=args.name or "{id}: " + " ".join(command)[:200], user=_cli_user(args.user),
        job_type="LOCAL", description=args.description or "", **options,
    )
    job.execute()
    print(job.pk)
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    """List the latest jobs: id, status, type, name."""
    _setup()
    from jobtower.models import Job

    jobs = Job.objects.order_by("-id")
    if args.user:
        jobs = jobs.filter(user=_cli_user(args.user))
    for job in reversed(list(jobs[: args.limit])):
        progress = f" {job.progress:.0f}%" if job.progress is not None and job.status_code.is_active else ""
        print(f"{job.pk:>7}  {job.status_code.display:<16}{progress:>5}  {job.job_type:<8} {job.name}")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    """Show one job: its record and its history."""
    _setup()
    from jobtower import manager

    job = _cli_job(args.job_id)
    rows = [
        ("id", job.pk), ("name", job.name), ("type", job.job_type), ("app", job.label),
        ("user", job.user), ("status", job.status_code.display), ("message", job.status_message),
        ("progress", "" if job.progress is None else f"{job.progress:g}% {job.progress_message}"),
        ("attempt", job.attempt), ("created", job.creation_time), ("executed", job.execute_time),
        ("started", job.start_time), ("completed", job.completion_time), ("run time", job.run_time),
        ("folder", job.folder if job.workspace else ""), ("result", job.result),
        ("engine can", ", ".join(sorted(c.value for c in manager.capabilities(job)))),
        ("stale since", job.stale_since),
    ]
    for key, value in rows:
        print(f"{key:>10}: {'' if value is None else value}")
    print("   history:")
    for event in job.history():
        print(f"            {event.time:%Y-%m-%d %H:%M:%S} {event.from_status} -> {event.to_status} "
              f"({event.source}) {event.message}")
    return 0


def cmd_logs(args: argparse.Namespace) -> int:
    """Print a job's stdout (and stderr with --stderr); --follow keeps printing until it ends."""
    _setup()
    job = _cli_job(args.job_id)
    stream = "stderr" if args.stderr else "stdout"
    shown = 0
    while True:
        text = job.get_logs().get(stream, "")
        sys.stdout.write(text[shown:])
        sys.stdout.flush()
        shown = len(text)
        if not args.follow:
            return 0
        job.refresh_from_db()
        if job.status_code.is_terminal:
            sys.stdout.write(job.get_logs().get(stream, "")[shown:])
            return 0
        time.sleep(0.5)


def cmd_stop(args: argparse.Namespace) -> int:
    """Stop a job."""
    _setup()
    from jobtower.errors import JobError

    job = _cli_job(args.job_id)
    try:
        job.stop()
    except JobError as exc:
        raise SystemExit(f"jobtower: {exc}") from None
    print(f"job {job.pk}: {job.status_code.display}")
    return 0


def cmd_wait(args: argparse.Namespace) -> int:
    """Wait until a job ends, showing its progress; exit 0 if it completed, 1 otherwise."""
    _setup()
    job = _cli_job(args.job_id)
    deadline = time.monotonic() + args.timeout if args.timeout else None
    tty = sys.stderr.isatty()
    while not job.status_code.is_terminal:
        if deadline is not None and time.monotonic() > deadline:
            print(f"\njobtower: job {job.pk} is still {job.status_code.display}", file=sys.stderr)
            return 2
        bar = _bar(job.progress)
        line = f"job {job.pk} {job.status_code.display:<10} {bar} {job.progress_message}"[:120]
        print(("\r" if tty else "") + line, end="" if tty else "\n", file=sys.stderr, flush=True)
        time.sleep(args.interval)
        job.refresh_from_db()
    print(f"\njob {job.pk}: {job.status_code.display} {job.status_message}".rstrip(), file=sys.stderr)
    return 0 if job.status_code.value == "COM" else 1


def _bar(progress: float | None, width: int = 30) -> str:
    if progress is None:
        return "[" + "." * width + "]"
    done = int(width * max(0.0, min(progress, 100.0)) / 100)
    return "[" + "#" * done + "." * (width - done) + f"] {progress:5.1f}%"


def cmd_token(args: argparse.Namespace) -> int:
    """Print an API token for a user (it stops working when their password changes)."""
    _setup()
    from jobtower.web.tokens import make_token

    print(make_token(_cli_user(args.user)))
    return 0


def cmd_manage(args: argparse.Namespace) -> int:
    """Run any Django management command against jobtower's settings."""
    _setup()
    from django.core.management import execute_from_command_line

    execute_from_command_line(["jobtower manage", *args.rest])
    return 0


class _Gunicorn:
    """gunicorn run in-process on the site's WSGI application; its master loop also minds `helpers`."""

    def __init__(self, options: dict[str, Any], helpers: _Helpers | None = None) -> None:
        from gunicorn.app.base import BaseApplication
        from gunicorn.arbiter import Arbiter

        class MasterLoop(Arbiter):  # type: ignore[misc]
            # gunicorn's master wakes at least once a second and reaps every child with waitpid(-1):
            # the helpers are checked in the same loop, and reaped first so their status is known.
            def reap_workers(self) -> None:
                if helpers is not None:
                    helpers.reap()
                super().reap_workers()

            def manage_workers(self) -> None:
                super().manage_workers()
                if helpers is not None:
                    helpers.check()

        outer = self

        class App(BaseApplication):  # type: ignore[misc]
            def load_config(self) -> None:
                for key, value in outer.options.items():
                    if value is not None:
                        self.cfg.set(key, value)

            def load(self) -> Any:
                from jobtower.site.wsgi import application

                return application

            def run(self) -> None:
                try:
                    MasterLoop(self).run()
                except RuntimeError as exc:  # as gunicorn's own run() does
                    print(f"\nError: {exc}\n", file=sys.stderr, flush=True)
                    sys.exit(1)

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
    serve.add_argument("--concurrency", type=int, help="LOCAL jobs run at once (default: cores)")
    serve.add_argument("--no-worker", action="store_true", help="serve the site only")
    serve.set_defaults(func=cmd_serve)
    worker = sub.add_parser("worker", help="run LOCAL jobs")
    worker.add_argument("--concurrency", type=int, help="jobs run at once (default: cores)")
    worker.add_argument("--name")
    worker.add_argument("--until-idle", action="store_true", help="exit when no job is left")
    worker.set_defaults(func=cmd_worker)
    monitor = sub.add_parser("monitor", help="keep every active job's status current")
    monitor.add_argument("--interval", type=float, default=2.0, help="seconds between cycles")
    monitor.add_argument("--name")
    monitor.set_defaults(func=cmd_monitor)
    submit = sub.add_parser("submit", help="run a command as a LOCAL job: jobtower submit -- CMD ...")
    submit.add_argument("--name")
    submit.add_argument("--description")
    submit.add_argument("--user", help="owner (default: $JOBTOWER_USER or admin)")
    submit.add_argument("--timeout", type=float)
    submit.add_argument("--env", action="append", metavar="NAME=VALUE")
    submit.add_argument("command", nargs=argparse.REMAINDER)
    submit.set_defaults(func=cmd_submit)
    listing = sub.add_parser("list", help="list the latest jobs")
    listing.add_argument("--user")
    listing.add_argument("--limit", type=int, default=50)
    listing.set_defaults(func=cmd_list)
    for name, func, text in (("show", cmd_show, "show a job and its history"),
                             ("stop", cmd_stop, "stop a job")):
        command = sub.add_parser(name, help=text)
        command.add_argument("job_id", type=int)
        command.set_defaults(func=func)
    logs = sub.add_parser("logs", help="print a job's output")
    logs.add_argument("job_id", type=int)
    logs.add_argument("--stderr", action="store_true")
    logs.add_argument("-f", "--follow", action="store_true")
    logs.set_defaults(func=cmd_logs)
    wait = sub.add_parser("wait", help="wait for a job to end, with a progress bar")
    wait.add_argument("job_id", type=int)
    wait.add_argument("--timeout", type=float)
    wait.add_argument("--interval", type=float, default=0.5)
    wait.set_defaults(func=cmd_wait)
    token = sub.add_parser("token", help="print a REST API token for a user")
    token.add_argument("--user", help="the user (default: $JOBTOWER_USER or admin)")
    token.set_defaults(func=cmd_token)
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
