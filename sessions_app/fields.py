"""Secrets at rest: a text field encrypted with Fernet, with key rotation.

FIELD_ENCRYPTION_KEYS lists Fernet keys, newest first: the first encrypts, every one
decrypts. To rotate, put a new key first, deploy, then run
`python manage.py encryption_rotate` to re-encrypt every value with it, and drop the old
key afterwards.
"""

import functools

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.db import models


@functools.cache
def _fernet_for(keys: tuple[str, ...]) -> MultiFernet:
    return MultiFernet([Fernet(key) for key in keys])


def fernet() -> MultiFernet:
    return _fernet_for(tuple(settings.FIELD_ENCRYPTION_KEYS))


def encrypt(value: str) -> str:
    return fernet().encrypt(value.encode()).decode()


def decrypt(token: str) -> str:
    try:
        return fernet().decrypt(token.encode()).decode()
    except InvalidToken as error:
        # Never include the token or the value: only say what to check.
        raise ValueError(
            "An encrypted value cannot be decrypted with any key in FIELD_ENCRYPTION_KEYS."
        ) from error


class Secret(str):
    """A decrypted value that does not print itself (repr, logs, tracebacks)."""

    def __repr__(self) -> str:
        return "Secret('********')" if self else "Secret('')"


class EncryptedTextField(models.TextField):
    """Stores Fernet tokens; Python code sees the plain value (as a Secret)."""

    def from_db_value(self, value, expression, connection):
        if value in (None, ""):
            return value
        return Secret(decrypt(value))

    def to_python(self, value):
        if value is None or isinstance(value, Secret):
            return value
        return Secret(value)

    def get_prep_value(self, value):
        value = super().get_prep_value(value)
        if value in (None, ""):
            return value
        return encrypt(str(value))
