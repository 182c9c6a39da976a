"""What a frame costs on its way to Triton: float32 (what the exported ONNX file takes) or uint8 (what the
embedded server's models take, scaling on their side), over gRPC on loopback, one 640 px frame per call.

    python benchmarks/bench_wire.py [--calls 300]

Measures the client's side only, against the tests' loopback stand-in for Triton (it answers at once, so the
figures are the transfer: conversion, serialization, the copy through gRPC), as median ms per call and the
client's CPU per call. Prints a table; the gateway uses uint8 with the embedded Triton.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tritonclient.grpc import InferInput, InferRequestedOutput  # noqa: E402
from tritonclient.grpc.aio import InferenceServerClient  # noqa: E402

from lineqa.vision.letterbox import scale_input  # noqa: E402
from tests.helpers.faults import StandInTriton  # noqa: E402

SIZE = 640


async def calls(url: str, datatype: str, count: int) -> tuple[float, float]:
    frame = np.random.default_rng(0).integers(0, 255, (1, 3, SIZE, SIZE), dtype=np.uint8)
    client = InferenceServerClient(url, channel_args=[("grpc.max_send_message_length", 64 << 20)])
    timings = []
    cpu_before = time.process_time()
    try:
        for _ in range(count):
            began = time.perf_counter()
            tensor = frame if datatype == "UINT8" else scale_input(frame)
            request = InferInput("images", list(tensor.shape), datatype)
            request.set_data_from_numpy(tensor)
            await client.infer("metal", [request], model_version="1", outputs=[InferRequestedOutput("output0")])
            timings.append(time.perf_counter() - began)
    finally:
        await client.close()
    return statistics.median(timings) * 1e3, (time.process_time() - cpu_before) / count * 1e3


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=300)
    args = parser.parse_args()
    triton = StandInTriton(size=SIZE).start()
    try:
        rows = {dtype: asyncio.run(calls(triton.url, dtype, args.calls)) for dtype in ("FP32", "UINT8")}
    finally:
        triton.stop()
    print(f"one {SIZE} px frame per call, {args.calls} calls, loopback gRPC to a stand-in that answers at once")
    print(f"{'input':<8}{'bytes':>12}{'ms/call (median)':>20}{'client CPU ms/call':>22}")
    for dtype, (wall, cpu) in rows.items():
        size = 3 * SIZE * SIZE * (4 if dtype == "FP32" else 1)
        print(f"{dtype:<8}{size:>12,}{wall:>20.2f}{cpu:>22.2f}")
    print(f"uint8 / float32: {rows['UINT8'][0] / rows['FP32'][0]:.2f}x the time per call")
    return 0


if __name__ == "__main__":
    sys.exit(main())
