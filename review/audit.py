"""The append-only audit trail (RELIABILITY.md 10): who did what, when (server UTC), the old and the new
value, and why. This module can only add entries and read them; the database refuses UPDATE and DELETE on
the table by trigger, so no code path, here or elsewhere, can rewrite what an auditor reads."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any

from sqlalchemy import Connection, Engine, select

from lineqa.db import tenant_scope
from lineqa.review.clock import as_utc, now
from lineqa.review.schema import audit_log


class AuditAction(str, Enum):
    DECISION = "part.decision"
    LABEL_FIX = "labels.fix"
    SNAPSHOT = "dataset.snapshot"
    ROLE_GRANT = "user.grant"
    ROLE_REVOKE = "user.revoke"
    USER_ADD = "user.add"
    EXPERT_INVITE = "expert.invite"
    EXPERT_REVOKE = "expert.revoke"
    EXPERT_ACCESS = "expert.access"


@dataclass(frozen=True)
class AuditEntry:
    entry_id: int
    tenant: str
    at: datetime
    actor: str
    action: AuditAction
    object: str
    old: Any
    new: Any
    reason: str


def append(
    conn: Connection, tenant: str, actor: str, action: AuditAction, obj: str, old: Any, new: Any, reason: str = ""
) -> None:
    """Add one entry inside the caller's transaction, so the change and its record commit together."""
    conn.execute(
        audit_log.insert().values(
            tenant_id=tenant,
            at=now(),
            actor=actor,
            action=action.value,
            object=obj[:600],
            old_json=json.dumps(old, sort_keys=True),
            new_json=json.dumps(new, sort_keys=True),
            reason=reason,
        )
    )


def entries(engine: Engine, tenant: str, *, obj: str | None = None, limit: int = 500) -> list[AuditEntry]:
    """A tenant's entries, newest first; only those about ``obj`` when given."""
    query = select(audit_log).where(audit_log.c.tenant_id == tenant)
    if obj is not None:
        query = query.where(audit_log.c.object == obj)
    query = query.order_by(audit_log.c.entry_id.desc()).limit(limit)
    with tenant_scope(engine, tenant).connect() as conn:
        return [
            AuditEntry(
                r.entry_id,
                r.tenant_id,
                as_utc(r.at),
                r.actor,
                AuditAction(r.action),
                r.object,
                json.loads(r.old_json),
                json.loads(r.new_json),
                r.reason,
            )
            for r in conn.execute(query)
        ]
