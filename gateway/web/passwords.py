"""Password hashing (Argon2id, argon2-cffi's RFC 9106 low-memory profile) and new passwords.

In: a password (str). Out: an encoded Argon2id hash that carries its own salt and
parameters, or True/False for a check. Nothing here touches the database.

Guarantees: `verify` never raises for a wrong password or a malformed hash (it answers
False); `verify_dummy` costs what a real check costs, so a login for an unknown username
takes as long as one for a known username; `generate_password` draws from `secrets`.
"""

from __future__ import annotations

import contextlib
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

_HASHER = PasswordHasher()   # Argon2id with argon2-cffi's defaults (RFC 9106, second choice)
_DUMMY_HASH = _HASHER.hash(secrets.token_urlsafe(16))
# no 0/O, 1/l/I: a mailed password is read by people and sometimes typed
_ALPHABET = "abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"


def hash_password(password: str) -> str:
    return _HASHER.hash(password)


def verify(password_hash: str | None, password: str) -> bool:
    """Does `password` match? A missing hash (no password set yet) never matches."""
    if not password_hash:
        verify_dummy(password)
        return False
    try:
        return _HASHER.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def verify_dummy(password: str) -> None:
    """Spend the time of one verification (for unknown usernames)."""
    with contextlib.suppress(VerifyMismatchError, VerificationError, InvalidHashError):
        _HASHER.verify(_DUMMY_HASH, password)


def needs_rehash(password_hash: str) -> bool:
    return _HASHER.check_needs_rehash(password_hash)


def generate_password(length: int = 16) -> str:
    """A random password of `length` characters (16: about 93 bits)."""
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))
