"""Draw judged detections on an image for people: QA screens, ``lineqa predict --save-dir``, reports.

Colours follow the disposition (red defect, amber review, magenta golden-sample anomaly, grey ignored) so a
glance tells why a part failed.
Text uses OpenCV's built-in Hershey font: nothing to download.
"""

from __future__ import annotations

import cv2
import numpy as np

from lineqa.vision.decision import Decision, Disposition, Verdict

_COLOURS_BGR = {
    Disposition.DEFECT: (40, 40, 230),
    Disposition.REVIEW: (0, 170, 255),
    Disposition.IGNORED_REGION: (150, 150, 150),
    Disposition.TOO_SMALL: (150, 150, 150),
    Disposition.BELOW_THRESHOLD: (200, 200, 200),
    Disposition.ANOMALY: (200, 60, 200),
}
_VERDICT_COLOURS_BGR = {
    Verdict.PASS: (60, 170, 60),
    Verdict.FAIL: (40, 40, 230),
    Verdict.REVIEW: (0, 170, 255),
    Verdict.ERROR: (120, 0, 120),
}
_FONT = cv2.FONT_HERSHEY_SIMPLEX


def draw_decision(image: np.ndarray, decision: Decision, *, show_ignored: bool = False) -> np.ndarray:
    """A copy of the BGR image with boxes, class and confidence labels, and the verdict banner."""
    canvas = image.copy()
    scale = max(0.4, min(canvas.shape[:2]) / 1000)
    thickness = max(1, round(scale * 2))
    for judged in decision.judged:
        if not show_ignored and judged not in decision.flagged:
            continue
        colour = _COLOURS_BGR[judged.disposition]
        x1, y1, x2, y2 = (round(v) for v in judged.xyxy)
        cv2.rectangle(canvas, (x1, y1), (x2, y2), colour, thickness)
        label = f"{judged.class_name} {judged.confidence:.2f}"
        (w, h), base = cv2.getTextSize(label, _FONT, scale * 0.5, 1)
        top = max(0, y1 - h - base - 2)
        cv2.rectangle(canvas, (x1, top), (x1 + w + 2, top + h + base + 2), colour, -1)
        cv2.putText(canvas, label, (x1 + 1, top + h + 1), _FONT, scale * 0.5, (255, 255, 255), 1, cv2.LINE_AA)
    banner = decision.verdict.value
    (w, h), base = cv2.getTextSize(banner, _FONT, scale, thickness)
    cv2.rectangle(canvas, (0, 0), (w + 12, h + base + 12), _VERDICT_COLOURS_BGR[decision.verdict], -1)
    cv2.putText(canvas, banner, (6, h + 6), _FONT, scale, (255, 255, 255), thickness, cv2.LINE_AA)
    return canvas
