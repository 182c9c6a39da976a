"""The shared pool: datasets that tenants consented to contribute, merged for training a platform base model.

A pool version merges the newest consented version of every contribution that was not withdrawn, maps class
names across tenants to one vocabulary (``scratches`` and ``scratch`` become one class), and is immutable
like any dataset version: its manifest records which contributions and which mapping made it. Withdrawing
consent leaves built pools as they were (they are what past models were trained on) and keeps the
withdrawn version out of every pool built afterwards.

The platform pool (``pool@<n>``) and each cluster's (``cluster/<name>@<n>``, :mod:`lineqa.datasets.clusters`)
are the same mechanism with a scope: a contribution and a pool version belong to one pool, versions are
numbered per pool, and a cluster's pool merges the standing contributions of its current members only.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import Engine, func, select

from lineqa.content_store import ContentStore
from lineqa.datasets.clusters import CLUSTER, check_cluster_name, require_member
from lineqa.datasets.errors import DatasetError, DatasetNotFoundError
from lineqa.datasets.manifest import Manifest
from lineqa.datasets.model import LabelledImage
from lineqa.datasets.schema import cluster_members, clusters, contributions, pools, versions
from lineqa.db import tenant_scope

POOL = "pool"  # what `--dataset pool@<version>` names


def pool_name(cluster: str | None) -> str:
    """How a pool is named in references: ``pool`` or ``cluster/<name>``."""
    return f"{CLUSTER}/{cluster}" if cluster else POOL


def parse_pool_ref(ref: str) -> tuple[str | None, str | None] | None:
    """``pool@<v>`` → (None, v); ``cluster/<name>@<v>`` → (name, v); anything else (a tenant's dataset) →
    None. A missing version is None (the newest)."""
    head, _, version = ref.partition("@")
    if head == POOL:
        return None, version or None
    scope, slash, name = head.partition("/")
    if scope == CLUSTER and slash:
        return check_cluster_name(name), version or None
    return None


@dataclass(frozen=True)
class Contribution:
    tenant: str
    dataset: str
    number: int


@dataclass(frozen=True)
class PoolVersion:
    cluster: str | None
    number: int
    sha256: str
    contributions: tuple[Contribution, ...]
    images: int
    classes: tuple[str, ...]

    @property
    def ref(self) -> str:
        return f"{pool_name(self.cluster)}@{self.number}"


def active_contributions(engine: Engine, cluster: str | None = None) -> list[Contribution]:
    """Per (tenant, dataset), the newest version with standing consent to this pool; for a cluster, of its
    current members only."""
    query = (
        select(contributions.c.tenant_id, contributions.c.dataset, func.max(contributions.c.number))
        .where(contributions.c.withdrawn_at.is_(None), contributions.c.cluster == (cluster or ""))
        .group_by(contributions.c.tenant_id, contributions.c.dataset)
        .order_by(contributions.c.tenant_id, contributions.c.dataset)
    )
    if cluster:
        m = cluster_members.c
        current = select(m.tenant_id).where(m.cluster == cluster, m.removed_at.is_(None))
        query = query.where(contributions.c.tenant_id.in_(current))
    with engine.connect() as conn:
        return [Contribution(t, d, int(n)) for t, d, n in conn.execute(query)]


def merge(
    parts: list[tuple[Contribution, Manifest]], class_map: Mapping[str, str], cluster: str | None = None
) -> Manifest:
    """One manifest from several tenants' versions, class names mapped to the pool's vocabulary (a name not
    in ``class_map`` stays as it is). Samples keep their tenant: images are read from its store."""
    classes: list[str] = []
    samples = []
    for _, manifest in parts:
        for name in manifest.classes:
            mapped = class_map.get(name, name)
            if mapped not in classes:
                classes.append(mapped)
        for sample in manifest.samples:
            boxes = tuple(replace(b, class_name=class_map.get(b.class_name, b.class_name)) for b in sample.boxes)
            samples.append(replace(sample, boxes=boxes))
    provenance: dict[str, Any] = {
        "contributions": [[c.tenant, c.dataset, c.number, m.sha256] for c, m in parts],
        "class_map": dict(sorted(class_map.items())),
    }
    if cluster:
        provenance["cluster"] = cluster
    return Manifest(tuple(classes), tuple(samples), provenance)


def build_pool(engine: Engine, class_map: Mapping[str, str], cluster: str | None = None) -> PoolVersion:
    """A new version of the platform pool, or of ``cluster``'s, from the standing contributions (or the
    existing version with the same content). The platform's job: ``engine`` reads every tenant's rows."""
    scope = cluster or ""
    if cluster:
        with engine.connect() as conn:
            if conn.execute(select(clusters.c.name).where(clusters.c.name == cluster)).first() is None:
                raise DatasetNotFoundError(f"no cluster {cluster!r}")
    parts = []
    for contribution in active_contributions(engine, cluster):
        query = select(versions.c.manifest_json).where(
            versions.c.tenant_id == contribution.tenant,
            versions.c.dataset == contribution.dataset,
            versions.c.number == contribution.number,
        )
        with engine.connect() as conn:
            parts.append((contribution, Manifest.from_json(conn.execute(query).scalar_one())))
    if not parts:
        what = f"cluster {cluster!r}'s pool" if cluster else "the pool"
        raise DatasetError(f"no tenant has contributed a dataset version to {what}")
    manifest = merge(parts, class_map, cluster)
    digest = manifest.sha256
    in_scope = pools.c.cluster == scope
    with engine.begin() as conn:
        number = conn.execute(select(pools.c.number).where(in_scope, pools.c.manifest_sha256 == digest)).scalar()
        if number is None:
            latest = select(func.coalesce(func.max(pools.c.number), 0)).where(in_scope)
            number = int(conn.execute(latest).scalar_one()) + 1
            conn.execute(
                pools.insert().values(
                    cluster=scope,
                    number=number,
                    manifest_sha256=digest,
                    manifest_json=manifest.canonical_json(),
                    contributions_json=json.dumps([c.__dict__ for c, _ in parts]),
                    class_map_json=json.dumps(dict(class_map)),
                    created_at=datetime.now(timezone.utc),
                )
            )
    contributed = tuple(c for c, _ in parts)
    return PoolVersion(cluster, number, digest, contributed, len(manifest.samples), manifest.classes)


def pool_manifest(engine: Engine, version: str | None = None, cluster: str | None = None) -> Manifest:
    """A version of the platform pool, or of ``cluster``'s (a number, ``latest`` or a hash prefix)."""
    query = select(pools.c.manifest_json).where(pools.c.cluster == (cluster or ""))
    if version in (None, "latest"):
        query = query.order_by(pools.c.number.desc()).limit(1)
    elif version.isdigit():
        query = query.where(pools.c.number == int(version))
    else:
        query = query.where(pools.c.manifest_sha256.startswith(version))
    with engine.connect() as conn:
        rows = conn.execute(query).scalars().all()
    if len(rows) != 1:
        what = "is ambiguous" if rows else "does not exist"
        if cluster:
            raise DatasetNotFoundError(f"version {version or 'latest'} of {pool_name(cluster)} {what}")
        raise DatasetNotFoundError(f"pool version {version or 'latest'} {what}")
    return Manifest.from_json(rows[0])


def participants(manifest: Manifest) -> set[str]:
    return {tenant for tenant, *_ in manifest.provenance.get("contributions", [])}


def pool_images(manifest: Manifest, store: ContentStore) -> list[LabelledImage]:
    """The pool's samples as files, named ``<tenant>/<name>`` so names of different tenants never collide."""
    return [
        s.labelled_image(store, f"{s.tenant}/{s.name}", f"{s.tenant}/{s.group}" if s.group else None)
        for s in manifest.samples
    ]


def tenant_pool_manifest(
    engine: Engine, tenant: str, version: str | None = None, cluster: str | None = None
) -> Manifest:
    """A pool version as a tenant may see it: of the platform pool only one that tenant contributed to; of a
    cluster's, any while it is a member (to a non-member the cluster does not exist); any other looks absent."""
    if cluster:
        require_member(engine, cluster, tenant)
        return pool_manifest(tenant_scope(engine, tenant), version, cluster)
    manifest = pool_manifest(engine, version)
    if tenant not in participants(manifest):
        raise DatasetNotFoundError(f"pool version {version or 'latest'} does not exist")
    return manifest


def pool_versions(engine: Engine, cluster: str | None = None) -> list[int]:
    """The numbers of the pool's versions (what ``engine`` may see of them)."""
    query = select(pools.c.number).where(pools.c.cluster == (cluster or "")).order_by(pools.c.number)
    with engine.connect() as conn:
        return [int(n) for n in conn.execute(query).scalars()]
