"""Password hashing (argon2id) and small helpers shared by the pages and the API."""

from __future__ import annotations

import re
from functools import lru_cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from .errors import InvalidRequest

EMAIL_RE = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,255}\.[^@\s]{1,63}$")
MIN_PASSWORD = 8


@lru_cache
def _hasher() -> PasswordHasher:
    # OWASP's argon2id floor: 19 MiB, 2 iterations, 1 lane.
    return PasswordHasher(time_cost=2, memory_cost=19_456, parallelism=1)


def hash_password(password: str) -> str:
    return _hasher().hash(password)


def verify_password(stored_hash: str, password: str) -> bool:
    try:
        return _hasher().verify(stored_hash, password)
    except (VerificationError, InvalidHashError):
        return False


# A hash to compare against when the account does not exist, so that a sign-in for an
# unknown email costs the same time as one with a wrong password.
def dummy_verify(password: str) -> None:
    verify_password(_dummy_hash(), password)


@lru_cache
def _dummy_hash() -> str:
    return hash_password("not-a-real-password")


def check_email(email: str, param: str = "email") -> str:
    email = email.strip().lower()
    if not EMAIL_RE.match(email):
        raise InvalidRequest("enter a valid email address", param=param)
    return email


def check_password(password: str, param: str = "password") -> str:
    if len(password) < MIN_PASSWORD:
        raise InvalidRequest(
            f"the password must have at least {MIN_PASSWORD} characters", param=param
        )
    if len(password) > 1024:
        raise InvalidRequest("the password is too long", param=param)
    return password
