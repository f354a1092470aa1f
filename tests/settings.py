"""Test settings: SQLite by default, PostgreSQL when JOBTOWER_DATABASE_URL is set."""

import os
import tempfile
from pathlib import Path

from jobtower.db import database_settings

HOME = Path(os.environ.get("JOBTOWER_TEST_HOME") or tempfile.mkdtemp(prefix="jobtower-test-"))
SECRET_KEY = "tests-only-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["testserver", "127.0.0.1", "localhost", "example.com"]
INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "ninja",  # django-ninja's templates and static files: the API page (Swagger UI), no CDN
    "jobtower",
]
STATIC_URL = "static/"
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "jobtower.web.middleware.DatabaseBusyMiddleware",
]
ROOT_URLCONF = "jobtower.site.urls"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]
HOME.mkdir(parents=True, exist_ok=True)
_db = database_settings(os.environ.get("JOBTOWER_DATABASE_URL"), HOME)
if _db["ENGINE"].endswith("sqlite3"):
    # A file, not :memory:, so other threads and processes see the same test database.
    _db["TEST"] = {"NAME": str(HOME / "test.sqlite3")}
else:
    # One test database per run, so two runs on one server (a developer's and CI's) never collide.
    _db["TEST"] = {"NAME": f"test_{_db['NAME']}_{os.getpid()}"}
DATABASES = {"default": _db}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True
JOBTOWER = {
    "HOME": str(HOME),
    # Subprocess monitors of the crash tests take over a dead claim within seconds.
    "RESULTS_CLAIM_TIMEOUT": float(os.environ.get("JOBTOWER_TEST_RESULTS_CLAIM_TIMEOUT", "120")),
}
if os.environ.get("JOBTOWER_TEST_LOCAL_BACKEND"):
    # The fencing test's processes run LOCAL jobs on an engine that can stop its own process mid-poll.
    JOBTOWER["BACKENDS"] = {"LOCAL": os.environ["JOBTOWER_TEST_LOCAL_BACKEND"]}
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
LOGIN_REDIRECT_URL = "/"
# Django's Tasks framework (django.tasks on Django 6, the django-tasks backport on 5.2): tests/test_tasks.py
TASKS = {"default": {"BACKEND": "jobtower.tasks.JobtowerBackend", "OPTIONS": {"USER": "alice", "LABEL": "tasks"}}}
if os.environ.get("JOBTOWER_LOG_LEVEL"):
    # A process a test starts (the failover test's monitors) logs jobtower's lines to stderr, each with
    # its wall-clock time, so the test can tell which monitor polled which jobs when.
    LOGGING = {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"timed": {"format": "%(created).6f %(levelname)s %(name)s %(message)s"}},
        "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "timed"}},
        "loggers": {"jobtower": {"handlers": ["console"], "level": os.environ["JOBTOWER_LOG_LEVEL"]}},
    }
