"""Decoding and validation of untrusted image bytes (RELIABILITY.md items 11 and 12)."""

from __future__ import annotations

import resource
import struct
import time
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from lineqa.vision.errors import CorruptImageError, ImageError, ImageTooLargeError, UnsupportedEncodingError
from lineqa.vision.image import ImageEncoding, ImageLimits, decode_image, load_image, read_header, sniff_encoding


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_with_header(width: int, height: int, payload: bytes = b"") -> bytes:
    """A PNG whose IHDR claims width x height, with ``payload`` as compressed data (a bomb when tiny)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", payload or zlib.compress(b"\x00" * 4096))
        + _png_chunk(b"IEND", b"")
    )


def jpeg_with_size(jpeg: bytes, width: int, height: int) -> bytes:
    """A real JPEG whose frame header (SOF) is patched to claim width x height."""
    pos = 2
    while True:
        marker = jpeg[pos + 1]
        (length,) = struct.unpack(">H", jpeg[pos + 2 : pos + 4])
        if marker in (0xC0, 0xC1, 0xC2):
            patched = bytearray(jpeg)
            patched[pos + 5 : pos + 9] = struct.pack(">HH", height, width)
            return bytes(patched)
        pos += 2 + length


@pytest.fixture(scope="module")
def sample_bgr() -> np.ndarray:
    rng = np.random.default_rng(7)
    image = cv2.GaussianBlur(rng.integers(0, 255, (96, 128, 3), dtype=np.uint8), (5, 5), 0)
    return image


@pytest.fixture(scope="module")
def sample_jpeg(sample_bgr: np.ndarray) -> bytes:
    return cv2.imencode(".jpg", sample_bgr)[1].tobytes()


@pytest.fixture(scope="module")
def sample_png(sample_bgr: np.ndarray) -> bytes:
    return cv2.imencode(".png", sample_bgr)[1].tobytes()


def test_real_deeppcb_jpeg_decodes_like_ultralytics_imread(deeppcb_root: Path) -> None:
    """DeepPCB stores most images 1-channel: they must come out 3-channel BGR, as cv2.imread gives them."""
    paths = sorted(deeppcb_root.glob("group*/*/*_test.jpg"))[:20]
    assert paths
    for path in paths:
        data = path.read_bytes()
        image = decode_image(data)
        assert image.shape == (640, 640, 3) and image.dtype == np.uint8
        np.testing.assert_array_equal(image, cv2.imread(str(path), cv2.IMREAD_COLOR))
        header = read_header(data)
        assert (header.width, header.height) == (640, 640)


def test_real_neudet_jpeg(neudet_root: Path) -> None:
    path = neudet_root / "IMAGES" / "crazing_1.jpg"
    image = load_image(path)
    assert image.shape == (200, 200, 3)
    np.testing.assert_array_equal(image, cv2.imread(str(path)))


@pytest.mark.parametrize("params", [[], [cv2.IMWRITE_JPEG_PROGRESSIVE, 1]], ids=["baseline", "progressive"])
def test_jpeg_header_matches_pixels(sample_bgr: np.ndarray, params: list[int]) -> None:
    data = cv2.imencode(".jpg", sample_bgr, params)[1].tobytes()
    header = read_header(data)
    assert (header.encoding, header.width, header.height, header.channels) == (ImageEncoding.JPEG, 128, 96, 3)
    assert decode_image(data).shape == (96, 128, 3)


def test_png_roundtrip_is_lossless(sample_bgr: np.ndarray, sample_png: bytes) -> None:
    np.testing.assert_array_equal(decode_image(sample_png), sample_bgr)
    gray = cv2.cvtColor(sample_bgr, cv2.COLOR_BGR2GRAY)
    decoded = decode_image(cv2.imencode(".png", gray)[1].tobytes())
    np.testing.assert_array_equal(decoded, cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR))


def test_raw_frames_with_padded_rows(sample_bgr: np.ndarray) -> None:
    height, width = sample_bgr.shape[:2]
    stride = width * 3 + 20
    padded = np.zeros((height, stride), np.uint8)
    padded[:, : width * 3] = sample_bgr.reshape(height, -1)
    decoded = decode_image(padded.tobytes(), ImageEncoding.RAW_BGR8, width=width, height=height, stride=stride)
    np.testing.assert_array_equal(decoded, sample_bgr)
    gray = sample_bgr[..., 1].copy()
    decoded = decode_image(gray.tobytes(), ImageEncoding.RAW_GRAY8, width=width, height=height)
    np.testing.assert_array_equal(decoded, np.repeat(gray[..., None], 3, axis=2))


@pytest.mark.parametrize(
    ("data", "kwargs", "error", "message"),
    [
        (b"\x00" * 99, {"width": 10, "height": 10}, CorruptImageError, "needs 100 bytes, got 99"),
        (b"\x00" * 100, {"width": 10, "height": 10, "stride": 5}, CorruptImageError, "stride 5 is shorter"),
        (b"\x00" * 100, {"width": 0, "height": 10}, CorruptImageError, "positive width and height"),
        (b"\x00" * 100, {"width": 100_000, "height": 100_000}, ImageTooLargeError, "over the limit"),
    ],
)
def test_bad_raw_frames(data: bytes, kwargs: dict[str, int], error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        decode_image(data, ImageEncoding.RAW_GRAY8, **kwargs)


def _foreign(fmt: str, image: np.ndarray) -> bytes:
    return cv2.imencode(fmt, image)[1].tobytes()


@pytest.mark.parametrize(
    ("make", "named"),
    [
        (lambda im: _foreign(".bmp", im), "BMP"),
        (lambda im: _foreign(".tiff", im), "TIFF"),
        (lambda im: _foreign(".webp", im), "RIFF/WebP"),
        (lambda im: b"GIF89a" + b"\x00" * 64, "GIF"),
        (lambda im: b"hello, I am not an image", "unrecognised first bytes"),
        (lambda im: b"", "empty data"),
    ],
    ids=["bmp", "tiff", "webp", "gif", "text", "empty"],
)
def test_wrong_formats_are_named_and_refused(make, named: str, sample_bgr: np.ndarray) -> None:  # type: ignore[no-untyped-def]
    data = make(sample_bgr)
    with pytest.raises(UnsupportedEncodingError, match=named):
        decode_image(data)
    with pytest.raises(UnsupportedEncodingError):
        sniff_encoding(data)


def test_declared_size_must_match_header(sample_jpeg: bytes) -> None:
    with pytest.raises(CorruptImageError, match="disagrees"):
        decode_image(sample_jpeg, width=100, height=96)


def test_byte_limit_checked_first(sample_jpeg: bytes) -> None:
    with pytest.raises(ImageTooLargeError, match="bytes, over the limit"):
        decode_image(sample_jpeg, limits=ImageLimits(max_bytes=100))


def _max_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@pytest.mark.parametrize(
    "make",
    [
        lambda jpeg: png_with_header(100_000, 100_000),
        lambda jpeg: png_with_header(40_000, 40_000, zlib.compress(b"\x00" * 10_000_000)),
        lambda jpeg: jpeg_with_size(jpeg, 65_535, 65_535),
    ],
    ids=["png-100000x100000", "png-deflate-bomb", "jpeg-65535x65535"],
)
def test_bombs_refused_from_header_without_allocating(make, sample_jpeg: bytes) -> None:  # type: ignore[no-untyped-def]
    data = make(sample_jpeg)
    before = _max_rss_mb()
    started = time.perf_counter()
    with pytest.raises(ImageTooLargeError, match="pixels, over the limit"):
        decode_image(data)
    elapsed = time.perf_counter() - started
    # Decoding would need gigabytes; refusing from the header needs (almost) nothing. The time bound only
    # catches a hang or a full decode (seconds), it is not a speed target.
    assert _max_rss_mb() - before < 50
    assert elapsed < 0.5


@pytest.mark.parametrize("fraction", [0.0, 0.01, 0.1, 0.5, 0.9, 0.99])
@pytest.mark.parametrize("kind", ["jpeg", "png"])
def test_truncated_images_are_refused(kind: str, fraction: float, sample_jpeg: bytes, sample_png: bytes) -> None:
    data = sample_jpeg if kind == "jpeg" else sample_png
    cut = data[: max(1, int(len(data) * fraction))]
    # One byte cannot even be recognised as JPEG or PNG; anything longer is a recognisably damaged file.
    with pytest.raises(UnsupportedEncodingError if len(cut) == 1 else CorruptImageError):
        decode_image(cut)


def test_truncated_real_jpeg_is_refused(deeppcb_root: Path) -> None:
    data = next(deeppcb_root.glob("group*/*/*_test.jpg")).read_bytes()
    with pytest.raises(CorruptImageError, match="truncated JPEG"):
        decode_image(data[: len(data) - 200])


def _check_decode_contract(data: bytes) -> None:
    """The contract under fuzzing: an array of the header's size, or one of our typed errors; nothing else."""
    try:
        image = decode_image(data, limits=ImageLimits(max_pixels=4_000_000))
    except ImageError:
        return
    header = read_header(data)
    assert image.shape == (header.height, header.width, 3) and image.dtype == np.uint8


def mutations(seed_inputs: list[bytes], count: int, seed: int) -> list[bytes]:
    """A deterministic corpus: bit flips, byte overwrites, chunk deletions and duplications."""
    rng = np.random.default_rng(seed)
    corpus = []
    for i in range(count):
        data = bytearray(seed_inputs[i % len(seed_inputs)])
        for _ in range(int(rng.integers(1, 6))):
            op = int(rng.integers(4))
            pos = int(rng.integers(0, len(data)))
            if op == 0:
                data[pos] ^= 1 << int(rng.integers(8))
            elif op == 1:
                data[pos] = int(rng.integers(256))
            elif op == 2:
                del data[pos : pos + int(rng.integers(1, 64))]
            else:
                data[pos:pos] = data[pos : pos + int(rng.integers(1, 64))]
        corpus.append(bytes(data))
    return corpus


def test_regression_corpus_only_typed_errors(sample_jpeg: bytes, sample_png: bytes) -> None:
    """RELIABILITY.md 12, on synthetic images only, so that it never skips."""
    corpus = mutations([sample_jpeg, sample_png], count=600, seed=12)
    corpus += [base[:n] for base in (sample_jpeg, sample_png) for n in range(0, 700, 7)]  # inside the headers
    for data in corpus:
        _check_decode_contract(data)


def test_regression_corpus_of_a_real_board_only_typed_errors(deeppcb_root: Path) -> None:
    real = next(deeppcb_root.glob("group*/*/*_test.jpg")).read_bytes()
    corpus = mutations([real], count=300, seed=13) + [real[:n] for n in range(0, 700, 7)]
    for data in corpus:
        _check_decode_contract(data)


def test_fuzzed_headers_only_typed_errors(sample_jpeg: bytes, sample_png: bytes) -> None:
    """Mutations concentrated in the first 700 bytes, where the header parser works."""
    rng = np.random.default_rng(3)
    for base in (sample_jpeg, sample_png):
        for _ in range(400):
            data = bytearray(base)
            for _ in range(int(rng.integers(1, 4))):
                data[int(rng.integers(0, min(700, len(data))))] = int(rng.integers(256))
            _check_decode_contract(bytes(data))


def with_exif_orientation(jpeg: bytes, orientation: int) -> bytes:
    """Insert a minimal EXIF APP1 segment carrying only the orientation tag right after SOI."""
    tiff = b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", 1)
    tiff += struct.pack("<HHIHH", 0x0112, 3, 1, orientation, 0) + struct.pack("<I", 0)
    payload = b"Exif\x00\x00" + tiff
    return jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload + jpeg[2:]


def test_exif_rotated_jpeg_decodes_like_ultralytics(sample_jpeg: bytes, tmp_path: Path) -> None:
    """A camera that stores portrait frames with EXIF orientation 6: sides swap, as cv2.imread swaps them."""
    data = with_exif_orientation(sample_jpeg, 6)
    header = read_header(data)
    assert (header.width, header.height) == (128, 96)
    image = decode_image(data)
    assert image.shape == (128, 96, 3)
    path = tmp_path / "rotated.jpg"
    path.write_bytes(data)
    np.testing.assert_array_equal(image, cv2.imread(str(path)))


@pytest.mark.parametrize(
    ("data", "declared", "error", "message"),
    [
        (b"GIF89a" + b"\x00" * 40, ImageEncoding.JPEG, UnsupportedEncodingError, "declared jpeg but the data is GIF"),
        (b"BM" + b"\x00" * 40, ImageEncoding.PNG, UnsupportedEncodingError, "declared png but the data is BMP"),
        (b"\x00\x01garbage" * 5, ImageEncoding.JPEG, CorruptImageError, "start-of-image marker FFD8 is missing"),
    ],
)
def test_declared_encoding_must_match_the_data(
    data: bytes, declared: ImageEncoding, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        decode_image(data, declared)
