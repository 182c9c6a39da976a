"""Clusters: a named group of tenants with its own consented pool, on SQLite and the loopback PostgreSQL (also
logged in as the application role, under row-level security, as the services run).

Members contribute with recorded consent and withdraw it; the platform builds ``cluster/<name>@N`` from the
standing contributions of the current members; a removed member's contributions stay in the pools built
before and out of later ones. To a tenant that is not a member, a cluster looks exactly like one that does
not exist: the same error for contributing, reading a pool version or training from it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from lineqa.content_store import ContentStore
from lineqa.datasets.catalog import Catalog
from lineqa.datasets.clusters import add_member, create_cluster, members, memberships, remove_member, tenant_clusters
from lineqa.datasets.errors import DatasetError, DatasetNotFoundError
from lineqa.datasets.pool import build_pool, pool_manifest, tenant_pool_manifest
from lineqa.datasets.schema import pools
from lineqa.datasets.versions import load_version
from lineqa.db import tenant_scope
from tests.datasets.test_catalog import engines, synthetic

__all__ = ["engines"]  # the fixture, shared with the catalog's tests


def error_of(call: object, *args: object) -> str:
    with pytest.raises(DatasetNotFoundError) as caught:
        call(*args)  # type: ignore[operator]
    return str(caught.value)


def visible_pools(engine: Engine, tenant: str) -> set[str]:
    """The pools (by cluster) whose rows a tenant's transactions see when its queries name no cluster: on
    PostgreSQL row-level security decides (SQLite has none, so there every row is "seen")."""
    if engine.dialect.name != "postgresql":
        return set()
    with tenant_scope(engine, tenant).connect() as conn:
        return set(conn.execute(select(pools.c.cluster)).scalars())


def test_a_clusters_pool_is_its_members_consented_contributions(engines: tuple[Engine, Engine], tmp_path: Path) -> None:
    engine, platform = engines
    store = ContentStore(tmp_path / "images")
    acme, globex, initech = (Catalog(engine, store, t) for t in ("acme", "globex", "initech"))
    acme.import_images("metal", synthetic(tmp_path / "a", 4, seed=0, rename={"scratch": "scratches"}))
    globex.import_images("brackets", synthetic(tmp_path / "g", 3, seed=100))
    initech.import_images("plates", synthetic(tmp_path / "i", 2, seed=200))
    for catalog, name in ((acme, "metal"), (globex, "brackets"), (initech, "plates")):
        catalog.snapshot(name)

    create_cluster(platform, "auto", by="admin@hub")
    with pytest.raises(DatasetError, match="exists already"):
        create_cluster(platform, "auto", by="admin@hub")
    add_member(platform, "auto", "acme", by="admin@hub")
    add_member(platform, "auto", "globex", by="admin@hub")
    with pytest.raises(DatasetError, match="member of cluster 'auto' already"):
        add_member(platform, "auto", "acme", by="admin@hub")
    assert members(platform, "auto") == ["acme", "globex"]
    assert tenant_clusters(engine, "acme") == ["auto"] and tenant_clusters(engine, "initech") == []

    # Only members contribute; to anyone else the cluster is one that does not exist.
    acme.contribute("metal", "1", by="qa-lead@acme", cluster="auto")
    globex.contribute("brackets", "1", by="ml@globex", cluster="auto")
    refused = error_of(initech.contribute, "plates", "1", "eve@initech", "auto")
    assert refused == error_of(initech.contribute, "plates", "1", "eve@initech", "nope").replace("nope", "auto")
    with pytest.raises(DatasetError, match="no tenant has contributed a dataset version to the pool"):
        build_pool(platform, {})  # a cluster contribution is not one to the platform pool

    first = build_pool(platform, {"scratches": "scratch"}, "auto")
    assert (first.ref, first.images) == ("cluster/auto@1", 7) and set(first.classes) == {"scratch", "dent", "stain"}
    manifest = pool_manifest(platform, "1", "auto")
    assert manifest.provenance["cluster"] == "auto"
    assert {tuple(c[:3]) for c in manifest.provenance["contributions"]} == {
        ("acme", "metal", 1),
        ("globex", "brackets", 1),
    }
    assert build_pool(platform, {"scratches": "scratch"}, "auto").number == 1  # same content, same version

    # Members read it (and train from it); a non-member is told what a missing cluster gets.
    assert tenant_pool_manifest(engine, "globex", "1", "auto").sha256 == manifest.sha256
    manifest_, images = load_version(engine, store, "cluster/auto@1", tenant="acme")
    assert manifest_.sha256 == manifest.sha256 and all(image.path.is_file() for image in images)
    hidden = error_of(load_version, engine, store, "cluster/auto@1", "initech")
    assert hidden == error_of(load_version, engine, store, "cluster/nope@1", "initech").replace("nope", "auto")
    assert error_of(tenant_pool_manifest, engine, "initech", "latest", "auto") == "no cluster 'auto'"
    assert "auto" not in visible_pools(engine, "initech")  # on PostgreSQL the database itself says the same
    assert visible_pools(engine, "globex") >= ({"auto"} if engine.dialect.name == "postgresql" else set())

    # Withdrawing keeps built pools and leaves the version out of later ones.
    acme.withdraw("metal", "1", by="qa-lead@acme", cluster="auto")
    with pytest.raises(DatasetError, match="no consent to cluster 'auto' to withdraw"):
        acme.withdraw("metal", "1", cluster="auto")
    second = build_pool(platform, {"scratches": "scratch"}, "auto")
    assert second.number == 2 and {s.tenant for s in pool_manifest(platform, "2", "auto").samples} == {"globex"}
    assert pool_manifest(platform, "1", "auto").sha256 == manifest.sha256

    # A removed member: its standing consent stays out of later pools, and it sees nothing of the cluster.
    acme.contribute("metal", "1", by="qa-lead@acme", cluster="auto")
    assert build_pool(platform, {"scratches": "scratch"}, "auto").number == 1  # consent again: as in @1
    remove_member(platform, "auto", "acme", by="admin@hub")
    assert build_pool(platform, {"scratches": "scratch"}, "auto").number == 2  # globex's alone, as before
    assert members(platform, "auto") == ["globex"] and tenant_clusters(engine, "acme") == []
    assert error_of(tenant_pool_manifest, engine, "acme", "1", "auto") == "no cluster 'auto'"
    assert "auto" not in visible_pools(engine, "acme")
    ended = [m for m in memberships(platform, "auto") if m.tenant == "acme"]
    assert ended[0].removed_by == "admin@hub" and ended[0].removed_at is not None
    with pytest.raises(DatasetNotFoundError, match="not a member"):
        remove_member(platform, "auto", "acme", by="admin@hub")

    # The platform pool numbers on its own.
    acme.contribute("metal", "1", by="qa-lead@acme")
    assert build_pool(platform, {}).ref == "pool@1"
    assert pool_manifest(platform, "latest").provenance.get("cluster") is None


def test_cluster_names_and_the_reserved_tenant(engines: tuple[Engine, Engine], tmp_path: Path) -> None:
    _, platform = engines
    with pytest.raises(DatasetError, match="cluster name"):
        create_cluster(platform, "Auto Parts", by="admin@hub")
    with pytest.raises(DatasetError, match="who creates"):
        create_cluster(platform, "auto", by=" ")
    with pytest.raises(DatasetNotFoundError, match="no cluster 'auto'"):
        add_member(platform, "auto", "acme", by="admin@hub")
    with pytest.raises(DatasetNotFoundError, match="no cluster 'auto'"):
        build_pool(platform, {}, "auto")
    with pytest.raises(DatasetError, match="invalid tenant id 'cluster'"):  # `cluster/<name>` is a cluster's
        Catalog(platform, ContentStore(tmp_path / "images"), "cluster")


def test_the_clusters_migration_goes_down_and_up_keeping_the_platform_pool(
    engines: tuple[Engine, Engine], tmp_path: Path
) -> None:
    from alembic import command

    from lineqa import db
    from lineqa.datasets.database import MIGRATIONS, VERSION_TABLE, open_catalog_database

    _, platform = engines
    acme = Catalog(platform, ContentStore(tmp_path / "images"), "acme")
    acme.import_images("metal", synthetic(tmp_path / "a", 2))
    acme.snapshot("metal")
    acme.contribute("metal", "1", by="qa@acme")
    build_pool(platform, {})
    create_cluster(platform, "auto", by="admin@hub")
    add_member(platform, "auto", "acme", by="admin@hub")
    acme.contribute("metal", "1", by="qa@acme", cluster="auto")
    build_pool(platform, {}, "auto")
    with platform.begin() as conn:
        command.downgrade(db.alembic_config(MIGRATIONS, VERSION_TABLE, conn), "ds0002")
    url = platform.url.render_as_string(hide_password=False)
    platform.dispose()
    again = open_catalog_database(url)  # up again
    try:
        assert pool_manifest(again, "1").sha256 and build_pool(again, {}).number == 1
        with pytest.raises(DatasetNotFoundError):
            pool_manifest(again, "1", "auto")  # the cluster's pools went with the clusters
    finally:
        again.dispose()
