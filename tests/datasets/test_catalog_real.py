"""The real datasets through ``lineqa datasets`` into the catalog: DeepPCB imported whole and split by board
group; NEU-DET's byte-identical duplicate reported by validate."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

from tests.datasets.test_cli import lineqa


def test_deeppcb_into_the_catalog_split_by_board_group(deeppcb_root: Path, tmp_path: Path) -> None:
    listing = str(deeppcb_root / "trainval.txt")
    imported = json.loads(lineqa(tmp_path, "--json", "import", "acme/deeppcb", listing).stdout)
    assert imported["added"] == 1000 and imported["skipped"] == []
    assert imported["classes"] == ["open", "short", "mousebite", "spur", "copper", "pin-hole"]
    lineqa(tmp_path, "split", "acme/deeppcb", "--ratios", "train=0.8,val=0.2", "--seed", "0")
    version = json.loads(lineqa(tmp_path, "--json", "snapshot", "acme/deeppcb").stdout)
    assert version["images"] == 1000
    stats = json.loads(lineqa(tmp_path, "--json", "stats", "acme/deeppcb@1").stdout)
    assert stats["boxes"] == 6873 and set(stats["per_split"]) == {"train", "val"}
    out = tmp_path / "export"
    lineqa(tmp_path, "export", "acme/deeppcb@1", "--format", "coco", "--out", str(out))
    splits_of_group: dict[str, set[str]] = defaultdict(set)
    for split in ("train", "val"):
        coco = json.loads((out / "annotations" / f"instances_{split}.json").read_text())
        for image in coco["images"]:
            splits_of_group[image["lineqa_group"]].add(split)
    assert len(splits_of_group) >= 5 and all(len(s) == 1 for s in splits_of_group.values())


def test_neudet_validate_reports_the_byte_identical_pair(neudet_root: Path, tmp_path: Path) -> None:
    done = lineqa(tmp_path, "--json", "validate", str(neudet_root), "--format", "voc", check=False)
    report = json.loads(done.stdout)
    duplicates = [i for i in report["issues"] if i["kind"] == "exact_duplicate"]
    assert len(duplicates) == 1 and len(duplicates[0]["images"]) == 2
    assert report["summary"]["images"] == 1500
