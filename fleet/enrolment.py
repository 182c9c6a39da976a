"""Adding a plant to the hub, and the plant joining it: one enrolment file carried from the one to the other.

``lineqa hub plant add NAME --tenant T`` (on the hub, with its CA key) issues the plant's client certificate,
registers it, and writes an enrolment file: the hub's address, the hub CA's certificate (to check the hub), the
plant's certificate and private key, and the hub's bundle-signing public key (to check bundles). ``lineqa plant
join FILE`` (on the plant) installs it into ``<home>/plant`` and the file can be deleted: it holds the plant's
key, so it is written owner-only and should travel like a password (an admin's USB stick, a secrets tool).
The key is made on the hub so that joining is one file and one command; a plant that must never have its key
leave it is not supported yet (that is a certificate signing request; see the README).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError
from sqlalchemy import Engine

from lineqa.fleet.errors import EnrolmentError
from lineqa.fleet.plants import PlantRegistry
from lineqa.fleet.signing import public_pem, signing_key
from lineqa.serving.pki import PlantPki, issue

FORMAT = "lineqa.plant-enrolment/1"


def bundle_key_path(hub_home: Path) -> Path:
    """Where the hub keeps its bundle-signing key (see :mod:`lineqa.fleet.signing`)."""
    return hub_home / "hub" / "bundle-signing.key"


class Enrolment(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    format: Literal["lineqa.plant-enrolment/1"]
    plant: str
    tenant: str
    hub: str  # host:port, a name the hub's server certificate carries
    hub_ca_pem: str
    cert_pem: str
    key_pem: str
    bundle_key_pem: str


def enrol(hub_home: Path, engine: Engine, plant: str, tenant: str, hub: str, *, by: str,
          ca_dir: Path | None = None) -> Enrolment:  # fmt: skip
    """Issue ``plant``'s certificate with the hub's CA, register it for ``tenant``, and return its enrolment."""
    pki = PlantPki(hub_home / "pki", ca_dir)
    pair = issue(pki.ca(), plant, client=True)
    PlantRegistry(engine).add(plant, tenant, pair.cert_pem, by)
    return Enrolment(
        format=FORMAT, plant=plant, tenant=tenant, hub=hub, hub_ca_pem=pki.ca_cert.read_text(),
        cert_pem=pair.cert_pem.decode(), key_pem=pair.key_pem.decode(),
        bundle_key_pem=public_pem(signing_key(bundle_key_path(hub_home))).decode(),
    )  # fmt: skip


def write_enrolment(enrolment: Enrolment, path: Path) -> None:
    """Write the file owner-only; an existing file is never overwritten (it may be another plant's)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise EnrolmentError(f"{path} exists already: choose another --out") from None
    with os.fdopen(fd, "w") as out:
        out.write(enrolment.model_dump_json(indent=2) + "\n")


def read_enrolment(path: Path) -> Enrolment:
    try:
        return Enrolment.model_validate(json.loads(path.read_text()))
    except (OSError, ValueError, ValidationError) as exc:
        raise EnrolmentError(f"{path} is not a lineqa plant enrolment file: {exc}") from None
