"""Golden samples: each tenant's reference images of good parts, stored once and named by content.

A reference's id is the SHA-256 of its image file, stored unchanged (JPEG or PNG, validated by the same
decoder as a frame from the wire): anyone can recompute the id a recipe names with ``sha256sum`` on the file
they added, and re-encoding can never make two ids show the same image differently. The files live in
``<home>/references`` with the layout, atomic writes and private modes of
:class:`~lineqa.content_store.ContentStore` (``<tenant>/<id[:2]>/<id>.<png|jpg>``, folders 0700, files 0600);
a tenant only ever reads under its own prefix.

The gateway reads a recipe's reference through :meth:`ReferenceStore.image`, which keeps the few decoded
images in use in memory: a golden sample is compared with every frame of its product.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np

from lineqa.content_store import TENANT_ID, ContentStore, ContentStoreError
from lineqa.serving.errors import ServingError
from lineqa.vision.errors import ImageError, RecipeError
from lineqa.vision.image import ImageEncoding, ImageHeader, ImageLimits, decode_image, read_header, sniff_encoding
from lineqa.vision.recipe import Recipe

_ID = re.compile(r"^[0-9a-f]{64}$")
_EXTENSIONS = {ImageEncoding.JPEG: "jpg", ImageEncoding.PNG: "png"}
_CACHED_IMAGES = 16  # decoded golden samples kept in memory: one per product a gateway judges, at most


class ReferenceUnavailableError(ServingError):
    """A recipe names a reference this store does not hold, or whose file cannot be read or decoded."""


class ReferenceStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._files = ContentStore(self.root)
        self._decoded: OrderedDict[tuple[str, str], np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, tenant: str, data: bytes, limits: ImageLimits | None = None) -> str:
        """Validate ``data`` as an image (JPEG or PNG, within ``limits`` when given: the gateway's, for an image
        from the wire) and store it for ``tenant``; its id. The same bytes again give the same id."""
        encoding = sniff_encoding(data)
        decode_image(data, encoding, limits=limits or ImageLimits())
        key = self._files.put(tenant, data, _EXTENSIONS[encoding])
        return Path(key).stem

    def ids(self, tenant: str) -> list[tuple[str, ImageHeader]]:
        """The tenant's references, by id, with each one's size."""
        folder = self.root / _tenant(tenant)
        found = sorted(p for ext in _EXTENSIONS.values() for p in folder.glob(f"??/*.{ext}") if _ID.match(p.stem))
        return [(path.stem, read_header(path.read_bytes())) for path in found]

    def path(self, tenant: str, reference_id: str) -> Path:
        """The file of ``tenant``'s reference ``reference_id``; :class:`ReferenceUnavailableError` if none."""
        if not _ID.match(reference_id):
            raise ReferenceUnavailableError(f"{reference_id!r} is not a reference id (a SHA-256 in hex)")
        for extension in _EXTENSIONS.values():
            try:
                return self._files.path(_tenant(tenant), f"{tenant}/{reference_id[:2]}/{reference_id}.{extension}")
            except ContentStoreError:
                continue
        raise ReferenceUnavailableError(
            f"tenant {tenant!r} has no reference {reference_id[:12]}... in {self.root}: add it with "
            "'lineqa references add'"
        )

    def image(self, tenant: str, reference_id: str) -> np.ndarray:
        """The decoded reference (BGR, read-only), from memory when it was read recently."""
        key = (tenant, reference_id)
        with self._lock:
            if key in self._decoded:
                self._decoded.move_to_end(key)
                return self._decoded[key]
        path = self.path(tenant, reference_id)
        try:
            image = decode_image(path.read_bytes())
        except (OSError, ImageError) as exc:
            raise ReferenceUnavailableError(f"reference {reference_id[:12]}... cannot be read: {exc}") from exc
        image.setflags(write=False)
        with self._lock:
            self._decoded[key] = image
            while len(self._decoded) > _CACHED_IMAGES:
                self._decoded.popitem(last=False)
        return image

    def check(self, tenant: str, recipe: Recipe) -> None:
        """Refuse a recipe whose golden sample ``tenant`` has not stored: it could never judge a part."""
        if recipe.reference is None:
            return
        try:
            self.path(tenant, recipe.reference.image)
        except ReferenceUnavailableError as exc:
            raise RecipeError(f"recipe {recipe.id!r}: {exc}") from exc


def references_of(home: Path) -> ReferenceStore:
    """The reference store of a lineqa home: every command and the gateway find golden samples here."""
    return ReferenceStore(home / "references")


def _tenant(tenant: str) -> str:
    if not TENANT_ID.match(tenant):
        raise ContentStoreError(f"invalid tenant id {tenant!r}")
    return tenant
