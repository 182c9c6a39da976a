"""What validation and statistics need to know about each image file, read once: its hash, real size, and a
perceptual hash.

Images are decoded with the vision core's checks and limits, the same ones that guard the line, so a file that
would be refused in production (truncated, corrupt, too large, not JPEG/PNG) is reported here rather than
discovered during training. The SHA-256 finds byte-identical copies; the 64-bit perceptual hash (pHash: the
signs of the lowest 8x8 DCT frequencies of a 32x32 grayscale thumbnail against their median) finds the same
picture re-encoded, re-scaled or slightly re-exposed, which a byte hash cannot.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from lineqa.datasets.model import LabelledImage
from lineqa.progress import ProgressFn
from lineqa.vision.errors import ImageError
from lineqa.vision.image import ImageLimits, decode_image, read_header

HASH_BITS = 64
# Two images whose perceptual hashes differ in at most this many of the 64 bits are near duplicates. Re-encoding
# a JPEG at another quality, resizing or re-exposing it usually flips 0-4 bits (more on low-contrast textures,
# whose low frequencies sit close to the median); unrelated pictures differ in about 32. On the real NEU-DET
# steel images the closest two different pictures are 8 bits apart, so 6 finds copies without false alarms.
NEAR_DUPLICATE_BITS = 6

_THUMBNAIL = 32
_LOW_FREQUENCIES = 8
_POPCOUNT_BYTE = np.array([bin(value).count("1") for value in range(256)], dtype=np.uint8)

DEFAULT_LIMITS = ImageLimits()


@dataclass(frozen=True)
class ImageFacts:
    """One image file as probed. ``error`` says why it cannot be used (then the sizes and ``phash`` are ``None``,
    and ``sha256`` too when the file could not even be read). ``width`` and ``height`` are those of the decoded
    image, as training sees it (after any EXIF rotation); ``channels`` is what the file stores (1 gray, 3 colour).
    """

    sha256: str | None
    size_bytes: int
    width: int | None = None
    height: int | None = None
    channels: int | None = None
    phash: int | None = None
    error: str | None = None


def perceptual_hash(image: np.ndarray) -> int:
    """The 64-bit pHash of a BGR or gray image: low frequencies survive re-encoding and scaling, which is why
    they, and not the pixels, identify a picture."""
    gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image
    thumbnail = cv2.resize(gray, (_THUMBNAIL, _THUMBNAIL), interpolation=cv2.INTER_AREA).astype(np.float32)
    low = cv2.dct(thumbnail)[:_LOW_FREQUENCIES, :_LOW_FREQUENCIES].ravel()
    # The DC term (mean brightness) is left out of the median so that exposure does not move the threshold. So
    # a hash normally has 32 bits set (DC plus 31 of the other 63), and distances between hashes are even.
    bits = low > np.median(low[1:])
    return int.from_bytes(np.packbits(bits).tobytes(), "big")


def probe_image(data: bytes, limits: ImageLimits = DEFAULT_LIMITS) -> ImageFacts:
    """Hash and decode one image's bytes; a refused image comes back with ``error`` set, never an exception, so
    that one bad file does not stop a dataset's check."""
    digest = hashlib.sha256(data).hexdigest()
    try:
        channels = read_header(data).channels
        image = decode_image(data, limits=limits)
    except ImageError as exc:
        return ImageFacts(digest, len(data), error=str(exc))
    height, width = image.shape[:2]
    return ImageFacts(digest, len(data), width, height, channels, perceptual_hash(image))


def probe_file(path: Path, limits: ImageLimits = DEFAULT_LIMITS) -> ImageFacts:
    """:func:`probe_image` on a file; a file over the byte limit is hashed in chunks but never loaded whole."""
    try:
        size = path.stat().st_size
        if size > limits.max_bytes:
            digest = hashlib.sha256()
            with path.open("rb") as stream:
                for chunk in iter(lambda: stream.read(1 << 20), b""):
                    digest.update(chunk)
            return ImageFacts(
                digest.hexdigest(), size, error=f"image is {size:,} bytes, over the limit of {limits.max_bytes:,}"
            )
        return probe_image(path.read_bytes(), limits)
    except OSError as exc:
        return ImageFacts(None, 0, error=f"cannot read the file: {exc.strerror or exc}")


def probe_files(
    paths: Iterable[Path],
    *,
    limits: ImageLimits = DEFAULT_LIMITS,
    progress: ProgressFn | None = None,
    workers: int | None = None,
) -> list[ImageFacts]:
    """Probe many files, in the order given. Decoding releases the GIL, so a few threads use the cores;
    ``progress(done, total)`` is called after each file, from the calling thread."""
    paths = list(paths)
    workers = workers or min(8, os.cpu_count() or 1)
    facts: list[ImageFacts] = []
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for fact in pool.map(lambda path: probe_file(path, limits), paths):
            facts.append(fact)
            if progress is not None:
                progress(len(facts), len(paths))
    return facts


def probe_images(
    images: Sequence[LabelledImage],
    *,
    limits: ImageLimits = DEFAULT_LIMITS,
    progress: ProgressFn | None = None,
    workers: int | None = None,
) -> dict[str, ImageFacts]:
    """:func:`probe_files` over a dataset's images, keyed by image name as validation and statistics take them."""
    facts = probe_files([image.path for image in images], limits=limits, progress=progress, workers=workers)
    return {image.name: fact for image, fact in zip(images, facts, strict=True)}


def hamming(a: int, b: int) -> int:
    """How many bits two perceptual hashes differ in (0 = the same picture, ~32 = unrelated)."""
    return (a ^ b).bit_count()


def _popcount(values: np.ndarray) -> np.ndarray:
    counts: np.ndarray = _POPCOUNT_BYTE[values.view(np.uint8)].reshape(-1, 8).sum(axis=1, dtype=np.int64)
    return counts


def _band_widths(bands: int) -> list[int]:
    return [HASH_BITS // bands + (1 if band < HASH_BITS % bands else 0) for band in range(bands)]


def near_duplicate_pairs(hashes: Sequence[int], max_bits: int = NEAR_DUPLICATE_BITS) -> list[tuple[int, int, int]]:
    """(i, j, distance) with i < j for every two hashes at most ``max_bits`` apart, sorted.

    Multi-index hashing instead of comparing all pairs: split the 64 bits into ``max_bits + 1`` bands; two hashes
    within ``max_bits`` agree exactly on at least one band (pigeonhole), so only hashes sharing a band value are
    compared. For unrelated pictures that is about n²/1000 comparisons instead of n²/2. Many copies of one
    picture still cost their pairs; collapse exact duplicates (same SHA-256) first.
    """
    if not 0 <= max_bits < HASH_BITS // 2:
        raise ValueError(f"max_bits must be in 0..{HASH_BITS // 2 - 1}, got {max_bits}")
    values = np.array([int(h) for h in hashes], dtype=np.uint64)
    found: list[np.ndarray] = []
    shift = 0
    for width in _band_widths(max_bits + 1):
        keys = (values >> np.uint64(shift)) & np.uint64((1 << width) - 1)
        shift += width
        order = np.argsort(keys, kind="stable")
        for bucket in np.split(order, np.flatnonzero(np.diff(keys[order])) + 1):
            if len(bucket) < 2:
                continue
            left, right = np.triu_indices(len(bucket), k=1)
            a, b = np.minimum(bucket[left], bucket[right]), np.maximum(bucket[left], bucket[right])
            distance = _popcount(values[a] ^ values[b])
            close = distance <= max_bits
            found.append(np.stack([a[close], b[close], distance[close]], axis=1))
    if not found:
        return []
    pairs = np.unique(np.concatenate(found), axis=0)
    return [(int(i), int(j), int(d)) for i, j, d in pairs]
