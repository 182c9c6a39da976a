"""Resolve a dataset version reference to its manifest and image files, for export and for training.

``<tenant>/<name>@<version>`` names one tenant's snapshot (``@latest`` when no version is given);
``pool@<version>`` names a version of the shared pool, which only the platform's own jobs read whole.
"""

from __future__ import annotations

from sqlalchemy import Engine

from lineqa.content_store import ContentStore
from lineqa.datasets.catalog import Catalog, parse_ref
from lineqa.datasets.manifest import Manifest
from lineqa.datasets.model import LabelledImage
from lineqa.datasets.pool import POOL, pool_images, pool_manifest


def is_pool_ref(ref: str) -> bool:
    return ref.split("@")[0] == POOL


def load_version(engine: Engine, store: ContentStore, ref: str) -> tuple[Manifest, list[LabelledImage]]:
    """A version's manifest and its images as files in the image store."""
    if is_pool_ref(ref):
        manifest = pool_manifest(engine, ref.partition("@")[2] or None)
        return manifest, pool_images(manifest, store)
    tenant, name, version = parse_ref(ref)
    catalog = Catalog(engine, store, tenant)
    manifest = catalog.manifest(name, version or "latest")
    return manifest, catalog.labelled_images(manifest)
