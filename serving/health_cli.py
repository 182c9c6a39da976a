"""``lineqa health``: ask a gateway's ``grpc.health.v1`` service whether it is SERVING; exit 0 if it is, 1 if not.

    lineqa health                                   # localhost:50051, TLS with <home>/pki/ca.pem
    lineqa health --address gw:50051 --server-name gateway.plant.local --ca /etc/lineqa/ca.pem
    lineqa health --service lineqa.inspection.v1.InspectionService

    lineqa health --alive                           # liveness: the gateway answers, SERVING or not

It is the container image's HEALTHCHECK and what the Kubernetes exec probes run: Kubernetes' own ``grpc:``
probe speaks plaintext only, and the gateway's camera port is TLS. SERVING means Triton and every model on the
line are ready and the record store is writable (RELIABILITY.md 4); anything else, an unreachable gateway
included, is a failure. ``--alive`` asks only whether the gateway answers at all: liveness must not depend on
Triton, or a Triton outage would restart every healthy gateway. The answer is printed on one line either
way, so a health log says why.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import grpc

from lineqa.home import default_home, env_default
from lineqa.serving.errors import ServingError
from lineqa.serving.readiness import health_status


class HealthConfigError(ServingError):
    """The health command cannot build a channel to the gateway from its options."""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.description = __doc__
    parser.add_argument("--home", type=Path, help="lineqa home (default: $LINEQA_HOME or ~/.lineqa)")
    parser.add_argument(
        "--address",
        default=env_default("LINEQA_HEALTH_ADDRESS", "localhost:50051"),
        help="gateway host:port (default: $LINEQA_HEALTH_ADDRESS, else localhost:50051)",
    )
    parser.add_argument("--ca", type=Path, help="CA of the gateway's certificate (default <home>/pki/ca.pem)")
    parser.add_argument(
        "--server-name",
        default=env_default("LINEQA_HEALTH_SERVER_NAME"),
        help="name to check the gateway's certificate against, when it does not list the address's host "
        "(default: $LINEQA_HEALTH_SERVER_NAME)",
    )
    parser.add_argument("--plaintext", action="store_true", help="for a gateway started with --plaintext")
    parser.add_argument("--service", default="", help="service to ask about (default: the whole server)")
    parser.add_argument("--alive", action="store_true", help="succeed on any answer, NOT_SERVING too (liveness)")
    parser.add_argument("--timeout-s", type=float, default=3.0, help="deadline of the check (default 3 s)")


def _channel(args: argparse.Namespace) -> grpc.Channel:
    if args.plaintext:
        return grpc.insecure_channel(args.address)
    ca = args.ca or (args.home or default_home()) / "pki" / "ca.pem"
    try:
        root = ca.read_bytes()
    except OSError as exc:
        raise HealthConfigError(f"cannot read the CA certificate {ca}: {exc.strerror}") from None
    options = [("grpc.ssl_target_name_override", args.server_name)] if args.server_name else []
    return grpc.secure_channel(args.address, grpc.ssl_channel_credentials(root), options=options)


def run(args: argparse.Namespace) -> int:
    try:
        channel = _channel(args)
    except HealthConfigError as exc:  # unhealthy, not a usage error: container engines reserve exit status 2
        print(f"lineqa health: {exc}")
        return 1
    with channel:
        status = health_status(channel, args.timeout_s, args.service)
    print(f"{args.address}{' ' + args.service if args.service else ''}: {status}")
    accepted = ("SERVING", "NOT_SERVING") if args.alive else ("SERVING",)
    return 0 if status in accepted else 1
