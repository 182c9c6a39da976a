"""Recipes as versioned, audited records of one tenant (RELIABILITY.md 10 and 17), on SQLite and the loopback
PostgreSQL: every version kept with who, when and why; past versions cannot be rewritten; a tenant's recipe
names only a model that tenant may use; another tenant's recipe looks like one that does not exist; the
gateway's lookup follows a new version; ``lineqa recipes`` set, show, history, diff."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError

from lineqa.serving.access import AccessError, AccessStore
from lineqa.serving.database import open_database, sqlite_url
from lineqa.serving.model_access import ModelGrants, model_owner
from lineqa.serving.recipes import RecipeBook, RecipeRef, RecipeStore, parse_ref
from lineqa.vision.errors import RecipeError

PCB = "id: pcb\nmodel: {name: acme.pcb}\ndefaults: {fail_confidence: 0.5}\n"


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    url = sqlite_url(tmp_path / "r.db") if request.param == "sqlite" else request.getfixturevalue("empty_postgres_url")
    engine = open_database(url)
    for tenant in ("acme", "globex"):
        AccessStore(engine).add_tenant(tenant)
    yield engine
    engine.dispose()


def test_every_version_is_kept_with_who_when_and_why(engine: Engine) -> None:
    store, ref = RecipeStore(engine), RecipeRef("acme", "pcb")
    before = datetime.now(timezone.utc)
    first, new = store.set(ref, PCB, by="ana", reason="first release")
    assert new and first.number == 1
    second, new = store.set(ref, PCB.replace("0.5", "0.4"), by="ben", reason="8D 112: escapes at 0.5")
    again, added = store.set(ref, PCB.replace("0.5", "0.4") + "# same rules\n", by="cy", reason="comment only")
    assert new and not added and again == second  # the same rules: no new version
    history = store.history(ref)
    assert [(v.number, v.set_by, v.reason) for v in history] == [
        (1, "ana", "first release"),
        (2, "ben", "8D 112: escapes at 0.5"),
    ]
    for version in history:
        assert before - timedelta(seconds=1) <= version.set_at <= datetime.now(timezone.utc)
        assert version.sha256 == version.recipe().version  # what records name is the content's hash
    assert store.in_force("acme", "pcb").defaults.fail_confidence == 0.4
    assert store.version(RecipeRef("acme", "pcb", 1)).yaml == PCB  # the text as set
    assert store.ids("acme") == [("pcb", 2)]


@pytest.mark.parametrize("statement", ["UPDATE recipe_versions SET yaml = 'x'", "DELETE FROM recipe_versions"])
def test_a_past_version_cannot_be_rewritten(engine: Engine, statement: str) -> None:
    store = RecipeStore(engine)
    store.set(RecipeRef("acme", "pcb"), PCB, by="ana", reason="first")
    with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
        conn.exec_driver_sql(statement)
    assert store.version(RecipeRef("acme", "pcb")).yaml == PCB


@pytest.mark.parametrize(
    ("ref", "text", "by", "reason", "message"),
    [
        ("acme/pcb", PCB.replace("id: pcb", "id: other"), "ana", "r", "declares id 'other'"),
        ("acme/pcb", PCB, "ana", " ", "why"),
        ("acme/pcb", PCB, "", "r", "who"),
        ("acme/pcb", "id: pcb\nmodel: {name: acme.pcb}\nthreshold: 3\n", "ana", "r", "threshold"),
        ("globex/pcb", PCB, "ana", "r", "which tenant 'globex' may not use"),  # acme's model
        ("acme/pcb", PCB.replace("acme.pcb", "base"), "ana", "r", "may not use"),  # a platform model, no grant
        ("nobody/pcb", PCB.replace("acme.pcb", "nobody.pcb"), "ana", "r", "does not exist"),
    ],
)
def test_a_bad_change_is_refused_and_changes_nothing(
    engine: Engine, ref: str, text: str, by: str, reason: str, message: str
) -> None:
    store = RecipeStore(engine)
    with pytest.raises(RecipeError, match=message):
        store.set(parse_ref(ref), text, by=by, reason=reason)
    assert store.history(parse_ref(ref)) == []


def test_a_platform_model_takes_a_grant_and_loses_it(engine: Engine) -> None:
    store, grants = RecipeStore(engine), ModelGrants(engine)
    text = PCB.replace("acme.pcb", "base")
    assert model_owner("base") is None and model_owner("acme.pcb") == "acme" and model_owner("acme.v2.pcb") == "acme"
    with pytest.raises(AccessError, match="own model"):
        grants.change("acme", "acme.pcb", allowed=True, by="ops", reason="r")
    grants.change("acme", "base", allowed=True, by="ops", reason="pooled base for the pilot")
    store.set(RecipeRef("acme", "pcb"), text, by="ana", reason="on the pooled base")
    assert store.in_force("acme", "pcb").model.name == "base"
    grants.change("acme", "base", allowed=False, by="ops", reason="contract ended")
    with pytest.raises(RecipeError, match="may not use"):  # the gateway checks it again at every load
        store.in_force("acme", "pcb")
    assert [(e.tenant, e.allowed, e.by, e.reason) for e in grants.history("base")] == [
        ("acme", True, "ops", "pooled base for the pilot"),
        ("acme", False, "ops", "contract ended"),
    ]


def test_a_camera_names_only_its_own_tenants_recipes(engine: Engine) -> None:
    store = RecipeStore(engine)
    store.set(RecipeRef("acme", "pcb"), PCB, by="ana", reason="first")
    book = RecipeBook(store, ttl_s=0.0)

    def lookup(tenant: str, requested: str) -> str:
        try:
            return asyncio.run(book.get(tenant, requested)).version
        except RecipeError as exc:
            return str(exc)

    version = store.version(RecipeRef("acme", "pcb")).sha256
    assert lookup("acme", "pcb") == lookup("acme", "acme/pcb") == version
    assert lookup("globex", "pcb") == "no recipe 'pcb'"  # another tenant's: as if it did not exist
    assert lookup("globex", "acme/pcb") == "no recipe 'acme/pcb'"
    assert lookup("acme", "../pcb") == "no recipe '../pcb'"


def test_the_gateway_lookup_follows_a_new_version_within_its_ttl(engine: Engine) -> None:
    store = RecipeStore(engine)
    store.set(RecipeRef("acme", "pcb"), PCB, by="ana", reason="first")
    book = RecipeBook(store, ttl_s=0.2)

    async def scenario() -> tuple[float, float, float]:
        first = (await book.get("acme", "pcb")).defaults.fail_confidence
        store.set(RecipeRef("acme", "pcb"), PCB.replace("0.5", "0.3"), by="ben", reason="tighter")
        cached = (await book.get("acme", "pcb")).defaults.fail_confidence
        await asyncio.sleep(0.25)
        return first, cached, (await book.get("acme", "pcb")).defaults.fail_confidence

    assert asyncio.run(scenario()) == (0.5, 0.5, 0.3)


def lineqa(home: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "lineqa.cli", "recipes", "--home", str(home), *args]
    return subprocess.run(cmd, capture_output=True, text=True, input=stdin, timeout=60)


def test_lineqa_recipes_set_show_history_diff(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    engine = open_database(sqlite_url(home / "lineqa.db"))
    AccessStore(engine).add_tenant("acme")
    engine.dispose()
    (tmp_path / "v1.yaml").write_text(PCB)
    done = lineqa(home, "set", "acme/pcb", str(tmp_path / "v1.yaml"), "--reason", "first", "--by", "ana")
    assert done.returncode == 0 and "acme/pcb@1 set" in done.stdout, done.stderr
    done = lineqa(home, "set", "acme/pcb", "-", "--reason", "tighter", stdin=PCB.replace("0.5", "0.4"))
    assert "acme/pcb@2 set" in done.stdout
    assert lineqa(home, "show", "acme/pcb@1").stdout == PCB
    assert "fail_confidence: 0.4" in lineqa(home, "show", "acme/pcb").stdout
    history = lineqa(home, "history", "acme/pcb").stdout.splitlines()
    assert len(history) == 2 and history[0].startswith("@1") and history[0].endswith("ana: first")
    diff = lineqa(home, "diff", "acme/pcb", "1").stdout
    assert "-defaults: {fail_confidence: 0.5}" in diff and "+defaults: {fail_confidence: 0.4}" in diff
    assert lineqa(home, "list", "acme").stdout.split() == ["acme/pcb@2"]
    refused = lineqa(home, "set", "acme/pcb", str(tmp_path / "v1.yaml"))  # no --reason
    assert refused.returncode == 2 and "--reason" in refused.stderr
    missing = lineqa(home, "show", "acme/nothing")
    assert missing.returncode == 2 and "no recipe 'nothing'" in missing.stderr and "Traceback" not in missing.stderr
