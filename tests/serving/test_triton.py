"""The embedded Triton: the wheel's ``tritonserver`` run directly, Python backend, explicit model control.

Real server, real model files (Ultralytics exports). Detections through Triton equal ONNX Runtime in-process
bit for bit (uint8 frames, the same scaling on both sides); the versions the gateway asks for, and only those,
are loaded; model control and the other restricted APIs need the per-process key; everything listens on
loopback; a server that cannot load a model says why.
"""

from __future__ import annotations

import asyncio
import ipaddress
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as triton_grpc
from tritonclient.utils import InferenceServerException

from lineqa.datasets.synth import Surface, generate_part
from lineqa.serving.embedded_triton import ADMIN_HEADER, EmbeddedTriton, EmbeddedTritonError, free_port
from lineqa.serving.model_repository import ModelRepository, ModelSettings
from lineqa.serving.onnx_model import OnnxModel
from lineqa.serving.triton_client import ModelUnavailableError, TritonClient
from lineqa.vision.detector import postprocess, preprocess
from lineqa.vision.yolo_output import DecodeOptions
from tests.helpers.serving import embedded_triton

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
    with embedded_triton(repository) as server:
        yield server


def _client(triton: EmbeddedTriton) -> triton_grpc.InferenceServerClient:
    return triton_grpc.InferenceServerClient(triton.endpoints.grpc_url)


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
    batch, boxes = preprocess(images, spec)
    assert batch.dtype == np.uint8  # a quarter of the float32 bytes cross to Triton

    async def through_triton() -> np.ndarray:
        client = TritonClient(triton.endpoints.grpc_url, timeout_s=10)
        try:
            assert await client.is_ready(model, version)
            return await client.infer(model, version, batch)
        finally:
            await client.close()

    raw_triton = asyncio.run(through_triton())
    raw_local = OnnxModel(served.model_file).infer(batch)
    np.testing.assert_array_equal(raw_triton, raw_local)  # the same scaling on both sides: bit-identical
    via_triton = postprocess(raw_triton, boxes, spec, OPTIONS)
    assert sum(len(d) for d in via_triton) > 0


def test_unknown_model_and_dead_server_are_typed_errors(triton: EmbeddedTriton) -> None:
    batch = np.zeros((1, 3, 320, 320), np.uint8)

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


def test_exactly_the_versions_asked_for_are_loaded_and_switched_on_one_server(triton: EmbeddedTriton) -> None:
    client = _client(triton)
    try:
        # Never promoted: the newest version is on the line, and only it is loaded.
        assert triton.loaded == {"metal": {2}, "metal-e2e": {1}}
        assert client.is_model_ready("metal", "2") and not client.is_model_ready("metal", "1")
        process = triton._process
        triton.load({"metal": [1, 2], "metal-e2e": [1]})  # a promotion's first step: v1 beside v2
        assert client.is_model_ready("metal", "1") and client.is_model_ready("metal", "2")
        triton.load({"metal": [1], "metal-e2e": [1]})  # its last step: v2 unloaded
        assert client.is_model_ready("metal", "1") and not client.is_model_ready("metal", "2")
        assert triton._process is process, "a switch must not start another server"
    finally:
        triton.load({"metal": [2], "metal-e2e": [1]})
        client.close()


def test_restricted_apis_need_the_key(triton: EmbeddedTriton) -> None:
    """Model control, shared memory, statistics, trace and logging answer only with the per-process key."""
    client = _client(triton)
    try:
        for refused in (
            lambda h: client.load_model("metal", headers=h),
            lambda h: client.unload_model("metal-e2e", headers=h),
            lambda h: client.get_system_shared_memory_status(headers=h),
            lambda h: client.get_inference_statistics("metal", headers=h),
            lambda h: client.get_log_settings(headers=h),
            lambda h: client.get_trace_settings(headers=h),
        ):
            with pytest.raises(InferenceServerException, match="restricted"):
                refused({})
            with pytest.raises(InferenceServerException, match="restricted"):
                refused({f"triton-grpc-protocol-{ADMIN_HEADER}": "wrong"})
        assert client.get_system_shared_memory_status(headers=triton.admin_headers) is not None
        assert client.get_inference_statistics("metal", headers=triton.admin_headers) is not None
        assert client.is_model_ready("metal-e2e", "1")  # nothing refused was done
    finally:
        client.close()
    http = f"http://127.0.0.1:{triton.endpoints.http_port}/v2/repository/index"
    with pytest.raises(urllib.error.HTTPError):
        urllib.request.urlopen(urllib.request.Request(http, method="POST", data=b"{}"), timeout=5)
    keyed = urllib.request.Request(http, method="POST", data=b"{}", headers={ADMIN_HEADER: triton.admin_key})
    with urllib.request.urlopen(keyed, timeout=5) as reply:
        assert reply.status == 200


def test_triton_metrics_are_served(triton: EmbeddedTriton) -> None:
    with urllib.request.urlopen(triton.endpoints.metrics_url, timeout=5) as reply:
        text = reply.read().decode()
    assert 'nv_inference_request_success{model="metal",version="2"}' in text


def test_a_model_that_cannot_load_is_refused_with_tritons_reason(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    repository = ModelRepository(tmp_path / "models")
    repository.add_version("metal", tiny_models["yolo11n"])
    broken = repository.add_version("metal", tiny_models["yolo11n"])
    with embedded_triton(repository) as triton:  # v2 on the line
        broken.model_file.write_bytes(b"not an ONNX model")  # corrupted after it was checked in
        with pytest.raises(EmbeddedTritonError, match="could not load metal"):
            triton.load({"metal": [1, 2]})  # ... as a reload (here with v1 beside it) finds
        assert triton.loaded == {"metal": {2}}
        client = _client(triton)
        try:  # the version already loaded is served on
            assert client.is_model_ready("metal", "2")
        finally:
            client.close()


def test_a_fixed_batch_export_takes_bursts_of_frames(plain_exports: dict[str, Path], tmp_path: Path) -> None:
    """Ultralytics' plain export (batch fixed at 1) under a burst of concurrent frames: every one is answered
    (a batching configuration made Triton hand ONNX Runtime batches it refused)."""
    repository = ModelRepository(tmp_path)
    repository.add_version("plain", plain_exports["yolo11n"])
    frames = [preprocess([generate_part(Surface.METAL, seed, 320).image], repository.latest("plain").metadata.spec(
        "plain", 1))[0] for seed in range(16)]  # fmt: skip

    async def burst(url: str) -> list[np.ndarray]:
        client = TritonClient(url, timeout_s=30)
        try:
            return list(await asyncio.gather(*(client.infer("plain", 1, f) for f in frames)))
        finally:
            await client.close()

    with embedded_triton(repository) as triton:
        outputs = asyncio.run(burst(triton.endpoints.grpc_url))
    assert [o.shape for o in outputs] == [(1, 7, 2100)] * 16
