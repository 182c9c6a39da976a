"""Generate the Python code for the ``.proto`` files, and check that the committed code is current.

The generated modules are committed so that the serving runtime needs no code generator; this module (run by
developers and by the test suite, which have ``grpcio-tools``) is the only way they are written.
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_FILES = (
    Path("protos/lineqa/inspection/v1/inspection.proto"),
    Path("protos/lineqa/fleet/v1/fleet.proto"),
)
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")
# The import name the repository's protos/ folder is installed under: the generated modules import their
# siblings by it (protoc derives those imports from the path it is given).
PACKAGE_PATH = Path("lineqa")


def generate(out_dir: Path) -> list[Path]:
    """Run protoc (from grpcio-tools) on every proto file; return the generated files, written under ``out_dir``
    at their places in the repository (``protos/...``)."""
    import grpc_tools
    from grpc_tools import protoc

    include = Path(grpc_tools.__file__).parent / "_proto"
    written: list[Path] = []
    with tempfile.TemporaryDirectory() as tmp:
        # protoc sees the repository through ``lineqa/protos -> <repo>/protos``, so that the generated code
        # imports ``lineqa.protos.lineqa.inspection.v1`` as installed.
        view, raw = Path(tmp, "view"), Path(tmp, "out")
        (view / PACKAGE_PATH).mkdir(parents=True)
        (view / PACKAGE_PATH / "protos").symlink_to(ROOT / "protos", target_is_directory=True)
        raw.mkdir()
        for proto in PROTO_FILES:
            args = [
                "protoc",
                f"-I{view}",
                f"-I{include}",
                f"--python_out={raw}",
                f"--pyi_out={raw}",
                f"--grpc_python_out={raw}",
                str(view / PACKAGE_PATH / proto),
            ]
            if protoc.main(args) != 0:
                raise RuntimeError(f"protoc failed on {proto}")
            stem = proto.with_suffix("")
            for suffix in GENERATED_SUFFIXES:
                target = out_dir / f"{stem}{suffix}"
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(raw / PACKAGE_PATH / f"{stem}{suffix}", target)
                written.append(target)
    return written


def stale_files() -> list[Path]:
    """The committed generated files that differ from what the generator writes now (empty when current)."""
    with tempfile.TemporaryDirectory() as tmp:
        fresh = generate(Path(tmp))
        return [
            path.relative_to(tmp)
            for path in fresh
            if not (ROOT / path.relative_to(tmp)).exists()
            or not filecmp.cmp(path, ROOT / path.relative_to(tmp), shallow=False)
        ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lineqa.protos.codegen", description=__doc__)
    parser.add_argument("--check", action="store_true", help="only report stale generated files")
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_files()
        for path in stale:
            print(f"stale: {path}")
        return 1 if stale else 0
    for path in generate(ROOT):
        print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
