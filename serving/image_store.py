"""Where the gateway keeps the images of inspected parts, and which ones it keeps.

The store itself is :class:`lineqa.content_store.ContentStore` (content-addressed, tenant-prefixed, atomic),
shared with the dataset catalog so that a reviewed part becomes a dataset sample without copying bytes
between two storage schemes.
"""

from __future__ import annotations

from enum import Enum

from lineqa.content_store import ContentStore, ContentStoreError

ImageStore = ContentStore
ImageStoreError = ContentStoreError

__all__ = ["ImagePolicy", "ImageStore", "ImageStoreError"]


class ImagePolicy(str, Enum):
    """Which parts' images are kept: every part, only FAIL and REVIEW ones, or none."""

    ALL = "all"
    FLAGGED = "flagged"
    NONE = "none"
