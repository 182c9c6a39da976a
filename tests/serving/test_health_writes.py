"""Health that really writes (RELIABILITY.md 4): with the gateway's home on a small file system, filling it up
makes health NOT_SERVING within 2 s, and freeing it makes it SERVING again; a PostgreSQL record store that turns
read-only (as a failover to a replica does) makes it NOT_SERVING too. Triton here is the loopback stand-in
(always ready), so only the stores decide."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from sqlalchemy import create_engine

from lineqa.serving.database import open_database
from lineqa.serving.image_store import ImageStore
from lineqa.serving.inspector import Inspector
from lineqa.serving.local_plant import provision_local_plant
from lineqa.serving.model_repository import ModelRepository
from lineqa.serving.recipes import RecipeBook, RecipeStore
from lineqa.serving.records import RecordStore
from lineqa.serving.served_models import ServedModels
from lineqa.serving.triton_client import TritonClient
from tests.conftest import POSTGRES_ADMIN_URL
from tests.helpers.faults import StandInTriton, fill, small_filesystem
from tests.helpers.serving import lineup_of, running_gateway

BUDGET_S = 2.0


def test_a_full_or_read_only_store_turns_health_not_serving(
    tiny_models: dict[str, Path], tmp_path: Path, empty_postgres_url: str
) -> None:
    repository = ModelRepository(tmp_path / "models")
    repository.add_version("metal", tiny_models["yolo11n"])
    triton = StandInTriton().start()
    with small_filesystem(tmp_path / "home", 8) as home:
        plant = provision_local_plant(home, cameras=("cam",))
        store = RecordStore(open_database(empty_postgres_url))
        database = empty_postgres_url.rsplit("/", 1)[1]

        def read_only(on: bool) -> None:
            """New sessions of the store's database are read-only, and its current ones are cut."""
            with create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT").connect() as admin:
                admin.exec_driver_sql(f'ALTER DATABASE "{database}" SET default_transaction_read_only = {on}')
                admin.exec_driver_sql(
                    f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{database}' "
                    "AND pid <> pg_backend_pid()"
                )

        served: ServedModels = lineup_of(repository)
        changes: list[tuple[str, str, float]] = []

        async def scenario() -> None:
            client = TritonClient(triton.url, timeout_s=2)
            images = ImageStore(home / "images")
            inspector = Inspector(served, RecipeBook(RecipeStore(store.engine)), client, store, images=images)
            async with running_gateway(inspector, plant) as gateway:
                reporter = asyncio.create_task(gateway.health.run())
                try:
                    address = f"localhost:{gateway.port}"
                    async with grpc.aio.secure_channel(address, plant.channel_credentials()) as channel:
                        health = health_pb2_grpc.HealthStub(channel)

                        async def status_within(wanted: str, budget_s: float) -> float:
                            began = time.monotonic()
                            while time.monotonic() - began < budget_s + 3:
                                reply = await health.Check(health_pb2.HealthCheckRequest(service=""))
                                if health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status) == wanted:
                                    return time.monotonic() - began
                                await asyncio.sleep(0.05)
                            return float("inf")

                        assert await status_within("SERVING", 10) < 10
                        filler = await asyncio.to_thread(fill, home)
                        changes.append(("full", "NOT_SERVING", await status_within("NOT_SERVING", BUDGET_S)))
                        filler.unlink()
                        changes.append(("freed", "SERVING", await status_within("SERVING", BUDGET_S)))
                        await asyncio.to_thread(read_only, True)
                        changes.append(("read-only", "NOT_SERVING", await status_within("NOT_SERVING", BUDGET_S)))
                        await asyncio.to_thread(read_only, False)
                        changes.append(("writable", "SERVING", await status_within("SERVING", BUDGET_S)))
                finally:
                    gateway.health.stopping = True
                    reporter.cancel()

        try:
            asyncio.run(scenario())
        finally:
            store.close()
            triton.stop()
    print("\n" + "; ".join(f"{what}: {status} after {seconds:.2f} s" for what, status, seconds in changes))
    assert [(what, status) for what, status, _ in changes] == [
        ("full", "NOT_SERVING"),
        ("freed", "SERVING"),
        ("read-only", "NOT_SERVING"),
        ("writable", "SERVING"),
    ]
    assert all(seconds <= BUDGET_S for _, _, seconds in changes), changes
