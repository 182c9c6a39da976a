"""Reproduce tests/assets/parity-yolo26n-320.pt, the YOLO26n weights the parity tests export both ways.

Usage (about 2 minutes on 2 CPU cores):  python -m tests.assets.make_parity_yolo26n [OUT_DIR]

The parity tests need a YOLO26 model that detects things (so that there are detections to compare), not a good
one; training it in every test run cost minutes, so the weights are committed and this is how they were made:
YOLO26n from Ultralytics' model YAML (no pretrained weights), 320 px, the first 16 DeepPCB boards of
trainval.txt for 20 epochs, batch 2, an optimizer step per batch, no mosaic, no validation.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from lineqa.training.ultralytics_adapter import TrainSpec, train
from tests.conftest import SHARED_DATASETS
from tests.helpers.deeppcb import write_yolo_subset

ASSET = Path(__file__).with_name("parity-yolo26n-320.pt")
OPTIONS = {"val": False, "mosaic": 0.0, "close_mosaic": 0, "warmup_epochs": 0, "nbs": 2, "optimizer": "AdamW"}


def main(out: Path) -> None:
    data = write_yolo_subset(SHARED_DATASETS / "deeppcb" / "PCBData", out / "deeppcb", train=16, val=2)
    spec = TrainSpec("yolo26n.yaml", data, out / "runs" / "yolo26n", epochs=20, imgsz=320, batch=2, workers=0,
                     extra={**OPTIONS, "lr0": 0.003})  # fmt: skip
    shutil.copyfile(train(spec), ASSET)
    print(f"wrote {ASSET}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("parity-model-run"))
