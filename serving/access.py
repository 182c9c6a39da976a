"""Who may send frames: tenants, their production lines, the cameras on them, and per-camera tokens.

A camera token is bound to one camera of one tenant, and through it to that camera's line. It looks like
``lqa_<token id>_<secret>``: the id finds the row, the secret is checked against its stored SHA-256 in
constant time. Tokens are shown once when issued and can be revoked; a revoked token is refused from the
next check on (the gateway caches a good answer for a few seconds at most, see :class:`TokenCache`).

What concerns one tenant runs in that tenant's scope (:func:`lineqa.db.tenant_scope`), so it works, under
row-level security, from the application role too. Checking a token runs in the token's own scope: on
PostgreSQL it can see that token's row and camera and nothing else. Listing every tenant, camera or token and
revoking by token id are the plant admin's, on the owner's login.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timezone

from sqlalchemy import Engine, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from lineqa.content_store import RESERVED_TENANT_IDS, TENANT_ID
from lineqa.db import tenant_scope, token_scope
from lineqa.serving.database import DatabaseError
from lineqa.serving.errors import ServingError
from lineqa.serving.schema import camera_tokens, cameras, lines, tenants

TOKEN_PREFIX = "lqa"
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class AccessError(ServingError):
    """An admin request that cannot be done (unknown tenant, duplicate camera, bad id)."""


class AccessDeniedError(ServingError):
    """A caller's token is missing, malformed, unknown or revoked."""


@dataclass(frozen=True)
class Principal:
    """What a valid token proves: the caller is this camera of this tenant, on this line."""

    tenant_id: str
    camera_id: str
    line_id: str
    token_id: str


@dataclass(frozen=True)
class IssuedToken:
    token_id: str
    token: str  # shown once; only its hash is stored


@dataclass(frozen=True)
class TokenInfo:
    token_id: str
    tenant_id: str
    camera_id: str
    created_at: datetime
    revoked_at: datetime | None


def _check_id(kind: str, value: str) -> str:
    if not _ID.match(value):
        raise AccessError(f"{kind} id {value!r} must be 1-64 letters, digits, '.', '_' or '-', starting alnum")
    return value


def _sha256(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _now() -> datetime:
    return datetime.now(timezone.utc)


def parse_token(token: str) -> tuple[str, str]:
    """Split a token into (token id, secret); :class:`AccessDeniedError` when it is not one of ours."""
    prefix, _, rest = token.partition("_")
    token_id, _, secret = rest.partition("_")
    if prefix != TOKEN_PREFIX or not token_id or len(secret) < 32:
        raise AccessDeniedError("the bearer token is not a lineqa camera token")
    return token_id, secret


class AccessStore:
    """Tenants, lines, cameras and tokens in the gateway database (synchronous: run it in a worker thread)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def _scope(self, tenant_id: str | None) -> Engine:
        """One tenant's scope, or the platform's (every tenant, for the owner) for ``None``."""
        return self.engine if tenant_id is None else tenant_scope(self.engine, tenant_id)

    def _write(self, tenant_id: str, what: str, statement: object) -> None:
        try:
            with tenant_scope(self.engine, tenant_id).begin() as conn:
                conn.execute(statement)  # type: ignore[call-overload]
        except IntegrityError as exc:
            raise AccessError(f"cannot add {what}: it exists already or what it belongs to does not") from exc
        except SQLAlchemyError as exc:
            raise DatabaseError(f"cannot add {what}: {exc}") from exc

    def add_tenant(self, tenant_id: str, display_name: str = "") -> None:
        if not TENANT_ID.match(tenant_id):  # it prefixes storage keys: lower case, no dots
            raise AccessError(f"tenant id {tenant_id!r} must be 1-64 lower-case letters, digits, '_' or '-'")
        if tenant_id in RESERVED_TENANT_IDS:
            raise AccessError(f"tenant id {tenant_id!r} is reserved: 'cluster/<name>' names a cluster's pool")
        values = {"tenant_id": tenant_id, "display_name": display_name or tenant_id, "created_at": _now()}
        self._write(tenant_id, f"tenant {tenant_id!r}", tenants.insert().values(**values))

    def add_line(self, tenant_id: str, line_id: str) -> None:
        _check_id("line", line_id)
        self._require_tenant(tenant_id)
        values = {"tenant_id": tenant_id, "line_id": line_id, "created_at": _now()}
        self._write(tenant_id, f"line {line_id!r} of tenant {tenant_id!r}", lines.insert().values(**values))

    def add_camera(self, tenant_id: str, line_id: str, camera_id: str) -> None:
        _check_id("camera", camera_id)
        self._require_tenant(tenant_id)
        query = select(lines.c.line_id).where(lines.c.tenant_id == tenant_id, lines.c.line_id == line_id)
        with tenant_scope(self.engine, tenant_id).connect() as conn:
            if conn.execute(query).first() is None:
                raise AccessError(f"tenant {tenant_id!r} has no line {line_id!r} (add it with 'lineqa admin line add')")
        values = {"tenant_id": tenant_id, "camera_id": camera_id, "line_id": line_id, "created_at": _now()}
        self._write(
            tenant_id, f"camera {camera_id!r} on line {line_id!r} of {tenant_id!r}", cameras.insert().values(**values)
        )

    def issue_token(self, tenant_id: str, camera_id: str) -> IssuedToken:
        token_id, secret = secrets.token_hex(8), secrets.token_urlsafe(32)
        self._require_camera(tenant_id, camera_id)
        values = {
            "token_id": token_id,
            "tenant_id": tenant_id,
            "camera_id": camera_id,
            "secret_sha256": _sha256(secret),
            "created_at": _now(),
        }
        self._write(tenant_id, f"a token for camera {camera_id!r}", camera_tokens.insert().values(**values))
        return IssuedToken(token_id, f"{TOKEN_PREFIX}_{token_id}_{secret}")

    def revoke_token(self, token_id: str) -> None:
        statement = (
            update(camera_tokens)
            .where(camera_tokens.c.token_id == token_id, camera_tokens.c.revoked_at.is_(None))
            .values(revoked_at=_now())
        )
        with self.engine.begin() as conn:
            if conn.execute(statement).rowcount == 0:
                raise AccessError(f"no active token {token_id!r}")

    def tokens(self, tenant_id: str | None = None) -> list[TokenInfo]:
        query = select(
            camera_tokens.c.token_id,
            camera_tokens.c.tenant_id,
            camera_tokens.c.camera_id,
            camera_tokens.c.created_at,
            camera_tokens.c.revoked_at,
        ).order_by(camera_tokens.c.created_at)
        if tenant_id is not None:
            query = query.where(camera_tokens.c.tenant_id == tenant_id)
        with self._scope(tenant_id).connect() as conn:
            return [TokenInfo(**row) for row in conn.execute(query).mappings()]

    def cameras(self, tenant_id: str | None = None) -> list[tuple[str, str, str]]:
        """(tenant, line, camera) for every registered camera."""
        query = select(cameras.c.tenant_id, cameras.c.line_id, cameras.c.camera_id).order_by(
            cameras.c.tenant_id, cameras.c.line_id, cameras.c.camera_id
        )
        if tenant_id is not None:
            query = query.where(cameras.c.tenant_id == tenant_id)
        with self._scope(tenant_id).connect() as conn:
            return [(t, line, c) for t, line, c in conn.execute(query).all()]

    def lines(self, tenant_id: str) -> list[str]:
        query = select(lines.c.line_id).where(lines.c.tenant_id == tenant_id).order_by(lines.c.line_id)
        with tenant_scope(self.engine, tenant_id).connect() as conn:
            return list(conn.execute(query).scalars())

    def tenants(self) -> list[tuple[str, str]]:
        with self.engine.connect() as conn:
            query = select(tenants.c.tenant_id, tenants.c.display_name).order_by(tenants.c.tenant_id)
            return [(t, n) for t, n in conn.execute(query).all()]

    def authenticate(self, token: str) -> Principal:
        """The principal a token proves; :class:`AccessDeniedError` for anything else."""
        token_id, secret = parse_token(token)
        same_camera = (cameras.c.tenant_id == camera_tokens.c.tenant_id) & (
            cameras.c.camera_id == camera_tokens.c.camera_id
        )
        query = (
            select(camera_tokens.c.secret_sha256, camera_tokens.c.revoked_at, cameras.c.tenant_id)
            .add_columns(cameras.c.camera_id, cameras.c.line_id)
            .join(cameras, same_camera)
            .where(camera_tokens.c.token_id == token_id)
        )
        try:
            with token_scope(self.engine, token_id).connect() as conn:
                row = conn.execute(query).first()
        except SQLAlchemyError as exc:
            raise DatabaseError(f"cannot check a camera token: {exc}") from exc
        if row is None or not hmac.compare_digest(row.secret_sha256, _sha256(secret)):
            raise AccessDeniedError("unknown camera token")
        if row.revoked_at is not None:
            raise AccessDeniedError(f"camera token {token_id} was revoked")
        return Principal(row.tenant_id, row.camera_id, row.line_id, token_id)

    def _require_tenant(self, tenant_id: str) -> None:
        with tenant_scope(self.engine, tenant_id).connect() as conn:
            if conn.execute(select(tenants.c.tenant_id).where(tenants.c.tenant_id == tenant_id)).first() is None:
                raise AccessError(f"no tenant {tenant_id!r} (add it with 'lineqa admin tenant add')")

    def _require_camera(self, tenant_id: str, camera_id: str) -> None:
        query = select(cameras.c.camera_id).where(cameras.c.tenant_id == tenant_id, cameras.c.camera_id == camera_id)
        with tenant_scope(self.engine, tenant_id).connect() as conn:
            if conn.execute(query).first() is None:
                raise AccessError(f"tenant {tenant_id!r} has no camera {camera_id!r}")


class TokenCache:
    """Remembers good tokens for ``ttl_s`` so a stream need not query the database per frame; bad answers
    are never cached, and a revocation is seen within ``ttl_s``."""

    def __init__(self, store: AccessStore, ttl_s: float = 5.0) -> None:
        self.store = store
        self.ttl_s = ttl_s
        self._good: dict[str, tuple[float, Principal]] = {}

    def cached(self, token: str) -> Principal | None:
        """The principal of a token checked less than ``ttl_s`` ago; no database, safe on the event loop."""
        hit = self._good.get(token)
        if hit is not None and time.monotonic() - hit[0] < self.ttl_s:
            return hit[1]
        return None

    def authenticate(self, token: str) -> Principal:
        """:meth:`cached`, else a database check (call it from a worker thread)."""
        principal = self.cached(token)
        if principal is None:
            principal = self.store.authenticate(token)
            self._good[token] = (time.monotonic(), principal)
        return principal
