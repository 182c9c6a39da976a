"""A dataset version as Ultralytics trains on it: a YOLO folder written into the run, and what it holds.

Only labelled images train: an image nobody annotated (MISSING) would teach the model that its defects are
background, so it is left out and counted. Training needs a ``train`` and a ``val`` split; a ``test`` split
is the held-out set that ``lineqa evaluate`` and the promotion gate judge on, and is written too.

Background images (labelled defect-free) teach the model what is not a defect, but Ultralytics' guidance is
to keep them to about a tenth of the training images: more mostly costs epochs. The train split keeps at most
``background_share`` of them, chosen by image hash (the same ones on every run); val and test keep all, so
that evaluation sees every good part.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lineqa.datasets.errors import DatasetError
from lineqa.datasets.formats import Compose
from lineqa.datasets.formats.yolo import write_yolo
from lineqa.datasets.manifest import Manifest
from lineqa.datasets.model import Annotation, LabelledImage
from lineqa.training.errors import TrainingError


@dataclass(frozen=True)
class TrainingSet:
    """The exported dataset of one run, and the facts its lineage records."""

    ref: str
    manifest_sha256: str
    classes: tuple[str, ...]
    data_yaml: Path
    images_per_split: dict[str, int]
    left_out_unlabelled: int
    left_out_background: int

    def lineage(self) -> dict[str, Any]:
        return {
            "ref": self.ref,
            "manifest_sha256": self.manifest_sha256,
            "classes": list(self.classes),
            "images_per_split": self.images_per_split,
            "left_out_unlabelled": self.left_out_unlabelled,
            "left_out_background": self.left_out_background,
        }


def _thin_backgrounds(images: list[LabelledImage], share: float) -> list[LabelledImage]:
    """The images with the train split's background images cut to ``share`` of what remains."""
    background = sorted(
        (image for image in images if image.split == "train" and image.annotation is Annotation.BACKGROUND),
        key=lambda image: hashlib.sha256(image.name.encode()).hexdigest(),
    )
    defective = sum(1 for image in images if image.split == "train") - len(background)
    keep = min(len(background), int(share / (1 - share) * defective + 1e-9)) if share < 1 else len(background)
    dropped = {image.name for image in background[keep:]}
    return [image for image in images if image.name not in dropped]


def write_training_set(
    ref: str,
    manifest: Manifest,
    images: list[LabelledImage],
    out: Path,
    *,
    background_share: float = 0.1,
    compose: Compose | None = None,
) -> TrainingSet:
    """Write the labelled images of a version as a YOLO dataset under ``out``; refuse one that cannot train.

    With ``compose`` (a reference model's input from image and reference) every image is written as that input,
    so the run trains on exactly what inspection will feed it; a sample without a reference stops the run
    before anything trains, named, rather than training on a quietly smaller set.
    """
    labelled = [image for image in images if image.annotation is not Annotation.MISSING]
    kept = _thin_backgrounds(labelled, background_share)
    splits = Counter(image.split or "unsplit" for image in labelled)
    missing = [split for split in ("train", "val") if not splits.get(split)]
    if "unsplit" in splits or missing:
        raise TrainingError(
            f"{ref} has {dict(splits)} labelled images by split; training needs every image in train, val or test "
            f"with train and val non-empty: run 'lineqa datasets split' and snapshot again"
        )
    if not any(image.boxes for image in labelled if image.split == "train"):
        raise TrainingError(f"{ref}: the train split has no labelled defect at all")
    if compose is not None:
        lacking = next((image.name for image in kept if image.reference is None), None)
        if lacking is not None:
            raise TrainingError(f"{ref}: --input reference needs a reference for every sample; {lacking} has none")
    try:
        data_yaml = write_yolo(list(manifest.classes), kept, out, overwrite=True, compose=compose)
    except DatasetError as exc:
        raise TrainingError(f"{ref}: {exc}") from None
    return TrainingSet(
        ref=ref,
        manifest_sha256=manifest.sha256,
        classes=tuple(manifest.classes),
        data_yaml=data_yaml,
        images_per_split=dict(sorted(Counter(image.split or "" for image in kept).items())),
        left_out_unlabelled=len(images) - len(labelled),
        left_out_background=len(labelled) - len(kept),
    )
