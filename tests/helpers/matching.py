"""Compare two detection lists the way the parity requirement states it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lineqa.vision.detections import Detections
from lineqa.vision.nms import box_iou


@dataclass
class MatchStats:
    matched: int = 0
    min_iou: float = 1.0
    max_score_diff: float = 0.0

    def __iadd__(self, other: MatchStats) -> MatchStats:
        self.matched += other.matched
        self.min_iou = min(self.min_iou, other.min_iou)
        self.max_score_diff = max(self.max_score_diff, other.max_score_diff)
        return self


def assert_same_detections(
    ours: Detections,
    theirs: Detections,
    *,
    conf: float,
    score_tol: float = 1e-3,
    min_iou: float = 0.99,
    where: str = "",
) -> MatchStats:
    """Same boxes (IoU ≥ ``min_iou``), same classes, scores within ``score_tol``, matched one to one.

    A detection whose score is within ``score_tol`` of the confidence threshold may legitimately be on one
    side only (the two runs' scores may differ by up to the tolerance); every other detection must be
    matched. Returns what was matched, so callers can report it and insist the
    comparison was not empty.
    """
    iou = box_iou(ours.xyxy, theirs.xyxy) if len(ours) and len(theirs) else np.zeros((len(ours), len(theirs)))
    same_class = ours.class_id[:, None] == theirs.class_id[None, :]
    close_score = np.abs(ours.confidence[:, None] - theirs.confidence[None, :]) <= score_tol
    candidates = np.where(same_class & close_score, iou, -1.0)
    matched_theirs: set[int] = set()
    stats = MatchStats()
    for i in np.argsort(-ours.confidence, kind="stable"):
        order = [j for j in np.argsort(-candidates[i]) if j not in matched_theirs and candidates[i, j] >= min_iou]
        if order:
            j = int(order[0])
            matched_theirs.add(j)
            stats += MatchStats(1, float(iou[i, j]), float(abs(ours.confidence[i] - theirs.confidence[j])))
        else:
            assert ours.confidence[i] <= conf + score_tol, (
                f"{where}: our detection {i} (class {ours.class_id[i]}, score {ours.confidence[i]:.4f}, "
                f"box {ours.xyxy[i].round(1).tolist()}) has no match in the reference"
            )
    for j in range(len(theirs)):
        if j not in matched_theirs:
            assert theirs.confidence[j] <= conf + score_tol, (
                f"{where}: reference detection {j} (class {theirs.class_id[j]}, score {theirs.confidence[j]:.4f}, "
                f"box {theirs.xyxy[j].round(1).tolist()}) has no match in ours"
            )
    return stats
