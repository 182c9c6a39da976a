"""What a bundle says: for one tenant, every model version its plants should hold (the version on the line and
any a recipe pins), each file's SHA-256 and size, each model's serving settings and the promotion that put its
version on the line, the tenant's recipes in force, and the platform models the tenant may use.

The manifest travels as canonical JSON (sorted keys, no spaces): the bytes the hub signs are the bytes the
plant checks, and the same content always has the same digest, which is how the hub tells whether anything
changed since the bundle before. Parsed strictly (unknown fields, bad names or hashes refused): a plant reads a
manifest only after its signature checked out, and still trusts no field it does not understand.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from lineqa.fleet.errors import BundleRefusedError
from lineqa.serving.model_access import model_owner

FORMAT = "lineqa.bundle/1"
_FILE_NAME = r"^[A-Za-z0-9][A-Za-z0-9_-]*(\.[A-Za-z0-9_-]+)*$"  # no path separators, no '..'
_MODEL_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$"
_SHA256 = r"^[0-9a-f]{64}$"


def canonical(data: Any) -> bytes:
    """The one byte form of a JSON value: what is hashed and signed."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BundleFile(_Strict):
    path: str = Field(pattern=_FILE_NAME, max_length=100)
    sha256: str = Field(pattern=_SHA256)
    size: int = Field(ge=0)


class BundleVersion(_Strict):
    version: int = Field(ge=1)
    files: tuple[BundleFile, ...]


class Promotion(_Strict):
    """The hub's event that put the version on the line (absent for a model never promoted: its newest)."""

    action: str
    version: int
    at: str
    by: str
    reason: str


class BundleModel(_Strict):
    name: str = Field(pattern=_MODEL_NAME)
    on_line: int = Field(ge=1)
    promotion: Promotion | None
    settings: dict[str, Any]
    versions: tuple[BundleVersion, ...]

    @model_validator(mode="after")
    def _on_line_is_held(self) -> BundleModel:
        if self.on_line not in {v.version for v in self.versions}:
            raise ValueError(f"model {self.name}: the version on the line, {self.on_line}, is not in the bundle")
        return self


class BundleRecipe(_Strict):
    recipe_id: str
    number: int = Field(ge=1)
    sha256: str = Field(pattern=_SHA256)
    yaml: str
    set_by: str
    set_at: str
    reason: str


class BundleContent(_Strict):
    format: Literal["lineqa.bundle/1"]
    tenant: str
    models: tuple[BundleModel, ...]
    recipes: tuple[BundleRecipe, ...]
    platform_models: tuple[str, ...]

    @model_validator(mode="after")
    def _only_the_tenants_models(self) -> BundleContent:
        for model in self.models:
            owner = model_owner(model.name)
            if owner is not None and owner != self.tenant:
                raise ValueError(f"model {model.name} belongs to tenant {owner}, not {self.tenant}")
            if owner is None and model.name not in self.platform_models:
                raise ValueError(f"platform model {model.name} is not one tenant {self.tenant} may use")
        return self

    def digest(self) -> str:
        return hashlib.sha256(canonical(self.model_dump(mode="json"))).hexdigest()


class Manifest(_Strict):
    number: int = Field(ge=1)
    created_at: str
    content: BundleContent

    def to_bytes(self) -> bytes:
        return canonical(self.model_dump(mode="json"))

    @classmethod
    def from_bytes(cls, data: bytes) -> Manifest:
        try:
            return cls.model_validate(json.loads(data))
        except (ValueError, ValidationError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
            raise BundleRefusedError(f"the bundle's manifest cannot be read: {exc}") from None
