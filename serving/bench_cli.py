"""``lineqa bench``: the gateway's frames/s and latency under N camera streams, against raw ONNX Runtime and
Ultralytics' predict loop, in one run on the same JPEG images and the same weights.

    lineqa bench --weights best.pt --images DIR [--imgsz 640] [--streams 4] [--rounds 3] [--json]

The weights are exported to ONNX and served by ``lineqa serve`` with its embedded Triton on a fresh temporary
home. Then, in each round: raw ONNX Runtime, Ultralytics' predict (both in this process while the gateway is
idle), and the gateway at its maximum rate (a closed loop of ``--window`` frames in flight per stream).
Alternating rounds keep a drift in the machine's speed (shared cores) from favouring one side; throughput is
pooled over the rounds, and the ratios per round show the spread. Last, an open loop at 80 % of the gateway's
maximum gives latency percentiles under load. Prints a table, or one JSON object with ``--json``; progress
goes to standard error. Exits 0 when every frame was judged; the throughput targets are reported, not
enforced.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import signal
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from lineqa.cpu import usable_cores
from lineqa.serving.bench import BenchError, Measurement, jpeg_files
from lineqa.serving.bench_baselines import Loop, export_onnx, onnxruntime_loop, ultralytics_loop
from lineqa.serving.bench_cpu import CpuMeter
from lineqa.serving.bench_gateway import GatewayProcess, prepare_home, provision
from lineqa.serving.bench_streams import Cameras, Pacing, StreamPhase, run_streams

# The gateway's throughput must stay close to the model alone and well above the usual Python loop.
TARGETS = {"onnxruntime": 0.95, "ultralytics": 2.0}


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--weights", required=True, type=Path, help="Ultralytics detection weights (.pt)")
    parser.add_argument("--images", required=True, type=Path, help="folder of JPEG frames")
    parser.add_argument("--glob", default="**/*.jpg", help="which files under --images (default **/*.jpg)")
    parser.add_argument("--max-images", type=int, default=32, help="distinct images, cycled (default 32)")
    parser.add_argument("--imgsz", type=int, default=640, help="model input size (default 640)")
    parser.add_argument("--streams", type=int, default=4, help="concurrent camera streams (default 4)")
    parser.add_argument("--window", type=int, default=2, help="frames in flight per stream at max rate (default 2)")
    parser.add_argument("--frames", type=int, default=100, help="frames per measurement per round (default 100)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of all three measurements (default 3)")
    parser.add_argument("--warmup", type=int, default=8, help="untimed frames before each measurement")
    parser.add_argument("--load", type=float, default=0.8, help="open-loop rate as a fraction of the max (0.8)")
    parser.add_argument("--skip-ultralytics", action="store_true", help="no Ultralytics predict baseline")
    parser.add_argument(
        "--gpu",
        action="store_true",
        help="run everything on the first GPU: the embedded Triton's model and raw ONNX Runtime with the CUDA "
        "provider (needs onnxruntime-gpu), Ultralytics on device 0",
    )
    parser.add_argument("--start-timeout-s", type=float, default=180.0, help="wait this long for SERVING")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")


def _check(args: argparse.Namespace) -> None:
    if min(args.streams, args.window, args.max_images, args.rounds) < 1 or args.warmup < 0:
        raise BenchError("--streams, --window, --max-images and --rounds must be at least 1, --warmup at least 0")
    if args.frames < args.streams:
        raise BenchError(f"--frames ({args.frames}) must be at least --streams ({args.streams})")
    if not 0 < args.load <= 1:
        raise BenchError("--load must be in (0, 1]")
    if not args.weights.is_file():
        raise BenchError(f"weights not found: {args.weights}")
    if not args.images.is_dir():
        raise BenchError(f"not a folder: {args.images}")


@dataclass(frozen=True)
class Rounds:
    """Everything measured: per round for the ratios' spread, pooled for the figures."""

    baselines: dict[str, list[Measurement]]  # by name, one per round
    gateway: list[StreamPhase]  # max rate, one per round
    at_load: StreamPhase
    warmup: StreamPhase | None

    def phases(self) -> dict[str, StreamPhase]:
        named = {f"max rate, round {i + 1}": phase for i, phase in enumerate(self.gateway)}
        return {**({"warm-up": self.warmup} if self.warmup else {}), **named, "at load": self.at_load}


async def _measure(
    home: Path, jpegs: list[bytes], loops: dict[str, Loop], args: argparse.Namespace, environment: dict[str, str]
) -> Rounds:
    cameras = Cameras(args.streams)
    connection = provision(home, cameras.ids)
    per_stream = math.ceil(args.frames / args.streams)
    closed = Pacing(window=args.window)
    baselines: dict[str, list[Measurement]] = {name: [] for name in loops}
    peaks: list[StreamPhase] = []
    print("bench: starting lineqa serve (embedded Triton)", file=sys.stderr, flush=True)
    with GatewayProcess(home, connection, home.parent / "serve.log", environment) as gateway:
        await gateway.wait_serving(args.start_timeout_s)
        meter = CpuMeter(gateway.pid)
        warm = math.ceil(args.warmup / args.streams)
        warmup = await run_streams(connection, cameras, jpegs, warm, closed, meter, "gateway warm-up") if warm else None
        for index in range(args.rounds):
            label = f"round {index + 1}/{args.rounds}: "
            for name, loop in loops.items():
                baselines[name].append(loop.measure(args.frames, args.warmup, label))
            peaks.append(await run_streams(connection, cameras, jpegs, per_stream, closed, meter, f"{label}gateway"))
        rate = args.load * StreamPhase.pooled(peaks).measurement.fps
        label = f"gateway at {args.load:.0%}"
        at_load = await run_streams(connection, cameras, jpegs, per_stream, Pacing(rate=rate), meter, label)
    return Rounds(baselines, peaks, at_load, warmup)


def _report(args: argparse.Namespace, images: int, rounds: Rounds) -> dict[str, Any]:
    peak = StreamPhase.pooled(rounds.gateway)
    pooled = {name: Measurement.pooled(parts) for name, parts in rounds.baselines.items()}
    ratios = {name: peak.measurement.fps / m.fps for name, m in pooled.items()}
    by_round = {
        name: [g.measurement.fps / b.fps for g, b in zip(rounds.gateway, parts, strict=True)]
        for name, parts in rounds.baselines.items()
    }
    return {
        "model": {"weights": str(args.weights), "imgsz": args.imgsz, "device": "gpu" if args.gpu else "cpu"},
        "images": {"folder": str(args.images), "glob": args.glob, "count": images},
        "cpus": usable_cores(),
        "streams": args.streams,
        "window": args.window,
        "rounds": args.rounds,
        "gateway": {
            "max_rate": peak.report(),
            "at_load": {**rounds.at_load.report(), "load": args.load, "target_fps": args.load * peak.measurement.fps},
        },
        **{name: pooled[name].report() if name in pooled else None for name in TARGETS},
        "ratios": ratios,
        "ratios_by_round": by_round,
        "targets": TARGETS,
        "targets_met": {name: r >= TARGETS[name] for name, r in ratios.items()},
    }


def _table(report: dict[str, Any]) -> str:
    gateway, ultralytics = report["gateway"], report["ultralytics"]
    torch_threads = f" (torch {ultralytics['threads']} threads)" if ultralytics else ""
    at_load = gateway["at_load"]
    rows = [
        (f"gateway, max rate (window {report['window']})", gateway["max_rate"]),
        (f"gateway at {at_load['load']:.0%} ({at_load['target_fps']:.1f}/s)", at_load),
        (f"raw ONNX Runtime (batch 1, {report['onnxruntime']['threads']} threads)", report["onnxruntime"]),
        (f"Ultralytics predict{torch_threads}", ultralytics),
    ]
    lines = [
        f"lineqa bench: {report['model']['weights']} at {report['model']['imgsz']} px, {report['images']['count']} "
        f"JPEGs, {report['streams']} streams, {report['rounds']} rounds, {report['cpus']} CPUs",
        "gateway: embedded Triton, ONNX Runtime on the GPU (CUDA provider), uint8 frames"
        if report["model"]["device"] == "gpu"
        else f"gateway: embedded Triton, {report['cpus']} ONNX Runtime sessions x 1 thread (per core), uint8 frames",
        f"{'':<40}{'frames':>7}{'errors':>7}{'frames/s':>10}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}   CPU ms/frame",
    ]
    for label, row in rows:
        if row is None:
            lines.append(f"{label:<40}{'skipped':>7}")
            continue
        latency, cpu = row["latency_ms"], row["cpu_ms_per_frame"]
        cpu_text = ", ".join(f"{name} {ms:.0f}" for name, ms in cpu.items())
        lines.append(
            f"{label:<40}{row['frames']:>7}{row.get('errors', '-'):>7}{row['fps']:>10.2f}"
            f"{latency['p50']:>9.1f}{latency['p95']:>9.1f}{latency['p99']:>9.1f}   {cpu_text}"
        )
    names = {"onnxruntime": "raw ONNX Runtime", "ultralytics": "Ultralytics predict"}
    for name, ratio in report["ratios"].items():
        met = "met" if report["targets_met"][name] else "NOT met"
        spread = " ".join(f"{r:.2f}" for r in report["ratios_by_round"][name])
        lines.append(
            f"gateway / {names[name]:<20}{ratio:>6.2f}x   (target >= {TARGETS[name]}x: {met}; by round {spread})"
        )
    stages = gateway["max_rate"]["server_stage_ms_median"]
    lines.append("gateway stages at max rate, median ms: "
                 + ", ".join(f"{name.removesuffix('_ms')} {ms:.1f}" for name, ms in stages.items()))  # fmt: skip
    return "\n".join(lines)


def _exit_on_sigterm(*_: object) -> NoReturn:
    raise SystemExit(128 + signal.SIGTERM)  # unwinds through the cleanup that stops the gateway


def run(args: argparse.Namespace) -> int:
    _check(args)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    paths = jpeg_files(args.images, args.glob, args.max_images)
    jpegs = [path.read_bytes() for path in paths]
    environment = dict(os.environ)  # the gateway's, as it was before Ultralytics is imported here
    # Standard output carries the report only: Ultralytics logs there, and binds its log handler to whatever
    # standard output is when it is first imported.
    with tempfile.TemporaryDirectory(prefix="lineqa-bench-") as tmp, contextlib.redirect_stdout(sys.stderr):
        work = Path(tmp)
        print(f"bench: exporting {args.weights} to ONNX at {args.imgsz} px", file=sys.stderr, flush=True)
        home = work / "home"
        version = prepare_home(home, export_onnx(args.weights, args.imgsz, work), gpu=args.gpu)
        loops = {"onnxruntime": onnxruntime_loop(version, jpegs, "cuda" if args.gpu else "cpu")}
        if not args.skip_ultralytics:
            device = "0" if args.gpu else "cpu"
            loops["ultralytics"] = ultralytics_loop(args.weights, paths, args.imgsz, work / "ultralytics", device)
        rounds = asyncio.run(_measure(home, jpegs, loops, args, environment))
    report = _report(args, len(paths), rounds)
    print(json.dumps(report, indent=2) if args.json else _table(report))
    problems = [problem for label, phase in rounds.phases().items() for problem in phase.problems(label)]
    for problem in problems:
        print(f"lineqa bench: {problem}", file=sys.stderr)
    return 1 if problems else 0
