"""Configuration by environment: the variables a container or a Kubernetes pod sets become the defaults of
``lineqa serve``, ``lineqa review serve`` and ``lineqa admin``; an option on the command line still wins."""

from __future__ import annotations

import argparse
import importlib

import pytest

ENV = {
    "LINEQA_DB": "postgresql+psycopg://lineqa@db/lineqa",
    "LINEQA_TRITON_URL": "triton:8001",
    "LINEQA_HOST": "0.0.0.0",
}


def parse(module: str, argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    importlib.import_module(module).configure(parser)
    return parser.parse_args(argv)


@pytest.mark.parametrize(
    ("module", "argv", "expected"),
    [
        ("lineqa.serving.serve_cli", [], {"db": ENV["LINEQA_DB"], "triton_url": "triton:8001", "host": "0.0.0.0"}),
        ("lineqa.serving.serve_cli", ["--host", "10.0.0.5", "--db", "sqlite:///x.db"], {"host": "10.0.0.5", "db": "sqlite:///x.db"}),
        ("lineqa.review.cli", ["serve"], {"db": ENV["LINEQA_DB"], "host": "0.0.0.0"}),
        ("lineqa.serving.admin_cli", ["tenant", "list"], {"db": ENV["LINEQA_DB"]}),
    ],
)  # fmt: skip
def test_environment_gives_the_defaults(
    monkeypatch: pytest.MonkeyPatch, module: str, argv: list[str], expected: dict[str, str]
) -> None:
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    args = parse(module, argv)
    assert {key: getattr(args, key) for key in expected} == expected


def test_without_the_environment_the_defaults_are_local(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (*ENV, "LINEQA_HEALTH_ADDRESS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LINEQA_HOST", "")  # set but empty counts as unset
    serve = parse("lineqa.serving.serve_cli", [])
    assert (serve.db, serve.triton_url, serve.host) == (None, None, "127.0.0.1")
    assert parse("lineqa.review.cli", ["serve"]).host == "127.0.0.1"
    assert parse("lineqa.serving.health_cli", []).address == "localhost:50051"
