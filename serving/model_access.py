"""Which models a tenant's recipes may name.

The model repository keeps Triton's layout, and the tenant is part of a model's name: ``acme.pcb-defects`` is
tenant ``acme``'s (tenant ids have no dots, so the first dot splits owner from model), and only ``acme``'s
recipes can name it. A name without a tenant prefix (``platform-base``) is a *platform* model, trained for
everyone (the pooled base); a tenant's recipes may name it only once the plant admin allowed that tenant to
(``lineqa models allow``). Grants are append-only events with who, when and why; the newest decides.

The name carries the owner, rather than a table mapping names to owners, so that two tenants can each have a
``pcb-defects``, a repository copied between hub and plant cannot lose its owners, and a record's model name
says whose model judged it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

from sqlalchemy import Connection, Engine, select
from sqlalchemy.exc import IntegrityError

from lineqa.content_store import TENANT_ID
from lineqa.db import as_utc, tenant_scope
from lineqa.serving.access import AccessError
from lineqa.serving.schema import model_grants


def model_owner(name: str) -> str | None:
    """The tenant a model belongs to, or None for a platform model."""
    prefix, dot, _ = name.partition(".")
    return prefix if dot and TENANT_ID.match(prefix) else None


def tenant_model_name(tenant: str, model: str) -> str:
    """The repository name of ``tenant``'s model ``model``."""
    return f"{tenant}.{model}"


@dataclass(frozen=True)
class GrantEvent:
    tenant: str
    model: str
    allowed: bool
    by: str
    at: datetime
    reason: str


def may_use(conn: Connection, tenant: str, model: str) -> bool:
    """Whether ``tenant``'s recipes may name ``model`` (``conn`` in the tenant's scope)."""
    owner = model_owner(model)
    if owner is not None:
        return owner == tenant
    g = model_grants.c
    query = select(g.allowed).where(g.tenant_id == tenant, g.model_name == model).order_by(g.event_id.desc()).limit(1)
    return bool(conn.execute(query).scalar())


class ModelGrants:
    """The plant admin's grants of platform models to tenants (synchronous)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def change(self, tenant: str, model: str, *, allowed: bool, by: str, reason: str) -> None:
        """Allow (or stop) ``tenant`` using platform model ``model``; ``reason`` is required."""
        if model_owner(model) is not None:
            raise AccessError(
                f"{model!r} is tenant {model_owner(model)!r}'s own model: only platform models are granted"
            )
        if not reason.strip() or not by.strip():
            raise AccessError("a grant needs who decides it and why (--by, --reason): the audit trail keeps both")
        row = {"tenant_id": tenant, "model_name": model, "allowed": allowed, "granted_by": by, "reason": reason,
               "granted_at": datetime.now(timezone.utc)}  # fmt: skip
        try:
            with tenant_scope(self.engine, tenant).begin() as conn:
                if may_use(conn, tenant, model) == allowed:
                    raise AccessError(f"tenant {tenant!r} {'may' if allowed else 'may not'} use {model!r} already")
                conn.execute(model_grants.insert().values(**row))
        except IntegrityError as exc:
            raise AccessError(f"no tenant {tenant!r} (add it with 'lineqa admin tenant add')") from exc

    def allowed_tenants(self, model: str) -> list[str]:
        """The tenants whose newest grant event for ``model`` allows it, sorted."""
        newest = {event.tenant: event.allowed for event in self.history(model)}
        return sorted(tenant for tenant, allowed in newest.items() if allowed)

    def history(self, model: str) -> list[GrantEvent]:
        """Every grant event of ``model``, oldest first (the platform's view: every tenant)."""
        g = model_grants.c
        query = select(model_grants).where(g.model_name == model).order_by(g.event_id)
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        return [
            GrantEvent(r.tenant_id, r.model_name, r.allowed, r.granted_by, as_utc(r.granted_at), r.reason) for r in rows
        ]
