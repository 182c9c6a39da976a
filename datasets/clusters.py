"""Clusters: named groups of tenants (an industry, a supply chain) with their own consented pool.

A cluster is the platform pool's mechanism with a scope: its members contribute dataset versions to it with
recorded, withdrawable consent, the platform builds ``cluster/<name>@<n>`` pool versions from the standing
contributions of its current members, trains the cluster's base model on them, and members fine-tune from
that base. The platform admin creates clusters and adds and removes members (each change keeps who and when);
a removed member's contributions stay in the pools built before and out of every later one.

To a tenant that is not a member now, a cluster does not exist: every question about it (contribute, read
a pool version, train from it or from its base model) gets the answer a cluster that does not exist gets.
On PostgreSQL row-level security says the same (``ds0003``): a tenant's transactions see only its own
memberships and the pools of its clusters.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone

from sqlalchemy import ColumnElement, Connection, Engine, select, update
from sqlalchemy.exc import IntegrityError

from lineqa.content_store import TENANT_ID
from lineqa.datasets.errors import DatasetError, DatasetNotFoundError
from lineqa.datasets.schema import cluster_members, clusters
from lineqa.db import as_utc, tenant_scope

CLUSTER = "cluster"  # what `cluster/<name>@<version>` starts with
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


@dataclass(frozen=True)
class Membership:
    """One tenant's membership of a cluster: who added it and when, and who removed it and when (if so)."""

    cluster: str
    tenant: str
    added_by: str
    added_at: datetime
    removed_by: str | None
    removed_at: datetime | None


def check_cluster_name(name: str) -> str:
    if not _NAME.match(name):
        raise DatasetError(f"cluster name {name!r} must be 1-64 lower-case letters, digits, '_' or '-'")
    return name


def not_found(name: str) -> DatasetNotFoundError:
    """What a tenant is told about a cluster it is not a member of, and about one that does not exist."""
    return DatasetNotFoundError(f"no cluster {name!r}")


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _exists(conn: Connection, name: str) -> bool:
    return conn.execute(select(clusters.c.name).where(clusters.c.name == name)).first() is not None


def _current(name: str, tenant: str) -> tuple[ColumnElement[bool], ...]:
    m = cluster_members.c
    return m.cluster == name, m.tenant_id == tenant, m.removed_at.is_(None)


# -- the platform admin's side (the owner's engine: every tenant) -------------------------------------------


def create_cluster(engine: Engine, name: str, by: str) -> None:
    check_cluster_name(name)
    if not by.strip():
        raise DatasetError("say who creates the cluster (--by): the membership record keeps it")
    try:
        with engine.begin() as conn:
            conn.execute(clusters.insert().values(name=name, created_by=by, created_at=_now()))
    except IntegrityError:
        raise DatasetError(f"cluster {name!r} exists already") from None


def cluster_names(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return list(conn.execute(select(clusters.c.name).order_by(clusters.c.name)).scalars())


def add_member(engine: Engine, name: str, tenant: str, by: str) -> None:
    if not TENANT_ID.match(tenant):
        raise DatasetError(f"invalid tenant id {tenant!r}")
    if not by.strip():
        raise DatasetError("say who adds the member (--by): the membership record keeps it")
    with engine.begin() as conn:
        if not _exists(conn, name):
            raise DatasetNotFoundError(f"no cluster {name!r} (create it with 'lineqa datasets clusters create')")
        if conn.execute(select(cluster_members.c.membership_id).where(*_current(name, tenant))).first():
            raise DatasetError(f"tenant {tenant!r} is a member of cluster {name!r} already")
        conn.execute(cluster_members.insert().values(cluster=name, tenant_id=tenant, added_by=by, added_at=_now()))


def remove_member(engine: Engine, name: str, tenant: str, by: str) -> None:
    """End a membership: the tenant sees nothing of the cluster from now on, and its contributions stay out
    of every pool built afterwards (the pools built before keep them: models were trained on them)."""
    if not by.strip():
        raise DatasetError("say who removes the member (--by): the membership record keeps it")
    statement = update(cluster_members).where(*_current(name, tenant)).values(removed_by=by, removed_at=_now())
    with engine.begin() as conn:
        if not conn.execute(statement).rowcount:
            raise DatasetNotFoundError(f"tenant {tenant!r} is not a member of cluster {name!r}")


def memberships(engine: Engine, name: str) -> list[Membership]:
    """Every membership of the cluster, current and ended, in the order they began."""
    m = cluster_members.c
    query = select(cluster_members).where(m.cluster == name).order_by(m.membership_id)
    with engine.connect() as conn:
        if not _exists(conn, name):
            raise DatasetNotFoundError(f"no cluster {name!r}")
        rows = conn.execute(query).all()
    return [
        Membership(
            r.cluster,
            r.tenant_id,
            r.added_by,
            as_utc(r.added_at),
            r.removed_by,
            as_utc(r.removed_at) if r.removed_at else None,
        )
        for r in rows
    ]


def members(engine: Engine, name: str) -> list[str]:
    """The tenants that are members now."""
    return sorted(m.tenant for m in memberships(engine, name) if m.removed_at is None)


# -- a tenant's side (its own scope) ---------------------------------------------------------------------


def tenant_clusters(engine: Engine, tenant: str) -> list[str]:
    """The clusters ``tenant`` is a member of now (all it can know of clusters)."""
    m = cluster_members.c
    query = select(m.cluster).where(m.tenant_id == tenant, m.removed_at.is_(None)).distinct().order_by(m.cluster)
    with tenant_scope(engine, tenant).connect() as conn:
        return list(conn.execute(query).scalars())


def is_member(engine: Engine, name: str, tenant: str) -> bool:
    with tenant_scope(engine, tenant).connect() as conn:
        return conn.execute(select(cluster_members.c.membership_id).where(*_current(name, tenant))).first() is not None


def require_member(engine: Engine, name: str, tenant: str) -> None:
    """Raises what a cluster that does not exist gives unless ``tenant`` is a member of ``name`` now."""
    if not _NAME.match(name) or not is_member(engine, name, tenant):
        raise not_found(name)
