"""Benchmark the vision core against Ultralytics' own steps, in one process on the same inputs.

    python benchmarks/bench_vision.py [--repeat N]

Prints milliseconds per call (median of N) and the ratio to the Ultralytics baseline for: decoding a DeepPCB
JPEG (vs cv2.imread), letterbox + tensor (vs LetterBox + the predictor's preprocessing), decoding a raw YOLO
output with NMS (vs non_max_suppression), and refusing a 100000x100000 PNG header. Needs the train extra
(for the baselines) and ../shared/datasets.
"""

from __future__ import annotations

import argparse
import statistics
import struct
import time
import zlib
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from lineqa.vision.errors import ImageTooLargeError
from lineqa.vision.image import decode_image
from lineqa.vision.letterbox import letterbox, to_input_tensor
from lineqa.vision.yolo_output import DecodeOptions, HeadKind, decode_outputs

REPO = Path(__file__).resolve().parent.parent


def median_ms(fn: Callable[[], object], repeat: int) -> float:
    fn()  # warm-up
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1e3)
    return statistics.median(samples)


def bomb() -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 1000)) + chunk(b"IEND", b"")
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=200)
    args = parser.parse_args()

    import torch
    from ultralytics.data.augment import LetterBox
    from ultralytics.utils.nms import non_max_suppression

    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    board = next((REPO.parent / "shared/datasets/deeppcb/PCBData").glob("group*/*/*_test.jpg"))
    data = board.read_bytes()
    image = decode_image(data)
    rng = np.random.default_rng(0)
    raw = np.concatenate(
        [rng.uniform(0, 640, (1, 2, 8400)), rng.uniform(5, 60, (1, 2, 8400)), rng.beta(0.3, 3, (1, 6, 8400))], axis=1
    ).astype(np.float32)
    options = DecodeOptions()

    def ultralytics_preprocess() -> object:
        boxed = LetterBox((640, 640), auto=False)(image=image)
        tensor = torch.from_numpy(boxed).unsqueeze(0).permute(0, 3, 1, 2).contiguous().flip(1)
        return tensor.float().div_(255)

    def refuse() -> None:
        try:
            decode_image(bomb_bytes)
        except ImageTooLargeError:
            return
        raise SystemExit("the 100000x100000 PNG was not refused")

    bomb_bytes = bomb()
    rows = [
        ("decode DeepPCB JPEG", lambda: decode_image(data), lambda: cv2.imread(str(board))),
        ("letterbox + tensor 640", lambda: to_input_tensor([letterbox(image, (640, 640))[0]]), ultralytics_preprocess),
        (
            "decode output + NMS (8400 anchors)",
            lambda: decode_outputs(raw, HeadKind.NMS, 6, options),
            lambda: non_max_suppression(torch.from_numpy(raw), options.conf_threshold, options.iou_threshold),
        ),
        ("refuse 100000x100000 PNG", refuse, None),
    ]
    print(f"{'step':<36}{'lineqa ms':>12}{'ultralytics ms':>16}{'ratio':>8}")
    for name, ours, theirs in rows:
        ours_ms = median_ms(ours, args.repeat)
        if theirs is None:
            print(f"{name:<36}{ours_ms:>12.3f}{'-':>16}{'-':>8}")
            continue
        theirs_ms = median_ms(theirs, args.repeat)
        print(f"{name:<36}{ours_ms:>12.3f}{theirs_ms:>16.3f}{theirs_ms / ours_ms:>7.2f}x")
    print("ratio > 1: lineqa is faster than the Ultralytics step (median of", args.repeat, "calls, 1 thread each)")


if __name__ == "__main__":
    main()
