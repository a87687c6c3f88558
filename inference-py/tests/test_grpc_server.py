"""The gRPC front door on a real grpc.aio server on a free port, through the generated stub."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
import pytest_asyncio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tandem_inference import codec
from tandem_inference.backends import Backend
from tandem_inference.batcher import DynamicBatcher
from tandem_inference.errors import Unavailable
from tandem_inference.grpc_server import SERVICE_NAME, GrpcServer
from tandem_inference.model_config import ModelConfig
from tandem_inference.pb import grpc_service_pb2 as pb
from tandem_inference.pb import grpc_service_pb2_grpc as pb_grpc
from tandem_inference.repository import ModelRepository
from tandem_inference.runner import Timing
from tandem_inference.service import SERVER_NAME, InferenceService
from tandem_inference.settings import Settings

from certs import Certs, Pem, make_certs
from doubles import Gated
from messages import probabilities, raw_request

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class Client:
    def __init__(self, channel: grpc.aio.Channel) -> None:
        self.oip: Any = pb_grpc.GRPCInferenceServiceStub(channel)  # type: ignore[no-untyped-call]
        self.health = health_pb2_grpc.HealthStub(channel)

    async def status(self, service: str = "") -> int:
        response = await self.health.Check(health_pb2.HealthCheckRequest(service=service))
        return int(response.status)


async def started(service: InferenceService, *, serving: bool) -> tuple[GrpcServer, int]:
    server = GrpcServer(service, Settings(grpc_addr="127.0.0.1:0", shutdown_grace_s=1.0))
    port = await server.start()
    assert port > 0
    if serving:
        await server.set_serving(serving=True)
    return server, port


@pytest_asyncio.fixture(scope="module")
async def client(service: InferenceService) -> AsyncIterator[Client]:
    server, port = await started(service, serving=True)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        yield Client(channel)
    await server.stop()


async def test_server_live_ready_metadata(client: Client) -> None:
    assert (await client.oip.ServerLive(pb.ServerLiveRequest())).live
    assert (await client.oip.ServerReady(pb.ServerReadyRequest())).ready
    meta = await client.oip.ServerMetadata(pb.ServerMetadataRequest())
    assert meta.name == SERVER_NAME


@pytest.mark.parametrize("model", ["digits", "digits-torch"])
async def test_model_ready_metadata_infer(client: Client, model: str, digits: Any) -> None:
    assert (await client.oip.ModelReady(pb.ModelReadyRequest(name=model, version="1"))).ready
    meta = await client.oip.ModelMetadata(pb.ModelMetadataRequest(name=model))
    assert (meta.name, list(meta.versions)) == (model, ["1"])

    pixels, labels = digits
    request = pb.ModelInferRequest(
        model_name=model,
        id="abc",
        inputs=[
            pb.ModelInferRequest.InferInputTensor(name="pixels", datatype="FP32", shape=[64, 64])
        ],
        raw_input_contents=[codec.encode_raw(pixels[:64])],
    )
    response = await client.oip.ModelInfer(request)
    assert (response.model_name, response.model_version, response.id) == (model, "1", "abc")
    (out,) = response.outputs
    got = codec.decode_raw("output", out.datatype, out.shape, response.raw_output_contents[0])
    assert (got.argmax(axis=1) == labels[:64]).mean() >= 0.9


async def test_health(client: Client) -> None:
    assert await client.status() == SERVING
    assert await client.status(SERVICE_NAME) == SERVING
    assert SERVICE_NAME == "inference.GRPCInferenceService"
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await client.status("no.such.Service")
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize(
    ("rpc", "request_", "code", "details"),
    [
        (
            "ModelInfer",
            pb.ModelInferRequest(model_name="nope"),
            grpc.StatusCode.NOT_FOUND,
            'model "nope" not found; models: digits, digits-torch',
        ),
        (
            "ModelReady",
            pb.ModelReadyRequest(name="digits", version="7"),
            grpc.StatusCode.NOT_FOUND,
            'model "digits" has no version "7"; versions: 1',
        ),
        (
            "ModelMetadata",
            pb.ModelMetadataRequest(name="nope"),
            grpc.StatusCode.NOT_FOUND,
            'model "nope" not found; models: digits, digits-torch',
        ),
        (
            "ModelInfer",
            pb.ModelInferRequest(
                model_name="digits",
                inputs=[
                    pb.ModelInferRequest.InferInputTensor(
                        name="pixels", datatype="FP32", shape=[129, 64]
                    )
                ],
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            'input "pixels": batch of 129 exceeds the model\'s max_batch_size 128',
        ),
    ],
)
async def test_errors_become_status_codes(
    client: Client, rpc: str, request_: Any, code: grpc.StatusCode, details: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await getattr(client.oip, rpc)(request_)
    assert (caught.value.code(), caught.value.details()) == (code, details)


async def test_health_follows_readiness_and_shutdown(service: InferenceService) -> None:
    server, port = await started(service, serving=False)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        client = Client(channel)
        assert await client.status() == NOT_SERVING
        assert await client.status(SERVICE_NAME) == NOT_SERVING
        await server.set_serving(serving=True)
        assert await client.status(SERVICE_NAME) == SERVING
        await server.stop()
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await client.oip.ServerLive(pb.ServerLiveRequest(), timeout=2)
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE


class FailingRunner:
    """A runner with a bug in it: the front door must answer INTERNAL, not UNKNOWN."""

    async def infer(
        self,
        inputs: Mapping[str, np.ndarray],
        deadline: float | None = None,
        timing: Timing | None = None,
    ) -> dict[str, np.ndarray]:
        raise RuntimeError("a bug")

    def close(self) -> None:
        pass


async def test_unexpected_errors_are_internal(
    model_repository: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(backend: Backend, config: ModelConfig) -> FailingRunner:
        return FailingRunner()

    repo = ModelRepository(model_repository, runner_factory=broken)
    repo.load()
    server, port = await started(InferenceService(repo), serving=True)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            request = pb.ModelInferRequest(
                model_name="digits",
                inputs=[
                    pb.ModelInferRequest.InferInputTensor(
                        name="pixels", datatype="FP32", shape=[1, 64]
                    )
                ],
                raw_input_contents=[bytes(256)],
            )
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await Client(channel).oip.ModelInfer(request)
    finally:
        await server.stop()
    assert caught.value.code() == grpc.StatusCode.INTERNAL
    assert caught.value.details() == "internal error; see the service's log"
    assert any(r.exc_info and "a bug" in str(r.exc_info[1]) for r in caplog.records)


async def test_an_address_in_use_is_unavailable(service: InferenceService) -> None:
    first, port = await started(service, serving=False)
    try:
        second = GrpcServer(service, Settings(grpc_addr=f"127.0.0.1:{port}"))
        with pytest.raises(Unavailable, match=f"127.0.0.1:{port}"):
            await second.start()
    finally:
        await first.stop()


class DeadlineRecorder(FailingRunner):
    """Records the deadline the front door hands the runner, then fails like its parent."""

    def __init__(self) -> None:
        self.deadlines: list[float | None] = []

    async def infer(
        self,
        inputs: Mapping[str, np.ndarray],
        deadline: float | None = None,
        timing: Timing | None = None,
    ) -> dict[str, np.ndarray]:
        self.deadlines.append(deadline)
        return await super().infer(inputs, deadline, timing)


async def test_the_grpc_deadline_reaches_the_runner(model_repository: Path) -> None:
    recorder = DeadlineRecorder()
    repo = ModelRepository(model_repository, runner_factory=lambda backend, config: recorder)
    repo.load()
    server, port = await started(InferenceService(repo), serving=True)
    request = pb.ModelInferRequest(
        model_name="digits",
        inputs=[
            pb.ModelInferRequest.InferInputTensor(name="pixels", datatype="FP32", shape=[1, 64])
        ],
        raw_input_contents=[bytes(256)],
    )
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            client = Client(channel)
            before = asyncio.get_running_loop().time()
            for timeout in (30.0, None):
                with pytest.raises(grpc.aio.AioRpcError):
                    await client.oip.ModelInfer(request, timeout=timeout)
    finally:
        await server.stop()
    with_deadline, without = recorder.deadlines
    assert with_deadline is not None
    # gRPC rounds the timeout it sends up, so allow a little either way.
    assert before + 29 < with_deadline < before + 31
    assert without is None


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"))


async def tls_server(service: InferenceService, settings: Settings) -> tuple[GrpcServer, int]:
    server = GrpcServer(service, settings)
    port = await server.start()
    await server.set_serving(serving=True)
    return server, port


async def live(port: int, credentials: grpc.ChannelCredentials) -> bool:
    async with grpc.aio.secure_channel(f"localhost:{port}", credentials) as channel:
        response = await Client(channel).oip.ServerLive(pb.ServerLiveRequest(), timeout=5)
        return bool(response.live)


def channel_credentials(ca: Path, client: Pem | None = None) -> grpc.ChannelCredentials:
    return grpc.ssl_channel_credentials(
        root_certificates=ca.read_bytes(),
        private_key=client.key.read_bytes() if client else None,
        certificate_chain=client.cert.read_bytes() if client else None,
    )


async def test_tls_serves_a_client_that_trusts_the_ca(
    service: InferenceService, certs: Certs
) -> None:
    settings = Settings(
        grpc_addr="127.0.0.1:0", grpc_tls_cert=certs.server.cert, grpc_tls_key=certs.server.key
    )
    server, port = await tls_server(service, settings)
    try:
        assert await live(port, channel_credentials(certs.ca))
        # A client that trusts another CA refuses the server's certificate.
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await live(port, channel_credentials(certs.other_ca))
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        # Plaintext does not get through either.
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            with pytest.raises(grpc.aio.AioRpcError):
                await Client(channel).oip.ServerLive(pb.ServerLiveRequest(), timeout=5)
    finally:
        await server.stop()


async def test_mtls_requires_a_client_certificate_from_the_client_ca(
    service: InferenceService, certs: Certs
) -> None:
    settings = Settings(
        grpc_addr="127.0.0.1:0",
        grpc_tls_cert=certs.server.cert,
        grpc_tls_key=certs.server.key,
        grpc_tls_client_ca=certs.ca,
    )
    server, port = await tls_server(service, settings)
    try:
        assert await live(port, channel_credentials(certs.ca, certs.client))
        for refused in (None, certs.stranger):  # no client certificate; one from another CA
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await live(port, channel_credentials(certs.ca, refused))
            assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        await server.stop()


async def test_a_cancelled_call_is_dropped_from_the_queue_not_run(
    model_repository: Path, digits: Any
) -> None:
    gates: list[Gated] = []

    def factory(backend: Backend, config: ModelConfig) -> DynamicBatcher:
        if config.name == "digits":
            gates.append(Gated(backend))
            backend = gates[-1]
        return DynamicBatcher(backend, config)

    repo = ModelRepository(model_repository, runner_factory=factory)
    repo.load()
    (gate,) = gates
    batcher = repo.resolve("digits").runner
    assert isinstance(batcher, DynamicBatcher)
    ran = batcher.stats.requests
    server, port = await started(InferenceService(repo), serving=True)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            oip = Client(channel).oip
            request = raw_request(digits[0][:1])
            running = oip.ModelInfer(request)
            assert await asyncio.to_thread(gate.started.wait, 10)
            left = oip.ModelInfer(request)
            for _ in range(500):
                if batcher.queued == 1:
                    break
                await asyncio.sleep(0.01)
            assert batcher.queued == 1
            # The caller goes away: grpc.aio cancels the handler, the batcher drops it.
            left.cancel()
            for _ in range(500):
                if batcher.queued == 0:
                    break
                await asyncio.sleep(0.01)
            assert batcher.queued == 0
            gate.gate.set()
            assert probabilities(await running).shape == (1, 10)
            with pytest.raises(asyncio.CancelledError):
                await left
    finally:
        gate.gate.set()
        await server.stop()
        repo.close()
    assert batcher.stats.requests == ran + 1  # the cancelled call never ran
