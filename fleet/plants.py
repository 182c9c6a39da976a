"""The hub's registry of plants: which tenant each belongs to and the certificate it proves itself with.

A plant's identity is its client certificate, issued by the hub's CA (``lineqa hub plant add``); the registry
keeps the SHA-256 of that certificate, so only the certificate issued last for a plant is accepted, and
revoking the plant refuses it from its next call on. Every call a plant makes is matched here first: its
tenant comes from its registration, never from what it asks for.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from sqlalchemy import Engine, Row, select
from sqlalchemy.exc import IntegrityError

from lineqa.db import as_utc
from lineqa.fleet.errors import EnrolmentError, PlantAccessError
from lineqa.fleet.schema import plants

PLANT_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


@dataclass(frozen=True)
class Plant:
    plant_id: str
    tenant_id: str
    cert_sha256: str
    added_by: str
    added_at: datetime
    revoked_at: datetime | None


def certificate_sha256(cert_pem: bytes) -> str:
    """The SHA-256 of a certificate's DER encoding (what ``openssl x509 -fingerprint -sha256`` shows)."""
    der = x509.load_pem_x509_certificate(cert_pem).public_bytes(serialization.Encoding.DER)
    return hashlib.sha256(der).hexdigest()


def _plant(row: Row[Any]) -> Plant:
    r = row._mapping
    revoked = r["revoked_at"]
    return Plant(r["plant_id"], r["tenant_id"], r["cert_sha256"], r["added_by"], as_utc(r["added_at"]),
                 as_utc(revoked) if revoked else None)  # fmt: skip


class PlantRegistry:
    """Plants across tenants: the hub admin's and the hub service's (synchronous)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def add(self, plant_id: str, tenant: str, cert_pem: bytes, by: str) -> Plant:
        if not PLANT_ID.match(plant_id):
            raise EnrolmentError(f"plant name {plant_id!r}: use 1-64 lower-case letters, digits, '_' or '-'")
        row = {"plant_id": plant_id, "tenant_id": tenant, "cert_sha256": certificate_sha256(cert_pem),
               "added_by": by, "added_at": datetime.now(timezone.utc), "revoked_at": None}  # fmt: skip
        try:
            with self.engine.begin() as conn:
                if conn.execute(select(plants.c.plant_id).where(plants.c.plant_id == plant_id)).first():
                    raise EnrolmentError(f"plant {plant_id!r} exists already (a revoked name is not reused)")
                conn.execute(plants.insert().values(**row))
        except IntegrityError as exc:
            raise EnrolmentError(f"no tenant {tenant!r} on this hub (add it with 'lineqa admin tenant add')") from exc
        return self.get(plant_id)

    def get(self, plant_id: str) -> Plant:
        with self.engine.connect() as conn:
            row = conn.execute(select(plants).where(plants.c.plant_id == plant_id)).first()
        if row is None:
            raise PlantAccessError(f"no plant {plant_id!r}")
        return _plant(row)

    def identify(self, cert_pem: bytes) -> Plant:
        """The active plant whose certificate this is; PlantAccessError for an unknown or revoked one."""
        digest = certificate_sha256(cert_pem)
        with self.engine.connect() as conn:
            row = conn.execute(select(plants).where(plants.c.cert_sha256 == digest)).first()
        if row is None:
            raise PlantAccessError("this certificate is not a registered plant's")
        plant = _plant(row)
        if plant.revoked_at is not None:
            raise PlantAccessError(f"plant {plant.plant_id!r} was revoked")
        return plant

    def revoke(self, plant_id: str) -> Plant:
        plant = self.get(plant_id)
        if plant.revoked_at is None:
            with self.engine.begin() as conn:
                conn.execute(plants.update().where(plants.c.plant_id == plant_id)
                             .values(revoked_at=datetime.now(timezone.utc)))  # fmt: skip
        return self.get(plant_id)

    def all(self) -> list[Plant]:
        with self.engine.connect() as conn:
            return [_plant(r) for r in conn.execute(select(plants).order_by(plants.c.tenant_id, plants.c.plant_id))]
