"""Which ERROR answers are worth sending again, and what the line gets meanwhile.

A transient error (the model server unavailable, slow, or answering with output it should never give: the
wrong shape, NaN; the record store failing; the gateway overloaded; the recipe's golden sample not yet on the
gateway) says nothing about the part: the same
frame sent later can be judged. The agent keeps such a frame in its spool and sends it again with exponential
backoff until it is judged; the verdict then reaches the outputs marked ``late``. Every other error is final
for that frame (a corrupt or oversized image, an encoding or recipe the gateway does not know, a sequence
conflict, a frame a reference-trained model cannot judge for want of a golden sample (REFERENCE_REQUIRED), an
internal error): the same frame would fail the same way, so it is handed on once and counted.

A reject gate cannot wait for the model server to come back, so by default (:attr:`TransientAnswer.ANSWER`)
the transient ERROR itself is handed on at once as the part's answer (marked ``retrying``), which a gate
must treat as not-PASS; the late verdict follows. Where no gate waits (a hot folder, an offline check),
:attr:`TransientAnswer.WAIT` hands on nothing until the frame is judged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from lineqa.protos.lineqa.inspection.v1 import inspection_pb2 as pb
from lineqa.serving.camera.pacing import Backoff

TRANSIENT_ERRORS = frozenset(
    {
        pb.ERROR_CODE_MODEL_UNAVAILABLE,
        pb.ERROR_CODE_MODEL_TIMEOUT,
        pb.ERROR_CODE_INVALID_MODEL_OUTPUT,
        pb.ERROR_CODE_STORAGE_FAILURE,
        pb.ERROR_CODE_OVERLOADED,
        pb.ERROR_CODE_REFERENCE_UNAVAILABLE,
    }
)


class TransientAnswer(str, Enum):
    ANSWER = "answer"  # hand the ERROR on now (the gate's answer, in time), then the late verdict
    WAIT = "wait"  # hand on nothing until the frame is judged


def is_transient(result: pb.InspectionResult) -> bool:
    """An ERROR that a later attempt may turn into a verdict."""
    return result.verdict == pb.VERDICT_ERROR and result.error.code in TRANSIENT_ERRORS


@dataclass(frozen=True)
class RetryPolicy:
    """What the outputs get for a transient ERROR, and how long a frame waits before each new attempt (1 s
    doubling to 30 s by default, jittered so that a camera's backlog does not return in one burst)."""

    answer: TransientAnswer = TransientAnswer.ANSWER
    backoff: Backoff = field(default_factory=lambda: Backoff(initial_s=1.0, max_s=30.0))
