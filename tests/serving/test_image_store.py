"""The image store: server-made keys under the tenant's prefix, deduplicated, traversal refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from lineqa.serving.image_store import ImageStore, ImageStoreError


def test_keys_are_content_addressed_under_the_tenant(tmp_path: Path) -> None:
    store = ImageStore(tmp_path)
    key = store.put("acme", b"jpeg bytes", "jpg")
    assert key.startswith("acme/") and key.endswith(".jpg")
    assert store.put("acme", b"jpeg bytes", "jpg") == key  # stored once
    assert store.get("acme", key) == b"jpeg bytes"
    assert store.put("globex", b"jpeg bytes", "jpg").startswith("globex/")  # same bytes, other tenant, own copy
    assert sorted(p.name for p in tmp_path.iterdir()) == ["acme", "globex"]
    assert not list(tmp_path.rglob(".incoming-*"))


@pytest.mark.parametrize(
    "key",
    [
        "globex/ab/" + "a" * 64 + ".jpg",  # another tenant's key
        "acme/../globex/ab/" + "a" * 64 + ".jpg",
        "/etc/passwd",
        "acme/ab/../../secret.jpg",
        "acme/ab/" + "a" * 64 + ".exe",
    ],
)
def test_foreign_and_escaping_keys_are_refused(key: str, tmp_path: Path) -> None:
    with pytest.raises(ImageStoreError, match="is not an image key of tenant 'acme'"):
        ImageStore(tmp_path).get("acme", key)


@pytest.mark.parametrize(("tenant", "extension"), [("../x", "jpg"), ("Acme Corp", "jpg"), ("acme", "gif")])
def test_bad_tenants_and_formats(tenant: str, extension: str, tmp_path: Path) -> None:
    with pytest.raises(ImageStoreError):
        ImageStore(tmp_path).put(tenant, b"x", extension)
    assert list(tmp_path.iterdir()) == []
