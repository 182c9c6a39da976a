"""A plant's link to its hub, kept in ``<home>/plant``:

link.json            the hub's address, this plant's name and its tenant
hub-ca.pem           the hub CA's certificate: the only one this plant trusts for the hub
plant.pem, plant.key this plant's client certificate and key (owner-only)
bundle-key.pem       the hub's bundle-signing public key, pinned: bundles signed by any other are refused
installed.json       the bundle installed last (its signed manifest): the models the line runs on
downloads/           partly downloaded files, named by their SHA-256, resumed where they stopped
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import grpc
from sqlalchemy import Engine

from lineqa.fleet.enrolment import Enrolment
from lineqa.fleet.errors import EnrolmentError, FleetError
from lineqa.home import private_folder
from lineqa.serving.access import AccessStore

MAX_MESSAGE_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class ChannelSettings:
    """How the plant talks to the hub: a dead or half-open link is noticed by keepalive pings (one every
    ``keepalive_s``, dropped after ``keepalive_timeout_s`` without an answer); the hub allows one a second."""

    keepalive_s: float = 10.0
    keepalive_timeout_s: float = 5.0

    def options(self) -> list[tuple[str, int]]:
        return [
            ("grpc.keepalive_time_ms", int(self.keepalive_s * 1000)),
            ("grpc.keepalive_timeout_ms", int(self.keepalive_timeout_s * 1000)),
            ("grpc.http2.ping_timeout_ms", int(self.keepalive_timeout_s * 1000)),
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.http2.max_pings_without_data", 0),
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ]


@dataclass(frozen=True)
class PlantLink:
    folder: Path
    hub: str
    plant: str
    tenant: str

    @classmethod
    def of(cls, home: Path) -> PlantLink:
        folder = home / "plant"
        try:
            data = json.loads((folder / "link.json").read_text())
        except FileNotFoundError:
            raise FleetError(f"{home} has not joined a hub: run 'lineqa plant join ENROLMENT-FILE' first") from None
        return cls(folder, data["hub"], data["plant"], data["tenant"])

    @property
    def bundle_key(self) -> bytes:
        return (self.folder / "bundle-key.pem").read_bytes()

    @property
    def installed(self) -> Path:
        return self.folder / "installed.json"

    @property
    def downloads(self) -> Path:
        return private_folder(self.folder / "downloads")

    def credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(
            root_certificates=(self.folder / "hub-ca.pem").read_bytes(),
            private_key=(self.folder / "plant.key").read_bytes(),
            certificate_chain=(self.folder / "plant.pem").read_bytes(),
        )

    def channel(self, settings: ChannelSettings, hub: str | None = None) -> grpc.Channel:
        """A channel to the hub (``hub`` overrides the address joined with, e.g. through a proxy)."""
        return grpc.secure_channel(hub or self.hub, self.credentials(), options=settings.options())


def join(home: Path, enrolment: Enrolment, engine: Engine, hub: str | None = None) -> PlantLink:
    """Install ``enrolment`` into ``<home>/plant`` and make sure the plant's database knows its tenant. Joining
    again as the same plant (a new certificate) replaces the files; a home joined as another plant or tenant
    is refused."""
    folder = private_folder(home / "plant")
    link = {"hub": hub or enrolment.hub, "plant": enrolment.plant, "tenant": enrolment.tenant}
    current = folder / "link.json"
    if current.is_file():
        before = json.loads(current.read_text())
        if (before["plant"], before["tenant"]) != (enrolment.plant, enrolment.tenant):
            raise EnrolmentError(f"{home} is plant {before['plant']!r} of tenant {before['tenant']!r} already; "
                                 "a plant home joins one hub as one plant")  # fmt: skip
    for name, text, secret in (
        ("hub-ca.pem", enrolment.hub_ca_pem, False),
        ("plant.pem", enrolment.cert_pem, False),
        ("plant.key", enrolment.key_pem, True),
        ("bundle-key.pem", enrolment.bundle_key_pem, False),
        ("link.json", json.dumps(link, indent=2) + "\n", False),
    ):
        _write(folder / name, text, secret)
    access = AccessStore(engine)
    if enrolment.tenant not in {t for t, _ in access.tenants()}:
        access.add_tenant(enrolment.tenant)
    return PlantLink.of(home)


def _write(path: Path, text: str, secret: bool) -> None:
    staging = path.with_name(f".{path.name}.new")
    fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if secret else 0o644)
    with os.fdopen(fd, "w") as out:
        out.write(text)
        out.flush()
        os.fsync(out.fileno())
    os.replace(staging, path)
