"""``lineqa models``: the model repository that Triton serves.

lineqa models add NAME MODEL.onnx      add an exported model as NAME's next version
lineqa models list                     models and versions in the repository
lineqa models repo --check             validate the repository (exit 1 on any problem)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from lineqa.home import default_home
from serving.model_repository import ModelRepository, ModelSettings, VersionPolicy


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--repo", type=Path, help="model repository (default: <lineqa home>/models)")
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    add = sub.add_parser("add", help="add an exported ONNX model as the next version of NAME")
    add.add_argument("name")
    add.add_argument("model", type=Path)
    add.add_argument("--max-batch-size", type=int, default=ModelSettings.max_batch_size)
    add.add_argument("--max-queue-delay-us", type=int, default=ModelSettings.max_queue_delay_us)
    add.add_argument("--version-policy", choices=[p.value for p in VersionPolicy], default=VersionPolicy.ALL.value)
    add.add_argument("--instances", type=int, default=1, help="model instances per device")
    add.add_argument("--gpu", action="store_true", help="run instances on GPUs (NVIDIA Triton)")
    sub.add_parser("list", help="models and versions").add_argument("--json", action="store_true")
    repo = sub.add_parser("repo", help="repository-wide actions")
    repo.add_argument("--check", action="store_true", required=True, help="validate the repository")


def run(args: argparse.Namespace) -> int:
    repository = ModelRepository(args.repo or default_home() / "models")
    if args.action == "add":
        settings = ModelSettings(
            max_batch_size=args.max_batch_size,
            max_queue_delay_us=args.max_queue_delay_us,
            version_policy=VersionPolicy(args.version_policy),
            instance_count=args.instances,
            gpu=args.gpu,
        )
        version = repository.add_version(args.name, args.model, settings=settings)
        print(f"added {version.name} version {version.version} at {version.path}")
        return 0
    if args.action == "list":
        for name in repository.model_names():
            for v in repository.versions(name):
                row = {
                    "name": v.name,
                    "version": v.version,
                    "backend": v.backend,
                    "head": v.metadata.head.value,
                    "input_hw": list(v.metadata.input_hw),
                    "classes": list(v.metadata.class_names),
                }
                size = "x".join(map(str, v.metadata.input_hw))
                classes = ", ".join(v.metadata.class_names)
                line = f"{v.name:<24} v{v.version:<4} {v.backend:<12} {row['head']:<8} {size:<9} {classes}"
                print(json.dumps(row) if args.json else line)
        return 0
    problems = repository.check()
    for problem in problems:
        print(f"problem: {problem}", file=sys.stderr)
    if not problems:
        print(f"{repository.root}: ok ({len(repository.model_names())} models)")
    return 1 if problems else 0
