"""RELIABILITY.md 15: TLS unless plaintext is asked for, and plaintext only on loopback unless
``--plaintext-any`` says otherwise: in ``lineqa serve``'s options and in the gateway itself, whoever builds it."""

from __future__ import annotations

import asyncio
import ipaddress
import os
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from lineqa.serving.access import AccessStore, TokenCache
from lineqa.serving.database import open_database, sqlite_url
from lineqa.serving.errors import ServingError
from lineqa.serving.gateway import GatewaySettings, create_server, is_loopback
from lineqa.serving.inspector import Inspector
from lineqa.serving.recipes import RecipeBook, RecipeStore
from lineqa.serving.records import RecordStore
from lineqa.serving.served_models import ServedModels
from lineqa.serving.triton_client import TritonClient


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("127.0.0.9", True), ("::1", True), ("[::1]", True), ("localhost", True),
     ("0.0.0.0", False), ("::", False), ("10.0.0.5", False), ("gateway.plant.local", False)],
)  # fmt: skip
def test_what_counts_as_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def plaintext_gateway(tmp_path: Path, host: str, plaintext_any: bool = False) -> list[str]:
    """Build a plaintext gateway on ``host`` (port 0), in an event loop as gRPC's asyncio server wants it; the
    addresses it bound."""
    engine = open_database(sqlite_url(tmp_path / "lineqa.db"))
    inspector = Inspector(
        ServedModels(),
        RecipeBook(RecipeStore(engine)),
        TritonClient("127.0.0.1:1"),
        RecordStore(engine),
    )
    settings = GatewaySettings(host=host, port=0, plaintext_any=plaintext_any)

    async def bind() -> list[str]:
        gateway = create_server(inspector, settings, TokenCache(AccessStore(engine)))
        connections = psutil.Process().net_connections("inet")
        bound = [c.laddr.ip for c in connections if c.laddr.port == gateway.port]
        await gateway.server.stop(None)
        return bound

    try:
        return asyncio.run(bind())
    finally:
        engine.dispose()


def test_the_gateway_refuses_plaintext_off_loopback(tmp_path: Path) -> None:
    with pytest.raises(ServingError, match="loopback only"):
        plaintext_gateway(tmp_path, "0.0.0.0")
    bound = [ipaddress.ip_address(ip) for ip in plaintext_gateway(tmp_path, "127.0.0.1")]
    assert bound and all((getattr(ip, "ipv4_mapped", None) or ip).is_loopback for ip in bound), bound
    assert plaintext_gateway(tmp_path, "0.0.0.0", plaintext_any=True)  # asked for by its unmistakable name


def serve(tmp_path: Path, *args: str, host: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LINEQA_HOST": host} if host else dict(os.environ)
    cmd = [sys.executable, "-m", "lineqa.cli", "serve", "--home", str(tmp_path), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)


@pytest.mark.parametrize(
    ("args", "host"),
    [
        (("--plaintext", "--host", "0.0.0.0"), None),
        (("--plaintext",), "0.0.0.0"),
        (("--plaintext", "--host", "::"), None),
    ],
)
def test_lineqa_serve_plaintext_stays_on_loopback(tmp_path: Path, args: tuple[str, ...], host: str | None) -> None:
    """An address from the command line or the image's LINEQA_HOST alike: refused before anything starts."""
    done = serve(tmp_path, *args, "--port", "0", host=host)
    assert done.returncode == 2 and "--plaintext listens on loopback only" in done.stderr, done.stderr
    assert "--plaintext-any" in done.stderr and "Traceback" not in done.stderr


def test_lineqa_serve_without_tls_options_wants_certificates(tmp_path: Path) -> None:
    done = serve(tmp_path, "--port", "0", host="0.0.0.0")
    assert done.returncode == 2 and "no TLS certificate" in done.stderr
