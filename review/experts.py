"""Invited experts: a tenant lets an outside person (a researcher, a consultant) with their own account see and
work on chosen parts of its data, under one role, until an expiry date, or until it revokes the grant.

A grant is one row of ``rv_expert_grants`` per scope item: the whole review queue, the parts of one line, the
parts judged by one recipe, one dataset, or one training run (read-only, with the qa role; only a run of the
tenant's own dataset: :mod:`lineqa.review.runs`). An expert is a user who holds grants in a tenant but no membership
there (a member's roles are never narrowed by a grant). Every request reads the live grants again
(:meth:`ExpertGrants.live`): nothing is cached in the session, so an expiry or a revocation holds from the
next request on. Outside what is granted, everything of the tenant answers 404, as for a stranger
(:mod:`lineqa.review.access`). Every request an expert makes is an entry of the granting tenant's audit trail
(:meth:`ExpertGrants.record_access`); inviting and revoking are entries too.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from enum import Enum
from typing import Any

from sqlalchemy import Engine, select, update

from lineqa.content_store import TENANT_ID
from lineqa.db import tenant_scope, user_scope
from lineqa.review import audit
from lineqa.review.auth import Role, UserStore
from lineqa.review.clock import as_utc, now
from lineqa.review.errors import BadInputError, NotFoundError
from lineqa.review.queue_filter import PartScope
from lineqa.review.runs import TrainingRuns
from lineqa.review.schema import expert_grants, memberships, users

EXPERT_ROLES = (Role.OPERATOR, Role.LABELLER, Role.QA)  # never admin: an expert cannot grant or see users
TARGET = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@:+-]{0,127}$")
WHOLE_QUEUE = "*"


class ScopeKind(str, Enum):
    """What one grant row opens: the whole queue, a line's parts, a recipe's parts, a dataset or a training run."""

    QUEUE = "queue"
    LINE = "line"
    RECIPE = "recipe"
    DATASET = "dataset"
    RUN = "run"


RUN_ROLE = Role.QA  # the run pages are qa's and admin's (lineqa.review.access): a run grant carries qa
SCOPE_FORMS = "queue, line:ID, recipe:ID, dataset:NAME or run:NAME"


class GrantStatus(str, Enum):
    ACTIVE = "active"
    EXPIRED = "expired"
    REVOKED = "revoked"


@dataclass(frozen=True)
class Grant:
    grant_id: int
    tenant: str
    username: str
    role: Role
    kind: ScopeKind
    target: str
    granted_by: str
    granted_at: datetime
    expires_at: datetime
    revoked_at: datetime | None
    revoked_by: str | None

    def status(self, at: datetime) -> GrantStatus:
        if self.revoked_at is not None:
            return GrantStatus.REVOKED
        return GrantStatus.ACTIVE if at < self.expires_at else GrantStatus.EXPIRED

    def describe(self) -> dict[str, Any]:
        """The grant as the CLI lists it and the audit trail records it."""
        return {
            "grant": self.grant_id,
            "tenant": self.tenant,
            "user": self.username,
            "role": self.role.value,
            "scope": f"{self.kind.value}:{self.target}",
            "granted_by": self.granted_by,
            "expires_at": self.expires_at.isoformat(timespec="seconds"),
            "revoked_at": self.revoked_at.isoformat(timespec="seconds") if self.revoked_at else None,
        }


@dataclass(frozen=True)
class ExpertScope:
    """One expert's live grants in one tenant; the access checks ask it, per route, with the roles the route
    allows, which parts and datasets are open."""

    grants: tuple[Grant, ...]

    @property
    def grant_ids(self) -> list[int]:
        return [g.grant_id for g in self.grants]

    def _with(self, roles: Iterable[Role], kinds: Iterable[ScopeKind]) -> list[Grant]:
        wanted_roles, wanted_kinds = set(roles), set(kinds)
        return [g for g in self.grants if g.role in wanted_roles and g.kind in wanted_kinds]

    def parts(self, roles: Iterable[Role]) -> PartScope:
        """The parts open to a holder of one of ``roles``."""
        found = self._with(roles, (ScopeKind.QUEUE, ScopeKind.LINE, ScopeKind.RECIPE))
        return PartScope(
            whole=any(g.kind is ScopeKind.QUEUE for g in found),
            lines=frozenset(g.target for g in found if g.kind is ScopeKind.LINE),
            recipes=frozenset(g.target for g in found if g.kind is ScopeKind.RECIPE),
        )

    def datasets(self, roles: Iterable[Role]) -> frozenset[str]:
        return frozenset(g.target for g in self._with(roles, (ScopeKind.DATASET,)))

    def runs(self, roles: Iterable[Role]) -> frozenset[str]:
        return frozenset(g.target for g in self._with(roles, (ScopeKind.RUN,)))

    def roles(self) -> frozenset[Role]:
        return frozenset(g.role for g in self.grants)


def check_invitation(tenant: str, role: Role, scope: Sequence[tuple[ScopeKind, str]], expires_at: datetime) -> None:
    """What an invitation must be, whoever it names (checked before an account is made for it)."""
    if not TENANT_ID.match(tenant):
        raise BadInputError(f"invalid tenant id {tenant!r}")
    if role not in EXPERT_ROLES:
        raise BadInputError(f"an expert's role is one of {', '.join(r.value for r in EXPERT_ROLES)}", "role")
    if not scope:
        raise BadInputError("name what the expert may see: the queue, a line, a recipe, a dataset or a run", "scope")
    if role is not RUN_ROLE and any(kind is ScopeKind.RUN for kind, _ in scope):
        raise BadInputError(f"a run:NAME grant needs --role {RUN_ROLE.value} (the run pages are qa's)", "role")
    if expires_at.tzinfo is None or expires_at <= now():
        raise BadInputError("the expiry must be a time in the future", "expires")


def check_runs(tenant: str, scope: Sequence[tuple[ScopeKind, str]], runs: TrainingRuns) -> None:
    """Each ``run:NAME`` of ``scope`` names a run of ``tenant``'s own dataset (a pool's belongs to no tenant)."""
    for kind, name in scope:
        if kind is not ScopeKind.RUN:
            continue
        try:
            owner = runs.tenant_of(name)
        except BadInputError:
            owner = ""
        if owner is None:
            raise BadInputError(f"run {name!r} trained on a pool or cluster dataset: it belongs to no single tenant, "
                                "so no tenant can grant it", "scope")  # fmt: skip
        if owner != tenant:  # missing, and another tenant's, alike: an admin learns nothing of other tenants
            raise BadInputError(f"{tenant} has no training run {name!r}", "scope")


def parse_scope(text: str) -> tuple[ScopeKind, str]:
    """``queue``, ``line:ID``, ``recipe:ID``, ``dataset:NAME`` or ``run:NAME``."""
    kind_text, _, target = text.partition(":")
    try:
        kind = ScopeKind(kind_text.strip())
    except ValueError:
        raise BadInputError(f"scope {text!r}: expected {SCOPE_FORMS}", "scope") from None
    target = WHOLE_QUEUE if kind is ScopeKind.QUEUE else target.strip()
    if kind is not ScopeKind.QUEUE and not TARGET.match(target):
        raise BadInputError(f"scope {text!r}: {kind.value} needs a name (letters, digits, . _ @ : + -)", "scope")
    return kind, target


def parse_expiry(text: str) -> datetime:
    """A date (the grant ends when that UTC day ends) or a date-time (UTC unless it says otherwise)."""
    try:
        if len(text.strip()) == 10:
            return datetime.combine(date.fromisoformat(text.strip()) + timedelta(days=1), time(), timezone.utc)
        parsed = datetime.fromisoformat(text.strip())
    except ValueError as exc:
        raise BadInputError(f"expiry {text!r} is not a date ({exc}); use YYYY-MM-DD", "expires") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def _grant(r: Any) -> Grant:
    return Grant(
        int(r.grant_id), r.tenant_id, r.username, Role(r.role), ScopeKind(r.kind), r.target, r.granted_by,
        as_utc(r.granted_at), as_utc(r.expires_at), as_utc(r.revoked_at) if r.revoked_at else None, r.revoked_by,
    )  # fmt: skip


_COLUMNS = (*expert_grants.c, users.c.username)


class ExpertGrants:
    """Invitations, their listing and revocation per tenant, and each request's live grants of one user."""

    def __init__(self, engine: Engine, runs: TrainingRuns | None = None) -> None:
        self.engine = engine
        self.runs = runs or TrainingRuns(None)  # where run:NAME grants are checked (no folder: none grantable)

    def invite(
        self,
        tenant: str,
        username: str,
        role: Role,
        scope: Sequence[tuple[ScopeKind, str]],
        expires_at: datetime,
        by: str,
    ) -> list[Grant]:
        """Grant ``username`` ``role`` on each scope item of ``tenant`` until ``expires_at``; one audit entry."""
        check_invitation(tenant, role, scope, expires_at)
        check_runs(tenant, scope, self.runs)
        user_id = UserStore(self.engine).user_id(username)
        with self.engine.connect() as conn:
            member = conn.execute(
                select(memberships.c.role).where(memberships.c.user_id == user_id, memberships.c.tenant_id == tenant)
            ).first()
        if member is not None:
            raise BadInputError(f"{username} holds roles in {tenant} already: a grant would not narrow them")
        granted = now()
        rows = [
            {"tenant_id": tenant, "user_id": user_id, "role": role.value, "kind": kind.value, "target": target,
             "granted_by": by, "granted_at": granted, "expires_at": expires_at}
            for kind, target in dict.fromkeys(scope)
        ]  # fmt: skip
        with tenant_scope(self.engine, tenant).begin() as conn:
            ids = [int(conn.execute(expert_grants.insert().values(**row).returning(expert_grants.c.grant_id))
                       .scalar_one()) for row in rows]  # fmt: skip
            made = self._select(conn, expert_grants.c.grant_id.in_(ids))
            audit.append(conn, tenant, by, audit.AuditAction.EXPERT_INVITE, f"expert:{username}", None,
                         [g.describe() for g in made])  # fmt: skip
        return made

    def revoke(self, tenant: str, by: str, *, grant_id: int | None = None, username: str | None = None) -> list[Grant]:
        """End one grant, or every live grant of ``username`` in ``tenant``, at once; the grants ended."""
        condition = [expert_grants.c.tenant_id == tenant, expert_grants.c.revoked_at.is_(None)]
        if grant_id is not None:
            condition.append(expert_grants.c.grant_id == grant_id)
        elif username is not None:
            condition.append(users.c.username == username)
        else:
            raise BadInputError("name a grant or a user to revoke")
        ended = now()
        with tenant_scope(self.engine, tenant).begin() as conn:
            found = [g for g in self._select(conn, *condition) if g.status(ended) is GrantStatus.ACTIVE]
            if not found:
                raise NotFoundError(f"no live grant {grant_id or username!r} in {tenant}")
            conn.execute(
                update(expert_grants)
                .where(expert_grants.c.grant_id.in_([g.grant_id for g in found]))
                .values(revoked_at=ended, revoked_by=by)
            )
            for username_of in sorted({g.username for g in found}):
                mine = [g.describe() for g in found if g.username == username_of]
                audit.append(conn, tenant, by, audit.AuditAction.EXPERT_REVOKE, f"expert:{username_of}", mine,
                             {"revoked_at": ended.isoformat(timespec="seconds")})  # fmt: skip
        return found

    def grants(self, tenant: str) -> list[Grant]:
        """Every grant of ``tenant``, live or not, newest first."""
        with tenant_scope(self.engine, tenant).connect() as conn:
            return self._select(conn, expert_grants.c.tenant_id == tenant)

    def live(self, user_id: int) -> dict[str, ExpertScope]:
        """The user's grants now in force, per tenant (read on every request: revoking holds at once)."""
        at = now()
        with user_scope(self.engine, user_id).connect() as conn:
            found = self._select(conn, expert_grants.c.user_id == user_id, expert_grants.c.revoked_at.is_(None),
                                 expert_grants.c.expires_at > at)  # fmt: skip
        per_tenant: dict[str, list[Grant]] = {}
        for grant in found:
            per_tenant.setdefault(grant.tenant, []).append(grant)
        return {tenant: ExpertScope(tuple(grants)) for tenant, grants in per_tenant.items()}

    def record_access(
        self, tenant: str, username: str, user_id: int, scope: ExpertScope, method: str, path: str, route: str | None,
        status: int,
    ) -> None:  # fmt: skip
        """One audit entry of ``tenant`` for one request of its expert (page, image, decision, export)."""
        with tenant_scope(self.engine, tenant).begin() as conn:
            audit.append(conn, tenant, username, audit.AuditAction.EXPERT_ACCESS, f"{method} {path}", None,
                         {"user_id": user_id, "grants": scope.grant_ids, "route": route, "status": status})  # fmt: skip

    @staticmethod
    def _select(conn: Any, *condition: Any) -> list[Grant]:
        query = (
            select(*_COLUMNS)
            .join(users, users.c.user_id == expert_grants.c.user_id)
            .where(*condition)
            .order_by(expert_grants.c.grant_id.desc())
        )
        return [_grant(r) for r in conn.execute(query)]
