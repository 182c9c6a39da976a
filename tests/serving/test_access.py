"""Tenants, lines, cameras and camera tokens, on SQLite and the loopback PostgreSQL; ``lineqa admin``."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lineqa.serving.access import AccessDeniedError, AccessError, AccessStore, Principal, TokenCache
from lineqa.serving.database import open_database, sqlite_url
from lineqa.serving.schema import camera_tokens


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[AccessStore]:
    url = sqlite_url(tmp_path / "a.db") if request.param == "sqlite" else request.getfixturevalue("empty_postgres_url")
    engine = open_database(url)
    store = AccessStore(engine)
    store.add_tenant("acme", "Acme Stamping")
    store.add_line("acme", "press-3")
    store.add_camera("acme", "press-3", "cam-7")
    yield store
    engine.dispose()


def test_a_token_proves_its_camera_tenant_and_line(store: AccessStore) -> None:
    issued = store.issue_token("acme", "cam-7")
    assert issued.token.startswith(f"lqa_{issued.token_id}_")
    assert store.authenticate(issued.token) == Principal("acme", "cam-7", "press-3", issued.token_id)


def test_only_a_hash_of_the_token_is_stored(store: AccessStore) -> None:
    issued = store.issue_token("acme", "cam-7")
    secret = issued.token.split("_", 2)[2]
    with store.engine.connect() as conn:
        row = conn.execute(camera_tokens.select()).mappings().one()
    assert secret not in " ".join(str(v) for v in row.values())
    assert len(row["secret_sha256"]) == 64


@pytest.mark.parametrize("mangle", [
    lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"),  # right id, wrong secret
    lambda t: "lqa_0000000000000000_" + t.split("_", 2)[2],  # unknown id
    lambda t: "Bearer " + t,
    lambda t: "",
    lambda t: "lqa_x_short",
])  # fmt: skip
def test_anything_but_the_exact_token_is_refused(store: AccessStore, mangle) -> None:  # type: ignore[no-untyped-def]
    issued = store.issue_token("acme", "cam-7")
    with pytest.raises(AccessDeniedError):
        store.authenticate(mangle(issued.token))


def test_revoked_tokens_are_refused_and_others_stay_valid(store: AccessStore) -> None:
    first, second = store.issue_token("acme", "cam-7"), store.issue_token("acme", "cam-7")
    store.revoke_token(first.token_id)
    with pytest.raises(AccessDeniedError, match="revoked"):
        store.authenticate(first.token)
    assert store.authenticate(second.token).token_id == second.token_id
    with pytest.raises(AccessError, match="no active token"):
        store.revoke_token(first.token_id)


def test_admin_mistakes_are_clear_errors(store: AccessStore) -> None:
    with pytest.raises(AccessError, match="exists already"):
        store.add_tenant("acme")
    with pytest.raises(AccessError, match="no tenant 'globex'"):
        store.add_line("globex", "l1")
    with pytest.raises(AccessError, match="has no line 'press-9'"):
        store.add_camera("acme", "press-9", "cam-8")
    with pytest.raises(AccessError, match="has no camera 'cam-8'"):
        store.issue_token("acme", "cam-8")
    for bad in ("bad tenant/../x", "Acme", "a.b"):  # tenant ids prefix storage keys
        with pytest.raises(AccessError, match="must be 1-64"):
            store.add_tenant(bad)
    with pytest.raises(AccessError, match="must be 1-64"):
        store.add_camera("acme", "press-3", "cam/../x")
    with pytest.raises(AccessError, match="'cluster' is reserved"):  # cluster/<name>@N is a cluster's pool
        store.add_tenant("cluster")


def test_cameras_of_two_tenants_may_share_an_id(store: AccessStore) -> None:
    store.add_tenant("globex")
    store.add_line("globex", "l1")
    store.add_camera("globex", "l1", "cam-7")
    a, b = store.issue_token("acme", "cam-7"), store.issue_token("globex", "cam-7")
    assert store.authenticate(a.token).tenant_id == "acme" and store.authenticate(b.token).tenant_id == "globex"
    assert store.cameras("globex") == [("globex", "l1", "cam-7")]


def test_the_cache_sees_a_revocation_within_its_lifetime(store: AccessStore) -> None:
    issued = store.issue_token("acme", "cam-7")
    cache = TokenCache(store, ttl_s=0.2)
    assert cache.authenticate(issued.token).camera_id == "cam-7"
    store.revoke_token(issued.token_id)
    assert cache.authenticate(issued.token).camera_id == "cam-7"  # still cached
    time.sleep(0.25)
    with pytest.raises(AccessDeniedError):
        cache.authenticate(issued.token)


def admin(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "lineqa.cli", "admin", "--home", str(home), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def test_lineqa_admin_sets_up_a_camera_and_its_token(tmp_path: Path) -> None:
    for step in (["tenant", "add", "acme"], ["line", "add", "acme", "l1"], ["camera", "add", "acme", "l1", "c1"]):
        assert admin(tmp_path, *step).returncode == 0
    issued = admin(tmp_path, "token", "issue", "acme", "c1")
    token = issued.stdout.strip()
    assert issued.returncode == 0 and "shown only now" in issued.stderr
    engine = open_database(sqlite_url(tmp_path / "lineqa.db"))
    assert AccessStore(engine).authenticate(token).camera_id == "c1"
    listed = json.loads(admin(tmp_path, "--json", "token", "list").stdout)
    assert [(t["tenant_id"], t["camera_id"], t["revoked_at"]) for t in listed] == [("acme", "c1", None)]
    assert admin(tmp_path, "token", "revoke", listed[0]["token_id"]).returncode == 0
    with pytest.raises(AccessDeniedError):
        AccessStore(engine).authenticate(token)
    engine.dispose()
    failed = admin(tmp_path, "camera", "add", "acme", "nope", "c2")
    assert failed.returncode == 2 and failed.stderr.count("\n") == 1 and "has no line 'nope'" in failed.stderr
