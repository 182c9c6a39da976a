"""Reference-mode training pairs photographed again before they are aligned (lineqa.training.reshoot).

What must hold: the same pair always gives the same input (a repeated run trains on the same images); the frame
is never moved, so a labelled defect stays inside its box in every plane; the pair's planes really differ from
the untouched pair's (the reference was moved and the light changed); ``lineqa train`` reshoots reference runs
unless told not to, turns hue and saturation off for them, and leaves image runs alone. Synthetic boards: no
file from ../shared.
"""

from __future__ import annotations

import argparse

import numpy as np
import pytest

from lineqa.training.reshoot import reshot_input
from lineqa.vision.reference import model_input
from tests.helpers.boards import DEFECT, board, with_defect

X1, Y1, X2, Y2 = DEFECT


def test_the_same_pair_gives_the_same_input_and_another_pair_another_shot() -> None:
    frame, reference = with_defect(board(seed=3)), board(seed=3)
    first = reshot_input(frame, reference)
    assert np.array_equal(first, reshot_input(frame.copy(), reference.copy()))
    assert not np.array_equal(first, model_input(frame, reference)), "the pair was not photographed again"
    other = board(seed=4)
    assert not np.array_equal(reshot_input(other, other)[:, :, 2], model_input(other, other)[:, :, 2])


@pytest.mark.parametrize("seed", range(6))
def test_the_frame_never_moves_and_the_defect_stays_in_its_box(seed: int) -> None:
    clean = board(seed=seed)
    frame = with_defect(clean)
    made = reshot_input(frame, clean)

    # The frame plane is the frame under other light, in the same place: of all shifts up to 2 px, none
    # matches the frame better than none at all (on thin tracks, one pixel already costs a lot).
    def match(dx: int, dy: int) -> float:
        return float(np.corrcoef(np.roll(made[:, :, 0], (dy, dx), axis=(0, 1)).ravel(), frame.ravel())[0, 1])

    matches = {(dx, dy): match(dx, dy) for dx in range(-2, 3) for dy in range(-2, 3)}
    assert max(matches, key=matches.__getitem__) == (0, 0) and matches[(0, 0)] > 0.95
    difference = made[:, :, 2].astype(np.int32)
    inside = difference[Y1:Y2, X1:X2].mean()
    outside = np.delete(difference, np.s_[Y1 - 8 : Y2 + 8], axis=0).mean()
    assert inside > 100 > 10 > outside, (inside, outside)


def test_train_reshoots_reference_runs_only_and_keeps_hue_and_saturation_off() -> None:
    pytest.importorskip("lineqa.training.ultralytics_adapter", reason="training needs the train extra")
    from lineqa.training.bases import Base
    from lineqa.training.train_cli import _hyperparameters, configure, training_input

    parser = argparse.ArgumentParser()
    configure(parser)
    base = Base(ref="yolo11n.yaml", kind="yaml", source="yolo11n.yaml", sha256="")

    def parsed(*extra: str) -> argparse.Namespace:
        return parser.parse_args(["--dataset", "acme/pcb@1", *extra])

    assert training_input(parsed("--input", "reference"))[1] is reshot_input
    assert training_input(parsed("--input", "reference", "--no-reshoot"))[1] is model_input
    assert training_input(parsed())[1] is None and training_input(parsed("--input", "image"))[1] is None
    reference = _hyperparameters(parsed("--input", "reference"), base)
    assert reference["hsv_h"] == 0.0 and reference["hsv_s"] == 0.0 and "hsv_v" not in reference
    assert _hyperparameters(parsed("--input", "reference", "--set", "hsv_s=0.3"), base)["hsv_s"] == 0.3
    image = _hyperparameters(parsed(), base)
    assert "hsv_h" not in image and "hsv_s" not in image
