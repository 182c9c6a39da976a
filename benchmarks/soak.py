"""Soak the gateway: N camera streams at a fraction of its measured capacity for a long time, watching its
memory, file descriptors and threads (RELIABILITY.md 21). The suite runs a 40-second version of the same.

    python benchmarks/soak.py --weights tests/assets/deeppcb-yolo11n-320.pt \\
        --images ../shared/datasets/deeppcb/PCBData --minutes 10 [--streams 4 --load 0.8 --imgsz 640]

Prints one summary line and a JSON report, and draws the gateway's and Triton's memory over time to
``soak-memory.png`` (``--plot``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # tests.helpers, run from anywhere

from lineqa.serving.bench import jpeg_files  # noqa: E402
from lineqa.serving.bench_baselines import export_onnx  # noqa: E402
from tests.helpers.soak import SoakReport, soak  # noqa: E402


def plot(report: SoakReport, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    times = [s.at_s / 60 for s in report.samples]
    figure, axis = plt.subplots(figsize=(9, 4))
    axis.plot(times, [s.gateway_rss_mb for s in report.samples], label="gateway (resident MB)")
    axis.plot(times, [s.triton_rss_mb for s in report.samples], label="Triton and its stubs (resident MB)")
    axis.set_xlabel("minutes after warm-up")
    axis.set_ylabel("MB")
    axis.set_title(f"soak: {report.streams} streams at {report.rate_fps:.1f} frames/s, p99 {report.p99_ms:.0f} ms")
    axis.legend()
    figure.tight_layout()
    figure.savefig(out, dpi=110)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", type=Path, required=True)
    parser.add_argument("--images", type=Path, required=True)
    parser.add_argument("--glob", default="**/*_test.jpg")
    parser.add_argument("--imgsz", type=int, default=640)
    parser.add_argument("--streams", type=int, default=4)
    parser.add_argument("--load", type=float, default=0.8)
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--warmup-s", type=float, default=60)
    parser.add_argument("--plot", type=Path, default=Path("soak-memory.png"))
    args = parser.parse_args()
    jpegs = [path.read_bytes() for path in jpeg_files(args.images, args.glob, 32)]
    with tempfile.TemporaryDirectory(prefix="lineqa-soak-") as tmp:
        work = Path(tmp)
        onnx = export_onnx(args.weights, args.imgsz, work)
        report = soak(work, onnx, jpegs, streams=args.streams, warmup_s=args.warmup_s, duration_s=args.minutes * 60,
                      load=args.load)  # fmt: skip
    print(report.summary())
    print(json.dumps({**dataclasses.asdict(report), "samples": len(report.samples),
                      "growth_mb": report.growth("gateway_rss_mb")}, indent=2))  # fmt: skip
    plot(report, args.plot)
    print(f"memory over time: {args.plot}")
    ok = not report.errors and report.growth("gateway_rss_mb") < 50
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
