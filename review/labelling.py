"""The labeller's view of a tenant's datasets: versions, their validation issues, and label fixes.

A fix never edits a version (a model may have been trained on it): it makes a new version from the one
being looked at with the sample's boxes replaced (:meth:`lineqa.datasets.catalog.Catalog.revise`), and records
the change in the audit trail.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

from sqlalchemy import Engine

from lineqa.content_store import ContentStore
from lineqa.datasets.catalog import Catalog, VersionInfo
from lineqa.datasets.errors import DatasetError
from lineqa.datasets.manifest import Manifest, ManifestSample
from lineqa.datasets.model import Box
from lineqa.datasets.probe import probe_images
from lineqa.datasets.validate import ValidationReport, validate
from lineqa.db import tenant_scope
from lineqa.review import audit
from lineqa.review.boxes import boxes_json
from lineqa.review.errors import BadInputError, NotFoundError

_REPORTS_KEPT = 16


@dataclass(frozen=True)
class DatasetSummary:
    name: str
    classes: tuple[str, ...]
    working_samples: int
    versions: tuple[VersionInfo, ...]


class Labelling:
    def __init__(self, engine: Engine, store: ContentStore) -> None:
        self.engine = engine
        self.store = store
        # Validation probes every image (a second per thousand): reports are kept per manifest hash, which
        # names the content exactly, so a cached report can never be stale.
        self._reports: OrderedDict[tuple[str, str], ValidationReport] = OrderedDict()
        self._lock = threading.Lock()  # requests run on a thread pool

    def catalog(self, tenant: str) -> Catalog:
        return Catalog(self.engine, self.store, tenant)

    def datasets(self, tenant: str) -> list[DatasetSummary]:
        catalog = self.catalog(tenant)
        return [
            DatasetSummary(
                name, tuple(catalog.classes(name)), len(catalog.working_samples(name)), tuple(catalog.versions(name))
            )
            for name in catalog.names()
        ]

    def version(self, tenant: str, name: str, version: str) -> tuple[VersionInfo, Manifest]:
        catalog = self.catalog(tenant)
        try:
            return catalog.version_info(name, version), catalog.manifest(name, version)
        except DatasetError as exc:  # not found, or a malformed version: both look missing from outside
            raise NotFoundError(str(exc)) from exc

    def issues(self, tenant: str, manifest: Manifest) -> ValidationReport:
        key = (tenant, manifest.sha256)
        with self._lock:
            if key in self._reports:
                self._reports.move_to_end(key)
                return self._reports[key]
        images = self.catalog(tenant).labelled_images(manifest)
        report = validate(images, probe_images(images), manifest.classes)
        with self._lock:
            self._reports[key] = report
            while len(self._reports) > _REPORTS_KEPT:
                self._reports.popitem(last=False)
        return report

    def sample(self, tenant: str, name: str, version: str, sample: str) -> tuple[VersionInfo, Manifest, ManifestSample]:
        info, manifest = self.version(tenant, name, version)
        for candidate in manifest.samples:
            if candidate.name == sample:
                return info, manifest, candidate
        raise NotFoundError(f"{name}@{info.number} has no sample {sample!r}")

    def fix(
        self, tenant: str, name: str, version: str, sample: str, boxes: tuple[Box, ...], reason: str, by: str
    ) -> VersionInfo:
        """A new version with ``sample`` relabelled; the audit trail gets the old and the new labels."""
        info, _, before = self.sample(tenant, name, version, sample)
        try:
            new = self.catalog(tenant).revise(name, str(info.number), sample, boxes, note=f"label fix by {by}")
        except DatasetError as exc:
            raise BadInputError(str(exc)) from exc
        with tenant_scope(self.engine, tenant).begin() as conn:
            audit.append(
                conn,
                tenant,
                by,
                audit.AuditAction.LABEL_FIX,
                f"dataset:{name}:{sample}",
                {"version": info.number, "labels": boxes_json(before.boxes)},
                {"version": new.number, "labels": boxes_json(boxes)},
                reason,
            )
        return new

    def snapshot(self, tenant: str, name: str, note: str, by: str) -> VersionInfo:
        """Freeze the working dataset (with the reviewed parts it gathered) as a version."""
        try:
            info = self.catalog(tenant).snapshot(name, note)
        except DatasetError as exc:
            raise NotFoundError(str(exc)) from exc
        with tenant_scope(self.engine, tenant).begin() as conn:
            audit.append(
                conn,
                tenant,
                by,
                audit.AuditAction.SNAPSHOT,
                f"dataset:{name}",
                None,
                {"version": info.number, "sha256": info.sha256, "images": info.images},
                note,
            )
        return info
