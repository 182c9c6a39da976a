"""Back-pressure (RELIABILITY.md 13): a camera that sends frames and never reads its results is not read
further once its results back up: the gateway judges a bounded number of its frames, then flow control holds
the camera, and nothing piles up in the gateway. Triton is the loopback stand-in (fast, always answering), so
the gateway is not the bottleneck; the reader is."""

from __future__ import annotations

import asyncio
from pathlib import Path

import cv2
import grpc
import numpy as np

from lineqa.protos.lineqa.inspection.v1 import inspection_pb2 as pb
from lineqa.protos.lineqa.inspection.v1 import inspection_pb2_grpc as pb_grpc
from lineqa.serving.database import open_database, sqlite_url
from lineqa.serving.inspector import Inspector
from lineqa.serving.local_plant import provision_local_plant
from lineqa.serving.model_repository import ModelRepository
from lineqa.serving.recipes import RecipeBook, RecipeStore
from lineqa.serving.records import RecordStore
from lineqa.serving.triton_client import TritonClient
from tests.helpers.faults import StandInTriton
from tests.helpers.serving import lineup_of, running_gateway


def test_a_camera_that_stops_reading_is_not_read_further(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    repository = ModelRepository(tmp_path / "models")
    repository.add_version("metal", tiny_models["yolo11n"])
    plant = provision_local_plant(tmp_path, cameras=("cam",), recipes={"r": "id: r\nmodel: {name: metal}\n"})
    store = RecordStore(open_database(sqlite_url(tmp_path / "lineqa.db")))
    triton = StandInTriton().start()
    image = cv2.imencode(".png", np.full((64, 64, 3), 128, np.uint8))[1].tobytes()
    judged: list[int] = []
    writes: list[int] = []

    async def scenario() -> None:
        recipes = RecipeBook(RecipeStore(store.engine))
        inspector = Inspector(lineup_of(repository), recipes, TritonClient(triton.url, timeout_s=5), store)
        written = 0
        async with running_gateway(inspector, plant, stream_in_flight=4) as gateway:
            # The camera's receive window stays at HTTP/2's 64 KB (no BDP growth), so its unread results fill it
            # soon; from then on only the gateway's own bounds act.
            options = [("grpc.http2.bdp_probe", 0)]
            address = f"localhost:{gateway.port}"
            async with grpc.aio.secure_channel(address, plant.channel_credentials(), options=options) as channel:
                call = pb_grpc.InspectionServiceStub(channel).StreamInspect(metadata=plant.call_metadata("cam"))

                async def write_without_reading() -> None:
                    nonlocal written
                    for sequence in range(1, 100_000):
                        identity = pb.FrameIdentity(camera_id="cam", line_id="line-1", sequence=sequence)
                        frame = pb.Frame(identity=identity, recipe_id="r",
                                         image=pb.Image(encoding=pb.IMAGE_ENCODING_PNG, data=image))  # fmt: skip
                        await call.write(pb.StreamInspectRequest(frame=frame))
                        written += 1

                writer = asyncio.create_task(write_without_reading())
                for _ in range(3):  # the judged count must settle: the gateway stopped reading
                    await asyncio.sleep(4)
                    judged.append(await asyncio.to_thread(store.count))
                    writes.append(written)
                writer.cancel()
                call.cancel()

    try:
        asyncio.run(scenario())
    finally:
        triton.stop()
        store.close()
    print(f"\nnever read: frames written by the camera {writes} (held by flow control), judged {judged}")
    assert judged[-1] == judged[-2] > 0, f"the gateway kept reading a stream nobody read: {judged}"
    assert writes[-1] == writes[-2] < 100_000 - 1, f"the camera was never held: {writes}"
