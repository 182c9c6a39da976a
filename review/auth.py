"""People who sign in, their roles per tenant, and their sessions.

Passwords are hashed with scrypt (stdlib), a memory-hard KDF, with a random salt per password. A session is a
random 256-bit id that lives only in the browser's cookie; the database keeps its SHA-256, so a copy of the
database cannot be replayed as a login. Each session carries its own CSRF token (:mod:`lineqa.review.csrf`).
Roles are granted per tenant and nothing is allowed without one (deny by default).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from enum import Enum
from typing import TYPE_CHECKING

from sqlalchemy import Engine, delete, select, update
from sqlalchemy.exc import IntegrityError

from lineqa.content_store import TENANT_ID
from lineqa.review.clock import as_utc, now
from lineqa.review.errors import BadInputError, NotFoundError, TooManyAttemptsError
from lineqa.review.schema import memberships, sessions, users

if TYPE_CHECKING:
    from lineqa.review.experts import ExpertScope

USERNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,127}$")
MIN_PASSWORD_LENGTH = 10
# scrypt cost: 16 MiB and ~50 ms per check on a small server: slow for a guesser, fine for a login form.
_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**14, 8, 1


class Role(str, Enum):
    """What a person does for a tenant; :mod:`lineqa.review.access` says which routes each role may use."""

    OPERATOR = "operator"
    LABELLER = "labeller"
    QA = "qa"
    ADMIN = "admin"


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P, dklen=32)
    return f"scrypt${_SCRYPT_N}${_SCRYPT_R}${_SCRYPT_P}${salt.hex()}${digest.hex()}"


def verify_password(password: str, stored: str) -> bool:
    """Constant-time comparison against a :func:`hash_password` string (its own cost parameters)."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        computed = hashlib.scrypt(
            password.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p), dklen=len(digest) // 2
        )
    except ValueError:
        return False
    return hmac.compare_digest(computed.hex(), digest)


# Checked when the user does not exist, so that a wrong name costs as long as a wrong password.
_DUMMY_HASH = hash_password(secrets.token_hex(16))


@dataclass(frozen=True)
class Principal:
    """The signed-in user of one request: who, their roles per tenant, their session's CSRF token, and the
    expert grants in force for them (:mod:`lineqa.review.experts`), read again for every request."""

    user_id: int
    username: str
    roles: dict[str, frozenset[Role]]
    csrf_token: str
    experts: Mapping[str, ExpertScope] = field(default_factory=dict)

    def roles_in(self, tenant: str) -> frozenset[Role]:
        return self.roles.get(tenant, frozenset())

    def expert_in(self, tenant: str) -> ExpertScope | None:
        """The grants that govern this user in ``tenant`` as an invited expert; None for a member (a member's
        roles are never narrowed by a grant) and for a stranger."""
        return None if self.roles_in(tenant) else self.experts.get(tenant)

    def tenants(self) -> list[str]:
        return sorted(set(self.roles) | set(self.experts))


@dataclass(frozen=True)
class UserInfo:
    username: str
    roles: tuple[tuple[str, Role], ...]  # (tenant, role), sorted
    disabled: bool


class UserStore:
    """Users, memberships and sessions in the review app's tables."""

    def __init__(self, engine: Engine, session_ttl: timedelta = timedelta(hours=12)) -> None:
        self.engine = engine
        self.session_ttl = session_ttl

    # -- users and roles --------------------------------------------------------------------------------

    def add_user(self, username: str, password: str) -> int:
        if not USERNAME.match(username):
            raise BadInputError(f"user name {username!r}: 1-128 letters, digits or . _ @ + -, starting alphanumeric")
        if len(password) < MIN_PASSWORD_LENGTH:
            raise BadInputError(f"a password needs at least {MIN_PASSWORD_LENGTH} characters")
        row = {"username": username, "password_hash": hash_password(password), "created_at": now()}
        try:
            with self.engine.begin() as conn:
                return int(conn.execute(users.insert().values(**row).returning(users.c.user_id)).scalar_one())
        except IntegrityError:
            raise BadInputError(f"user {username!r} exists already") from None

    def user_id(self, username: str) -> int:
        with self.engine.connect() as conn:
            found = conn.execute(select(users.c.user_id).where(users.c.username == username)).scalar()
        if found is None:
            raise NotFoundError(f"no user {username!r}")
        return int(found)

    def grant(self, username: str, tenant: str, role: Role) -> bool:
        """Give ``username`` ``role`` in ``tenant``; False when it was already granted."""
        if not TENANT_ID.match(tenant):
            raise BadInputError(f"invalid tenant id {tenant!r}")
        user_id = self.user_id(username)
        try:
            with self.engine.begin() as conn:
                conn.execute(memberships.insert().values(user_id=user_id, tenant_id=tenant, role=role.value))
        except IntegrityError:
            return False
        return True

    def revoke(self, username: str, tenant: str, role: Role) -> bool:
        """Take ``role`` in ``tenant`` away; False when the user did not have it."""
        user_id = self.user_id(username)
        statement = delete(memberships).where(
            memberships.c.user_id == user_id, memberships.c.tenant_id == tenant, memberships.c.role == role.value
        )
        with self.engine.begin() as conn:
            return bool(conn.execute(statement).rowcount)

    def set_disabled(self, username: str, disabled: bool) -> None:
        """A disabled user cannot sign in, and their open sessions stop working at the next request."""
        user_id = self.user_id(username)
        with self.engine.begin() as conn:
            conn.execute(
                update(users).where(users.c.user_id == user_id).values(disabled_at=now() if disabled else None)
            )
            if disabled:
                conn.execute(delete(sessions).where(sessions.c.user_id == user_id))

    def users(self, tenant: str) -> list[UserInfo]:
        """The users holding a role in ``tenant``, with their roles there."""
        query = (
            select(users.c.username, users.c.disabled_at, memberships.c.role)
            .join(memberships, memberships.c.user_id == users.c.user_id)
            .where(memberships.c.tenant_id == tenant)
            .order_by(users.c.username, memberships.c.role)
        )
        found: dict[str, tuple[list[tuple[str, Role]], bool]] = {}
        with self.engine.connect() as conn:
            for username, disabled_at, role in conn.execute(query):
                found.setdefault(username, ([], disabled_at is not None))[0].append((tenant, Role(role)))
        return [UserInfo(name, tuple(roles), disabled) for name, (roles, disabled) in found.items()]

    def _roles(self, user_id: int) -> dict[str, frozenset[Role]]:
        query = select(memberships.c.tenant_id, memberships.c.role).where(memberships.c.user_id == user_id)
        roles: dict[str, set[Role]] = {}
        with self.engine.connect() as conn:
            for tenant, role in conn.execute(query):
                roles.setdefault(tenant, set()).add(Role(role))
        return {tenant: frozenset(r) for tenant, r in roles.items()}

    # -- sign in and sessions ---------------------------------------------------------------------------

    def authenticate(self, username: str, password: str) -> int | None:
        """The user's id when the password is right and the user is enabled; None otherwise (same time)."""
        query = select(users.c.user_id, users.c.password_hash, users.c.disabled_at).where(users.c.username == username)
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
        if row is None:
            verify_password(password, _DUMMY_HASH)
            return None
        if not verify_password(password, row.password_hash) or row.disabled_at is not None:
            return None
        return int(row.user_id)

    def start_session(self, user_id: int) -> str:
        """A new session for ``user_id``; returns the id for the cookie (stored only as its hash)."""
        session_id = secrets.token_urlsafe(32)
        started = now()
        row = {
            "session_sha256": _digest(session_id),
            "user_id": user_id,
            "csrf_token": secrets.token_urlsafe(32),
            "created_at": started,
            "expires_at": started + self.session_ttl,
        }
        with self.engine.begin() as conn:
            conn.execute(delete(sessions).where(sessions.c.expires_at < started))  # housekeeping on each sign-in
            conn.execute(sessions.insert().values(**row))
        return session_id

    def principal(self, session_id: str) -> Principal | None:
        """Who a session cookie belongs to, or None for an unknown, expired or disabled one."""
        query = (
            select(users.c.user_id, users.c.username, users.c.disabled_at, sessions.c.csrf_token, sessions.c.expires_at)
            .join(users, users.c.user_id == sessions.c.user_id)
            .where(sessions.c.session_sha256 == _digest(session_id))
        )
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
        if row is None or row.disabled_at is not None or as_utc(row.expires_at) <= now():
            return None
        return Principal(int(row.user_id), row.username, self._roles(int(row.user_id)), row.csrf_token)

    def end_session(self, session_id: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(delete(sessions).where(sessions.c.session_sha256 == _digest(session_id)))


class SignInThrottle:
    """At most ``max_failures`` failed sign-ins per user name in ``window_s``; then that name is refused until
    the oldest failure leaves the window, whatever the password. It slows a password guesser to a few tries
    per quarter hour; counted per process (each replica counts its own), kept in memory."""

    def __init__(self, max_failures: int = 5, window_s: float = 900.0, clock: Callable[[], float] = time.monotonic):
        self.max_failures = max_failures
        self.window_s = window_s
        self.clock = clock
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, username: str) -> deque[float]:
        failures = self._failures.setdefault(username.lower(), deque())
        while failures and failures[0] <= self.clock() - self.window_s:
            failures.popleft()
        return failures

    def check(self, username: str) -> None:
        with self._lock:
            failures = self._recent(username)
            if len(failures) >= self.max_failures:
                wait_s = failures[0] + self.window_s - self.clock()
                raise TooManyAttemptsError(f"too many failed sign-ins: try again in {wait_s / 60:.0f} min")

    def failed(self, username: str) -> None:
        with self._lock:
            self._recent(username).append(self.clock())

    def succeeded(self, username: str) -> None:
        with self._lock:
            self._failures.pop(username.lower(), None)


def _digest(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()
