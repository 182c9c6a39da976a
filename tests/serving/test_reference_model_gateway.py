"""The trained reference-mode DeepPCB detector through the gateway equals ``lineqa predict`` on the same pairs.

The committed pair model (``tests/assets/deeppcb-reference-yolo11n-448.onnx``, trained on board + template by
``benchmarks/train_reference.py``) on a real embedded Triton; real DeepPCB boards and their templates, each
board and each template photographed again (seeded shift, rotation, light, blur, noise) so the gateway must
align them back. Three streams over TLS at once, every frame sent before any result is read, each frame naming
its own reference, half inline and half by the id ``AddReference`` returned. Every result must be what
``lineqa predict --reference TEMPLATE`` says of the same files: the same verdict and the same flagged
detections. Needs ../shared/datasets (DeepPCB).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from lineqa.protos.lineqa.inspection.v1 import inspection_pb2 as pb
from lineqa.protos.lineqa.inspection.v1 import inspection_pb2_grpc as pb_grpc
from lineqa.serving.embedded_triton import EmbeddedTriton
from lineqa.serving.local_plant import set_recipe
from lineqa.serving.model_repository import ModelRepository
from lineqa.serving.references import ReferenceStore
from lineqa.vision.perturb import rephotograph
from tests.helpers.deeppcb import deeppcb_pairs
from tests.helpers.matching import MatchStats, assert_same_detections
from tests.helpers.serving import embedded_triton
from tests.serving.test_gateway import defects_of, flagged_of, make_rig

pytestmark = pytest.mark.slow

PAIR_MODEL = Path(__file__).resolve().parent.parent / "assets" / "deeppcb-reference-yolo11n-448.onnx"
NAME = "pcb-pairs"
RECIPE = f"id: pairs\nmodel: {{name: {NAME}}}\ndefaults: {{fail_confidence: 0.5, review_confidence: 0.25}}\n"
BOARDS = 6


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ModelRepository, Path, EmbeddedTriton]]:
    work = tmp_path_factory.mktemp("pair-model")
    repository = ModelRepository(work / "models")
    repository.add_version(NAME, PAIR_MODEL)
    with embedded_triton(repository) as triton:
        yield repository, work, triton


def write_jpeg(path: Path, image: np.ndarray) -> Path:
    cv2.imwrite(str(path), image, [cv2.IMWRITE_JPEG_QUALITY, 95])
    return path


def shots(deeppcb_root: Path, out: Path) -> list[tuple[Path, list[Path]]]:
    """Per board, spread over DeepPCB: its template (the reference, as DeepPCB ships it) and two frames, the
    board and the template each photographed again."""
    rng = np.random.default_rng(17)
    cases = []
    for number, (board, _) in enumerate(deeppcb_pairs(deeppcb_root)[40:1000:160][:BOARDS]):
        template = board.with_name(board.name.replace("_test.jpg", "_temp.jpg"))
        image, golden = cv2.imread(str(board)), cv2.imread(str(template))
        frames = [
            write_jpeg(out / f"b{number}-board.jpg", rephotograph(image, rng)),
            write_jpeg(out / f"b{number}-good.jpg", rephotograph(golden, rng)),
        ]
        cases.append((template, frames))
    return cases


def predicted(cases: list[tuple[Path, list[Path]]], recipe: Path, out: Path) -> dict[str, dict[str, Any]]:
    """``lineqa predict`` as a user runs it, once per golden sample; its JSON line per frame, by file stem."""
    lines = {}
    for number, (template, frames) in enumerate(cases):
        output = out / f"predict-{number}.jsonl"
        cmd = [sys.executable, "-m", "lineqa.cli", "predict", "--model", str(PAIR_MODEL), "--recipe", str(recipe),
               "--reference", str(template), "--output", str(output), *map(str, frames)]  # fmt: skip
        subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=300)
        for frame_path, line in zip(frames, output.read_text().splitlines(), strict=True):
            lines[frame_path.stem] = json.loads(line)
    return lines


def test_a_trained_pair_model_through_the_gateway_equals_lineqa_predict(  # type: ignore[no-untyped-def]
    served, deeppcb_root: Path, tmp_path: Path
) -> None:
    cases = shots(deeppcb_root, tmp_path)
    recipe = tmp_path / "pairs.yaml"
    recipe.write_text(RECIPE)
    rig = make_rig(served, tmp_path / "records.db", references=ReferenceStore(tmp_path / "references"))
    set_recipe(rig.inspector.store.engine, "acme", "pairs", RECIPE)
    by_id = {template for number, (template, _) in enumerate(cases) if number % 2 == 0}

    def frame(camera: str, sequence: int, path: Path, template: Path, reference_id: str) -> pb.Frame:
        identity = pb.FrameIdentity(camera_id=camera, line_id="line-1", part_id=path.stem, sequence=sequence)
        f = pb.Frame(identity=identity, recipe_id="pairs",
                     image=pb.Image(encoding=pb.IMAGE_ENCODING_JPEG, data=path.read_bytes()))  # fmt: skip
        if template in by_id:
            f.reference_id = reference_id
        else:
            f.reference_image.CopyFrom(pb.Image(encoding=pb.IMAGE_ENCODING_JPEG, data=template.read_bytes()))
        return f

    async def run() -> list[pb.InspectionResult]:
        gateway = rig.server()
        await gateway.server.start()
        try:
            async with rig.channel(gateway.port) as channel:
                stub = pb_grpc.InspectionServiceStub(channel)
                ids = {}
                for template in sorted(by_id):
                    image = pb.Image(encoding=pb.IMAGE_ENCODING_JPEG, data=template.read_bytes())
                    added = await stub.AddReference(pb.AddReferenceRequest(image=image),
                                                    metadata=rig.plant.call_metadata("cam-1"))  # fmt: skip
                    ids[template] = added.id
                streams: list[tuple[str, list[pb.Frame]]] = [("cam-1", []), ("cam-2", []), ("cam-1", [])]
                for number, (template, frames) in enumerate(cases):
                    for path in frames:
                        camera, sent = streams[number % len(streams)]
                        sent.append(frame(camera, 1000 * (number % 3) + len(sent) + 1, path, template,
                                          ids.get(template, "")))  # fmt: skip

                async def one_stream(camera: str, frames: list[pb.Frame]) -> list[pb.InspectionResult]:
                    async def requests() -> AsyncIterator[pb.StreamInspectRequest]:
                        for f in frames:
                            yield pb.StreamInspectRequest(frame=f)

                    call = stub.StreamInspect(requests(), metadata=rig.plant.call_metadata(camera))
                    return [response.result async for response in call]

                results = await asyncio.gather(*(one_stream(camera, frames) for camera, frames in streams))
                return [result for stream in results for result in stream]
        finally:
            await gateway.server.stop(1)
            await rig.inspector.triton.close()

    results = asyncio.run(run())
    expected = predicted(cases, recipe, tmp_path)
    assert sorted(r.frame.part_id for r in results) == sorted(expected)  # one result per frame, none lost
    stats = MatchStats()
    for result in results:
        part = result.frame.part_id
        record = expected[part]
        assert result.verdict != pb.VERDICT_ERROR, (part, result.error)
        assert pb.Verdict.Name(result.verdict) == f"VERDICT_{record['verdict']}", (part, list(result.reasons))
        assert result.model.name == NAME and result.timings.alignment_ms > 0
        stats += assert_same_detections(defects_of(result), flagged_of(record), conf=0.25, where=part)
    verdicts = {r.frame.part_id: pb.Verdict.Name(r.verdict) for r in results}
    assert stats.matched >= BOARDS, stats  # the model finds defects: the comparison is not of empty lists
    assert all(verdicts[f"b{n}-board"] != "VERDICT_PASS" for n in range(BOARDS)), verdicts  # no defective board passed
