"""The tenant dataset catalog: working datasets that imports and reviews change, and immutable versions.

A :class:`Catalog` is opened for one tenant and every query it makes is filtered on that tenant, so a tenant
cannot name, list, read or export another tenant's datasets or images: asking for one gives the same "no
such dataset" as asking for one that does not exist. Its queries also run in the tenant's database scope
(:func:`lineqa.db.tenant_scope`), where PostgreSQL's row-level security enforces the same. The only way across
tenants is the pool (:mod:`lineqa.datasets.pool`), built from versions their owners consented to contribute.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, func, select, update
from sqlalchemy.exc import IntegrityError

from lineqa.content_store import RESERVED_TENANT_IDS, TENANT_ID, ContentStore
from lineqa.datasets.clusters import require_member
from lineqa.datasets.errors import DatasetError, DatasetNotFoundError
from lineqa.datasets.manifest import Manifest, ManifestSample
from lineqa.datasets.model import Annotation, Box, ImportedDataset, LabelledImage
from lineqa.datasets.probe import probe_image
from lineqa.datasets.schema import contributions, datasets, images, samples, versions
from lineqa.db import tenant_scope
from lineqa.progress import ProgressFn

logger = logging.getLogger(__name__)

_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,127}$")
_EXTENSIONS = {"jpg": "jpg", "jpeg": "jpg", "png": "png", "bmp": "bmp", "tif": "tif", "tiff": "tif", "webp": "webp"}


class ImportRefusedError(DatasetError):
    """A source with problems: nothing of it was imported."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        super().__init__(f"nothing imported: {problems[0]}{more}; fix the source or import with --skip-bad")


@dataclass(frozen=True)
class ImportReport:
    added: int
    updated: int
    unchanged: int
    skipped: tuple[str, ...]  # images or records not imported, each with its reason
    classes: tuple[str, ...]


@dataclass(frozen=True)
class VersionInfo:
    dataset: str
    number: int
    sha256: str
    note: str
    created_at: datetime
    images: int


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _boxes_json(boxes: Iterable[Box]) -> str:
    """Boxes as stored: floats to 1/1000 px, so an unchanged label compares equal however it was typed."""
    return json.dumps([[b.class_name, *(round(float(v), 3) for v in (b.x1, b.y1, b.x2, b.y2))] for b in boxes])


def _boxes(text: str) -> tuple[Box, ...]:
    return tuple(Box(c, float(x1), float(y1), float(x2), float(y2)) for c, x1, y1, x2, y2 in json.loads(text))


def _state(sample: ManifestSample) -> tuple[Any, ...]:
    """What an import compares to tell an unchanged sample from an updated one."""
    return (
        sample.sha256,
        sample.annotation.value,
        _boxes_json(sample.boxes),
        sample.group,
        sample.split,
        sample.reference,
    )


def _row_state(row: dict[str, Any]) -> tuple[Any, ...]:
    """The same of a sample row about to be written."""
    fields = ("sha256", "annotation", "boxes_json", "group_id", "split", "reference_sha256")
    return tuple(row[field] for field in fields)


def _check_name(name: str) -> None:
    if not _NAME.match(name):
        raise DatasetError(f"dataset name {name!r} must be 1-128 lower-case letters, digits, '.', '_' or '-'")


def parse_ref(ref: str) -> tuple[str, str, str | None]:
    """``tenant/name[@version]`` → (tenant, name, version or None); version is a number, ``latest`` or a
    manifest hash prefix."""
    head, _, version = ref.partition("@")
    tenant, _, name = head.partition("/")
    if not tenant or not name:
        raise DatasetError(f"dataset reference {ref!r} is not <tenant>/<name>[@<version>]")
    return tenant, name, version or None


class Catalog:
    def __init__(self, engine: Engine, store: ContentStore, tenant: str) -> None:
        if not TENANT_ID.match(tenant) or tenant in RESERVED_TENANT_IDS:
            raise DatasetError(f"invalid tenant id {tenant!r}")
        self.engine = tenant_scope(engine, tenant)
        self.store = store
        self.tenant = tenant

    # -- working datasets -------------------------------------------------------------------------------

    def _dataset_row(self, name: str, classes: Iterable[str]) -> dict[str, Any]:
        return {"tenant_id": self.tenant, "name": name, "classes_json": json.dumps(list(classes)), "created_at": _now()}

    def create(self, name: str, classes: Iterable[str] = ()) -> None:
        _check_name(name)
        try:
            with self.engine.begin() as conn:
                conn.execute(datasets.insert().values(**self._dataset_row(name, classes)))
        except IntegrityError:
            raise DatasetError(f"dataset {self.tenant}/{name} exists already") from None

    def names(self) -> list[str]:
        query = select(datasets.c.name).where(datasets.c.tenant_id == self.tenant).order_by(datasets.c.name)
        with self.engine.connect() as conn:
            return list(conn.execute(query).scalars())

    def classes(self, name: str) -> list[str]:
        query = select(datasets.c.classes_json).where(datasets.c.tenant_id == self.tenant, datasets.c.name == name)
        with self.engine.connect() as conn:
            found = conn.execute(query).scalar()
        if found is None:
            raise DatasetNotFoundError(f"tenant {self.tenant!r} has no dataset {name!r}")
        return list(json.loads(found))

    def import_images(
        self,
        name: str,
        imported: ImportedDataset,
        *,
        prefix: str = "",
        progress: ProgressFn | None = None,
        skip_bad: bool = False,
        source: str | None = None,
    ) -> ImportReport:
        """Store the images (once each) and put their labels into the working dataset ``name`` (created when
        new). A sample with a name already there is replaced.

        A source with problems (a record the importer could not read, an unreadable image) imports nothing
        and raises :class:`ImportRefusedError` listing them all, unless ``skip_bad``: then the rest is
        imported and the problems are reported. The rows are written in one transaction, so an import is
        recorded whole or not at all. ``source`` is recorded as where the samples came from (default: the
        importer's format and path). A sample's reference image is stored like any image: once, however
        many samples name the same bytes (and once if it is a sample of its own as well).
        """
        new = name not in self.names()
        if new:
            _check_name(name)
        classes = list(imported.classes) if new else self.classes(name)
        classes += [c for c in imported.classes if c not in classes]
        classes += sorted({b.class_name for im in imported.images for b in im.boxes} - set(classes))
        skipped = list(imported.problems)
        current = {} if new else {s.name: s for s in self.working_samples(name)}
        source = (source or f"{imported.format}:{imported.root}")[:512]
        new_images: dict[str, dict[str, Any]] = {}
        inserts, updates = [], []
        unchanged = 0
        for done, image in enumerate(imported.images, start=1):
            if progress:
                progress(done, len(imported.images))
            try:
                sha256, image_row = self._store_image(image.path)
            except (OSError, DatasetError) as exc:
                skipped.append(f"{image.name}: {exc}")
                continue
            try:
                reference = None if image.reference is None else self._store_image(image.reference)
            except (OSError, DatasetError) as exc:
                skipped.append(f"{image.name}: its reference {image.reference}: {exc}")
                continue
            new_images.setdefault(sha256, image_row)
            if reference is not None:
                new_images.setdefault(*reference)
            row: dict[str, Any] = {
                "name": f"{prefix}{image.name}",
                "sha256": sha256,
                "annotation": (Annotation.BOXES if image.boxes else image.annotation).value,
                "boxes_json": _boxes_json(image.boxes),
                "group_id": image.group,
                "split": image.split,
                "source": source,
                "updated_at": _now(),
                "reference_sha256": None if reference is None else reference[0],
            }
            before = current.get(row["name"])
            if before is None:
                inserts.append(row)
            elif _state(before) == _row_state(row):
                unchanged += 1
            else:
                updates.append(row)
        with self.engine.begin() as conn:
            known = set(
                conn.execute(
                    select(images.c.sha256).where(
                        images.c.tenant_id == self.tenant, images.c.sha256.in_(list(new_images))
                    )
                ).scalars()
            )
            fresh = [row for sha, row in new_images.items() if sha not in known]
            if skipped and not skip_bad:
                raise ImportRefusedError(skipped)
            if new:
                conn.execute(datasets.insert().values(**self._dataset_row(name, classes)))
            if fresh:
                conn.execute(images.insert(), fresh)
            if inserts:
                conn.execute(samples.insert(), [{"tenant_id": self.tenant, "dataset": name, **r} for r in inserts])
            for row in updates:
                conn.execute(update(samples).where(*self._sample_key(name, row["name"])).values(**row))
            conn.execute(
                update(datasets)
                .where(datasets.c.tenant_id == self.tenant, datasets.c.name == name)
                .values(classes_json=json.dumps(classes))
            )
        return ImportReport(len(inserts), len(updates), unchanged, tuple(skipped), tuple(classes))

    def add_sample(self, name: str, image: LabelledImage, source: str) -> None:
        """Add or replace one sample (a reviewed part, a labeller's fix) in the working dataset; ``source`` is
        recorded as its origin (e.g. ``review:<record id>``)."""
        report = self.import_images(name, ImportedDataset(source, Path(source), [], [image]), source=source)
        if report.skipped:
            raise DatasetError(report.skipped[0])

    def set_splits(self, name: str, assignment: dict[str, str]) -> None:
        self.classes(name)  # the dataset must be this tenant's
        with self.engine.begin() as conn:
            for sample_name, split in assignment.items():
                conn.execute(update(samples).where(*self._sample_key(name, sample_name)).values(split=split))

    def sources(self, name: str) -> dict[str, str]:
        """Where each working sample came from (an import's format and path, or a review), by sample name."""
        self.classes(name)
        query = select(samples.c.name, samples.c.source).where(
            samples.c.tenant_id == self.tenant, samples.c.dataset == name
        )
        with self.engine.connect() as conn:
            return {n: s for n, s in conn.execute(query)}

    def working_samples(self, name: str) -> list[ManifestSample]:
        self.classes(name)
        references = images.alias("reference_images")
        query = (
            select(samples, images.c.ext, images.c.width, images.c.height, references.c.ext.label("reference_ext"))
            .join(images, (images.c.tenant_id == samples.c.tenant_id) & (images.c.sha256 == samples.c.sha256))
            .outerjoin(
                references,
                (references.c.tenant_id == samples.c.tenant_id) & (references.c.sha256 == samples.c.reference_sha256),
            )
            .where(samples.c.tenant_id == self.tenant, samples.c.dataset == name)
            .order_by(samples.c.name)
        )
        with self.engine.connect() as conn:
            return [
                ManifestSample(
                    r.name,
                    r.sha256,
                    r.ext,
                    r.width,
                    r.height,
                    Annotation(r.annotation),
                    _boxes(r.boxes_json),
                    r.group_id,
                    r.split,
                    self.tenant,
                    r.reference_sha256,
                    r.reference_ext,
                )
                for r in conn.execute(query)
            ]

    # -- versions ---------------------------------------------------------------------------------------

    def snapshot(self, name: str, note: str = "") -> VersionInfo:
        """Freeze the working dataset as a version; the same content as an existing version is that version."""
        manifest = Manifest(tuple(self.classes(name)), tuple(self.working_samples(name)))
        with self.engine.begin() as conn:
            number = self._store_version(conn, name, manifest, note)
        return self.version_info(name, str(number))

    def revise(self, name: str, version: str | None, sample: str, boxes: Iterable[Box], note: str = "") -> VersionInfo:
        """A new version: ``version`` with one sample's boxes replaced (none marks it a background image).

        ``version`` itself never changes (versions are immutable; a model may have trained on it). The working
        dataset gets the same fix when it holds the sample, so the next snapshot keeps it.
        """
        manifest = self.manifest(name, version)
        found = [s for s in manifest.samples if s.name == sample]
        if not found:
            raise DatasetNotFoundError(f"{self.tenant}/{name}@{version or 'latest'} has no sample {sample!r}")
        boxes = _boxes(_boxes_json(boxes))  # as stored: floats to 1/1000 px, so the hash is the stored content's
        unknown = sorted({b.class_name for b in boxes} - set(manifest.classes))
        if unknown:
            raise DatasetError(f"{self.tenant}/{name} has no class {', '.join(map(repr, unknown))}")
        annotation = Annotation.BOXES if boxes else Annotation.BACKGROUND
        fixed = replace(found[0], boxes=boxes, annotation=annotation)
        revised = Manifest(
            manifest.classes, tuple(fixed if s.name == sample else s for s in manifest.samples), manifest.provenance
        )
        with self.engine.begin() as conn:  # the working fix and the new version commit together
            conn.execute(
                update(samples)
                .where(*self._sample_key(name, sample))
                .values(annotation=annotation.value, boxes_json=_boxes_json(boxes), updated_at=_now())
            )
            number = self._store_version(conn, name, revised, note)
        return self.version_info(name, str(number))

    def _store_version(self, conn: Connection, name: str, manifest: Manifest, note: str) -> int:
        """The number of the version with this manifest, stored as the next one when new."""
        digest = manifest.sha256
        key = self._dataset_key(versions, name)
        existing = conn.execute(select(versions.c.number).where(*key, versions.c.manifest_sha256 == digest)).scalar()
        if existing is not None:
            return int(existing)
        number = int(conn.execute(select(func.coalesce(func.max(versions.c.number), 0)).where(*key)).scalar_one()) + 1
        conn.execute(
            versions.insert().values(
                tenant_id=self.tenant,
                dataset=name,
                number=number,
                manifest_sha256=digest,
                manifest_json=manifest.canonical_json(),
                note=note,
                created_at=_now(),
            )
        )
        return number

    def versions(self, name: str) -> list[VersionInfo]:
        self.classes(name)
        query = select(versions).where(*self._dataset_key(versions, name)).order_by(versions.c.number)
        with self.engine.connect() as conn:
            return [self._info(r) for r in conn.execute(query)]

    def version_info(self, name: str, version: str | None) -> VersionInfo:
        return self._info(self._version_row(name, version))

    def manifest(self, name: str, version: str | None = None) -> Manifest:
        return Manifest.from_json(self._version_row(name, version).manifest_json)

    def _version_row(self, name: str, version: str | None) -> Any:
        self.classes(name)
        query = select(versions).where(*self._dataset_key(versions, name))
        if version in (None, "latest"):
            query = query.order_by(versions.c.number.desc()).limit(1)
        elif version.isdigit():
            query = query.where(versions.c.number == int(version))
        elif re.fullmatch(r"[0-9a-f]{6,64}", version):
            query = query.where(versions.c.manifest_sha256.startswith(version))
        else:
            raise DatasetError(f"version {version!r} is not a number, 'latest' or a manifest hash prefix")
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        if len(rows) != 1:
            what = "is ambiguous" if rows else "does not exist"
            raise DatasetNotFoundError(f"version {version or 'latest'} of {self.tenant}/{name} {what}")
        return rows[0]

    @staticmethod
    def _info(row: Any) -> VersionInfo:
        count = len(json.loads(row.manifest_json)["samples"])
        return VersionInfo(row.dataset, row.number, row.manifest_sha256, row.note, row.created_at, count)

    # -- images of a version ----------------------------------------------------------------------------

    def labelled_images(self, manifest: Manifest) -> list[LabelledImage]:
        """The manifest's samples as files of this tenant's image store (for export and checks)."""
        out = []
        for s in manifest.samples:
            if s.tenant != self.tenant:
                raise DatasetNotFoundError(f"sample {s.name} is not an image of tenant {self.tenant!r}")
            out.append(s.labelled_image(self.store, s.name, s.group))
        return out

    # -- consent to pool --------------------------------------------------------------------------------

    def contribute(self, name: str, version: str | None, by: str, cluster: str | None = None) -> VersionInfo:
        """Record this tenant's consent (who, when) to put a version into future pools: the platform's, or
        with ``cluster`` that cluster's, which only a member may contribute to (to anyone else the cluster
        does not exist)."""
        info = self.version_info(name, version)
        if cluster is not None:
            require_member(self.engine, cluster, self.tenant)
        with self.engine.begin() as conn:
            conn.execute(
                contributions.insert().values(
                    tenant_id=self.tenant,
                    dataset=name,
                    number=info.number,
                    consented_by=by,
                    consented_at=_now(),
                    cluster=cluster or "",
                )
            )
        return info

    def withdraw(self, name: str, version: str | None, by: str = "", cluster: str | None = None) -> int:
        """Withdraw consent for a version (from the platform pool, or from ``cluster``'s): pools built from now
        on leave it out (built ones stay as they are, immutable and recorded). Returns how many consents were
        withdrawn."""
        info = self.version_info(name, version)
        statement = (
            update(contributions)
            .where(
                contributions.c.tenant_id == self.tenant,
                contributions.c.dataset == name,
                contributions.c.number == info.number,
                contributions.c.cluster == (cluster or ""),
                contributions.c.withdrawn_at.is_(None),
            )
            .values(withdrawn_at=_now(), withdrawn_by=by or self.tenant)
        )
        with self.engine.begin() as conn:
            withdrawn = conn.execute(statement).rowcount
        if not withdrawn:
            where = f" to cluster {cluster!r}" if cluster else ""
            raise DatasetError(f"{self.tenant}/{name}@{info.number} has no consent{where} to withdraw")
        return int(withdrawn)

    # -- helpers ----------------------------------------------------------------------------------------

    def _store_image(self, path: Path) -> tuple[str, dict[str, Any]]:
        """Put the file's bytes into the image store; its hash and its ``ds_images`` row."""
        ext = _EXTENSIONS.get(path.suffix.lower().lstrip("."))
        if ext is None:
            raise DatasetError(f"unsupported image type {path.suffix!r}")
        data = path.read_bytes()
        facts = probe_image(data)
        if facts.error or facts.sha256 is None or facts.width is None or facts.height is None:
            raise DatasetError(facts.error or "the image cannot be read")
        self.store.put(self.tenant, data, ext)
        row = {
            "tenant_id": self.tenant,
            "sha256": facts.sha256,
            "ext": ext,
            "bytes": len(data),
            "width": facts.width,
            "height": facts.height,
            "created_at": _now(),
        }
        return facts.sha256, row

    def _sample_key(self, name: str, sample_name: str) -> tuple[Any, ...]:
        return samples.c.tenant_id == self.tenant, samples.c.dataset == name, samples.c.name == sample_name

    def _dataset_key(self, table: Any, name: str) -> tuple[Any, ...]:
        return table.c.tenant_id == self.tenant, table.c.dataset == name
