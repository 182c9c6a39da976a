"""Models down, between two homes over mutual TLS on loopback (the hub's service in a thread, the plant's sync
in the test): a plant installs exactly its tenant's bundle (model files byte for byte, lineage, recipes as
audited versions, the promotion with the hub's who and why) and never another tenant's; a bundle that fails any
check is refused, logged and leaves the plant as it was; a download cut in the middle resumes where it stopped;
a plant whose hub is gone keeps what it has."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import grpc
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select

from lineqa.datasets.clusters import add_member, create_cluster, remove_member
from lineqa.db import tenant_scope
from lineqa.fleet.bundles import HubBundles
from lineqa.fleet.database import open_fleet_database
from lineqa.fleet.enrolment import bundle_key_path
from lineqa.fleet.errors import BundleRefusedError, HubUnreachableError
from lineqa.fleet.files import file_sha256
from lineqa.fleet.manifest import Manifest
from lineqa.fleet.plant_link import PlantLink
from lineqa.fleet.plants import PlantRegistry
from lineqa.fleet.schema import bundles
from lineqa.fleet.signing import sign, signing_key
from lineqa.protos.lineqa.fleet.v1 import fleet_pb2 as pb
from lineqa.protos.lineqa.fleet.v1 import fleet_pb2_grpc as pb_grpc
from lineqa.serving.database import database_url
from lineqa.serving.local_plant import LOCAL_HOSTS
from lineqa.serving.model_access import ModelGrants
from lineqa.serving.model_repository import METADATA_NAME, ModelRepository
from lineqa.serving.pki import PlantPki
from lineqa.serving.recipes import RecipeRef, RecipeStore
from tests.helpers.fleet import FAST_LINK as FAST
from tests.helpers.fleet import MODEL, HubHome, hub_running, make_hub, make_plant, plant_sync, retried
from tests.helpers.tcp_proxy import TcpProxy

SQLITE_ONLY = pytest.mark.parametrize("hub", ["sqlite"], indirect=True)  # transport: the database is no matter


@pytest.fixture(params=["sqlite", "postgresql"])
def hub(request: pytest.FixtureRequest, tmp_path: Path) -> HubHome:
    """A hub on SQLite, and on PostgreSQL with ``hub serve`` as the application role (row-level security)."""
    db_url = str(request.getfixturevalue("empty_postgres_url")) if request.param == "postgresql" else None
    hub = make_hub(tmp_path, db_url=db_url)
    hub.publish("acme.metal")
    hub.recipe("acme", "bracket", "acme.metal")
    hub.publish("globex.metal")
    hub.recipe("globex", "hinge", "globex.metal")
    return hub


def plant_repository(home: Path) -> ModelRepository:
    return ModelRepository(home / "models")


def test_a_plant_installs_its_tenants_bundle_as_the_hub_has_it(hub: HubHome, tmp_path: Path) -> None:
    home = tmp_path / "plant"
    with hub_running(hub) as running:
        make_plant(hub, home, "press-shop", "acme", running.address)
        sync = plant_sync(home)
        try:
            outcome = sync.models.follow()
            again = sync.models.follow()
        finally:
            sync.close()
    assert outcome.changed and outcome.number == 1 and not again.changed
    plant, hub_repo = plant_repository(home), hub.repository
    assert plant.model_names() == ["acme.metal"]  # globex's model never reaches acme's plant
    theirs, ours = hub_repo.version("acme.metal", 1), plant.version("acme.metal", 1)
    assert file_sha256(ours.model_file) == file_sha256(theirs.model_file) == ours.metadata.sha256
    assert (ours.path / METADATA_NAME).read_text() == (theirs.path / METADATA_NAME).read_text()  # lineage included
    assert plant.check() == []  # a repository the gateway (and NVIDIA's Triton) serves as it is
    promoted = plant.promotions("acme.metal").events()
    assert [(e.action, e.version, e.by) for e in promoted] == [("promote", 1, "hub:ml-lead")]
    assert "test release" in promoted[0].reason and promoted[0].details and promoted[0].details["bundle"] == 1
    engine = open_fleet_database(database_url(home))
    try:
        recipe = RecipeStore(engine).version(RecipeRef("acme", "bracket"))
        hub_recipe = RecipeStore(hub.engine).version(RecipeRef("acme", "bracket"))
        assert (recipe.sha256, recipe.yaml) == (hub_recipe.sha256, hub_recipe.yaml)
        assert recipe.set_by == "hub:lineqa local plant" and "bundle #1" in recipe.reason
        assert RecipeStore(engine).ids("globex") == []
    finally:
        engine.dispose()


def _call_every_method(channel: grpc.Channel, bundle_number: int) -> dict[str, grpc.StatusCode]:
    stub = pb_grpc.HubServiceStub(channel)
    calls = {
        "GetBundle": lambda: stub.GetBundle(pb.GetBundleRequest(), timeout=10),
        "ReadFile": lambda: list(stub.ReadFile(pb.ReadFileRequest(bundle_number=bundle_number, model="acme.metal",
                                                                 version=1, path="model.onnx"), timeout=10)),
        "GetDataPolicy": lambda: stub.GetDataPolicy(pb.GetDataPolicyRequest(), timeout=10),
        "PushParts": lambda: stub.PushParts(pb.PushPartsRequest(), timeout=10),
        "PutImage": lambda: stub.PutImage(pb.PutImageRequest(sha256="0" * 64, ext="png", data=b""), timeout=10),
    }  # fmt: skip
    codes = {}
    for name, call in calls.items():
        try:
            call()
            codes[name] = grpc.StatusCode.OK
        except grpc.RpcError as exc:
            codes[name] = exc.code()
    assert set(codes) == set(pb.DESCRIPTOR.services_by_name["HubService"].methods_by_name)
    return codes


def test_a_plant_never_sees_another_tenants_bundles(hub: HubHome, tmp_path: Path) -> None:
    hub.publish("platform-base")
    with hub_running(hub) as running:
        acme = make_plant(hub, tmp_path / "acme-plant", "press-shop", "acme", running.address)
        globex = make_plant(hub, tmp_path / "globex-plant", "hinge-works", "globex", running.address)
        with acme.channel(FAST) as channel:
            stub = pb_grpc.HubServiceStub(channel)
            first = Manifest.from_bytes(stub.GetBundle(pb.GetBundleRequest(), timeout=10).manifest)
            assert [m.name for m in first.content.models] == ["acme.metal"]  # not globex's, not an ungranted one
            assert [r.recipe_id for r in first.content.recipes] == ["bracket"]
            with globex.channel(FAST) as other:
                globex_number = pb_grpc.HubServiceStub(other).GetBundle(pb.GetBundleRequest(), timeout=10).number
            for number, model in ((first.number, "globex.metal"), (globex_number, "globex.metal"),
                                  (first.number, "platform-base"), (99, "acme.metal")):  # fmt: skip
                request = pb.ReadFileRequest(bundle_number=number, model=model, version=1, path="model.onnx")
                with pytest.raises(grpc.RpcError) as refused:
                    list(stub.ReadFile(request, timeout=10))
                assert refused.value.code() == grpc.StatusCode.NOT_FOUND  # another tenant's looks like nothing
            with pytest.raises(grpc.RpcError) as escape:
                list(
                    stub.ReadFile(
                        pb.ReadFileRequest(
                            bundle_number=first.number,
                            model="acme.metal",
                            version=1,
                            path="../../globex.metal/1/model.onnx",
                        ),
                        timeout=10,
                    )
                )
            assert escape.value.code() == grpc.StatusCode.NOT_FOUND
            ModelGrants(hub.engine).change("acme", "platform-base", allowed=True, by="platform", reason="pilot")
            sync = plant_sync(acme.folder.parent)
            try:
                sync.models.follow()
                granted = Manifest.from_bytes(stub.GetBundle(pb.GetBundleRequest(), timeout=10).manifest)
                assert {m.name for m in granted.content.models} == {"acme.metal", "platform-base"}
                assert granted.content.platform_models == ("platform-base",)
                assert plant_repository(acme.folder.parent).model_names() == ["acme.metal", "platform-base"]
                ModelGrants(hub.engine).change("acme", "platform-base", allowed=False, by="platform", reason="ended")
                sync.models.follow()
            finally:
                sync.close()
        engine = open_fleet_database(database_url(acme.folder.parent))
        try:  # the plant mirrors the hub: the grant it made on the hub's word is taken back
            history = [(e.allowed, e.by) for e in ModelGrants(engine).history("platform-base")]
            assert history == [(True, "hub"), (False, "hub")]
        finally:
            engine.dispose()
        PlantRegistry(hub.engine).revoke("press-shop")
        with acme.channel(FAST) as channel:
            assert set(_call_every_method(channel, first.number).values()) == {grpc.StatusCode.UNAUTHENTICATED}
        stranger = PlantPki(tmp_path / "stranger" / "pki")  # a certificate of another CA: no TLS session at all
        stranger.init(LOCAL_HOSTS)
        cert, key = stranger.client("press-shop")
        credentials = grpc.ssl_channel_credentials((hub.home / "pki" / "ca.pem").read_bytes(), key.read_bytes(),
                                                   cert.read_bytes())  # fmt: skip
        with grpc.secure_channel(running.address, credentials) as channel:
            assert set(_call_every_method(channel, first.number).values()) == {grpc.StatusCode.UNAVAILABLE}


def test_a_clusters_model_reaches_its_current_members_only(hub: HubHome, caplog: pytest.LogCaptureFixture) -> None:
    """A platform model trained on cluster ``auto``'s pool, granted to both tenants (say, before the rule, or
    by an admin writing the grant directly): only the member's bundle holds it, and only while it is one."""
    create_cluster(hub.engine, "auto", by="platform")
    add_member(hub.engine, "auto", "acme", by="platform")
    hub.repository.add_version("auto-base", MODEL, {"dataset": {"ref": "cluster/auto@1"}})
    hub.publish("platform-base")  # trained on the platform pool: anyone granted gets it
    for tenant in ("acme", "globex"):
        for model in ("auto-base", "platform-base"):
            ModelGrants(hub.engine).change(tenant, model, allowed=True, by="platform", reason="pilot")
    bundles = HubBundles(hub.service, hub.repository, signing_key(bundle_key_path(hub.home)))

    def shipped(tenant: str) -> list[str]:
        return sorted(m.name for m in bundles.content(tenant).models)

    with caplog.at_level(logging.WARNING, logger="lineqa.fleet.bundles"):
        assert shipped("acme") == ["acme.metal", "auto-base", "platform-base"]
        assert shipped("globex") == ["globex.metal", "platform-base"]
        assert "not a member of cluster auto" in caplog.text
        remove_member(hub.engine, "auto", "acme", by="platform")
        assert shipped("acme") == ["acme.metal", "platform-base"]
        add_member(hub.engine, "auto", "acme", by="platform")
        assert shipped("acme") == ["acme.metal", "auto-base", "platform-base"]


def _signed(hub: HubHome, tenant: str, number: int) -> pb.SignedBundle:
    query = select(bundles).where(bundles.c.tenant_id == tenant, bundles.c.number == number)
    with tenant_scope(hub.engine, tenant).connect() as conn:
        row = conn.execute(query).mappings().one()
    return pb.SignedBundle(number=number, manifest=bytes(row["manifest"]), signature=bytes(row["signature"]))


@SQLITE_ONLY
def test_a_tampered_or_unsigned_bundle_is_refused_logged_and_nothing_installed(
    hub: HubHome, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    home = tmp_path / "plant"
    with hub_running(hub) as running:
        make_plant(hub, home, "press-shop", "acme", running.address)
        with make_plant(hub, tmp_path / "globex-plant", "hinge-works", "globex", running.address).channel(FAST) as ch:
            pb_grpc.HubServiceStub(ch).GetBundle(pb.GetBundleRequest(), timeout=10)  # globex's bundle #1, signed
        sync = plant_sync(home)
        try:
            follower = sync.models
            follower.follow()
            hub.publish("acme.metal")  # bundle #2 on the hub
            genuine = pb_grpc.HubServiceStub(sync.channel).GetBundle(pb.GetBundleRequest(known_number=1), timeout=10)
            manifest = genuine.manifest.replace(b'"on_line":2', b'"on_line":1')
            other_key = Ed25519PrivateKey.generate()
            forged = [
                ("unsigned", pb.SignedBundle(number=2, manifest=genuine.manifest), "not signed"),
                ("changed on the way", pb.SignedBundle(number=2, manifest=manifest, signature=genuine.signature),
                 "signature is not the hub's"),
                ("signed by another key", pb.SignedBundle(number=2, manifest=genuine.manifest,
                                                          signature=sign(other_key, genuine.manifest)),
                 "signature is not the hub's"),
                ("replayed", _signed(hub, "acme", 1), "not newer"),
                ("another tenant's", _signed(hub, "globex", 1), "tenant 'globex'"),
            ]  # fmt: skip
            caplog.set_level(logging.ERROR, logger="lineqa.fleet.plant_models")
            for what, bundle, reason in forged:
                with pytest.raises(BundleRefusedError, match=reason):
                    follower.take(bundle)
                assert follower.installed_number() == 1, what
            assert [v.version for v in plant_repository(home).versions("acme.metal")] == [1]
            # a file changed on the hub after it was published: the signed manifest names the published hash
            model_file = hub.repository.version("acme.metal", 2).model_file
            model_file.write_bytes(model_file.read_bytes()[:-1] + b"\x00")
            with pytest.raises(BundleRefusedError, match="SHA-256 is not the one the signed manifest names"):
                follower.follow()
            assert [v.version for v in plant_repository(home).versions("acme.metal")] == [1]
            assert plant_repository(home).promotions("acme.metal").promoted() == 1
            assert not list(PlantLink.of(home).downloads.iterdir())  # the bad file is deleted, not kept for later
        finally:
            sync.close()
    refusals = [json.loads(line) for line in (home / "plant" / "refusals.jsonl").read_text().splitlines()]
    assert len(refusals) == len(forged) + 1
    logged = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(logged) == len(forged) + 1 and all("the line keeps bundle #1" in line for line in logged)


@SQLITE_ONLY
def test_a_download_cut_in_the_middle_resumes_where_it_stopped(hub: HubHome, tmp_path: Path) -> None:
    home = tmp_path / "plant"
    size = MODEL.stat().st_size
    with hub_running(hub) as running, TcpProxy(("127.0.0.1", running.port)) as proxy:
        make_plant(hub, home, "press-shop", "acme", f"localhost:{proxy.port}")
        sync = plant_sync(home)
        try:
            proxy.cut_after(size // 3)
            with pytest.raises(HubUnreachableError, match="resumes there"):
                sync.models.follow()
            parts = list(PlantLink.of(home).downloads.glob("*.part"))
            assert len(parts) == 1 and 0 < parts[0].stat().st_size < size
            held = parts[0].stat().st_size
            assert plant_repository(home).model_names() == []  # nothing installed from half a file
            outcome = retried(sync.models.follow)
        finally:
            sync.close()
    assert outcome.changed and outcome.resumed == ("acme.metal v1 model.onnx",)
    assert outcome.received_bytes < size - held + 4096  # the rest of the model (and its small lineqa.json) only
    version = plant_repository(home).version("acme.metal", 1)
    assert file_sha256(version.model_file) == file_sha256(MODEL)


@SQLITE_ONLY
def test_a_stalled_link_is_dropped_by_keepalive_and_the_download_resumes(hub: HubHome, tmp_path: Path) -> None:
    home = tmp_path / "plant"
    with hub_running(hub) as running, TcpProxy(("127.0.0.1", running.port)) as proxy:
        make_plant(hub, home, "press-shop", "acme", f"localhost:{proxy.port}")
        sync = plant_sync(home)
        try:
            proxy.cut_after(MODEL.stat().st_size // 2, stall=True)  # a half-open link: nothing passes, none told
            began = time.monotonic()
            with pytest.raises(HubUnreachableError, match="resumes there"):
                sync.models.follow()
            noticed_s = time.monotonic() - began
            outcome = retried(sync.models.follow)
        finally:
            sync.close()
    assert noticed_s < 10, f"a stalled link took {noticed_s:.1f} s to notice (keepalive 1 s + 1 s)"
    assert outcome.changed and outcome.resumed == ("acme.metal v1 model.onnx",)


@SQLITE_ONLY
def test_a_plant_keeps_what_it_has_when_the_hub_is_gone(hub: HubHome, tmp_path: Path) -> None:
    home = tmp_path / "plant"
    with hub_running(hub) as running:
        make_plant(hub, home, "press-shop", "acme", running.address)
        sync = plant_sync(home)
        sync.models.follow()
    try:
        before = sorted(p.relative_to(home) for p in (home / "models").rglob("*"))
        with pytest.raises(HubUnreachableError):
            sync.models.follow()
        assert sorted(p.relative_to(home) for p in (home / "models").rglob("*")) == before
        assert plant_repository(home).serving_version("acme.metal").version == 1
        assert sync.models.installed_number() == 1
    finally:
        sync.close()
