"""Secrets where they belong: a home made the documented way holds no CA private key, and what lineqa creates
in it is its user's only (home, database and image store 0700/0600); a home from before is brought there by
``lineqa admin migrate-home``, which also turns its recipe files into audited versions and its models into the
tenant's, and ``lineqa serve`` says what is left to do."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from lineqa.content_store import ContentStore
from lineqa.serving.database import open_database, sqlite_url
from lineqa.serving.home_migration import home_problems
from lineqa.serving.model_repository import ModelRepository
from lineqa.serving.pki import PlantPki
from lineqa.serving.recipes import RecipeRef, RecipeStore


def lineqa(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([sys.executable, "-m", "lineqa.cli", *args[:1], "--home", str(home), *args[1:]],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done


def mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def private_keys_in(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()
            and b"PRIVATE KEY" in p.read_bytes()}  # fmt: skip


def test_a_new_home_holds_no_ca_key_and_is_private(tmp_path: Path) -> None:
    home = tmp_path / "plant"
    lineqa(home, "admin", "pki", "init", "--host", "gateway.plant.local")
    lineqa(home, "admin", "tenant", "add", "acme")
    ContentStore(home / "images").put("acme", b"\xff\xd8 a flagged part", "jpg")
    ca_key = (tmp_path / "plant-ca" / "ca.key").read_bytes()
    assert set(private_keys_in(home)) == {"pki/server.key"}  # the gateway's own key, nothing that can sign
    assert ca_key not in private_keys_in(home).values()
    expected = {"": 0o700, "pki": 0o700, "images": 0o700, "images/acme": 0o700, "lineqa.db": 0o600,
                "pki/server.key": 0o600}  # fmt: skip
    assert {name: mode(home / name) for name in expected} == expected
    stored = next((home / "images").rglob("*.jpg"))
    assert mode(stored) == 0o600
    for journal in (home / "lineqa.db-wal", home / "lineqa.db-shm"):  # SQLite gives them the database's mode
        assert not journal.exists() or mode(journal) == 0o600
    assert mode(tmp_path / "plant-ca") == 0o700 and mode(tmp_path / "plant-ca" / "ca.key") == 0o600
    assert home_problems(home) == []
    # The CA stays usable where it is kept: a client certificate for mutual TLS.
    lineqa(home, "admin", "pki", "client", "cam-1")
    assert (home / "pki" / "clients" / "cam-1.pem").is_file()


@pytest.fixture
def old_home(tmp_path: Path, tiny_models: dict[str, Path]) -> Path:
    """A home as lineqa made it before tenant scoping: CA key in pki/, recipe files, a model without a tenant
    prefix, files readable by anyone."""
    home = tmp_path / "home"
    home.mkdir(mode=0o755)
    PlantPki(home / "pki", ca_dir=home / "pki").init(["localhost"])  # the CA key inside the home, as before
    ModelRepository(home / "models").add_version("metal", tiny_models["yolo11n"])
    (home / "recipes").mkdir()
    (home / "recipes" / "bracket.yaml").write_text("# tuned on line 3\nid: bracket\nmodel: {name: metal}\n")
    engine = open_database(sqlite_url(home / "lineqa.db"))
    engine.dispose()
    for path in (home, home / "pki"):
        os.chmod(path, 0o755)
    os.chmod(home / "lineqa.db", 0o644)
    lineqa(home, "admin", "tenant", "add", "acme")
    return home


def test_migrate_home_moves_the_key_imports_recipes_and_scopes_models(old_home: Path, tmp_path: Path) -> None:
    home = old_home
    problems = home_problems(home)
    assert any("private key is inside the home" in p for p in problems)
    assert any("recipe file(s)" in p for p in problems) and any("readable by other users" in p for p in problems)
    key = (home / "pki" / "ca.key").read_bytes()

    done = lineqa(home, "admin", "migrate-home", "--tenant", "acme").stdout
    assert "model metal is now acme.metal" in done and "recipe bracket.yaml is acme/bracket@1" in done
    assert home_problems(home) == []
    assert (tmp_path / "home-ca" / "ca.key").read_bytes() == key and private_keys_in(home).keys() == {"pki/server.key"}
    assert mode(home) == 0o700 and mode(home / "lineqa.db") == 0o600
    assert ModelRepository(home / "models").model_names() == ["acme.metal"]
    assert ModelRepository(home / "models").check() == []  # the generated config names the model anew
    engine = open_database(sqlite_url(home / "lineqa.db"))
    (version,) = RecipeStore(engine).history(RecipeRef("acme", "bracket"))
    engine.dispose()
    assert version.recipe().model.name == "acme.metal" and version.reason.startswith("imported from")
    assert not (home / "recipes").exists() and (home / "recipes.imported" / "bracket.yaml").is_file()
    assert lineqa(home, "admin", "migrate-home", "--tenant", "acme").stdout.strip() == "nothing to do"


def test_serve_names_what_migrate_home_would_fix(old_home: Path, tmp_path: Path) -> None:
    """The warnings come at start, before anything is served (an empty repository then stops it here)."""
    cmd = [sys.executable, "-m", "lineqa.cli", "serve", "--home", str(old_home), "--port", "0", "--models",
           str(tmp_path / "no-models")]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "cannot be served" in done.stderr, done.stderr
    assert "warning: the plant CA's private key is inside the home" in done.stderr
    assert "recipe file(s)" in done.stderr and "lineqa admin migrate-home" in done.stderr
