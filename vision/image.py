"""Decode and validate untrusted image bytes.

Frames come from a factory network, so the size of an image is read from its header and checked against the
configured limits *before* anything is decoded: a 100000x100000 header or a decompression bomb is refused
without allocating the image. Only allow-listed encodings are accepted. Every image is returned the way
Ultralytics reads files (``cv2.imread`` with ``IMREAD_COLOR``): 3-channel BGR uint8, so that detections match
between training and serving.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import cv2
import numpy as np

from lineqa.vision.errors import CorruptImageError, ImageTooLargeError, UnsupportedEncodingError

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_IEND = b"\x00\x00\x00\x00IEND\xaeB`\x82"
# JPEG start-of-frame markers that carry the image size (all SOFn except DHT C4, JPG C8, DAC CC).
_JPEG_SOF_MARKERS = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})
# Markers with no length field: TEM, RST0-7, SOI, EOI.
_JPEG_STANDALONE_MARKERS = frozenset({0x01, *range(0xD0, 0xD8), 0xD8, 0xD9})
_JPEG_SOS = 0xDA
_SIGNATURES: dict[str, bytes] = {"jpeg": b"\xff\xd8", "png": _PNG_SIGNATURE}


class ImageEncoding(str, Enum):
    """The encodings a frame may use. Anything else is refused."""

    JPEG = "jpeg"
    PNG = "png"
    RAW_GRAY8 = "raw_gray8"
    RAW_BGR8 = "raw_bgr8"

    @property
    def is_raw(self) -> bool:
        return self in (ImageEncoding.RAW_GRAY8, ImageEncoding.RAW_BGR8)


@dataclass(frozen=True)
class ImageLimits:
    """What the decoder accepts. Defaults fit a 48 MP line-scan or area camera with room to spare."""

    max_bytes: int = 64 * 1024 * 1024
    max_pixels: int = 50_000_000

    def __post_init__(self) -> None:
        if self.max_bytes <= 0 or self.max_pixels <= 0:
            raise ValueError(f"image limits must be positive, got {self}")


@dataclass(frozen=True)
class ImageHeader:
    """What an image says about itself before it is decoded."""

    encoding: ImageEncoding
    width: int
    height: int
    channels: int

    @property
    def pixels(self) -> int:
        return self.width * self.height


def sniff_encoding(data: bytes) -> ImageEncoding:
    """Tell JPEG from PNG by their magic bytes; raw frames carry no signature and must be declared."""
    if data.startswith(b"\xff\xd8\xff"):
        return ImageEncoding.JPEG
    if data.startswith(_PNG_SIGNATURE):
        return ImageEncoding.PNG
    kind = _describe_foreign_format(data)
    raise UnsupportedEncodingError(
        f"unsupported image format ({kind}); allowed: JPEG, PNG, or raw 8-bit gray/BGR with width and height"
    )


def _describe_foreign_format(data: bytes) -> str:
    """Name a common non-allowed format, so the error says what was actually sent."""
    known = {
        b"GIF8": "GIF",
        b"BM": "BMP",
        b"II*\x00": "TIFF",
        b"MM\x00*": "TIFF",
        b"RIFF": "RIFF/WebP",
        b"\x00\x00\x00\x0cjP": "JPEG 2000",
    }
    for magic, name in known.items():
        if data.startswith(magic):
            return name
    if not data:
        return "empty data"
    return f"unrecognised first bytes {data[:4].hex()}"


def read_header(data: bytes, encoding: ImageEncoding | None = None) -> ImageHeader:
    """Read width, height and channels from a JPEG or PNG header without decoding the pixels."""
    encoding = encoding or sniff_encoding(data)
    if not encoding.is_raw and not data.startswith(_SIGNATURES[encoding.value]):
        foreign = _describe_foreign_format(data)
        if not foreign.startswith(("unrecognised", "empty")):
            raise UnsupportedEncodingError(
                f"declared {encoding.value} but the data is {foreign}; allowed: JPEG, PNG, raw"
            )
    if encoding is ImageEncoding.JPEG:
        return _read_jpeg_header(data)
    if encoding is ImageEncoding.PNG:
        return _read_png_header(data)
    raise UnsupportedEncodingError(f"{encoding.value} frames have no header; give width, height and stride")


def _read_png_header(data: bytes) -> ImageHeader:
    if not data.startswith(_PNG_SIGNATURE):
        raise CorruptImageError("not a PNG: the 8-byte PNG signature is missing")
    if len(data) < 33 or data[12:16] != b"IHDR":
        raise CorruptImageError("truncated PNG: the IHDR chunk with the image size is missing")
    width, height, bit_depth, colour_type = struct.unpack(">IIBB", data[16:26])
    if width == 0 or height == 0 or width >= 2**31 or height >= 2**31:
        raise CorruptImageError(f"PNG header gives an invalid size {width}x{height}")
    channels = {0: 1, 2: 3, 3: 3, 4: 2, 6: 4}.get(colour_type)
    if channels is None or bit_depth not in (1, 2, 4, 8, 16):
        raise CorruptImageError(f"PNG header has an invalid colour type {colour_type} / bit depth {bit_depth}")
    return ImageHeader(ImageEncoding.PNG, width, height, channels)


def _read_jpeg_header(data: bytes) -> ImageHeader:
    if not data.startswith(b"\xff\xd8"):
        raise CorruptImageError("not a JPEG: the start-of-image marker FFD8 is missing")
    pos, size = 2, len(data)
    while pos < size:
        if data[pos] != 0xFF:
            raise CorruptImageError(f"corrupt JPEG: expected a marker at byte {pos}, found {data[pos]:#04x}")
        while pos < size and data[pos] == 0xFF:  # fill bytes may pad before a marker
            pos += 1
        if pos >= size:
            break
        marker = data[pos]
        pos += 1
        if marker in _JPEG_STANDALONE_MARKERS:
            continue
        if pos + 2 > size:
            break
        (length,) = struct.unpack(">H", data[pos : pos + 2])
        if length < 2:
            raise CorruptImageError(f"corrupt JPEG: segment {marker:#04x} at byte {pos} has length {length}")
        if marker in _JPEG_SOF_MARKERS:
            if pos + 8 > size:
                break
            precision, height, width, channels = struct.unpack(">BHHB", data[pos + 2 : pos + 8])
            if precision != 8:
                raise UnsupportedEncodingError(f"{precision}-bit JPEG is not supported; send 8-bit JPEG or PNG")
            if width == 0 or height == 0:
                raise CorruptImageError(f"JPEG header gives an invalid size {width}x{height}")
            if channels not in (1, 3, 4):
                raise CorruptImageError(f"JPEG header gives {channels} colour components")
            return ImageHeader(ImageEncoding.JPEG, width, height, channels)
        if marker == _JPEG_SOS:
            raise CorruptImageError("corrupt JPEG: scan data starts before any frame header (SOF)")
        pos += length
    raise CorruptImageError("truncated JPEG: the data ends before the frame header (SOF) with the image size")


def _check_complete(data: bytes, encoding: ImageEncoding) -> None:
    """Refuse truncated files: OpenCV would decode them into a partly grey image without complaint."""
    if encoding is ImageEncoding.JPEG and not data.rstrip(b"\x00").endswith(b"\xff\xd9"):
        raise CorruptImageError("truncated JPEG: the end-of-image marker FFD9 is missing")
    if encoding is ImageEncoding.PNG and not data.endswith(_PNG_IEND):
        raise CorruptImageError("truncated PNG: the final IEND chunk is missing")


def _check_size(pixels: int, width: int, height: int, limits: ImageLimits) -> None:
    if pixels > limits.max_pixels:
        raise ImageTooLargeError(
            f"image is {width}x{height} = {pixels:,} pixels, over the limit of {limits.max_pixels:,}"
        )


def decode_image(
    data: bytes,
    encoding: ImageEncoding | None = None,
    *,
    limits: ImageLimits = ImageLimits(),
    width: int = 0,
    height: int = 0,
    stride: int = 0,
) -> np.ndarray:
    """Validate and decode one image to a 3-channel BGR ``uint8`` array of shape (height, width, 3).

    ``encoding`` may be omitted for JPEG and PNG (it is sniffed); raw encodings need ``width`` and ``height``
    (and ``stride`` when rows are padded). For JPEG and PNG, a non-zero ``width``/``height`` must match the
    header. Raises a :class:`~lineqa.vision.errors.ImageError` subclass saying what was wrong.
    """
    if len(data) > limits.max_bytes:
        raise ImageTooLargeError(f"image is {len(data):,} bytes, over the limit of {limits.max_bytes:,}")
    if encoding is None:
        encoding = sniff_encoding(data)
    if encoding.is_raw:
        return _decode_raw(data, encoding, width, height, stride, limits)
    header = read_header(data, encoding)
    _check_size(header.pixels, header.width, header.height, limits)
    if (width and width != header.width) or (height and height != header.height):
        raise CorruptImageError(
            f"declared size {width}x{height} disagrees with the {encoding.value} header's "
            f"{header.width}x{header.height}"
        )
    _check_complete(data, encoding)
    try:
        image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    except cv2.error as exc:
        raise CorruptImageError(f"corrupt {encoding.value}: the decoder failed ({exc.err})") from exc
    if image is None:
        raise CorruptImageError(f"corrupt {encoding.value}: the decoder could not read the image data")
    # OpenCV applies a JPEG's EXIF orientation (as Ultralytics' reader does), which may swap the two sides.
    if image.shape[:2] not in ((header.height, header.width), (header.width, header.height)):
        raise CorruptImageError(
            f"corrupt {encoding.value}: decoded {image.shape[1]}x{image.shape[0]} but the header says "
            f"{header.width}x{header.height}"
        )
    return image


def _decode_raw(
    data: bytes, encoding: ImageEncoding, width: int, height: int, stride: int, limits: ImageLimits
) -> np.ndarray:
    channels = 1 if encoding is ImageEncoding.RAW_GRAY8 else 3
    if width <= 0 or height <= 0:
        raise CorruptImageError(f"{encoding.value} frame needs a positive width and height, got {width}x{height}")
    _check_size(width * height, width, height, limits)
    row_bytes = width * channels
    stride = stride or row_bytes
    if stride < row_bytes:
        raise CorruptImageError(f"stride {stride} is shorter than a {width}-pixel row of {row_bytes} bytes")
    needed = stride * (height - 1) + row_bytes
    if len(data) < needed:
        raise CorruptImageError(
            f"{encoding.value} frame of {width}x{height} (stride {stride}) needs {needed:,} bytes, got {len(data):,}"
        )
    buffer = np.frombuffer(data, dtype=np.uint8, count=needed)
    rows = np.lib.stride_tricks.as_strided(buffer, shape=(height, row_bytes), strides=(stride, 1))
    pixels = np.ascontiguousarray(rows).reshape(height, width, channels)
    if channels == 1:
        return cv2.cvtColor(pixels, cv2.COLOR_GRAY2BGR)
    return pixels


def load_image(path: str | Path, limits: ImageLimits = ImageLimits()) -> np.ndarray:
    """Read and decode an image file with the same checks as a frame from the wire."""
    path = Path(path)
    size = path.stat().st_size
    if size > limits.max_bytes:
        raise ImageTooLargeError(f"{path} is {size:,} bytes, over the limit of {limits.max_bytes:,}")
    try:
        return decode_image(path.read_bytes(), limits=limits)
    except (CorruptImageError, UnsupportedEncodingError, ImageTooLargeError) as exc:
        raise type(exc)(f"{path}: {exc}") from exc
