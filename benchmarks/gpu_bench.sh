#!/usr/bin/env bash
# The gateway benchmark on a GPU: `lineqa bench --gpu` with the DeepPCB detector at 640 px, 4 streams, against
# raw ONNX Runtime (CUDA provider) and Ultralytics' predict on device 0, in one run. For a machine with an
# NVIDIA GPU and its driver; builds what it needs (a virtual environment with onnxruntime-gpu in place of
# onnxruntime) and finishes within about 5 minutes (the install is most of it).
#
#   benchmarks/gpu_bench.sh [IMAGES_DIR]      (default: ../shared/datasets/deeppcb/PCBData)
#
# Not yet run: no GPU was lent to this project's sessions so far. The README says so until it is.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
IMAGES="${1:-$ROOT/../shared/datasets/deeppcb/PCBData}"
VENV="${LINEQA_GPU_VENV:-$ROOT/.venv-gpu}"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --upgrade pip
fi
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e "$ROOT[train]"
# onnxruntime-gpu owns the same import name as onnxruntime: one replaces the other.
version="$("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("onnxruntime"))')"
"$VENV/bin/python" -m pip uninstall --quiet -y onnxruntime
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "onnxruntime-gpu==${version}" ||
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check onnxruntime-gpu
"$VENV/bin/python" -c 'import onnxruntime as o; assert "CUDAExecutionProvider" in o.get_available_providers(), o.get_available_providers()'
exec "$VENV/bin/lineqa" bench --gpu --weights "$ROOT/tests/assets/deeppcb-yolo11n-320.pt" --images "$IMAGES" \
  --glob '**/*_test.jpg' --imgsz 640 --streams 4 --rounds 2 --frames 200
