"""Reproduce tests/assets/deeppcb-yolo11n-320.pt, the DeepPCB detector the tiling test uses.

Usage (about 25 minutes on 2 CPU cores):  python -m tests.assets.make_deeppcb_model [OUT_DIR]

Training a detector that really finds DeepPCB's small defects takes far longer than a test may run, so the
weights are committed; this script is how they were made. YOLO11n from Ultralytics' model YAML (no
pretrained weights), 320 px input (boards are scaled by 0.5), 800 boards for training, every fifth board of
trainval.txt held out: 12 epochs, then 20 more from that run's best weights without warm-up.
Measured on the 200 held-out boards: mAP50 0.685, mAP50-95 0.383.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from lineqa.training.ultralytics_adapter import TrainSpec, train
from tests.conftest import SHARED_DATASETS
from tests.helpers.deeppcb import write_yolo_every_fifth

ASSET = Path(__file__).with_name("deeppcb-yolo11n-320.pt")


def main(out: Path) -> None:
    data = write_yolo_every_fifth(SHARED_DATASETS / "deeppcb" / "PCBData", out / "deeppcb")
    first = train(TrainSpec("yolo11n.yaml", data, out / "runs" / "stage1", epochs=12, imgsz=320, batch=16))
    second = train(
        TrainSpec(str(first), data, out / "runs" / "stage2", epochs=20, imgsz=320, batch=16, extra={"warmup_epochs": 0})
    )
    shutil.copyfile(second, ASSET)
    print(f"wrote {ASSET}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("deeppcb-model-run"))
