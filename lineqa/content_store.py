"""Content-addressed, tenant-prefixed image storage, shared by the gateway (images of flagged parts) and the
dataset catalog (labelled images).

Keys are made by the store, never taken from a client: ``<tenant>/<sha256[:2]>/<sha256>.<ext>``. A tenant
can only ever read under its own prefix, and a key that tries to leave it (``..``, absolute paths, another
tenant) is refused (RELIABILITY.md 17). The same image stored twice is one file. Writes go to a temporary
file, are flushed to disk, then renamed, so a crash never leaves half an image under a key. Folders the store
creates are its user's only (0700), images 0600.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path

from lineqa.home import private_folder

TENANT_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
# Not a tenant: ``cluster/<name>@<n>`` names a cluster's pool version where ``<tenant>/<name>@<n>`` names a
# tenant's dataset version.
RESERVED_TENANT_IDS = frozenset({"cluster"})
EXTENSIONS = ("jpg", "png", "bmp", "tif", "webp")
_KEY = re.compile(
    r"^(?P<tenant>[a-z0-9][a-z0-9_-]{0,63})/[0-9a-f]{2}/(?P<sha>[0-9a-f]{64})\.(?:" + "|".join(EXTENSIONS) + r")$"
)


class ContentStoreError(Exception):
    """An image could not be stored or read, or a key was refused."""


class ContentStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def put(self, tenant: str, data: bytes, extension: str) -> str:
        """Store ``data`` for ``tenant``; return its key."""
        if not TENANT_ID.match(tenant):
            raise ContentStoreError(f"invalid tenant id {tenant!r}")
        if extension not in EXTENSIONS:
            raise ContentStoreError(f"images are stored as {', '.join(EXTENSIONS)}, not {extension!r}")
        digest = hashlib.sha256(data).hexdigest()
        key = f"{tenant}/{digest[:2]}/{digest}.{extension}"
        path = self.root / key
        if path.is_file():
            return key
        try:
            private_folder(path.parent)
            _write_durably(path, data)
        except OSError as exc:
            raise ContentStoreError(f"cannot store image {key}: {exc.strerror or exc}") from exc
        return key

    def writable(self) -> bool:
        """For health: does a file write reach the disk now (a full or read-only disk says no)?"""
        try:
            private_folder(self.root)
            probe = self.root / ".health-probe"
            _write_durably(probe, b"ok")
            probe.unlink()
        except OSError:
            return False
        return True

    def path(self, tenant: str, key: str) -> Path:
        """The file of ``key``, which must be one of ``tenant``'s keys and exist."""
        match = _KEY.match(key)
        if not match or match["tenant"] != tenant:
            raise ContentStoreError(f"key {key!r} is not an image key of tenant {tenant!r}")
        path = self.root / key
        if not path.is_file():
            raise ContentStoreError(f"no image {key}")
        return path

    def get(self, tenant: str, key: str) -> bytes:
        """The image under ``key``, which must be one of ``tenant``'s keys."""
        return self.path(tenant, key).read_bytes()


def _write_durably(path: Path, data: bytes) -> None:
    """Write to a temporary file beside ``path``, flush it to disk and rename it into place; on any failure (a
    full disk) nothing is left behind, neither at ``path`` nor the temporary file."""
    fd, staging = tempfile.mkstemp(dir=path.parent, prefix=".incoming-")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(staging, path)
    except BaseException:
        Path(staging).unlink(missing_ok=True)
        raise
