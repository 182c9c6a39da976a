"""Decoding raw YOLO outputs must give what Ultralytics' non_max_suppression gives on the same tensor."""

from __future__ import annotations

import numpy as np
import pytest

from lineqa.vision.errors import ModelOutputError
from lineqa.vision.yolo_output import DecodeOptions, HeadKind, decode_outputs, infer_head_kind

torch = pytest.importorskip("torch")
nms_module = pytest.importorskip("ultralytics.utils.nms")


def raw_nms_head(rng: np.random.Generator, batch: int, classes: int, anchors: int) -> np.ndarray:
    """A plausible NMS-head output: clustered boxes (so NMS has work), sparse high scores."""
    centres = rng.uniform(20, 300, (batch, 2, anchors // 8)).repeat(8, axis=2)
    xy = centres + rng.normal(0, 4, (batch, 2, anchors))
    wh = rng.uniform(8, 60, (batch, 2, anchors))
    scores = rng.beta(0.3, 3.0, (batch, classes, anchors))
    return np.concatenate([xy, wh, scores], axis=1).astype(np.float32)


def reference(raw: np.ndarray, options: DecodeOptions, end2end: bool = False) -> list[np.ndarray]:
    out = nms_module.non_max_suppression(
        torch.from_numpy(raw),
        options.conf_threshold,
        options.iou_threshold,
        classes=list(options.classes) if options.classes else None,
        agnostic=options.agnostic,
        max_det=options.max_det,
        end2end=end2end,
    )
    return [o.numpy() for o in out]


@pytest.mark.parametrize(
    "options",
    [
        DecodeOptions(),
        DecodeOptions(conf_threshold=0.05, iou_threshold=0.5),
        DecodeOptions(conf_threshold=0.01, max_det=20),
        DecodeOptions(conf_threshold=0.1, classes=(1, 3)),
        DecodeOptions(conf_threshold=0.1, agnostic=True),
    ],
    ids=["defaults", "low-conf", "max-det", "classes", "agnostic"],
)
@pytest.mark.parametrize("seed", range(4))
def test_nms_head_equals_ultralytics(options: DecodeOptions, seed: int) -> None:
    rng = np.random.default_rng(seed)
    raw = raw_nms_head(rng, batch=2, classes=6, anchors=2400)
    ours = decode_outputs(raw, HeadKind.NMS, 6, options)
    for mine, theirs in zip(ours, reference(raw, options), strict=True):
        assert len(mine) == len(theirs) > 0
        np.testing.assert_allclose(mine.xyxy, theirs[:, :4], atol=1e-4)
        np.testing.assert_array_equal(mine.confidence, theirs[:, 4])
        np.testing.assert_array_equal(mine.class_id, theirs[:, 5].astype(int))


@pytest.mark.parametrize("conf", [0.0, 0.25, 0.6])
def test_end_to_end_head_equals_ultralytics(conf: float) -> None:
    rng = np.random.default_rng(9)
    xy = rng.uniform(0, 300, (2, 300, 2))
    rows = np.concatenate(
        [
            xy,
            xy + rng.uniform(1, 50, (2, 300, 2)),
            np.sort(rng.uniform(0, 1, (2, 300, 1)), axis=1)[:, ::-1],
            rng.integers(0, 4, (2, 300, 1)),
        ],
        axis=2,
    ).astype(np.float32)
    options = DecodeOptions(conf_threshold=conf, max_det=100)
    ours = decode_outputs(rows, HeadKind.END_TO_END, 4, options)
    for mine, theirs in zip(ours, reference(rows, options, end2end=True), strict=True):
        assert len(mine) == len(theirs)
        np.testing.assert_array_equal(mine.xyxy, theirs[:, :4])
        np.testing.assert_array_equal(mine.class_id, theirs[:, 5].astype(int))


@pytest.mark.parametrize(
    ("shape", "classes", "expected"),
    [
        ((1, 10, 2100), 6, HeadKind.NMS),
        (("batch", 84, "anchors"), 80, HeadKind.NMS),
        ((1, 300, 6), 6, HeadKind.END_TO_END),
        (("batch", 300, 6), 80, HeadKind.END_TO_END),
        ((1, 6, 2100), 2, HeadKind.NMS),  # 4 + 2 classes also has 6 rows: the NMS layout wins
        ((1, 11, 2100), 6, ModelOutputError),
        ((1, 2100), 6, ModelOutputError),
    ],
)
def test_head_kind_from_shape(shape: tuple[object, ...], classes: int, expected: object) -> None:
    if isinstance(expected, HeadKind):
        assert infer_head_kind(shape, classes) is expected  # type: ignore[arg-type]
    else:
        with pytest.raises(ModelOutputError, match=r"fits neither|expected a 3-D"):
            infer_head_kind(shape, classes)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("raw", "kind", "message"),
    [
        (np.zeros((1, 9, 100), np.float32), HeadKind.NMS, r"expected an NMS-head output of shape \(batch, 10"),
        (np.zeros((1, 300, 7), np.float32), HeadKind.END_TO_END, "expected an end-to-end output"),
        (np.zeros((10, 100), np.float32), HeadKind.NMS, "expected a"),
        (np.full((1, 10, 100), np.nan, np.float32), HeadKind.NMS, "NaN"),
        (np.full((1, 300, 6), np.inf, np.float32), HeadKind.END_TO_END, "NaN or infinite"),
    ],
)
def test_bad_outputs_raise_typed_errors(raw: np.ndarray, kind: HeadKind, message: str) -> None:
    with pytest.raises(ModelOutputError, match=message):
        decode_outputs(raw, kind, 6)


def test_end_to_end_class_out_of_range() -> None:
    rows = np.zeros((1, 300, 6), np.float32)
    rows[0, 0] = [0, 0, 10, 10, 0.9, 7]
    with pytest.raises(ModelOutputError, match="class 7 of 6"):
        decode_outputs(rows, HeadKind.END_TO_END, 6)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"conf_threshold": 1.5}, "conf_threshold"),
        ({"iou_threshold": -0.1}, "iou_threshold"),
        ({"max_det": 0}, "max_det"),
    ],
)
def test_bad_decode_options(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        DecodeOptions(**kwargs)  # type: ignore[arg-type]
