"""Shared fixtures: the real datasets beside the checkout, and a private lineqa home per test session."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED_DATASETS = REPO.parent / "shared" / "datasets"


def _shared(name: str) -> Path:
    path = SHARED_DATASETS / name
    if not path.is_dir():
        pytest.skip(f"real dataset {name!r} not found at {path}: these tests need ../shared/datasets beside the repo")
    return path


@pytest.fixture(scope="session")
def deeppcb_root() -> Path:
    return _shared("deeppcb") / "PCBData"


@pytest.fixture(scope="session")
def neudet_root() -> Path:
    return _shared("neu-det")


@pytest.fixture(scope="session", autouse=True)
def lineqa_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Keep every test's lineqa home (and Ultralytics' settings) out of the user's real home."""
    home = tmp_path_factory.mktemp("lineqa-home")
    mp = pytest.MonkeyPatch()
    mp.setenv("LINEQA_HOME", str(home))
    yield home
    mp.undo()


POSTGRES_ADMIN_URL = os.environ.get("LINEQA_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


@contextlib.contextmanager
def _fresh_postgres_database() -> Iterator[str]:
    """A new database on the loopback PostgreSQL server, dropped afterwards.

    Missing server: a skip on a developer's machine, a failure in CI (CI=true), where .ci/run starts it.
    """
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import OperationalError

    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"lineqa_test_{uuid.uuid4().hex[:12]}"
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except OperationalError as exc:
        message = f"PostgreSQL not reachable at {POSTGRES_ADMIN_URL}: {exc.orig}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    try:
        yield POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """One PostgreSQL database for the session's tests that clean up after themselves."""
    with _fresh_postgres_database() as url:
        yield url


@pytest.fixture
def empty_postgres_url() -> Iterator[str]:
    """A database of its own, for tests that need one with no schema yet."""
    with _fresh_postgres_database() as url:
        yield url


def app_role_url(owner_url: str) -> str:
    """The same database reached as the application role the migrations create (a non-owner login, under
    row-level security; the loopback server trusts it without a password)."""
    from sqlalchemy.engine import make_url

    from lineqa.row_security import APP_ROLE

    return make_url(owner_url).set(username=APP_ROLE, password=None).render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    """Pictures the test run keeps for people to look at (overlays, screenshots): test-artifacts/."""
    path = REPO / "test-artifacts"
    path.mkdir(exist_ok=True)
    return path


MQTT_BROKER = os.environ.get("LINEQA_TEST_MQTT", "127.0.0.1:1883")


@pytest.fixture(scope="session")
def broker() -> tuple[str, int]:
    """The MQTT broker on loopback (Mosquitto on this machine kind): a skip where it is absent, a failure in CI."""
    import socket

    host, _, port = MQTT_BROKER.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=2).close()
    except OSError as exc:
        message = f"no MQTT broker at {MQTT_BROKER} (set LINEQA_TEST_MQTT=host:port): {exc}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return host, int(port)
