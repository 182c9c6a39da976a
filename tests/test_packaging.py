"""Packaging: the serving runtime never pulls torch or ultralytics; the lineqa command dispatches lazily."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib.metadata import requires
from pathlib import Path

import pytest

from lineqa.cli import COMMANDS

HEAVY = ("torch", "ultralytics", "torchvision")
SERVING_PARTS = ("lineqa.serving.", "lineqa.vision.", "lineqa.review.", "lineqa.fleet.", "lineqa.demo")
SERVING_COMMANDS = [name for name, cmd in COMMANDS.items() if cmd.module.startswith(SERVING_PARTS)]


def _modules_after(code: str) -> set[str]:
    probe = f"import sys, json\n{code}\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    return set(json.loads(out.strip().splitlines()[-1]))


def test_base_install_requires_no_torch_or_ultralytics() -> None:
    base = [r for r in requires("lineqa") or [] if "extra ==" not in r]
    assert base, "lineqa's metadata lists no requirements: is it installed?"
    assert not [r for r in base if r.split()[0].split(">")[0].split("<")[0].split("=")[0] in HEAVY]
    train = [r for r in requires("lineqa") or [] if 'extra == "train"' in r]
    assert {r.split(">")[0].split("<")[0] for r in train} >= {"torch", "torchvision", "ultralytics"}


def test_import_serving_vision_review_and_fleet_never_imports_torch() -> None:
    modules = _modules_after(
        "import pkgutil, importlib, lineqa.serving, lineqa.vision, lineqa.review, lineqa.fleet\n"
        "for pkg in (lineqa.serving, lineqa.vision, lineqa.review, lineqa.fleet):\n"
        "    for m in pkgutil.iter_modules(pkg.__path__):\n"
        "        importlib.import_module(f'{pkg.__name__}.{m.name}')"
    )
    assert {"lineqa.serving.predict_cli", "lineqa.review.app", "lineqa.fleet.hub_service"} <= modules
    assert not [m for m in modules if m.split(".")[0] in HEAVY]


@pytest.mark.parametrize("command", SERVING_COMMANDS)
def test_serving_command_help_never_imports_torch(command: str) -> None:
    modules = _modules_after(
        f"from lineqa.cli import main\ntry:\n    main([{command!r}, '--help'])\nexcept SystemExit:\n    pass"
    )
    assert COMMANDS[command].module in modules
    assert not [m for m in modules if m.split(".")[0] in HEAVY]


def test_top_level_help_lists_commands_without_importing_them() -> None:
    result = subprocess.run([sys.executable, "-m", "lineqa.cli", "--help"], capture_output=True, text=True)
    assert result.returncode == 0
    for name in COMMANDS:
        assert name in result.stdout
    modules = _modules_after("from lineqa.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass")
    parts = ("lineqa.serving", "lineqa.training", "lineqa.datasets")
    assert not [m for m in modules if m.split(".")[0] in HEAVY or m.startswith(parts)]


def test_unknown_command_is_a_usage_error() -> None:
    result = subprocess.run([sys.executable, "-m", "lineqa.cli", "frobnicate"], capture_output=True, text=True)
    assert result.returncode == 2 and "invalid choice: 'frobnicate'" in result.stderr


def test_console_script_is_installed() -> None:
    exe = Path(sys.executable).with_name("lineqa")  # installed beside the environment's interpreter
    assert exe.is_file(), f"no lineqa console script at {exe}"
    result = subprocess.run([str(exe), "--version"], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.startswith("lineqa ")
