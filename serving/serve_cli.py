"""``lineqa serve``: the inspection gateway, with an embedded Triton unless ``--triton-url`` is given.

Everything defaults to the lineqa home: models from ``<home>/models``; records, camera access and the
tenants' recipes (``lineqa recipes set``) in ``<home>/lineqa.db``. TLS is the default, with the plant
certificate from ``lineqa admin pki init`` (``<home>/pki``) unless ``--tls-cert``/``--tls-key`` name others.
``--plaintext`` is for local use and listens on loopback only; plaintext on another address takes
``--plaintext-any``, a name nobody types by accident. Every camera needs a token (``lineqa admin token
issue``), plaintext or not.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
from pathlib import Path

from lineqa.home import default_home, env_default
from lineqa.serving.access import AccessStore, TokenCache
from lineqa.serving.admission import InferenceSlots, default_concurrency
from lineqa.serving.database import database_url, open_database
from lineqa.serving.embedded_triton import EmbeddedTriton, EmbeddedTritonSettings
from lineqa.serving.errors import ServingError
from lineqa.serving.gateway import GatewaySettings, create_server, is_loopback, run_until_signal
from lineqa.serving.home_migration import home_problems
from lineqa.serving.image_store import ImagePolicy, ImageStore
from lineqa.serving.inspector import Inspector, InspectorSettings
from lineqa.serving.model_repository import ModelRepository
from lineqa.serving.model_supervisor import ModelSupervisor
from lineqa.serving.pass_sample import PassSample
from lineqa.serving.pki import PlantPki
from lineqa.serving.recipes import RecipeBook, RecipeStore
from lineqa.serving.records import RecordStore
from lineqa.serving.references import references_of
from lineqa.serving.served_models import ServedModels
from lineqa.serving.storage_calls import StorageCalls
from lineqa.serving.triton_client import TritonClient
from lineqa.serving.triton_view import InstancePlan
from lineqa.vision.image import ImageLimits

logger = logging.getLogger(__name__)


class ServeConfigError(ServingError):
    """The serve command's options do not make a runnable gateway."""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--home", type=Path, help="lineqa home (default: $LINEQA_HOME or ~/.lineqa)")
    parser.add_argument("--models", type=Path, help="model repository (default: <home>/models)")
    parser.add_argument(
        "--db",
        default=env_default("LINEQA_DB"),
        help="database URL for records, camera access and recipes (default: $LINEQA_DB, else <home>/lineqa.db)",
    )
    parser.add_argument(
        "--triton-url",
        default=env_default("LINEQA_TRITON_URL"),
        help="an external Triton's gRPC host:port (default: $LINEQA_TRITON_URL, else start one here)",
    )
    parser.add_argument(
        "--host",
        default=env_default("LINEQA_HOST", "127.0.0.1"),
        help="address to listen on, for the gateway and its metrics (default: $LINEQA_HOST, else 127.0.0.1)",
    )
    parser.add_argument("--port", type=int, default=50051, help="port to listen on (default 50051)")
    parser.add_argument("--tls-cert", type=Path, help="server certificate (PEM; default: <home>/pki/server.pem)")
    parser.add_argument("--tls-key", type=Path, help="server private key (PEM; default: <home>/pki/server.key)")
    parser.add_argument("--tls-client-ca", type=Path, help="mutual TLS: require client certificates of this CA")
    parser.add_argument("--mtls", action="store_true", help="mutual TLS with the plant CA (<home>/pki/ca.pem)")
    parser.add_argument("--plaintext", action="store_true", help="no TLS, on loopback only: for local use")
    parser.add_argument("--plaintext-any", action="store_true", help="no TLS on --host, whatever it is: avoid")
    parser.add_argument("--triton-timeout-s", type=float, default=2.0, help="deadline of each Triton call")
    parser.add_argument(
        "--storage-timeout-s",
        type=float,
        default=2.0,
        help="deadline of each call to the record database, the image store and the token check (default 2 s)",
    )
    parser.add_argument(
        "--triton-concurrency",
        type=int,
        default=0,
        help="the most inference calls in flight at Triton (fewer while Triton answers slowly); more frames wait "
        "their turn in the gateway, so that Triton's deadline measures Triton's work (default: two per model "
        "instance of the embedded server, 32 for an external Triton)",
    )
    parser.add_argument(
        "--ort-threads",
        type=int,
        default=0,
        help="embedded Triton: ONNX Runtime threads per model instance, with the model's configured instance "
        "count (default: one single-threaded instance per core)",
    )
    parser.add_argument(
        "--triton-metrics-port",
        type=int,
        default=0,
        help="embedded Triton: its Prometheus metrics on 127.0.0.1:PORT (default: a free port; they are also "
        "served with the gateway's own on --metrics-port)",
    )
    parser.add_argument("--max-pixels", type=int, default=ImageLimits().max_pixels, help="largest image accepted")
    parser.add_argument("--stream-in-flight", type=int, default=8, help="frames judged at once per stream")
    parser.add_argument("--metrics-port", type=int, default=9464, help="Prometheus /metrics port (0: off)")
    parser.add_argument("--images", type=Path, help="image store folder (default: <home>/images)")
    parser.add_argument(
        "--image-policy",
        choices=[p.value for p in ImagePolicy],
        default=ImagePolicy.FLAGGED_AND_SAMPLE.value,
        help="which parts' images to keep (default: flagged+sample, the parts the review queue shows)",
    )
    parser.add_argument(
        "--pass-sample",
        type=float,
        default=PassSample().percent,
        help="percent of PASS parts in the fixed sample whose images flagged+sample keeps (default 5; at least "
        "'lineqa review serve --pass-sample' so every sampled part the queue shows has its image)",
    )


def _settings(args: argparse.Namespace, home: Path) -> GatewaySettings:
    pki = PlantPki(home / "pki")
    if args.plaintext or args.plaintext_any:
        if args.tls_cert or args.tls_key or args.tls_client_ca or args.mtls:
            raise ServeConfigError("--plaintext cannot be combined with TLS options")
        if not (args.plaintext_any or is_loopback(args.host)):
            raise ServeConfigError(
                f"--plaintext listens on loopback only, not on {args.host}: use TLS (the default), or --host "
                "127.0.0.1; --plaintext-any serves plaintext on any address"
            )
        cert = key = client_ca = None
    else:
        cert, key = args.tls_cert or pki.server_cert, args.tls_key or pki.server_key
        if not (cert.is_file() and key.is_file()):
            raise ServeConfigError(
                f"no TLS certificate at {cert} / {key}: run 'lineqa admin pki init' (or give --tls-cert and "
                "--tls-key, or --plaintext for local use on a trusted host)"
            )
        client_ca = args.tls_client_ca or (pki.ca_cert if args.mtls else None)
    return GatewaySettings(
        host=args.host,
        port=args.port,
        plaintext_any=args.plaintext_any,
        stream_in_flight=args.stream_in_flight,
        tls_cert=cert.read_bytes() if cert else None,
        tls_key=key.read_bytes() if key else None,
        tls_client_ca=client_ca.read_bytes() if client_ca else None,
    )


async def _serve(
    inspector: Inspector, settings: GatewaySettings, tokens: TokenCache, supervisor: ModelSupervisor
) -> None:
    gateway = create_server(inspector, settings, tokens)
    supervising = asyncio.create_task(supervisor.run())
    print(f"lineqa gateway listening on {settings.host}:{gateway.port} ({'TLS' if settings.tls_cert else 'plaintext'})",
          file=sys.stderr, flush=True)  # fmt: skip
    try:
        await run_until_signal(gateway, settings.grace_s)
    finally:
        supervising.cancel()
        await inspector.triton.close()


def _embedded(args: argparse.Namespace, repository: ModelRepository) -> EmbeddedTriton:
    """The embedded Triton, started with nothing loaded (the supervisor loads what the line needs)."""
    problems = repository.check()
    if problems:
        raise ServeConfigError(f"the model repository {repository.root} cannot be served:\n  " + "\n  ".join(problems))
    embedded = EmbeddedTriton(
        repository,
        EmbeddedTritonSettings(
            ort_threads=args.ort_threads,
            metrics_port=args.triton_metrics_port,
            reserved_ports=frozenset({args.port, args.metrics_port}),
        ),
    )
    embedded.start()
    return embedded


def _concurrency(args: argparse.Namespace, repository: ModelRepository, embedded: bool) -> int:
    if args.triton_concurrency:
        return int(args.triton_concurrency)
    if not embedded:
        return 32
    wanted = [
        default_concurrency(
            InstancePlan.for_machine(s.instance_count, args.ort_threads, gpu=s.gpu).instances,
            s.max_batch_size if s.gpu else 1,
        )
        for s in map(repository.settings, repository.model_names())
    ]
    return max(wanted, default=1)


def run(args: argparse.Namespace) -> int:
    home = args.home or default_home()
    settings = _settings(args, home)
    pass_sample = PassSample(args.pass_sample)  # checked before Triton starts
    repository = ModelRepository(args.models or home / "models")
    engine = open_database(database_url(home, args.db))
    store, access, recipes = RecordStore(engine), AccessStore(engine), RecipeBook(RecipeStore(engine))
    for problem in home_problems(home):
        print(f"warning: {problem}", file=sys.stderr, flush=True)
    embedded = None if args.triton_url else _embedded(args, repository)
    inspector: Inspector | None = None
    try:
        url = embedded.endpoints.grpc_url if embedded else args.triton_url
        triton = TritonClient(url, timeout_s=args.triton_timeout_s)
        served = ServedModels()
        supervisor = ModelSupervisor(repository, recipes, served, triton, embedded)
        supervisor.prepare()
        inspector = Inspector(
            served,
            recipes,
            triton,
            store,
            InspectorSettings(
                limits=ImageLimits(max_pixels=args.max_pixels),
                triton_timeout_s=args.triton_timeout_s,
                image_policy=ImagePolicy(args.image_policy),
                pass_sample=pass_sample,
            ),
            ImageStore(args.images or home / "images"),
            slots=InferenceSlots(_concurrency(args, repository, embedded is not None), args.triton_timeout_s),
            storage=StorageCalls(args.storage_timeout_s),
            references=references_of(home),
        )
        if args.metrics_port:
            if embedded is not None:
                inspector.metrics.include_triton(embedded.endpoints.metrics_url)
            port = inspector.metrics.serve(args.host, args.metrics_port)
            print(f"lineqa metrics on http://{args.host}:{port}/metrics", file=sys.stderr, flush=True)
        if embedded is not None:
            print(f"embedded Triton metrics on {embedded.endpoints.metrics_url}, log {embedded.log_path}",
                  file=sys.stderr, flush=True)  # fmt: skip
        asyncio.run(_serve(inspector, settings, TokenCache(access), supervisor))
    finally:
        if embedded is not None:
            began = time.monotonic()
            embedded.stop()
            print(f"embedded Triton stopped in {time.monotonic() - began:.1f} s", file=sys.stderr, flush=True)
        store.close()
        if inspector is not None:
            inspector.storage.close()
    return 0
