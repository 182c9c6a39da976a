"""The parity gate: an exported model must detect and judge as the weights it came from, on golden images.

Export is where a model silently changes (an operator traced differently, a wrong letterbox, FP16 rounding),
so a model is published only after its exported form, run through the serving code, gives the reference's
detections on a golden set of images: one to one, same class, box IoU ≥ ``min_iou``, score within
``score_tol``, and the same verdict under the recipe. A detection within ``score_tol`` of the confidence
threshold may be on one side only, since both runs may differ by that much; so may one whose overlap with a
higher-scoring box of its class is within ``nms_band`` of the NMS IoU threshold, because float32 and float64
arithmetic decide such a tie differently (seen: IoU 0.7000 at threshold 0.7); and so may one that a tie box
kept on the other side would have suppressed, since NMS is a chain. The report lists every difference by
image, so a refused model says where it went wrong. A golden set on which neither side detects anything
proves nothing, and does not pass.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from lineqa.vision.decision import decide
from lineqa.vision.detections import Detections
from lineqa.vision.nms import box_iou
from lineqa.vision.recipe import Recipe


@dataclass(frozen=True)
class Tolerance:
    """FP32 ONNX Runtime against FP32 PyTorch agrees to about 1e-4 in score and 0.9999 in IoU (measured)."""

    min_iou: float = 0.99
    score_tol: float = 0.005
    nms_band: float = 0.002


@dataclass
class MatchStats:
    matched: int = 0
    min_iou: float = 1.0
    max_score_diff: float = 0.0
    differences: list[str] = field(default_factory=list)
    nms_ties: int = 0

    def __iadd__(self, other: MatchStats) -> MatchStats:
        self.matched += other.matched
        self.nms_ties += other.nms_ties
        self.min_iou = min(self.min_iou, other.min_iou)
        self.max_score_diff = max(self.max_score_diff, other.max_score_diff)
        self.differences += other.differences
        return self


_SIDES, _ELSEWHERE = ("exported", "reference"), ("in the reference", "in the exported model")


def _describe(who: str, detections: Detections, index: int) -> str:
    box = [round(float(v), 1) for v in detections.xyxy[index]]
    return f"{who} detection class {detections.class_id[index]} score {detections.confidence[index]:.4f} box {box}"


def _nms_tie(detections: Detections, index: int, nms_iou: float | None, band: float) -> bool:
    """Whether NMS could have gone either way on this detection: it overlaps a higher-scoring box of its class
    by the threshold itself, give or take ``band``."""
    if nms_iou is None:
        return False
    rivals = (detections.class_id == detections.class_id[index]) & (
        detections.confidence > detections.confidence[index]
    )
    if not rivals.any():
        return False
    overlaps = box_iou(detections.xyxy[index : index + 1], detections.xyxy[rivals])[0]
    return bool((np.abs(overlaps - nms_iou) <= band).any())


def _suppressed_by_tie(
    detections: Detections, index: int, other: Detections, ties: list[int], nms_iou: float | None, band: float
) -> bool:
    """Whether one of the other side's tie boxes (``ties``: kept there, dropped here at the NMS threshold) would
    have suppressed this detection: NMS is a chain, so a tie decided the other way frees or suppresses the
    boxes below it. Seen in a real export: a spur at 0.03 kept by PyTorch and dropped by ONNX Runtime at IoU
    0.700 left ONNX Runtime with a 0.02 spur that the 0.03 one had suppressed in PyTorch."""
    if nms_iou is None or not ties:
        return False
    rivals = np.array(ties)
    rivals = rivals[
        (other.class_id[rivals] == detections.class_id[index])
        & (other.confidence[rivals] > detections.confidence[index])
    ]
    if not len(rivals):
        return False
    overlaps = box_iou(detections.xyxy[index : index + 1], other.xyxy[rivals])[0]
    return bool((overlaps > nms_iou - band).any())


def compare_detections(
    ours: Detections, theirs: Detections, *, conf: float, tolerance: Tolerance, nms_iou: float | None = None
) -> MatchStats:
    """Match ``ours`` to the reference ``theirs`` one to one; every unexplained unmatched one is a difference."""
    iou = box_iou(ours.xyxy, theirs.xyxy) if len(ours) and len(theirs) else np.zeros((len(ours), len(theirs)))
    same_class = ours.class_id[:, None] == theirs.class_id[None, :]
    close_score = np.abs(ours.confidence[:, None] - theirs.confidence[None, :]) <= tolerance.score_tol
    candidates = np.where(same_class & close_score, iou, -1.0)
    taken: set[int] = set()
    stats = MatchStats()
    lost: list[int] = []
    for i in np.argsort(-ours.confidence, kind="stable"):
        free = [j for j in np.argsort(-candidates[i]) if j not in taken and candidates[i, j] >= tolerance.min_iou]
        if free:
            j = int(free[0])
            taken.add(j)
            stats += MatchStats(1, float(iou[i, j]), float(abs(ours.confidence[i] - theirs.confidence[j])))
        else:
            lost.append(int(i))
    # Side 0 is the exported model, side 1 the reference: each side's unmatched boxes, and the ties among them.
    sides = ((ours, lost), (theirs, [j for j in range(len(theirs)) if j not in taken]))
    ties = [{k for k in rows if _nms_tie(own, k, nms_iou, tolerance.nms_band)} for own, rows in sides]
    for side, (own, rows) in enumerate(sides):
        other, other_ties = sides[1 - side][0], sorted(ties[1 - side])
        for k in rows:
            if k in ties[side] or _suppressed_by_tie(own, k, other, other_ties, nms_iou, tolerance.nms_band):
                stats.nms_ties += 1
            elif own.confidence[k] > conf + tolerance.score_tol:
                stats.differences.append(f"{_describe(_SIDES[side], own, k)} has no match {_ELSEWHERE[side]}")
    return stats


def parity_report(
    names: list[str],
    exported: list[Detections],
    reference: list[Detections],
    class_names: tuple[str, ...],
    recipe: Recipe,
    *,
    conf: float,
    tolerance: Tolerance,
    nms_iou: float | None = None,
) -> dict[str, Any]:
    """Per golden image: detections matched and verdicts compared; ``passed`` only with no difference."""
    total = MatchStats()
    images = []
    for name, ours, theirs in zip(names, exported, reference, strict=True):
        stats = compare_detections(ours, theirs, conf=conf, tolerance=tolerance, nms_iou=nms_iou)
        verdicts = (decide(ours, class_names, recipe).verdict.value, decide(theirs, class_names, recipe).verdict.value)
        if verdicts[0] != verdicts[1]:
            stats.differences.append(f"verdict {verdicts[0]} (exported) vs {verdicts[1]} (reference)")
        total += stats
        images.append(
            {"image": name, "matched": stats.matched, "verdict": verdicts[1], "differences": stats.differences}
        )
    return {
        "passed": not total.differences and total.matched > 0,
        "tolerance": {**asdict(tolerance), "conf": conf, "nms_iou": nms_iou},
        "golden_images": len(names),
        "matched_detections": total.matched,
        "min_iou": round(total.min_iou, 6),
        "max_score_diff": round(total.max_score_diff, 6),
        "differences": len(total.differences),
        "nms_ties": total.nms_ties,
        "images": images,
    }
