"""Where the gateway keeps the images of inspected parts, and which ones it keeps.

The store itself is :class:`lineqa.content_store.ContentStore` (content-addressed, tenant-prefixed, atomic),
shared with the dataset catalog so that a reviewed part becomes a dataset sample without copying bytes
between two storage schemes.
"""

from __future__ import annotations

from enum import Enum

from lineqa.content_store import ContentStore, ContentStoreError
from lineqa.serving.pass_sample import PassSample

ImageStore = ContentStore
ImageStoreError = ContentStoreError

__all__ = ["ImagePolicy", "ImageStore", "ImageStoreError"]


class ImagePolicy(str, Enum):
    """Which parts' images are kept: every part; the parts the review queue shows (FAIL, REVIEW and the fixed
    PASS sample, the default); only FAIL and REVIEW ones; or none."""

    ALL = "all"
    FLAGGED_AND_SAMPLE = "flagged+sample"
    FLAGGED = "flagged"
    NONE = "none"

    def keeps(self, verdict: str, sequence: int, sample: PassSample) -> bool:
        """Whether the image of a part judged ``verdict`` (PASS, FAIL, REVIEW) with this frame sequence is kept."""
        if self is ImagePolicy.ALL:
            return True
        flagged = verdict in ("FAIL", "REVIEW")
        if self is ImagePolicy.FLAGGED_AND_SAMPLE:
            return flagged or (verdict == "PASS" and sample.contains(sequence))
        return flagged and self is ImagePolicy.FLAGGED
