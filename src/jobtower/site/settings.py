"""Settings of the standalone jobtower site: no configuration needed, environment to override.

JOBTOWER_HOME (default ./.jobtower), JOBTOWER_DATABASE_URL (default SQLite in JOBTOWER_HOME),
JOBTOWER_SECRET_KEY (default: generated once into JOBTOWER_HOME/secret_key), JOBTOWER_DEBUG,
JOBTOWER_ALLOWED_HOSTS (comma-separated, default 127.0.0.1,localhost); behind a TLS reverse proxy,
JOBTOWER_CSRF_TRUSTED_ORIGINS (comma-separated origins such as https://jobs.example.org) and
JOBTOWER_BEHIND_TLS_PROXY=1 (trust X-Forwarded-Proto from the proxy, cookies over HTTPS only);
JOBTOWER_LOG_LEVEL (default INFO; DEBUG also logs which monitor polled which jobs in each cycle).
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

from jobtower.db import database_settings

HOME = Path(os.environ.get("JOBTOWER_HOME", ".jobtower")).expanduser().absolute()


def _secret_key() -> str:
    if os.environ.get("JOBTOWER_SECRET_KEY"):
        return os.environ["JOBTOWER_SECRET_KEY"]
    path = HOME / "secret_key"
    if not path.exists():
        HOME.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(50))
    return path.read_text().strip()


HOME.mkdir(parents=True, exist_ok=True)
SECRET_KEY = _secret_key()
DEBUG = os.environ.get("JOBTOWER_DEBUG", "") in ("1", "true", "yes")
ALLOWED_HOSTS = os.environ.get("JOBTOWER_ALLOWED_HOSTS", "127.0.0.1,localhost").split(",")


def _origins() -> list[str]:
    """JOBTOWER_CSRF_TRUSTED_ORIGINS as a list; an entry without its scheme is refused by name."""
    origins = [o.strip() for o in os.environ.get("JOBTOWER_CSRF_TRUSTED_ORIGINS", "").split(",") if o.strip()]
    for origin in origins:
        if not origin.startswith(("https://", "http://")):
            raise ImproperlyConfigured(
                f"JOBTOWER_CSRF_TRUSTED_ORIGINS: {origin!r} has no scheme; write the origin the browser sees, "
                f"such as https://{origin}"
            )
    return origins


CSRF_TRUSTED_ORIGINS = _origins()
_proxy = os.environ.get("JOBTOWER_BEHIND_TLS_PROXY", "")
if _proxy not in ("", "0", "1", "true", "false", "yes", "no"):
    raise ImproperlyConfigured(f"JOBTOWER_BEHIND_TLS_PROXY={_proxy!r}: use 1 (behind a TLS proxy) or 0")
if _proxy in ("1", "true", "yes"):
    # Only behind a proxy that always sets (or overwrites) X-Forwarded-Proto: a client could claim HTTPS otherwise.
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    # django-ninja's templates and static files: the API page (Swagger UI), no CDN. Left out of `jobtower
    # worker` and `jobtower monitor` (JOBTOWER_NO_PAGES, set by the command): they serve no pages.
    *([] if os.environ.get("JOBTOWER_NO_PAGES") == "1" else ["ninja"]),
    "jobtower",
]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "jobtower.web.middleware.DatabaseBusyMiddleware",
]
ROOT_URLCONF = "jobtower.site.urls"
WSGI_APPLICATION = "jobtower.site.wsgi.application"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
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
DATABASES = {"default": database_settings(os.environ.get("JOBTOWER_DATABASE_URL"), HOME)}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True
TIME_ZONE = "UTC"
STATIC_URL = "static/"
STATIC_ROOT = str(HOME / "static")
WHITENOISE_USE_FINDERS = True  # serve app and admin static files without a collectstatic step
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "jobtower:home"
LOGOUT_REDIRECT_URL = "login"
JOBTOWER = {"HOME": str(HOME)}
_log_level = (os.environ.get("JOBTOWER_LOG_LEVEL") or "INFO").upper()
if _log_level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
    raise ImproperlyConfigured(
        f"JOBTOWER_LOG_LEVEL={os.environ['JOBTOWER_LOG_LEVEL']!r}: use DEBUG, INFO, WARNING, ERROR or CRITICAL"
    )
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {
        "jobtower": {"handlers": ["console"], "level": _log_level},
        # Every 500 with its traceback: by default Django only mails them to ADMINS, and this site has none.
        "django.request": {"handlers": ["console"], "level": "ERROR", "propagate": False},
    },
}
