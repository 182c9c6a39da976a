"""Dataset versions as content-addressed manifests, and what changed between two of them.

A manifest lists every sample (its name, the SHA-256 of its image bytes, size, annotation status, boxes,
group and split) and the class map. Its canonical JSON (sorted keys, boxes rounded to 1/1000 px, samples
sorted by name) is hashed: the hash is the version's identity, so the same content is the same version
whoever snapshots it and however it was imported, and any change at all is a new one.

A sample with a reference image (its golden sample) names it by SHA-256 too, under ``reference``: a model
trained on (image, reference) pairs learnt from the reference as much as from the image, so another reference
is another version. The key is written only for a sample that has one, so every manifest made before
references existed keeps its canonical JSON, and with it its hash, to the byte.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from lineqa.content_store import ContentStore
from lineqa.datasets.model import Annotation, Box, LabelledImage

FORMAT = "lineqa-dataset-manifest/1"


@dataclass(frozen=True)
class ManifestSample:
    name: str
    sha256: str
    ext: str
    width: int
    height: int
    annotation: Annotation
    boxes: tuple[Box, ...]
    group: str | None
    split: str | None
    tenant: str  # whose image store holds the bytes (differs per sample only in a pool)
    reference: str | None = None  # SHA-256 of the golden sample's bytes, in the same tenant's store
    reference_ext: str | None = None

    def image_key(self) -> str:
        """The image's key in :class:`ContentStore` (the store builds keys the same way when it stores)."""
        return f"{self.tenant}/{self.sha256[:2]}/{self.sha256}.{self.ext}"

    def reference_key(self) -> str | None:
        if self.reference is None:
            return None
        return f"{self.tenant}/{self.reference[:2]}/{self.reference}.{self.reference_ext}"

    def labelled_image(self, store: ContentStore, name: str, group: str | None) -> LabelledImage:
        """The sample as files of ``store`` (image and reference), named and grouped as the caller shows it: a
        pool prefixes both with the tenant so that names of different tenants never collide."""
        reference_key = self.reference_key()
        reference = None if reference_key is None else store.path(self.tenant, reference_key)
        path = store.path(self.tenant, self.image_key())
        size = (self.width, self.height)
        return LabelledImage(name, path, self.boxes, self.annotation, size, group, self.split, reference)

    def to_json(self, classes: Sequence[str]) -> dict[str, Any]:
        index = {name: i for i, name in enumerate(classes)}
        data: dict[str, Any] = {
            "name": self.name,
            "image": self.sha256,
            "ext": self.ext,
            "size": [self.width, self.height],
            "annotation": self.annotation.value,
            "boxes": [[index[b.class_name], *(round(v, 3) for v in (b.x1, b.y1, b.x2, b.y2))] for b in self.boxes],
            "group": self.group,
            "split": self.split,
            "tenant": self.tenant,
        }
        if self.reference is not None:  # absent, not null: manifests without references keep their hash
            data["reference"] = {"image": self.reference, "ext": self.reference_ext}
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any], classes: Sequence[str]) -> ManifestSample:
        boxes = tuple(
            Box(classes[int(c)], float(x1), float(y1), float(x2), float(y2)) for c, x1, y1, x2, y2 in data["boxes"]
        )
        width, height = data["size"]
        reference = data.get("reference") or {}
        return cls(
            data["name"],
            data["image"],
            data["ext"],
            int(width),
            int(height),
            Annotation(data["annotation"]),
            boxes,
            data["group"],
            data["split"],
            data["tenant"],
            reference.get("image"),
            reference.get("ext"),
        )


@dataclass(frozen=True)
class Manifest:
    classes: tuple[str, ...]
    samples: tuple[ManifestSample, ...]
    provenance: dict[str, Any] = field(default_factory=dict)  # e.g. which contributions a pool merged

    def canonical_json(self) -> str:
        body = {
            "format": FORMAT,
            "classes": list(self.classes),
            "samples": [s.to_json(self.classes) for s in sorted(self.samples, key=lambda s: (s.tenant, s.name))],
            "provenance": self.provenance,
        }
        return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        body = json.loads(text)
        if body.get("format") != FORMAT:
            raise ValueError(f"not a {FORMAT} manifest")
        classes = tuple(body["classes"])
        samples = tuple(ManifestSample.from_json(s, classes) for s in body["samples"])
        return cls(classes, samples, body.get("provenance", {}))


@dataclass(frozen=True)
class ManifestDiff:
    added: tuple[str, ...]
    removed: tuple[str, ...]
    relabelled: tuple[str, ...]  # same name, other boxes or annotation status
    image_changed: tuple[str, ...]  # same name, other image bytes
    reference_changed: tuple[str, ...]  # same name, a reference added, removed or replaced
    moved: tuple[tuple[str, str | None, str | None], ...]  # (name, old split, new split)
    regrouped: tuple[str, ...]
    classes_added: tuple[str, ...]
    classes_removed: tuple[str, ...]

    @property
    def unchanged(self) -> bool:
        return not any(getattr(self, f) for f in self.__dataclass_fields__)

    def to_json(self) -> dict[str, Any]:
        return {f: list(getattr(self, f)) for f in self.__dataclass_fields__}


def _labels(sample: ManifestSample) -> tuple[Any, ...]:
    return sample.annotation, tuple(
        sorted((b.class_name, round(b.x1, 3), round(b.y1, 3), round(b.x2, 3), round(b.y2, 3)) for b in sample.boxes)
    )


def diff(old: Manifest, new: Manifest) -> ManifestDiff:
    """What a reviewer needs to know before training on ``new`` instead of ``old``."""
    before = {(s.tenant, s.name): s for s in old.samples}
    after = {(s.tenant, s.name): s for s in new.samples}
    both = sorted(before.keys() & after.keys())
    one_tenant = len({tenant for tenant, _ in before.keys() | after.keys()}) <= 1

    def label(key: tuple[str, str]) -> str:  # a pool's samples are named with their tenant
        return key[1] if one_tenant else "/".join(key)

    return ManifestDiff(
        added=tuple(label(k) for k in sorted(after.keys() - before.keys())),
        removed=tuple(label(k) for k in sorted(before.keys() - after.keys())),
        relabelled=tuple(label(k) for k in both if _labels(before[k]) != _labels(after[k])),
        image_changed=tuple(label(k) for k in both if before[k].sha256 != after[k].sha256),
        reference_changed=tuple(label(k) for k in both if before[k].reference != after[k].reference),
        moved=tuple((label(k), before[k].split, after[k].split) for k in both if before[k].split != after[k].split),
        regrouped=tuple(label(k) for k in both if before[k].group != after[k].group),
        classes_added=tuple(c for c in new.classes if c not in old.classes),
        classes_removed=tuple(c for c in old.classes if c not in new.classes),
    )
