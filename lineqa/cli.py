"""The ``lineqa`` command. Each subcommand lives in the part it belongs to and is imported only when run.

Importing a part is what pulls in heavy dependencies (torch comes with ``training``), so ``lineqa --help``
and every serving command stay light: the table below names modules, it does not import them. A subcommand
module provides ``configure(parser)`` to declare its arguments and ``run(args) -> int`` to do the work.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from dataclasses import dataclass

from lineqa import __version__, logs


@dataclass(frozen=True)
class Command:
    module: str
    summary: str


COMMANDS: dict[str, Command] = {
    "serve": Command(
        "lineqa.serving.serve_cli", "run the inspection gateway (gRPC) with an embedded or external Triton"
    ),
    "predict": Command("lineqa.serving.predict_cli", "detect defects in images with an ONNX model and judge them"),
    "camera": Command(
        "lineqa.serving.camera.cli", "stream a camera's frames to the gateway; verdicts to console, file, MQTT"
    ),
    "health": Command("lineqa.serving.health_cli", "is a gateway SERVING? (grpc.health.v1; the image's health check)"),
    "admin": Command(
        "lineqa.serving.admin_cli", "tenants, lines, cameras, camera tokens and the plant's TLS certificates"
    ),
    "bench": Command(
        "lineqa.serving.bench_cli", "frames/s and latency of the gateway vs raw ONNX Runtime and Ultralytics"
    ),
    "models": Command(
        "lineqa.serving.models_cli", "the model registry (Triton's repository): publish, promote, rollback, allow"
    ),
    "recipes": Command("lineqa.serving.recipes_cli", "a tenant's recipes: set, show, history, diff (audited)"),
    "references": Command(
        "lineqa.serving.references_cli", "a tenant's golden samples (reference images) that recipes compare parts with"
    ),
    "hub": Command("lineqa.fleet.hub_cli", "the hub: serve plants, add and revoke them, data policies, bundles"),
    "plant": Command("lineqa.fleet.plant_cli", "a plant: join a hub, follow its models, send parts up (sync)"),
    "db": Command("lineqa.db_cli", "the database: migrate it as its owner, the application role's password"),
    "datasets": Command("lineqa.datasets.cli", "labelled datasets: import, check, split, version, export, pool"),
    "train": Command("lineqa.training.train_cli", "train a YOLO detector on a dataset version (offline, recorded run)"),
    "evaluate": Command("lineqa.training.evaluate_cli", "mAP, per-class AP, PR curves, escape and false-reject rates"),
    "export": Command("lineqa.training.export_cli", "export a run to ONNX and check parity with its trained weights"),
    "review": Command("lineqa.review.cli", "the QA review and labelling web app, and its users and roles"),
    "demo": Command("lineqa.demo", "the whole line in minutes: a demo detector judges a batch of synthetic parts"),
}

# Errors a user can act on: printed as one line, never as a traceback. Each part's error root is listed by
# module path so that naming it here does not import the part.
USER_ERROR_ROOTS = (
    "lineqa.content_store:ContentStoreError",
    "lineqa.vision.errors:VisionError",
    "lineqa.serving.errors:ServingError",
    "lineqa.datasets.errors:DatasetError",
    "lineqa.training.errors:TrainingError",
    "lineqa.review.errors:ReviewError",
    "lineqa.fleet.errors:FleetError",
    "lineqa.db:DatabaseOpenError",
    "lineqa.db_cli:DbCommandError",
)


def _user_errors() -> tuple[type[BaseException], ...]:
    roots: list[type[BaseException]] = []
    for entry in USER_ERROR_ROOTS:
        module, _, name = entry.partition(":")
        if module in sys.modules:
            roots.append(getattr(sys.modules[module], name))
    return tuple(roots)


def _top_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lineqa",
        description="Visual quality inspection: judge parts PASS / FAIL / REVIEW with YOLO models on Triton.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="commands:\n"
        + "\n".join(f"  {name:<12}{cmd.summary}" for name, cmd in COMMANDS.items())
        + "\n\nRun 'lineqa COMMAND --help' for a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"lineqa {__version__}")
    parser.add_argument("command", choices=sorted(COMMANDS), metavar="COMMAND")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in COMMANDS:
        _top_parser().parse_args(argv[:1] or ["--help"])
        return 2
    name, rest = argv[0], argv[1:]
    module = importlib.import_module(COMMANDS[name].module)
    parser = argparse.ArgumentParser(prog=f"lineqa {name}", description=COMMANDS[name].summary)
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    module.configure(parser)
    args = parser.parse_args(rest)
    logs.configure(args.verbose)
    try:
        return int(module.run(args))
    except _user_errors() as exc:
        print(f"lineqa {name}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
