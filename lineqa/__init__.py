"""lineqa: self-hosted visual quality inspection. This package holds the version and the ``lineqa`` command.

Importing it turns ONNX Runtime's usage telemetry off for this process and its children (Triton's stubs
inherit the environment), unless ``ORT_DISABLE_TELEMETRY`` is already set. ONNX Runtime 1.29 and later send
usage events to Microsoft from Linux too; a plant's inspection data and model details stay in the plant, and
with no internet (most lines) the uploader's DNS lookups held a stopping gateway for 20 s or more at exit.
ONNX Runtime reads the setting once, when it starts, so it must be set before anything imports it.
"""

import os
from importlib.metadata import PackageNotFoundError, version

os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

try:
    __version__ = version("lineqa")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"
