"""What a camera is told when its frame cannot be judged, and what the gateway's log keeps.

A camera gets what it can act on: for a fault of its own frame (no field, bad or oversized image, unknown
recipe, a sequence number already used for another image), the reason and the limit it broke; for a fault on
the server's side (model down or slow, storage, a bug), what happened and the record id under which the
gateway's log has the details (the exception and its traceback). Server paths, SQL and tracebacks never go to
the camera.
"""

from __future__ import annotations

import logging

from lineqa.protos.lineqa.inspection.v1 import inspection_pb2 as pb

logger = logging.getLogger(__name__)

# Codes whose message is the frame's own problem, written by lineqa for the camera: it says what to change.
CAMERA_FAULTS = frozenset(
    {
        pb.ERROR_CODE_INVALID_FRAME,
        pb.ERROR_CODE_INVALID_IMAGE,
        pb.ERROR_CODE_UNSUPPORTED_ENCODING,
        pb.ERROR_CODE_IMAGE_TOO_LARGE,
        pb.ERROR_CODE_UNKNOWN_RECIPE,
        pb.ERROR_CODE_SEQUENCE_CONFLICT,
        pb.ERROR_CODE_REFERENCE_REQUIRED,
    }
)
SERVER_FAULTS: dict[int, str] = {
    pb.ERROR_CODE_MODEL_UNAVAILABLE: "the model is not available now; the frame can be sent again",
    pb.ERROR_CODE_MODEL_TIMEOUT: "the model did not answer in time; the frame can be sent again",
    pb.ERROR_CODE_INVALID_MODEL_OUTPUT: "the model's output could not be read",
    pb.ERROR_CODE_STORAGE_FAILURE: "the result could not be stored; the frame can be sent again",
    pb.ERROR_CODE_REFERENCE_UNAVAILABLE: (
        "the golden sample the recipe or the frame names is not on this gateway for the tenant (add it with "
        "'lineqa references add' or the AddReference call); the frame can be sent again"
    ),
}


def camera_message(exc: Exception, code: int, record_id: str, frame: str) -> str:
    """Log the failure of ``frame`` (``tenant/camera#sequence``) under ``record_id``; the camera's message."""
    if code in CAMERA_FAULTS:
        logger.info("record %s, frame %s: refused: %s", record_id, frame, exc)
        return str(exc)
    logger.error("record %s, frame %s: not judged", record_id, frame, exc_info=exc)
    what = SERVER_FAULTS.get(code, "the gateway failed to judge the frame")
    return f"{what} (details in the gateway's log under record {record_id})"
