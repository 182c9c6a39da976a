"""ONNX Runtime's usage telemetry stays off in every lineqa process (see ``lineqa/__init__.py``).

ONNX Runtime 1.29 and later start an uploader thread on Linux when a session is created; in a container with
no route out, its DNS lookups held the stopping gateway past Compose's 30 s grace (killed, exit 137). The
uploader is visible as one more thread of the process, so the test counts threads after a session is made.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import lineqa

MODEL = Path(lineqa.__file__).parent / "assets" / "demo-metal-yolo11n-320.onnx"

SESSION_THREADS = (
    "import os, onnxruntime as ort; "
    f"ort.InferenceSession({str(MODEL)!r}, providers=['CPUExecutionProvider']); "
    "print(len(os.listdir('/proc/self/task')))"
)


def threads_after_a_session(first: str, telemetry: str | None) -> int:
    env = {k: v for k, v in os.environ.items() if k != "ORT_DISABLE_TELEMETRY"}
    if telemetry is not None:
        env["ORT_DISABLE_TELEMETRY"] = telemetry
    env["OMP_NUM_THREADS"] = "1"
    done = subprocess.run(
        [sys.executable, "-c", first + SESSION_THREADS], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return int(done.stdout.split()[-1])


def test_importing_lineqa_turns_onnx_runtime_telemetry_off_and_an_explicit_choice_stands() -> None:
    off = threads_after_a_session("", "1")  # ONNX Runtime's own opt-out: the reference
    assert threads_after_a_session("import lineqa; ", None) == off
    assert threads_after_a_session("import lineqa.serving.onnx_model; ", None) == off
    # An operator who sets the variable decides: '0' (telemetry on) is kept, and shows as the uploader thread.
    assert threads_after_a_session("import lineqa; ", "0") > off
