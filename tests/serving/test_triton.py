"""A real Triton Inference Server (embedded through PyTriton) serving the model repository.

Detections through Triton must equal detections through ONNX Runtime in-process (the same vision pre- and
post-processing around a different transport), for both heads, and failures must be typed errors.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from lineqa.datasets.synth import Surface, generate_part
from lineqa.serving.embedded_triton import EmbeddedTriton, free_port
from lineqa.serving.model_repository import ModelRepository, ModelSettings
from lineqa.serving.onnx_model import OnnxModel
from lineqa.serving.triton_client import ModelUnavailableError, TritonClient
from lineqa.vision.detector import postprocess, preprocess
from lineqa.vision.yolo_output import DecodeOptions

pytestmark = pytest.mark.slow
OPTIONS = DecodeOptions(conf_threshold=0.001)


@pytest.fixture(scope="module")
def repository(tiny_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> ModelRepository:
    repo = ModelRepository(tmp_path_factory.mktemp("repo"))
    repo.add_version("metal", tiny_models["yolo11n"], settings=ModelSettings(max_batch_size=8))
    repo.add_version("metal", tiny_models["yolo11n"])
    repo.add_version("metal-e2e", tiny_models["yolo26n"], settings=ModelSettings(max_batch_size=8))
    return repo


@pytest.fixture(scope="module")
def triton(repository: ModelRepository) -> Iterator[EmbeddedTriton]:
    with EmbeddedTriton(repository, ort_threads=1) as server:
        yield server


def test_embedded_triton_listens_on_loopback_only(triton: EmbeddedTriton) -> None:
    import psutil

    ports = {triton.endpoints.grpc_port, triton.endpoints.http_port, triton.endpoints.metrics_port}
    listening = [c for c in psutil.net_connections("inet") if c.status == "LISTEN" and c.laddr.port in ports]
    assert {c.laddr.port for c in listening} == ports
    for conn in listening:  # 127.0.0.1, possibly as an IPv4-mapped IPv6 address
        address = ipaddress.ip_address(conn.laddr.ip)
        mapped = getattr(address, "ipv4_mapped", None)
        assert (mapped or address).is_loopback, f"port {conn.laddr.port} listens on {conn.laddr.ip}"


@pytest.mark.parametrize(("model", "version"), [("metal", 2), ("metal-e2e", 1)])
def test_detections_through_triton_equal_onnx_runtime(
    triton: EmbeddedTriton, repository: ModelRepository, model: str, version: int
) -> None:
    served = repository.version(model, version)
    spec = served.metadata.spec(model, max_batch=8)
    images = [generate_part(Surface.METAL, seed, 320).image for seed in range(5)]
    tensor, boxes = preprocess(images, spec)

    async def through_triton() -> np.ndarray:
        client = TritonClient(triton.endpoints.grpc_url, timeout_s=10)
        try:
            assert await client.is_ready(model, version)
            return await client.infer(model, version, tensor)
        finally:
            await client.close()

    raw_triton = asyncio.run(through_triton())
    raw_local = OnnxModel(served.model_file).infer(tensor)
    np.testing.assert_allclose(raw_triton, raw_local, rtol=1e-4, atol=1e-4)
    via_triton = postprocess(raw_triton, boxes, spec, OPTIONS)
    via_local = postprocess(raw_local, boxes, spec, OPTIONS)
    assert sum(len(d) for d in via_local) > 0
    for a, b in zip(via_triton, via_local, strict=True):
        assert len(a) == len(b)
        np.testing.assert_allclose(a.xyxy, b.xyxy, atol=1e-2)


def test_unknown_model_and_dead_server_are_typed_errors(triton: EmbeddedTriton) -> None:
    batch = np.zeros((1, 3, 320, 320), np.float32)

    async def call(url: str, model: str, version: int) -> None:
        client = TritonClient(url, timeout_s=2)
        try:
            assert not await client.is_ready(model, version)
            await client.infer(model, version, batch)
        finally:
            await client.close()

    with pytest.raises(ModelUnavailableError, match="'absent' version 1"):
        asyncio.run(call(triton.endpoints.grpc_url, "absent", 1))
    with pytest.raises(ModelUnavailableError, match="'metal' version 9"):
        asyncio.run(call(triton.endpoints.grpc_url, "metal", 9))
    with pytest.raises(ModelUnavailableError):
        asyncio.run(call(f"127.0.0.1:{free_port()}", "metal", 1))  # nothing listens there


def test_embedded_triton_serves_the_newest_version(triton: EmbeddedTriton) -> None:
    """PyTriton binds one version per model name; NVIDIA's Triton serves what the version policy says."""
    assert triton.served == {"metal": 2, "metal-e2e": 1}

    async def ready(version: int) -> bool:
        client = TritonClient(triton.endpoints.grpc_url, timeout_s=10)
        try:
            return await client.is_ready("metal", version)
        finally:
            await client.close()

    assert asyncio.run(ready(2)) and not asyncio.run(ready(1))
