"""ONNX Runtime's usage telemetry stays off in every lineqa process (see ``lineqa/__init__.py``).

ONNX Runtime 1.29 and later start an uploader thread on Linux once a session exists; in a container with no
route out, its DNS lookups held the stopping gateway past Compose's 30 s grace (killed, exit 137). The
uploader shows as one more thread of the process. It starts a little after the session, later still on a busy
machine, so each process reports the most threads it had while it watched: until it saw more than ``above``,
or for ``watch_s``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import lineqa

MODEL = Path(lineqa.__file__).parent / "assets" / "demo-metal-yolo11n-320.onnx"

WATCH_THREADS = """
import os, sys, time
import onnxruntime as ort
ort.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
above, deadline, most = int(sys.argv[2]), time.monotonic() + float(sys.argv[3]), 0
while time.monotonic() < deadline and most <= above:
    most = max(most, len(os.listdir("/proc/self/task")))
    time.sleep(0.02)
print(most)
"""


# ONNX Runtime keeps its telemetry off by itself under a CI service, told by these variables (``CI`` seen here;
# the others are named in its library): the process gets a user's environment, or the test would see no
# uploader either way and prove nothing.
CI_VARIABLES = {
    "CI", "APPVEYOR", "BUILDKITE", "CIRCLECI", "CODEBUILD_BUILD_ID", "GITHUB_ACTIONS", "GITLAB_CI", "JENKINS_URL",
    "SYSTEM_TEAMFOUNDATIONCOLLECTIONURI", "TEAMCITY_VERSION", "TF_BUILD", "TRAVIS",
}  # fmt: skip


def most_threads(first: str, telemetry: str | None, *, above: int = 10_000, watch_s: float = 2.0) -> int:
    env = {k: v for k, v in os.environ.items() if k != "ORT_DISABLE_TELEMETRY" and k not in CI_VARIABLES}
    if telemetry is not None:
        env["ORT_DISABLE_TELEMETRY"] = telemetry
    env["OMP_NUM_THREADS"] = "1"
    command = [sys.executable, "-c", first + "\n" + WATCH_THREADS, str(MODEL), str(above), str(watch_s)]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    return int(done.stdout.split()[-1])


def test_importing_lineqa_turns_onnx_runtime_telemetry_off_and_an_explicit_choice_stands() -> None:
    off = most_threads("", "1")  # ONNX Runtime's own opt-out: the reference
    assert most_threads("import lineqa", None) == off
    assert most_threads("import lineqa.serving.onnx_model", None) == off
    # An operator who sets the variable decides: '0' (telemetry on) is kept, and shows as the uploader thread.
    assert most_threads("import lineqa", "0", above=off, watch_s=30.0) > off
