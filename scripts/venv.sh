# Sourced by scripts/demo and scripts/test: create (once) and update the project's virtual environment.
# Usage: source scripts/venv.sh EXTRAS   (EXTRAS as in pyproject.toml, e.g. "train" or "train,dev"; "" for none)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${LINEQA_VENV:-$ROOT/.venv}"
extras="$1"

pick_python() {
  for candidate in python3.11 python3.12 python3.10 python3; do
    if command -v "$candidate" >/dev/null 2>&1 &&
      "$candidate" -c 'import sys; sys.exit(not (3, 10) <= sys.version_info[:2] <= (3, 12))' 2>/dev/null; then
      echo "$candidate"
      return 0
    fi
  done
  echo "lineqa needs Python 3.10, 3.11 or 3.12 (PyTriton and the numpy<2 stack support no newer one)" >&2
  return 1
}

if [ ! -x "$VENV/bin/python" ]; then
  python_bin="$(pick_python)"
  echo "==> creating virtual environment $VENV with $python_bin"
  "$python_bin" -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --upgrade pip
fi

stamp="$VENV/.lineqa-installed-$(echo "${extras:-base}" | tr ',' '-')"
if [ ! -f "$stamp" ] || [ "$ROOT/pyproject.toml" -nt "$stamp" ]; then
  if [ -n "$extras" ]; then
    echo "==> installing lineqa[$extras] into $VENV (the first time takes a few minutes: torch is large)"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e "$ROOT[$extras]"
  else
    echo "==> installing lineqa into $VENV (the serving runtime: no torch)"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e "$ROOT"
  fi
  # ultralytics depends on opencv-python, which needs libGL; on a server the headless build of the same
  # version must own the cv2 package, so it is reinstalled over it.
  if "$VENV/bin/python" -m pip show --quiet opencv-python >/dev/null 2>&1; then
    version="$("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("opencv-python-headless"))')"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --force-reinstall --no-deps \
      "opencv-python-headless==$version"
  fi
  touch "$stamp"
fi
export PATH="$VENV/bin:$PATH"
