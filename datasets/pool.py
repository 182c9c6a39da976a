"""The shared pool: datasets that tenants consented to contribute, merged for training a platform base model.

A pool version merges the newest consented version of every contribution that was not withdrawn, maps class
names across tenants to one vocabulary (``scratches`` and ``scratch`` become one class), and is immutable
like any dataset version: its manifest records which contributions and which mapping made it. Withdrawing
consent leaves built pools as they were (they are what past models were trained on) and keeps the
withdrawn version out of every pool built afterwards.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import Engine, func, select

from lineqa.content_store import ContentStore
from lineqa.datasets.catalog import DatasetNotFoundError
from lineqa.datasets.errors import DatasetError
from lineqa.datasets.manifest import Manifest
from lineqa.datasets.model import LabelledImage
from lineqa.datasets.schema import contributions, pools, versions

POOL = "pool"  # what `--dataset pool@<version>` names


@dataclass(frozen=True)
class Contribution:
    tenant: str
    dataset: str
    number: int


@dataclass(frozen=True)
class PoolVersion:
    number: int
    sha256: str
    contributions: tuple[Contribution, ...]
    images: int
    classes: tuple[str, ...]


def active_contributions(engine: Engine) -> list[Contribution]:
    """Per (tenant, dataset), the newest version with standing consent."""
    query = (
        select(contributions.c.tenant_id, contributions.c.dataset, func.max(contributions.c.number))
        .where(contributions.c.withdrawn_at.is_(None))
        .group_by(contributions.c.tenant_id, contributions.c.dataset)
        .order_by(contributions.c.tenant_id, contributions.c.dataset)
    )
    with engine.connect() as conn:
        return [Contribution(t, d, int(n)) for t, d, n in conn.execute(query)]


def merge(parts: list[tuple[Contribution, Manifest]], class_map: Mapping[str, str]) -> Manifest:
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
    return Manifest(tuple(classes), tuple(samples), provenance)


def build_pool(engine: Engine, class_map: Mapping[str, str]) -> PoolVersion:
    """A new pool version from the standing contributions (or the existing one with the same content)."""
    parts = []
    for contribution in active_contributions(engine):
        query = select(versions.c.manifest_json).where(
            versions.c.tenant_id == contribution.tenant,
            versions.c.dataset == contribution.dataset,
            versions.c.number == contribution.number,
        )
        with engine.connect() as conn:
            parts.append((contribution, Manifest.from_json(conn.execute(query).scalar_one())))
    if not parts:
        raise DatasetError("no tenant has contributed a dataset version to the pool")
    manifest = merge(parts, class_map)
    digest = manifest.sha256
    with engine.begin() as conn:
        number = conn.execute(select(pools.c.number).where(pools.c.manifest_sha256 == digest)).scalar()
        if number is None:
            number = int(conn.execute(select(func.coalesce(func.max(pools.c.number), 0))).scalar_one()) + 1
            conn.execute(
                pools.insert().values(
                    number=number,
                    manifest_sha256=digest,
                    manifest_json=manifest.canonical_json(),
                    contributions_json=json.dumps([c.__dict__ for c, _ in parts]),
                    class_map_json=json.dumps(dict(class_map)),
                    created_at=datetime.now(timezone.utc),
                )
            )
    return PoolVersion(number, digest, tuple(c for c, _ in parts), len(manifest.samples), manifest.classes)


def pool_manifest(engine: Engine, version: str | None = None) -> Manifest:
    query = select(pools.c.manifest_json)
    if version in (None, "latest"):
        query = query.order_by(pools.c.number.desc()).limit(1)
    elif version.isdigit():
        query = query.where(pools.c.number == int(version))
    else:
        query = query.where(pools.c.manifest_sha256.startswith(version))
    with engine.connect() as conn:
        rows = conn.execute(query).scalars().all()
    if len(rows) != 1:
        raise DatasetNotFoundError(f"pool version {version or 'latest'} {'is ambiguous' if rows else 'does not exist'}")
    return Manifest.from_json(rows[0])


def participants(manifest: Manifest) -> set[str]:
    return {tenant for tenant, *_ in manifest.provenance.get("contributions", [])}


def pool_images(manifest: Manifest, store: ContentStore) -> list[LabelledImage]:
    """The pool's samples as files, named ``<tenant>/<name>`` so names of different tenants never collide."""
    out = []
    for s in manifest.samples:
        path = store.path(s.tenant, f"{s.tenant}/{s.sha256[:2]}/{s.sha256}.{s.ext}")
        out.append(
            LabelledImage(
                f"{s.tenant}/{s.name}",
                path,
                s.boxes,
                s.annotation,
                (s.width, s.height),
                f"{s.tenant}/{s.group}" if s.group else None,
                s.split,
            )
        )
    return out


def tenant_pool_manifest(engine: Engine, tenant: str, version: str | None = None) -> Manifest:
    """A pool version as a tenant may see it: only one that tenant contributed to; any other looks absent."""
    manifest = pool_manifest(engine, version)
    if tenant not in participants(manifest):
        raise DatasetNotFoundError(f"pool version {version or 'latest'} does not exist")
    return manifest
