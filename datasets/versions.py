"""Resolve a dataset version reference to its manifest and image files, for export and for training.

``<tenant>/<name>@<version>`` names one tenant's snapshot (``@latest`` when no version is given);
``pool@<version>`` names a version of the shared pool and ``cluster/<name>@<version>`` one of a cluster's
pool. Read for the platform (``tenant=None``: its own jobs, such as training a base model) every reference
resolves; read for a tenant, only its own datasets, platform pool versions it contributed to and the pools of
the clusters it is a member of do: anything else is "not found", as if it did not exist.
"""

from __future__ import annotations

from sqlalchemy import Engine

from lineqa.content_store import ContentStore
from lineqa.datasets.catalog import Catalog, parse_ref
from lineqa.datasets.errors import DatasetNotFoundError
from lineqa.datasets.manifest import Manifest
from lineqa.datasets.model import LabelledImage
from lineqa.datasets.pool import parse_pool_ref, pool_images, pool_manifest, tenant_pool_manifest


def is_pool_ref(ref: str) -> bool:
    """``pool@N`` or ``cluster/<name>@N``."""
    return parse_pool_ref(ref) is not None


def load_version(
    engine: Engine, store: ContentStore, ref: str, tenant: str | None = None
) -> tuple[Manifest, list[LabelledImage]]:
    """A version's manifest and its images as files in the image store, as the platform (``tenant`` None) or
    ``tenant`` may read it."""
    pool = parse_pool_ref(ref)
    if pool is not None:
        cluster, version = pool
        if tenant is None:
            manifest = pool_manifest(engine, version, cluster)
        else:
            manifest = tenant_pool_manifest(engine, tenant, version, cluster)
        return manifest, pool_images(manifest, store)
    owner, name, version = parse_ref(ref)
    if tenant is not None and owner != tenant:
        raise DatasetNotFoundError(f"tenant {tenant!r} has no dataset {owner}/{name}")
    catalog = Catalog(engine, store, owner)
    manifest = catalog.manifest(name, version or "latest")
    return manifest, catalog.labelled_images(manifest)
