"""Triton's own gRPC client (tritonclient.grpc.aio) straight against the service's gRPC door:
the model configuration, statistics and model repository extensions, as Triton answers them.

Each test serves its own copy of the digits model, so the statistics count only what
the test sent.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import pytest_asyncio
import tritonclient.grpc.aio as triton
from tritonclient.utils import InferenceServerException

from tandem_inference.grpc_server import GrpcServer
from tandem_inference.repository import ModelRepository
from tandem_inference.service import InferenceService
from tandem_inference.settings import Settings

# (model_control="none") -> (a Triton client of a new server, its repository's root,
# the repository)
Serve = Callable[..., Awaitable[tuple[Any, Path, ModelRepository]]]


@pytest.fixture
def repository_root(model_repository: Path, tmp_path: Path) -> Path:
    shutil.copytree(model_repository / "digits", tmp_path / "digits")
    return tmp_path


@pytest_asyncio.fixture
async def serve(repository_root: Path) -> AsyncIterator[Serve]:
    servers: list[GrpcServer] = []
    clients: list[triton.InferenceServerClient] = []

    async def start(
        model_control: str = "none",
    ) -> tuple[triton.InferenceServerClient, Path, ModelRepository]:
        repository = ModelRepository(repository_root)
        repository.load()
        service = InferenceService(repository, model_control=model_control)
        server = GrpcServer(service, Settings(grpc_addr="127.0.0.1:0", shutdown_grace_s=1.0))
        port = await server.start()
        await server.set_serving(serving=True)
        servers.append(server)
        client = triton.InferenceServerClient(f"127.0.0.1:{port}")
        clients.append(client)
        return client, repository_root, repository

    yield start
    for client in clients:
        await client.close()
    for server in servers:
        await server.stop()


async def infer(client: triton.InferenceServerClient, rows: int, model: str = "digits") -> None:
    pixels = triton.InferInput("pixels", [rows, 64], "FP32")
    pixels.set_data_from_numpy(np.zeros((rows, 64), dtype=np.float32))
    result = await client.infer(model, [pixels])
    probabilities = result.as_numpy("probabilities")
    assert probabilities is not None
    assert probabilities.shape == (rows, 10)


async def test_server_metadata_names_the_extensions(serve: Serve) -> None:
    client, _, _ = await serve()
    meta = await client.get_server_metadata(as_json=True)
    assert {"model_configuration", "model_repository", "statistics"} <= set(meta["extensions"])


async def test_get_model_config(serve: Serve) -> None:
    client, _, _ = await serve()
    config = (await client.get_model_config("digits", as_json=True))["config"]
    assert config["name"] == "digits"
    assert config["platform"] == "onnxruntime_onnx"
    assert config["backend"] == "onnxruntime"
    assert config["max_batch_size"] == 128
    # Triton's dims leave the batch dimension out; its int64s are JSON strings.
    assert config["input"] == [{"name": "pixels", "data_type": "TYPE_FP32", "dims": ["64"]}]
    assert config["output"] == [{"name": "probabilities", "data_type": "TYPE_FP32", "dims": ["10"]}]
    assert config["dynamic_batching"]["default_queue_policy"] == {"max_queue_size": 1024}
    with pytest.raises(InferenceServerException, match='model "nope" not found'):
        await client.get_model_config("nope")


async def test_get_inference_statistics_agree_with_what_was_served(
    serve: Serve,
) -> None:
    client, _, _ = await serve()
    await infer(client, 1)
    await infer(client, 3)
    await infer(client, 5)
    # Concurrent requests may share model calls: more rows than executions.
    await asyncio.gather(*(infer(client, 2) for _ in range(8)))
    stats = await client.get_inference_statistics("digits", as_json=True)
    (model,) = stats["model_stats"]
    assert (model["name"], model["version"]) == ("digits", "1")
    assert int(model["inference_count"]) == 1 + 3 + 5 + 8 * 2
    executions = int(model["execution_count"])
    assert 4 <= executions <= 11
    infer_stats = model["inference_stats"]
    assert int(infer_stats["success"]["count"]) == 11
    assert int(infer_stats["success"]["ns"]) > 0
    assert int(infer_stats["queue"]["count"]) == 11
    assert int(infer_stats["compute_infer"]["count"]) == 11
    assert "count" not in infer_stats["fail"]  # zero: proto3 JSON leaves it out
    batches = {int(b["batch_size"]): int(b["compute_infer"]["count"]) for b in model["batch_stats"]}
    assert sum(batches.values()) == executions
    assert sum(size * n for size, n in batches.items()) == 25
    assert int(model["last_inference"]) > 0

    pixels = triton.InferInput("pixels", [1, 63], "FP32")
    pixels.set_data_from_numpy(np.zeros((1, 63), dtype=np.float32))
    with pytest.raises(InferenceServerException, match="does not match"):
        await client.infer("digits", [pixels])
    stats = await client.get_inference_statistics("digits", as_json=True)
    assert int(stats["model_stats"][0]["inference_stats"]["fail"]["count"]) == 1
    everything = await client.get_inference_statistics(as_json=True)
    assert [m["name"] for m in everything["model_stats"]] == ["digits"]


async def test_get_model_repository_index(serve: Serve) -> None:
    client, _, _ = await serve()
    index = await client.get_model_repository_index(as_json=True)
    assert index["models"] == [{"name": "digits", "version": "1", "state": "READY"}]


async def test_load_and_unload_are_refused_without_explicit_model_control(
    serve: Serve,
) -> None:
    client, _, _ = await serve()
    for call in (client.load_model, client.unload_model):
        with pytest.raises(InferenceServerException, match="--model-control explicit") as err:
            await call("digits")
        assert err.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert await client.is_model_ready("digits")


async def test_unload_and_load_with_explicit_model_control(
    serve: Serve,
) -> None:
    client, root, _ = await serve("explicit")
    await client.unload_model("digits")
    assert not await client.is_model_ready("digits")
    with pytest.raises(InferenceServerException, match='model "digits" is unloaded'):
        await infer(client, 1)
    index = await client.get_model_repository_index(as_json=True)
    assert index["models"] == [{"name": "digits", "state": "UNAVAILABLE", "reason": "unloaded"}]

    await client.load_model("digits")
    assert await client.is_model_ready("digits")
    await infer(client, 2)

    # A folder added after the start is in the index, and loads.
    shutil.copytree(root / "digits", root / "digits2", ignore=shutil.ignore_patterns("*.toml"))
    index = await client.get_model_repository_index(as_json=True)
    assert {"name": "digits2", "state": "UNAVAILABLE", "reason": "not loaded"} in index["models"]
    await client.load_model("digits2")
    await infer(client, 3, model="digits2")
    config = (await client.get_model_config("digits2", as_json=True))["config"]
    assert config["input"][0]["dims"] == ["64"]


async def test_unload_waits_for_the_requests_in_flight(serve: Serve) -> None:
    client, _, repository = await serve("explicit")
    running = [asyncio.create_task(infer(client, 64)) for _ in range(16)]
    # Polled: the repository has no event for "a request started", nor needs one.
    async with asyncio.timeout(10):
        while not repository.busy("digits"):  # noqa: ASYNC110
            await asyncio.sleep(0.001)
    taken = repository.busy("digits")
    await client.unload_model("digits")
    assert repository.busy("digits") == 0
    # What was running when the unload came was answered; what came later was refused.
    results = await asyncio.gather(*running, return_exceptions=True)
    answered = [r for r in results if r is None]
    refused = [r for r in results if r is not None]
    assert len(answered) >= taken
    assert all("unload" in str(r) for r in refused), refused
