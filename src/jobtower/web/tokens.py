"""API tokens without a table: a signed value that names the user and depends on their password.

A token is `django.core.signing` output (salted, so it is valid nowhere else) carrying the user's
primary key and a keyed digest of the user's password hash. Changing the password (or making it
unusable) changes that digest, so every token issued before stops working; rotating SECRET_KEY
revokes all tokens (SECRET_KEY_FALLBACKS keep old ones valid while a rotation is in progress).
The digest, not a piece of the hash itself, goes into the token: a signed value is readable.
"""

from __future__ import annotations

import datetime
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core import signing
from django.core.exceptions import ValidationError
from django.utils.crypto import constant_time_compare, salted_hmac

SALT = "jobtower.api-token"
_DIGEST_SALT = "jobtower.api-token.password"
_DIGEST_CHARS = 24


def _password_digest(user: Any, secret: str | bytes | None = None) -> str:
    return salted_hmac(_DIGEST_SALT, user.password or "", secret=secret, algorithm="sha256").hexdigest()[
        :_DIGEST_CHARS
    ]


def make_token(user: Any) -> str:
    """Return a new API token for `user` (valid until their password or SECRET_KEY changes)."""
    if getattr(user, "pk", None) is None:
        raise ValueError("a token needs a saved user")
    return signing.dumps({"u": str(user.pk), "p": _password_digest(user)}, salt=SALT)


def user_for_token(token: str, max_age: float | None = None) -> Any | None:
    """Return the active user `token` was issued to, or None when it is forged, stale or revoked."""
    try:
        data = signing.loads(
            token, salt=SALT, max_age=None if max_age is None else datetime.timedelta(seconds=max_age)
        )
    except (signing.BadSignature, ValueError, TypeError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("u"), str) or not isinstance(data.get("p"), str):
        return None
    User = get_user_model()
    try:
        pk = User._meta.pk.to_python(data["u"])
        user = User._default_manager.get(pk=pk)
    except (User.DoesNotExist, ValidationError, ValueError, TypeError):
        return None
    if not getattr(user, "is_active", True):
        return None
    secrets = [settings.SECRET_KEY, *getattr(settings, "SECRET_KEY_FALLBACKS", [])]
    if not any(constant_time_compare(data["p"], _password_digest(user, secret)) for secret in secrets):
        return None
    return user
