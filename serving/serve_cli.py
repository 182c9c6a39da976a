"""``lineqa serve``: the inspection gateway, with an embedded Triton unless ``--triton-url`` is given.

Everything defaults to the lineqa home: models from ``<home>/models``, recipes from ``<home>/recipes``,
records in ``<home>/records.db``. TLS is the default; ``--plaintext`` is for local use only and must be
asked for.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from lineqa.home import default_home
from serving.embedded_triton import EmbeddedTriton
from serving.errors import ServingError
from serving.gateway import GatewaySettings, create_server, run_until_signal
from serving.image_store import ImagePolicy, ImageStore
from serving.inspector import Inspector, InspectorSettings
from serving.model_repository import ModelRepository
from serving.recipes import RecipeBook
from serving.records import RecordStore, sqlite_url
from serving.triton_client import TritonClient
from vision.image import ImageLimits

logger = logging.getLogger(__name__)


class ServeConfigError(ServingError):
    """The serve command's options do not make a runnable gateway."""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--home", type=Path, help="lineqa home (default: $LINEQA_HOME or ~/.lineqa)")
    parser.add_argument("--models", type=Path, help="model repository (default: <home>/models)")
    parser.add_argument("--recipes", type=Path, help="recipe folder (default: <home>/recipes)")
    parser.add_argument("--db", help="records database URL (default: SQLite <home>/records.db)")
    parser.add_argument("--triton-url", help="an external Triton's gRPC host:port (default: start one here)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=50051, help="port to listen on (default 50051)")
    parser.add_argument("--tls-cert", type=Path, help="server certificate (PEM)")
    parser.add_argument("--tls-key", type=Path, help="server private key (PEM)")
    parser.add_argument("--tls-client-ca", type=Path, help="require client certificates signed by this CA")
    parser.add_argument("--plaintext", action="store_true", help="no TLS: only for local use on a trusted host")
    parser.add_argument("--triton-timeout-s", type=float, default=2.0, help="deadline of each Triton call")
    parser.add_argument("--max-pixels", type=int, default=ImageLimits().max_pixels, help="largest image accepted")
    parser.add_argument("--stream-in-flight", type=int, default=8, help="frames judged at once per stream")
    parser.add_argument("--metrics-port", type=int, default=9464, help="Prometheus /metrics port (0: off)")
    parser.add_argument("--images", type=Path, help="image store folder (default: <home>/images)")
    parser.add_argument(
        "--image-policy", choices=[p.value for p in ImagePolicy], default="flagged", help="which parts' images to keep"
    )


def _settings(args: argparse.Namespace) -> GatewaySettings:
    if args.plaintext == bool(args.tls_cert or args.tls_key):
        raise ServeConfigError("give --tls-cert and --tls-key, or --plaintext for local use (not both)")
    if not args.plaintext and not (args.tls_cert and args.tls_key):
        raise ServeConfigError("TLS needs both --tls-cert and --tls-key")
    return GatewaySettings(
        host=args.host,
        port=args.port,
        stream_in_flight=args.stream_in_flight,
        tls_cert=args.tls_cert.read_bytes() if args.tls_cert else None,
        tls_key=args.tls_key.read_bytes() if args.tls_key else None,
        tls_client_ca=args.tls_client_ca.read_bytes() if args.tls_client_ca else None,
    )


async def _serve(inspector: Inspector, settings: GatewaySettings, embedded: EmbeddedTriton | None) -> None:
    gateway = create_server(inspector, settings)
    supervisor = asyncio.create_task(embedded.supervise()) if embedded else None
    print(f"lineqa gateway listening on {settings.host}:{gateway.port} ({'TLS' if settings.tls_cert else 'plaintext'})",
          file=sys.stderr, flush=True)  # fmt: skip
    try:
        await run_until_signal(gateway, settings.grace_s)
    finally:
        if supervisor:
            supervisor.cancel()
        await inspector.triton.close()


def run(args: argparse.Namespace) -> int:
    home = args.home or default_home()
    settings = _settings(args)
    repository = ModelRepository(args.models or home / "models")
    recipes = RecipeBook(args.recipes or home / "recipes")
    home.mkdir(parents=True, exist_ok=True)
    store = RecordStore(args.db or sqlite_url(home / "records.db"))
    embedded = None
    triton_url = args.triton_url
    if not triton_url:
        problems = repository.check()
        if problems:
            raise ServeConfigError(
                f"the model repository {repository.root} cannot be served:\n  " + "\n  ".join(problems)
            )
        embedded = EmbeddedTriton(repository)
        triton_url = embedded.start().grpc_url
    try:
        inspector = Inspector(
            repository,
            recipes,
            TritonClient(triton_url, timeout_s=args.triton_timeout_s),
            store,
            InspectorSettings(
                limits=ImageLimits(max_pixels=args.max_pixels),
                triton_timeout_s=args.triton_timeout_s,
                image_policy=ImagePolicy(args.image_policy),
            ),
            ImageStore(args.images or home / "images"),
        )
        if args.metrics_port:
            port = inspector.metrics.serve(args.host, args.metrics_port)
            print(f"lineqa metrics on http://{args.host}:{port}/metrics", file=sys.stderr, flush=True)
        asyncio.run(_serve(inspector, settings, embedded))
    finally:
        if embedded is not None:
            embedded.stop()
        store.close()
    return 0
