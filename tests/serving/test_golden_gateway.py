"""A product judged against its golden sample, end to end: TLS gRPC → gateway → real embedded Triton → records,
and ``lineqa predict`` on the same files agreeing.

The recipe's thresholds are out of the detector's reach (fail 0.99, review 0.98), so every verdict here is the
golden sample's: a re-photographed good board passes, the board with a drawn defect is REVIEW with an
``anomaly`` defect over it, an unrelated board is REVIEW because it cannot be aligned, and a recipe whose
golden sample the gateway does not hold is REFERENCE_UNAVAILABLE, never PASS. Synthetic boards only.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from lineqa.protos.lineqa.inspection.v1 import inspection_pb2 as pb
from lineqa.serving.camera.agent import AgentError, CameraAgent, GatewayTarget, GoldenSample
from lineqa.serving.camera.model import Context
from lineqa.serving.camera.sinks import JsonLinesSink, SinkSet
from lineqa.serving.camera.sources import FolderSource
from lineqa.serving.camera.spool import Spool
from lineqa.serving.local_plant import set_recipe
from lineqa.serving.references import ReferenceStore
from lineqa.vision.perturb import rephotograph
from tests.helpers.boards import DEFECT, board, overlaps, with_defect
from tests.serving.test_gateway import frame, make_rig, served, stream

pytestmark = pytest.mark.slow
__all__ = ["served"]  # the module's fixture: the committed DeepPCB detector on a real embedded Triton

MARGIN = 5  # a re-photograph moves the drawn defect by up to 4 px


def golden_recipe(reference_id: str, recipe_id: str = "golden") -> str:
    return (f"id: {recipe_id}\nmodel: {{name: deeppcb}}\ndefaults: {{fail_confidence: 0.99, review_confidence: 0.98}}\n"
            f"reference: {{image: {reference_id}}}\n")  # fmt: skip


def write_png(path: Path, image: np.ndarray) -> Path:
    cv2.imwrite(str(path), image)
    return path


def test_golden_sample_verdicts_through_the_gateway_equal_lineqa_predict(served, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    golden = write_png(tmp_path / "golden.png", board())
    references = ReferenceStore(tmp_path / "references")
    reference_id = references.add("acme", golden.read_bytes())
    assert reference_id == hashlib.sha256(golden.read_bytes()).hexdigest()
    rng = np.random.default_rng(3)
    parts = {
        "good": write_png(tmp_path / "good.png", rephotograph(board(), rng)),
        "defect": write_png(tmp_path / "defect.png", rephotograph(with_defect(board()), rng)),
        "unrelated": write_png(tmp_path / "unrelated.png", board(seed=5)),
    }
    rig = make_rig(served, tmp_path / "records.db", references=references)
    engine = rig.inspector.store.engine
    set_recipe(engine, "acme", "golden", golden_recipe(reference_id))
    set_recipe(engine, "acme", "lost", golden_recipe("f" * 64, "lost"))
    frames = [frame(i, path.read_bytes(), pb.IMAGE_ENCODING_PNG, "golden") for i, path in enumerate(parts.values(), 1)]
    frames.append(frame(4, parts["good"].read_bytes(), pb.IMAGE_ENCODING_PNG, "lost"))
    results = {r.frame.sequence: r for r in asyncio.run(stream(rig, frames))}
    good, defect, unrelated, lost = (results[i] for i in range(1, 5))

    assert good.verdict == pb.VERDICT_PASS and list(good.defects) == [], good.reasons
    assert good.timings.alignment_ms > 0
    assert defect.verdict == pb.VERDICT_REVIEW
    assert list(defect.reasons) == ["1 anomaly region no detection explains"]
    [anomaly] = defect.defects
    assert anomaly.class_name == "anomaly" and anomaly.disposition == pb.DEFECT_DISPOSITION_ANOMALY
    x1, y1, x2, y2 = DEFECT
    box = (anomaly.box.x1, anomaly.box.y1, anomaly.box.x2, anomaly.box.y2)
    assert overlaps(box, (x1 - MARGIN, y1 - MARGIN, x2 + MARGIN, y2 + MARGIN))
    assert unrelated.verdict == pb.VERDICT_REVIEW and list(unrelated.defects) == []
    [reason] = unrelated.reasons
    assert reason.startswith("not aligned with the golden sample")
    assert lost.verdict == pb.VERDICT_ERROR and lost.error.code == pb.ERROR_CODE_REFERENCE_UNAVAILABLE
    assert "references add" in lost.error.message

    with rig.inspector.store.engine.connect() as conn:  # the review app reads the boxes from the record
        rows = dict(conn.exec_driver_sql("SELECT sequence, defects_json FROM inspections").all())
    assert sorted(rows) == [1, 2, 3]
    [recorded] = json.loads(rows[2])
    assert recorded["class"] == "anomaly" and recorded["disposition"] == "anomaly"
    assert recorded["box"] == pytest.approx(list(box), abs=0.01)

    repository, _, _ = served
    (tmp_path / "golden.yaml").write_text(golden_recipe(reference_id))
    out = tmp_path / "predict.jsonl"
    cmd = [sys.executable, "-m", "lineqa.cli", "predict", "--model", str(repository.latest("deeppcb").model_file),
           "--recipe", str(tmp_path / "golden.yaml"), "--reference", str(golden), "--output", str(out),
           *map(str, parts.values())]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    predicted = [json.loads(line) for line in out.read_text().splitlines()]
    for result, record in zip((good, defect, unrelated), predicted, strict=True):
        assert result.verdict == getattr(pb, f"VERDICT_{record['verdict']}"), record["image"]
        assert list(result.reasons) == record["reasons"]
        assert result.recipe.version == record["recipe"]["version"]
        flagged = [d for d in record["detections"] if d["disposition"] in ("defect", "review", "anomaly")]
        assert [(d.class_name, pytest.approx([d.box.x1, d.box.y1, d.box.x2, d.box.y2], abs=0.01)) for d in
                result.defects] == [(d["class_name"], d["box"]) for d in flagged]  # fmt: skip
    assert predicted[2]["alignment"]["aligned"] is False
    from_store = [*cmd[: cmd.index("--reference")], "--tenant", "acme", "--home", str(tmp_path), str(parts["defect"])]
    stored = subprocess.run(from_store, capture_output=True, text=True, timeout=300)  # the home's copy
    assert stored.returncode == 0, stored.stderr
    assert json.loads(stored.stdout)["detections"] == predicted[1]["detections"]


def test_predict_refuses_a_golden_sample_the_recipe_does_not_name(served, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    repository, _, _ = served
    golden = write_png(tmp_path / "golden.png", board())
    (tmp_path / "r.yaml").write_text(golden_recipe(hashlib.sha256(b"another image").hexdigest()))
    base = [sys.executable, "-m", "lineqa.cli", "predict", "--model", str(repository.latest("deeppcb").model_file),
            "--recipe", str(tmp_path / "r.yaml"), str(golden)]  # fmt: skip
    missing = subprocess.run(base, capture_output=True, text=True, timeout=300)
    assert missing.returncode == 2 and "--reference FILE or --tenant" in missing.stderr
    other = subprocess.run([*base, "--reference", str(golden)], capture_output=True, text=True, timeout=300)
    assert other.returncode == 2 and "is not recipe 'golden''s golden sample" in other.stderr


def test_a_camera_sends_its_golden_sample_once_per_stream_and_every_frame_names_it(served, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """``lineqa camera --reference``: the agent uploads the file (AddReference) and its frames are judged against
    it, not against the recipe's golden sample (here an unrelated board, which would make every part REVIEW)."""
    references = ReferenceStore(tmp_path / "references")
    elsewhere = references.add("acme", write_png(tmp_path / "elsewhere.png", board(seed=5)).read_bytes())
    golden = GoldenSample.read(write_png(tmp_path / "golden.png", board()))
    parts = tmp_path / "parts"
    parts.mkdir()
    rng = np.random.default_rng(4)
    write_png(parts / "1-good.png", rephotograph(board(), rng))
    write_png(parts / "2-defect.png", rephotograph(with_defect(board()), rng))
    rig = make_rig(served, tmp_path / "records.db", references=references)
    set_recipe(rig.inspector.store.engine, "acme", "other", golden_recipe(elsewhere, "other"))
    context = Context("acme", "line-1", "cam-1")
    out = tmp_path / "verdicts.jsonl"

    async def run() -> None:
        gateway = rig.server()
        await gateway.server.start()
        spool = Spool(tmp_path / "spool.db")
        sinks = SinkSet([JsonLinesSink(out, context)], logging.getLogger("test.golden-camera"))
        target = GatewayTarget(f"localhost:{gateway.port}", rig.plant.channel_credentials(), rig.plant.tokens["cam-1"])
        agent = CameraAgent(target, context, "other", spool, sinks, golden=golden)
        try:
            await asyncio.wait_for(agent.run(FolderSource(parts), asyncio.Event()), 120)
        finally:
            sinks.close()
            spool.close()
            await gateway.server.stop(1)
            await rig.inspector.triton.close()

    assert [i for i, _ in references.ids("acme")].count(golden.id) == 0
    asyncio.run(run())
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(line["part_id"].split("-")[-1], line["verdict"]) for line in lines] == [
        ("good", "PASS"),
        ("defect", "REVIEW"),
    ]
    assert golden.id == hashlib.sha256((tmp_path / "golden.png").read_bytes()).hexdigest()
    assert golden.id in [i for i, _ in references.ids("acme")]  # stored once by the gateway, for cam-1's tenant


def test_a_camera_refuses_a_golden_sample_that_is_no_image(tmp_path: Path) -> None:
    bad = tmp_path / "golden.png"
    bad.write_bytes(b"GIF89a not a png")
    with pytest.raises(AgentError, match=r"golden sample .*golden\.png"):
        GoldenSample.read(bad)
    with pytest.raises(AgentError, match="golden sample"):
        GoldenSample.read(tmp_path / "missing.png")
