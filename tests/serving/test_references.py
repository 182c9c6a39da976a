"""Golden samples in a lineqa home: ``lineqa references add`` and ``list``, tenant-scoped and private, and
``lineqa recipes set`` refusing a recipe whose golden sample its tenant never added. Synthetic boards only."""

from __future__ import annotations

import hashlib
import stat
import subprocess
import sys
from pathlib import Path

import cv2
import pytest

from lineqa.protos.lineqa.inspection.v1 import inspection_pb2 as pb
from lineqa.serving.access import AccessStore
from lineqa.serving.camera.retry import is_transient
from lineqa.serving.database import open_database, sqlite_url
from lineqa.serving.references import ReferenceStore, ReferenceUnavailableError
from tests.helpers.boards import board


def lineqa(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "lineqa.cli", *args[:1], "--home", str(home), *args[1:]]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60)


def board_png(path: Path, seed: int = 0) -> Path:
    cv2.imwrite(str(path), board(seed))
    return path


def test_add_prints_the_files_sha256_and_list_shows_it_to_its_tenant_only(tmp_path: Path) -> None:
    home = tmp_path / "home"
    golden = board_png(tmp_path / "golden.png")
    added = lineqa(home, "references", "add", "--tenant", "acme", str(golden))
    assert added.returncode == 0, added.stderr
    reference_id = added.stdout.strip()
    assert reference_id == hashlib.sha256(golden.read_bytes()).hexdigest()
    again = lineqa(home, "references", "add", "--tenant", "acme", str(golden))
    assert again.stdout.strip() == reference_id
    cmd = [sys.executable, "-m", "lineqa.cli", "references", "--home", str(home), "add", "--tenant", "acme", "-"]
    piped = subprocess.run(cmd, input=golden.read_bytes(), capture_output=True, timeout=60)  # kubectl exec -i
    assert piped.returncode == 0 and piped.stdout.decode().strip() == reference_id, piped.stderr
    assert lineqa(home, "references", "list", "--tenant", "acme").stdout.split() == [reference_id, "320x320", "png"]
    assert lineqa(home, "references", "list", "--tenant", "globex").stdout == ""
    stored = home / "references" / "acme" / reference_id[:2] / f"{reference_id}.png"
    assert stored.read_bytes() == golden.read_bytes()
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600
    for folder in (home / "references", home / "references" / "acme", stored.parent):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert list(stored.parent.iterdir()) == [stored]  # nothing half-written left beside it


@pytest.mark.parametrize(
    ("content", "words"), [(b"GIF89a....", "GIF"), (b"\x89PNG\r\n\x1a\n" + b"\x00" * 20, "PNG"), (b"", "empty")]
)
def test_add_refuses_what_is_not_an_image_and_stores_nothing(tmp_path: Path, content: bytes, words: str) -> None:
    home = tmp_path / "home"
    (tmp_path / "bad.png").write_bytes(content)
    refused = lineqa(home, "references", "add", "--tenant", "acme", str(tmp_path / "bad.png"))
    assert refused.returncode == 2 and words in refused.stderr and "Traceback" not in refused.stderr
    assert not (home / "references" / "acme").exists()


def test_a_tenant_cannot_read_another_tenants_reference(tmp_path: Path) -> None:
    store = ReferenceStore(tmp_path / "references")
    reference_id = store.add("acme", board_png(tmp_path / "g.png").read_bytes())
    assert store.image("acme", reference_id).shape == (320, 320, 3)
    with pytest.raises(ReferenceUnavailableError, match="no reference"):
        store.image("globex", reference_id)
    with pytest.raises(ReferenceUnavailableError, match="not a reference id"):
        store.path("acme", "../" + reference_id[3:])


def test_recipes_set_refuses_a_golden_sample_the_tenant_never_added(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    engine = open_database(sqlite_url(home / "lineqa.db"))
    for tenant in ("acme", "globex"):
        AccessStore(engine).add_tenant(tenant)
    engine.dispose()
    golden = board_png(tmp_path / "golden.png")
    reference_id = hashlib.sha256(golden.read_bytes()).hexdigest()
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"id: pcb\nmodel: {{name: acme.pcb}}\nreference: {{image: {reference_id}}}\n")
    refused = lineqa(home, "recipes", "set", "acme/pcb", str(recipe), "--reason", "golden sample")
    assert refused.returncode == 2 and "has no reference" in refused.stderr and "references add" in refused.stderr
    assert lineqa(home, "references", "add", "--tenant", "globex", str(golden)).returncode == 0
    refused = lineqa(home, "recipes", "set", "acme/pcb", str(recipe), "--reason", "golden sample")
    assert refused.returncode == 2, "another tenant's reference is not this tenant's"
    assert lineqa(home, "references", "add", "--tenant", "acme", str(golden)).returncode == 0
    accepted = lineqa(home, "recipes", "set", "acme/pcb", str(recipe), "--reason", "golden sample")
    assert accepted.returncode == 0 and "acme/pcb@1 set" in accepted.stdout, accepted.stderr


def test_a_missing_golden_sample_is_sent_again_by_camera_agents() -> None:
    """Adding the sample ('lineqa references add') is what fixes it: the same frame, sent again, is judged."""
    missing = pb.InspectionResult(verdict=pb.VERDICT_ERROR)
    missing.error.code = pb.ERROR_CODE_REFERENCE_UNAVAILABLE
    assert is_transient(missing)


def test_a_frame_a_reference_model_cannot_judge_is_not_sent_again() -> None:
    """REFERENCE_REQUIRED is the frame's own shape (no golden sample with it or its recipe): the same frame sent
    again fails the same way, so the agent hands it on once instead of retrying it for ever."""
    required = pb.InspectionResult(verdict=pb.VERDICT_ERROR)
    required.error.code = pb.ERROR_CODE_REFERENCE_REQUIRED
    assert not is_transient(required)
