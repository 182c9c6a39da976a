"""What a tenant lets its plants send up to the hub, set on the hub.

The policy is the tenant's, set once on the hub for all its plants (``lineqa hub policy set``), audited
(``fl_policies``: who, when, why; never rewritten, the newest in force), and enforced at both ends: a plant
asks for it before every upload and filters with it, so nothing the tenant did not allow leaves the plant's
network at all; the hub checks every part, decision and image against it again on arrival, so a plant with a
stale or wrong view of it cannot push more. Until a tenant sets one, nothing goes up: data leaves a factory
only by a decision someone made and can be asked about.

A policy applies to what plants send from when it is set: parts a plant scanned while the policy kept them
back are not sent later when it widens (their QA decisions still are, if decisions are allowed).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone

from sqlalchemy import Engine, select
from sqlalchemy.exc import IntegrityError

from lineqa.db import as_utc, tenant_scope
from lineqa.fleet.errors import FleetError
from lineqa.fleet.schema import policies

FLAGGED = frozenset({"FAIL", "REVIEW"})
VERDICTS = frozenset({"PASS", "FAIL", "REVIEW"})
DEFAULT_DATASET = "plant-parts"
_DATASET = re.compile(r"^[a-z0-9][a-z0-9._-]{0,127}$")


@dataclass(frozen=True)
class DataPolicy:
    """``version`` 0 is "no policy set": nothing may be sent."""

    flagged_parts: bool = False
    image_verdicts: frozenset[str] = field(default_factory=frozenset)
    decisions: bool = False
    dataset: str = DEFAULT_DATASET
    version: int = 0

    def __post_init__(self) -> None:
        unknown = set(self.image_verdicts) - VERDICTS
        if unknown:
            raise FleetError(f"image verdicts are PASS, FAIL or REVIEW, not {', '.join(sorted(unknown))}")
        if not _DATASET.match(self.dataset):
            raise FleetError(f"dataset name {self.dataset!r} must be 1-128 lower-case letters, digits, '.', '_', '-'")

    def allows_part(self, verdict: str, decided: bool) -> bool:
        """A part's record may go up: flagged (FAIL, REVIEW) with flagged parts allowed, or decided by QA with
        decisions allowed."""
        return (self.flagged_parts and verdict in FLAGGED) or (self.decisions and decided)

    def allows_image(self, verdict: str) -> bool:
        return verdict in self.image_verdicts

    def to_json(self) -> str:
        data = {"flagged_parts": self.flagged_parts, "image_verdicts": sorted(self.image_verdicts),
                "decisions": self.decisions, "dataset": self.dataset}  # fmt: skip
        return json.dumps(data, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, version: int) -> DataPolicy:
        data = json.loads(text)
        return cls(bool(data["flagged_parts"]), frozenset(data["image_verdicts"]), bool(data["decisions"]),
                   str(data["dataset"]), version)  # fmt: skip

    def describe(self) -> str:
        if not self.version:
            return "no policy: nothing is sent up"
        parts = "flagged parts" if self.flagged_parts else "no flagged parts"
        images = ", ".join(sorted(self.image_verdicts)) or "none"
        decisions = "QA decisions" if self.decisions else "no QA decisions"
        return f"policy {self.version}: {parts}, {decisions}, images of {images}, into dataset {self.dataset}"


@dataclass(frozen=True)
class PolicyEvent:
    policy: DataPolicy
    set_by: str
    set_at: datetime
    reason: str


@dataclass(frozen=True)
class PolicyStore:
    """The tenants' data policies in the hub's database (synchronous)."""

    engine: Engine

    def set(self, tenant: str, policy: DataPolicy, *, by: str, reason: str) -> DataPolicy:
        """Put ``policy`` in force for ``tenant`` (its version is given here); who and why are required."""
        if not by.strip() or not reason.strip():
            raise FleetError("a policy change needs who makes it and why (--by, --reason): the audit trail keeps both")
        row = {"tenant_id": tenant, "policy_json": policy.to_json(), "set_by": by, "reason": reason,
               "set_at": datetime.now(timezone.utc)}  # fmt: skip
        try:
            with tenant_scope(self.engine, tenant).begin() as conn:
                event_id = conn.execute(policies.insert().values(**row).returning(policies.c.event_id)).scalar_one()
        except IntegrityError as exc:
            raise FleetError(f"no tenant {tenant!r} on this hub (add it with 'lineqa admin tenant add')") from exc
        return replace(policy, version=int(event_id))

    def in_force(self, tenant: str) -> DataPolicy:
        history = self.history(tenant, newest_only=True)
        return history[0].policy if history else DataPolicy()

    def history(self, tenant: str, *, newest_only: bool = False) -> list[PolicyEvent]:
        """Every policy the tenant set, oldest first (or only the newest)."""
        p = policies.c
        query = select(policies).where(p.tenant_id == tenant)
        query = query.order_by(p.event_id.desc()).limit(1) if newest_only else query.order_by(p.event_id)
        with tenant_scope(self.engine, tenant).connect() as conn:
            rows = conn.execute(query).mappings().all()
        return [
            PolicyEvent(DataPolicy.from_json(r["policy_json"], int(r["event_id"])), r["set_by"], as_utc(r["set_at"]),
                        r["reason"])
            for r in rows
        ]  # fmt: skip
