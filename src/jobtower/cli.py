"""The `jobtower` command: migrate the database, serve the standalone site, run and watch jobs.

The same commands run inside a host project as `python manage.py jobtower COMMAND` (its settings, its
database). The standalone `jobtower` command uses $DJANGO_SETTINGS_MODULE when it is set, else the
standalone site (`jobtower.site.settings`), except in a folder that holds a `manage.py`: there it refuses,
since that project's jobs live in that project's database (see docs/cli.rst).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

DEFAULT_SETTINGS = "jobtower.site.settings"
#: Commands that need no database (and so no settings).
_NO_SETUP = {"completion"}


def _setup(*, migrate: bool = True) -> None:
    """Set Django up with the settings this command uses, say which on stderr, and check the schema.

    Inside `manage.py jobtower` Django is already set up with the host's settings: nothing to decide.
    """
    from django.apps import apps

    if apps.ready:
        if migrate:
            _check_migrated(standalone=False)
        return
    module = os.environ.get("DJANGO_SETTINGS_MODULE", "")
    if not module:
        if Path("manage.py").is_file():
            _fail(
                f"{Path.cwd()} holds manage.py, a Django project with its own settings and database: run "
                "`python manage.py jobtower COMMAND` there, or set DJANGO_SETTINGS_MODULE (to "
                f"{DEFAULT_SETTINGS} for the standalone site)"
            )
        module = os.environ["DJANGO_SETTINGS_MODULE"] = DEFAULT_SETTINGS
    import django

    django.setup()
    print(f"jobtower: settings {module}, database {describe_database()}", file=sys.stderr, flush=True)
    if migrate:
        _check_migrated(standalone=module == DEFAULT_SETTINGS)


def describe_database() -> str:
    """Return the default database as one line, without its password."""
    from django.conf import settings

    db = settings.DATABASES["default"]
    engine = str(db.get("ENGINE", "")).rsplit(".", 1)[-1]
    if engine == "sqlite3":
        return f"SQLite {db.get('NAME')}"
    host = db.get("HOST") or "localhost"
    port = f":{db['PORT']}" if db.get("PORT") else ""
    user = f"{db['USER']}@" if db.get("USER") else ""
    return f"{engine} {user}{host}{port}/{db.get('NAME')}"


def _check_migrated(*, standalone: bool) -> None:
    """Apply missing migrations to the standalone site's database; refuse on a host project's."""
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    executor = MigrationExecutor(connection)
    plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    if not plan:
        return
    if not standalone:
        names = ", ".join(f"{m.app_label}.{m.name}" for m, _ in plan[:3]) + (" ..." if len(plan) > 3 else "")
        _fail(f"the database lacks {len(plan)} migration(s) ({names}); run `python manage.py migrate` first")
    from django.core.management import call_command

    print(f"jobtower: applying {len(plan)} migration(s) to {describe_database()} (first use or upgrade)",
          file=sys.stderr, flush=True)
    call_command("migrate", interactive=False, verbosity=0)


def _fail(message: str) -> NoReturn:
    """Stop the command with a one-line error on stderr (exit status 1)."""
    raise SystemExit(f"jobtower: {message}")


def cmd_migrate(args: argparse.Namespace) -> int:
    """Create or upgrade jobtower's tables."""
    _setup(migrate=False)
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
    import importlib.util

    missing = [name for name in ("gunicorn", "whitenoise") if importlib.util.find_spec(name) is None]
    if missing:
        _fail(f"serve needs {' and '.join(missing)}, which come with the site extra: pip install 'jobtower[site]'")
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


#: Set by `jobtower worker` and `jobtower monitor` for their own process before Django starts: they serve
#: no pages, so the standalone site's settings leave out django-ninja's app (the API page's templates and
#: static files), whose import of ninja and pydantic costs about 0.1 s of CPU at every start.
NO_PAGES = "JOBTOWER_NO_PAGES"


def _serves_no_pages() -> None:
    os.environ[NO_PAGES] = "1"


def cmd_worker(args: argparse.Namespace) -> int:
    """Run LOCAL jobs: claim Submitted ones and run up to --concurrency at once."""
    _serves_no_pages()
    _setup()
    from jobtower.worker import LocalWorker

    LocalWorker(concurrency=args.concurrency, name=args.name).run(until_idle=args.until_idle)
    return 0


def cmd_monitor(args: argparse.Namespace) -> int:
    """Keep every active job's status current."""
    _serves_no_pages()
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
        _fail(f"there is no user {name!r}; pass --user NAME or create one with `jobtower manage createsuperuser`")


def _cli_job(job_id: int) -> Any:
    from jobtower.models import Job

    job = Job.objects.filter(pk=job_id).first()
    if job is None:
        _fail(f"there is no job {job_id}; `jobtower list` shows the latest jobs")
    return job


def job_id_type(text: str) -> int:
    """Parse a job id: a whole number from 1 up (argparse type)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= 2**63 - 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a job id: ids are whole numbers from 1")
    return value


def job_data(job: Any) -> dict[str, Any]:
    """Return a job as plain JSON data (what --json prints)."""
    def when(value: Any) -> str | None:
        return value.isoformat() if value is not None else None

    return {
        "id": job.pk, "name": job.name, "description": job.description, "type": job.job_type,
        "app": job.label, "user": str(job.user) if job.user_id else None,
        "status": job.status_code.display, "status_code": job.status_code.value,
        "status_message": job.status_message, "progress": job.progress, "progress_message": job.progress_message,
        "attempt": job.attempt, "creation_time": when(job.creation_time), "execute_time": when(job.execute_time),
        "start_time": when(job.start_time), "completion_time": when(job.completion_time), "result": job.result,
    }


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))


class CliApp:
    """The app that jobs submitted from the command line belong to."""

    package = "jobtower_cli"
    name = "jobtower command line"


def resolve_program(program: str, environment: dict[str, str]) -> str:
    """Return the program a LOCAL job will run, checked now so that a typo creates no job.

    A name without a slash is looked up on the job's PATH; a relative path is taken from the current
    folder and made absolute (the job itself runs in its own folder).
    """
    if "/" in program:
        path = Path(program).absolute()
        if not path.is_file() or not os.access(path, os.X_OK):
            why = "is not executable (chmod +x it)" if path.is_file() else "does not exist"
            _fail(f"cannot run {program!r}: {path} {why}; nothing was submitted")
        return str(path)
    search = environment.get("PATH", os.environ.get("PATH", os.defpath))
    if shutil.which(program, path=search) is None:
        _fail(f"cannot run {program!r}: no such program on PATH; give its path (./{program}) or "
              "install it. Nothing was submitted")
    return program


def cmd_submit(args: argparse.Namespace) -> int:
    """Create and execute a LOCAL job running the given command."""
    command = args.command[1:] if args.command[:1] == ["--"] else list(args.command)
    if not command:
        _fail("give the command after --, e.g. jobtower submit -- python run.py")
    environment: dict[str, str] = {}
    for item in args.env or ():
        key, equals, value = item.partition("=")
        if not equals or not key:
            _fail(f"--env {item!r} is not NAME=VALUE; nothing was submitted")
        environment[key] = value
    command[0] = resolve_program(command[0], environment)
    _setup()
    from jobtower.errors import JobError
    from jobtower.manager import JobManager

    options: dict[str, Any] = {"command": command}
    if args.timeout:
        options["timeout"] = args.timeout
    if environment:
        options["environment"] = environment
    user = _cli_user(args.user)
    try:
        job = JobManager(CliApp).create_job(
            name=args.name or "{id}: " + " ".join(command)[:200], user=user,
            job_type="LOCAL", description=args.description or "", **options,
        )
    except (JobError, ValueError, TypeError) as exc:
        _fail(f"{exc}; nothing was submitted")
    try:
        job.execute()
    except JobError as exc:
        job.delete(force=True)  # a job that never ran is not worth keeping: the user runs submit again
        _fail(f"{exc}; the job was removed, nothing was submitted")
    if args.json:
        _print_json(job_data(job))
    else:
        print(job.pk)
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    """List the latest jobs: id, status, type, name."""
    _setup()
    from jobtower.models import Job

    jobs = Job.objects.order_by("-id")
    if args.user:
        jobs = jobs.filter(user=_cli_user(args.user))
    latest = list(reversed(list(jobs.select_related("user")[: args.limit])))
    if args.json:
        _print_json([job_data(job) for job in latest])
        return 0
    for job in latest:
        progress = f" {job.progress:.0f}%" if job.progress is not None and job.status_code.is_active else ""
        print(f"{job.pk:>7}  {job.status_code.display:<16}{progress:>5}  {job.job_type:<8} {job.name}")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    """Show one job: its record and its history."""
    _setup()
    from jobtower import manager

    job = _cli_job(args.job_id)
    can = sorted(c.value for c in manager.capabilities(job))
    if args.json:
        history = [{"time": e.time.isoformat(), "from": e.from_status, "to": e.to_status, "source": e.source,
                    "message": e.message} for e in job.history()]
        _print_json(job_data(job) | {"folder": str(job.folder) if job.workspace else None, "engine_can": can,
                                     "stale_since": job.stale_since, "history": history})
        return 0
    rows = [
        ("id", job.pk), ("name", job.name), ("type", job.job_type), ("app", job.label),
        ("user", job.user), ("status", job.status_code.display), ("message", job.status_message),
        ("progress", "" if job.progress is None else f"{job.progress:g}% {job.progress_message}"),
        ("attempt", job.attempt), ("created", job.creation_time), ("executed", job.execute_time),
        ("started", job.start_time), ("completed", job.completion_time), ("run time", job.run_time),
        ("folder", job.folder if job.workspace else ""), ("result", job.result),
        ("engine can", ", ".join(can)),
        ("stale since", job.stale_since),
    ]
    for key, value in rows:
        print(f"{key:>10}: {'' if value is None else value}")
    print("   history:")
    for event in job.history():
        print(f"            {event.time:%Y-%m-%d %H:%M:%S} {event.from_status} -> {event.to_status} "
              f"({event.source}) {event.message}")
    return 0


#: Bytes copied from a log file per read while following it.
LOG_READ = 1024 * 1024


def cmd_logs(args: argparse.Namespace) -> int:
    """Print a job's stdout (and stderr with --stderr); --follow keeps printing until it ends."""
    _setup()
    from jobtower.backends import Capability

    job = _cli_job(args.job_id)
    stream = "stderr" if args.stderr else "stdout"
    backend = job.get_backend()
    files = backend.log_files(job) if backend is not None and backend.can(Capability.LOG_FILES) else {}
    if stream in files:
        return _copy_log_file(job, Path(files[stream]), follow=args.follow, interval=args.interval)
    # An engine without log files gives text (its tail): follow it by what was already shown.
    shown = ""
    while True:
        text = str(job.get_logs().get(stream, ""))
        sys.stdout.write(text[len(shown):] if text.startswith(shown) else text)
        sys.stdout.flush()
        shown = text
        if not args.follow or job.status_code.is_terminal:
            return 0
        time.sleep(args.interval)
        job.refresh_from_db()


def _copy_log_file(job: Any, path: Path, *, follow: bool, interval: float) -> int:
    """Copy a log file to stdout by byte offset, as it grows, until the job ends (any size)."""
    out = sys.stdout.buffer
    offset = 0
    while True:
        ended = job.status_code.is_terminal  # read before the file: what it wrote before it ended is copied
        try:
            with path.open("rb") as handle:
                handle.seek(offset)
                while chunk := handle.read(LOG_READ):
                    out.write(chunk)
                    offset += len(chunk)
        except FileNotFoundError:
            pass  # not started yet, or an attempt without output
        out.flush()
        if not follow or ended:
            return 0
        time.sleep(interval)
        job.refresh_from_db()


def cmd_stop(args: argparse.Namespace) -> int:
    """Stop a job."""
    _setup()
    from jobtower.errors import JobError

    job = _cli_job(args.job_id)
    try:
        job.stop()
    except JobError as exc:
        _fail(str(exc))
    print(f"job {job.pk}: {job.status_code.display}")
    return 0


def cmd_wait(args: argparse.Namespace) -> int:
    """Wait until a job ends, showing its progress; exit 0 if it completed, 1 otherwise, 2 on timeout."""
    _setup()
    job = _cli_job(args.job_id)
    deadline = time.monotonic() + args.timeout if args.timeout else None
    tty = sys.stderr.isatty() and not args.json
    while not job.status_code.is_terminal:
        if deadline is not None and time.monotonic() > deadline:
            if args.json:
                _print_json(job_data(job))
            print(f"\njobtower: job {job.pk} is still {job.status_code.display}", file=sys.stderr)
            return 2
        if not args.json:
            bar = _bar(job.progress)
            line = f"job {job.pk} {job.status_code.display:<10} {bar} {job.progress_message}"[:120]
            print(("\r" if tty else "") + line, end="" if tty else "\n", file=sys.stderr, flush=True)
        time.sleep(args.interval)
        job.refresh_from_db()
    if args.json:
        _print_json(job_data(job))
    else:
        print(f"\njob {job.pk}: {job.status_code.display} {job.status_message}".rstrip(), file=sys.stderr)
    return 0 if job.status_code.value == "COM" else 1


def _bar(progress: float | None, width: int = 30) -> str:
    if progress is None:
        return "[" + "." * width + "]"
    done = int(width * max(0.0, min(progress, 100.0)) / 100)
    return "[" + "#" * done + "." * (width - done) + f"] {progress:5.1f}%"


def _age(text: str) -> datetime.timedelta:
    """Parse an age such as 90d, 12h, 30m or 45s (argparse type)."""
    units = {"d": "days", "h": "hours", "m": "minutes", "s": "seconds"}
    number, unit = text[:-1], text[-1:].lower()
    if unit not in units or not number.isdigit() or int(number) <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not an age: write a whole number and a unit, e.g. 90d, 12h, 30m")
    return datetime.timedelta(**{units[unit]: int(number)})


def cmd_prune(args: argparse.Namespace) -> int:
    """Delete the jobs that ended longer ago than --older-than, with their history and folders."""
    _setup()
    from jobtower import manager

    count = manager.prune(args.older_than, dry_run=args.dry_run)
    if args.json:
        _print_json({"deleted": 0 if args.dry_run else count, "would_delete": count if args.dry_run else 0})
    elif args.dry_run:
        print(f"{count} jobs ended more than {args.older_than} ago; run without --dry-run to delete them")
    else:
        print(f"deleted {count} jobs that ended more than {args.older_than} ago, with their folders")
    return 0


def cmd_token(args: argparse.Namespace) -> int:
    """Print an API token for a user (it stops working when their password changes)."""
    _setup()
    from jobtower.web.tokens import make_token

    print(make_token(_cli_user(args.user)))
    return 0


def cmd_manage(args: argparse.Namespace) -> int:
    """Run any Django management command against jobtower's settings (migrating first, but for migrate)."""
    _setup(migrate=args.rest[:1] != ["migrate"])
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


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line: what was wrong and where to read more."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see `{self.prog} --help`)\n")


def cmd_completion(args: argparse.Namespace) -> int:
    """Print a shell completion script: `source <(jobtower completion bash)`."""
    parser = build_parser(prog=args.completion_prog, managed=args.completion_managed)
    commands = _subcommands(parser)
    cases = "\n".join(
        f'    {name}) opts="{" ".join(sorted(options))}" ;;' for name, options in sorted(commands.items())
    )
    prog = args.completion_prog.split()[-1]
    function = "_jobtower_complete_" + "".join(c if c.isalnum() else "_" for c in prog)
    print(f"""# bash completion for {args.completion_prog}: source <({args.completion_prog} completion bash)
{function}() {{
  local cur=${{COMP_WORDS[COMP_CWORD]}} cmd="" i opts
  for ((i = 1; i < COMP_CWORD; i++)); do
    case ${{COMP_WORDS[i]}} in -*) ;; *) cmd=${{COMP_WORDS[i]}}; break ;; esac
  done
  case $cmd in
    "") opts="{" ".join(sorted(commands))} --help --version" ;;
{cases}
    *) opts="" ;;
  esac
  COMPREPLY=($(compgen -W "$opts" -- "$cur"))
}}
complete -o default -F {function} {prog}""")
    return 0


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, list[str]]:
    """Return each subcommand of `parser` with its option strings."""
    for action in parser._actions:  # argparse keeps subparsers only here
        if isinstance(action, argparse._SubParsersAction):
            return {
                name: [o for a in sub._actions for o in a.option_strings]
                for name, sub in action.choices.items()
            }
    return {}


def _version() -> str:
    import django

    import jobtower

    return f"jobtower {jobtower.__version__} (Django {django.get_version()}, Python {sys.version.split()[0]})"


def build_parser(prog: str = "jobtower", *, managed: bool = False) -> argparse.ArgumentParser:
    """Return the argument parser of the `jobtower` command (of `manage.py jobtower` when `managed`).

    Inside a host project, `migrate`, `serve` and `manage` are left out: the project has its own.
    """
    parser = Parser(prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_commands(parser, managed=managed)
    return parser


def add_commands(parser: argparse.ArgumentParser, *, managed: bool = False) -> None:
    """Add the `--version` option and every subcommand to `parser` (shared with manage.py jobtower)."""
    if not managed:  # Django's command parser has its own --version (Command.get_version gives ours)
        parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=Parser)
    if not managed:
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
    submit = sub.add_parser("submit", help="run a command as a LOCAL job: submit -- CMD ...")
    submit.add_argument("--name")
    submit.add_argument("--description")
    submit.add_argument("--user", help="owner (default: $JOBTOWER_USER or admin)")
    submit.add_argument("--timeout", type=float)
    submit.add_argument("--env", action="append", metavar="NAME=VALUE")
    submit.add_argument("--json", action="store_true", help="print the new job as JSON")
    submit.add_argument("command", nargs=argparse.REMAINDER)
    submit.set_defaults(func=cmd_submit)
    listing = sub.add_parser("list", help="list the latest jobs")
    listing.add_argument("--user")
    listing.add_argument("--limit", type=int, default=50)
    listing.add_argument("--json", action="store_true", help="print the jobs as a JSON list")
    listing.set_defaults(func=cmd_list)
    show = sub.add_parser("show", help="show a job and its history")
    show.add_argument("job_id", type=job_id_type)
    show.add_argument("--json", action="store_true", help="print the job and its history as JSON")
    show.set_defaults(func=cmd_show)
    stop = sub.add_parser("stop", help="stop a job")
    stop.add_argument("job_id", type=job_id_type)
    stop.set_defaults(func=cmd_stop)
    logs = sub.add_parser("logs", help="print a job's output")
    logs.add_argument("job_id", type=job_id_type)
    logs.add_argument("--stderr", action="store_true")
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing until the job ends")
    logs.add_argument("--interval", type=float, default=0.5, help=argparse.SUPPRESS)
    logs.set_defaults(func=cmd_logs)
    wait = sub.add_parser("wait", help="wait for a job to end, with a progress bar")
    wait.add_argument("job_id", type=job_id_type)
    wait.add_argument("--timeout", type=float)
    wait.add_argument("--interval", type=float, default=0.5)
    wait.add_argument("--json", action="store_true", help="print the ended job as JSON (no progress bar)")
    wait.set_defaults(func=cmd_wait)
    prune = sub.add_parser("prune", help="delete jobs that ended long ago, with their folders")
    prune.add_argument("--older-than", type=_age, required=True, metavar="AGE",
                       help="how long ago they ended: 90d, 12h, 30m")
    prune.add_argument("--dry-run", action="store_true", help="only count them")
    prune.add_argument("--json", action="store_true")
    prune.set_defaults(func=cmd_prune)
    token = sub.add_parser("token", help="print a REST API token for a user")
    token.add_argument("--user", help="the user (default: $JOBTOWER_USER or admin)")
    token.set_defaults(func=cmd_token)
    if not managed:
        manage = sub.add_parser("manage", help="run a Django management command, e.g. createsuperuser")
        manage.add_argument("rest", nargs=argparse.REMAINDER)
        manage.set_defaults(func=cmd_manage)
    completion = sub.add_parser("completion", help="print a shell completion script: completion bash")
    completion.add_argument("shell", choices=["bash"])
    completion.set_defaults(func=cmd_completion, completion_prog=parser.prog, completion_managed=managed)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the `jobtower` command."""
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
