"""``lineqa datasets`` end to end as a labeller runs it: synth → import → validate → stats → split →
snapshot → diff → export → contribute → pool, with --json, progress on stderr, and one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import pytest
import yaml


def lineqa(home: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "lineqa.cli", "datasets", "--home", str(home), *args]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if check:
        assert done.returncode == 0, done.stderr[-2000:]
    return done


def as_json(done: subprocess.CompletedProcess[str]) -> object:
    return json.loads(done.stdout)


def test_the_labeller_workflow(tmp_path: Path) -> None:
    home = tmp_path / "home"
    data = Path(as_json(lineqa(home, "--json", "synth", str(tmp_path / "synth"), "--count", "20", "--val", "5",
                               "--seed", "3"))["data"])  # type: ignore[index]  # fmt: skip
    imported = as_json(lineqa(home, "--json", "import", "acme/metal", str(data)))
    assert imported["added"] == 25 and imported["skipped"] == []  # type: ignore[index]
    report = lineqa(home, "validate", "acme/metal", check=False)
    assert "25 images checked" in report.stdout and "checking 25 images" in report.stderr
    stats = as_json(lineqa(home, "--json", "stats", "acme/metal", "--plot", str(tmp_path / "sizes.png")))
    assert stats["images"] == 25 and stats["boxes"] == sum(stats["boxes_per_class"].values())  # type: ignore[index]
    plot = cv2.imread(str(tmp_path / "sizes.png"))
    assert plot is not None and plot.shape[0] > 200

    lineqa(home, "split", "acme/metal", "--ratios", "train=0.6,val=0.4", "--seed", "1")
    v1 = as_json(lineqa(home, "--json", "snapshot", "acme/metal", "--note", "first"))
    assert v1["number"] == 1 and v1["images"] == 25  # type: ignore[index]
    again = as_json(lineqa(home, "--json", "snapshot", "acme/metal"))
    assert again["sha256"] == v1["sha256"]  # type: ignore[index]
    lineqa(home, "split", "acme/metal", "--ratios", "train=0.6,val=0.4", "--seed", "2")
    v2 = as_json(lineqa(home, "--json", "snapshot", "acme/metal"))
    change = as_json(lineqa(home, "--json", "diff", "acme/metal@1", "acme/metal@2"))
    assert v2["number"] == 2 and change["moved"] and not change["added"]  # type: ignore[index]

    out = tmp_path / "export"
    lineqa(home, "export", "acme/metal@1", "--format", "yolo", "--out", str(out))
    spec = yaml.safe_load((out / "data.yaml").read_text())
    assert set(spec["names"].values()) == {"scratch", "dent", "stain"} and {"train", "val"} <= set(spec)
    reimported = as_json(lineqa(home, "--json", "import", "acme/roundtrip", str(out)))
    assert reimported["added"] == 25  # type: ignore[index]
    roundtrip = as_json(lineqa(home, "--json", "snapshot", "acme/roundtrip"))
    assert as_json(lineqa(home, "--json", "diff", "acme/metal@1", "acme/roundtrip@1")) == {
        k: []
        for k in as_json(lineqa(home, "--json", "diff", "acme/metal@1", "acme/metal@1"))  # type: ignore[union-attr]
    }, "export then import changed the dataset"
    assert roundtrip["images"] == 25  # type: ignore[index]

    lineqa(home, "contribute", "acme/metal@1", "--by", "qa@acme")
    pool = as_json(lineqa(home, "--json", "pool", "--map", "scratch=scratches"))
    assert pool["number"] == 1 and pool["images"] == 25 and "scratches" in pool["classes"]  # type: ignore[index]
    lineqa(home, "export", "pool@1", "--format", "coco", "--out", str(tmp_path / "pool-coco"))
    assert list((tmp_path / "pool-coco").rglob("*.json"))
    assert "metal" in lineqa(home, "versions", "acme").stdout
    assert lineqa(home, "versions", "globex").stdout.strip() == ""


@pytest.mark.parametrize(("args", "message"), [
    (["snapshot", "globex/metal"], "tenant 'globex' has no dataset 'metal'"),
    (["import", "acme/x", "/no/such/folder"], "does not exist"),
    (["split", "acme/x", "--ratios", "train=2"], "must be positive and add up to 1"),
    (["export", "nonsense", "--out", "/tmp/x"], "is not <tenant>/<name>"),
])  # fmt: skip
def test_mistakes_are_one_line_errors(tmp_path: Path, args: list[str], message: str) -> None:
    done = lineqa(tmp_path, *args, check=False)
    assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr
    assert done.stderr.count("\n") == 1


@pytest.mark.parametrize("damage", ["short_row", "missing_image"])
def test_a_bad_source_names_file_and_line_and_imports_nothing(tmp_path: Path, damage: str) -> None:
    data = Path(as_json(lineqa(tmp_path, "--json", "synth", str(tmp_path / "s"), "--count", "3"))["data"])  # type: ignore[index]
    label = sorted((data.parent / "labels" / "train").glob("*.txt"))[0]
    if damage == "short_row":
        label.write_text("0 0.5 0.5 0.1\n")  # four numbers, YOLO needs five
        where = f"{label.name}:1"
    else:
        image = data.parent / "images" / "train" / label.with_suffix(".png").name
        image.unlink()
        where = label.stem
    done = lineqa(tmp_path, "import", "acme/bad", str(data), check=False)
    assert done.returncode == 2 and "nothing imported" in done.stderr and where in done.stderr
    assert "Traceback" not in done.stderr
    assert lineqa(tmp_path, "versions", "acme").stdout.strip() == ""  # no dataset was created
    imported = as_json(lineqa(tmp_path, "--json", "import", "acme/bad", str(data), "--skip-bad"))
    # a row that cannot be read leaves its image without labels (imported as such); a missing image is skipped
    assert imported["added"] == (4 if damage == "short_row" else 3) and len(imported["skipped"]) == 1  # type: ignore[index]
