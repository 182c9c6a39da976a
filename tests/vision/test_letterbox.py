"""Letterbox preprocessing must equal Ultralytics' byte for byte, and boxes must map back the same way."""

from __future__ import annotations

import numpy as np
import pytest

from lineqa.vision.letterbox import letterbox, plan_letterbox, to_input_tensor

augment = pytest.importorskip("ultralytics.data.augment", reason="parity checks need the train extra")
ops = pytest.importorskip("ultralytics.utils.ops")
torch = pytest.importorskip("torch")

SHAPES = [(640, 640), (200, 200), (480, 640), (640, 480), (1080, 1920), (37, 1001), (3000, 1), (321, 123)]
INPUTS = [(640, 640), (320, 320), (384, 640)]


@pytest.mark.parametrize("source_hw", SHAPES)
@pytest.mark.parametrize("input_hw", INPUTS)
@pytest.mark.parametrize("auto", [False, True])
def test_letterbox_equals_ultralytics(source_hw: tuple[int, int], input_hw: tuple[int, int], auto: bool) -> None:
    rng = np.random.default_rng(source_hw[0] * 7 + source_hw[1])
    image = rng.integers(0, 256, (*source_hw, 3), dtype=np.uint8)
    ours, box = letterbox(image, input_hw, auto=auto)
    theirs = augment.LetterBox(input_hw, auto=auto, stride=32)(image=image)
    assert ours.shape == theirs.shape
    np.testing.assert_array_equal(ours, theirs)
    assert box.input_hw == ours.shape[:2]


@pytest.mark.parametrize("source_hw", SHAPES)
@pytest.mark.parametrize("input_hw", INPUTS)
def test_boxes_map_back_like_scale_boxes(source_hw: tuple[int, int], input_hw: tuple[int, int]) -> None:
    rng = np.random.default_rng(1)
    xy = rng.uniform(-20, max(input_hw) + 20, (50, 2))
    wh = rng.uniform(0, 200, (50, 2))
    boxes = np.concatenate([xy, xy + wh], axis=1).astype(np.float32)
    ours = plan_letterbox(source_hw, input_hw).to_source(boxes)
    theirs = ops.scale_boxes(input_hw, torch.from_numpy(boxes.copy()), source_hw).numpy()
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-3)


def test_input_tensor_is_rgb_nchw_unit_range() -> None:
    image = np.zeros((4, 4, 3), np.uint8)
    image[..., 0] = 255  # blue in BGR
    tensor = to_input_tensor([image, image])
    assert tensor.shape == (2, 3, 4, 4) and tensor.dtype == np.float32 and tensor.flags.c_contiguous
    assert tensor[:, 2].min() == 1.0 and tensor[:, :2].max() == 0.0  # blue lands in the last (B of RGB) plane


def test_plan_refuses_empty_source() -> None:
    with pytest.raises(ValueError, match="positive"):
        plan_letterbox((0, 10), (640, 640))
