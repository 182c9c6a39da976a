"""The dataset catalog's tables. Every row but the pool's belongs to one tenant, and every query the catalog
makes filters on it: that filter is the isolation between manufacturers.

- ``ds_images``: the images a tenant has stored (bytes live in the content-addressed image store).
- ``ds_datasets`` / ``ds_samples``: a tenant's working datasets, editable (imports, review decisions, splits).
  A sample's ``reference_sha256`` names its golden sample among the tenant's images (stored once however many
  samples share it).
- ``ds_versions``: immutable snapshots; the manifest (JSON) is the version, its SHA-256 its identity.
- ``ds_contributions``: a tenant's recorded consent to put one version in future pools, and its withdrawal;
  ``cluster`` is the pool it goes to (``""``: the platform's).
- ``ds_pools``: pooled versions, each naming the contributions it merged and the class mapping it used,
  numbered per pool (``cluster``, ``""`` for the platform's).
- ``ds_clusters`` / ``ds_cluster_members``: named groups of tenants (an industry, a supply chain) with their
  own pool; membership rows record who added and who removed a tenant, and when.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    ForeignKeyConstraint,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from lineqa.db import NAMING_CONVENTION

metadata = MetaData(naming_convention=NAMING_CONVENTION)

images = Table(
    "ds_images",
    metadata,
    Column("tenant_id", String(64), nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("ext", String(8), nullable=False),
    Column("bytes", BigInteger, nullable=False),
    Column("width", Integer, nullable=False),
    Column("height", Integer, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    PrimaryKeyConstraint("tenant_id", "sha256"),
)

datasets = Table(
    "ds_datasets",
    metadata,
    Column("tenant_id", String(64), nullable=False),
    Column("name", String(128), nullable=False),
    Column("classes_json", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    PrimaryKeyConstraint("tenant_id", "name"),
)

samples = Table(
    "ds_samples",
    metadata,
    Column("tenant_id", String(64), nullable=False),
    Column("dataset", String(128), nullable=False),
    Column("name", String(512), nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("annotation", String(16), nullable=False),
    Column("boxes_json", Text, nullable=False),
    Column("group_id", String(256)),
    Column("split", String(32)),
    Column("source", String(512), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("reference_sha256", String(64)),
    PrimaryKeyConstraint("tenant_id", "dataset", "name"),
    ForeignKeyConstraint(["tenant_id", "dataset"], ["ds_datasets.tenant_id", "ds_datasets.name"]),
    ForeignKeyConstraint(["tenant_id", "sha256"], ["ds_images.tenant_id", "ds_images.sha256"]),
    ForeignKeyConstraint(
        ["tenant_id", "reference_sha256"],
        ["ds_images.tenant_id", "ds_images.sha256"],
        name="fk_ds_samples_reference_sha256_ds_images",  # the convention's name is the image key's
    ),
)

versions = Table(
    "ds_versions",
    metadata,
    Column("tenant_id", String(64), nullable=False),
    Column("dataset", String(128), nullable=False),
    Column("number", Integer, nullable=False),
    Column("manifest_sha256", String(64), nullable=False),
    Column("manifest_json", Text, nullable=False),
    Column("note", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    PrimaryKeyConstraint("tenant_id", "dataset", "number"),
    UniqueConstraint("tenant_id", "dataset", "manifest_sha256", name="uq_ds_versions_manifest"),
)

contributions = Table(
    "ds_contributions",
    metadata,
    Column("contribution_id", Integer, primary_key=True, autoincrement=True),
    Column("tenant_id", String(64), nullable=False),
    Column("dataset", String(128), nullable=False),
    Column("number", Integer, nullable=False),
    Column("consented_by", String(128), nullable=False),
    Column("consented_at", DateTime(timezone=True), nullable=False),
    Column("withdrawn_at", DateTime(timezone=True)),
    Column("withdrawn_by", String(128)),
    Column("cluster", String(64), nullable=False, server_default=""),
    ForeignKeyConstraint(
        ["tenant_id", "dataset", "number"], ["ds_versions.tenant_id", "ds_versions.dataset", "ds_versions.number"]
    ),
)

pools = Table(
    "ds_pools",
    metadata,
    Column("cluster", String(64), nullable=False, server_default=""),
    Column("number", Integer, nullable=False, autoincrement=False),
    Column("manifest_sha256", String(64), nullable=False),
    Column("manifest_json", Text, nullable=False),
    Column("contributions_json", Text, nullable=False),
    Column("class_map_json", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    PrimaryKeyConstraint("cluster", "number"),
)

clusters = Table(
    "ds_clusters",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("created_by", String(128), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

cluster_members = Table(
    "ds_cluster_members",
    metadata,
    Column("membership_id", Integer, primary_key=True, autoincrement=True),
    Column("cluster", String(64), nullable=False),
    Column("tenant_id", String(64), nullable=False),
    Column("added_by", String(128), nullable=False),
    Column("added_at", DateTime(timezone=True), nullable=False),
    Column("removed_by", String(128)),
    Column("removed_at", DateTime(timezone=True)),
)
