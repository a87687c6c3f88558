"""The NATS front door against a real nats-server, through the generated protobuf messages.

The server binary is `edge-go/bin/nats-server` (built by `make setup`) or the one
TANDEM_NATS_SERVER names; without either these tests are skipped, loudly.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import io
import json
import logging
import shutil
import ssl
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import nats
import nats.errors
import numpy as np
import pytest
import pytest_asyncio
from google.protobuf.message import Message
from nats.aio.client import Client

from tandem_inference import __version__, logs
from tandem_inference.backends import Backend
from tandem_inference.batcher import DynamicBatcher
from tandem_inference.model_config import DynamicBatching, ModelConfig
from tandem_inference.nats_worker import NatsWorker, connect_options
from tandem_inference.pb import grpc_service_pb2 as pb
from tandem_inference.repository import ModelRepository
from tandem_inference.service import SERVER_NAME, InferenceService
from tandem_inference.settings import Settings

from certs import make_certs
from doubles import Gated
from messages import probabilities, raw_request
from nats_server import AUTH_CONFIG, MISSING, NATS_SERVER, PASSWORDS, NatsServer

if NATS_SERVER is None:
    pytest.skip(MISSING, allow_module_level=True)

Digits = tuple[np.ndarray, np.ndarray]
Reply = TypeVar("Reply", bound=Message)
INFER = "oip.v2.models.digits.infer"


@pytest.fixture(scope="module")
def nats_server() -> Iterator[NatsServer]:
    server = NatsServer()
    server.start()
    yield server
    server.stop()


@asynccontextmanager
async def worker(service: InferenceService, url: str) -> AsyncIterator[NatsWorker]:
    w = NatsWorker(service, Settings(nats_url=url, shutdown_grace_s=10))
    await w.start()
    await w.set_serving(serving=True)
    try:
        yield w
    finally:
        await w.stop()


@pytest_asyncio.fixture(scope="module")
async def nc(nats_server: NatsServer, service: InferenceService) -> AsyncIterator[Client]:
    async with worker(service, nats_server.url):
        client = await nats.connect(nats_server.url)
        yield client
        await client.close()


async def call(
    nc: Client, subject: str, request: Message, reply: type[Reply], **headers: str
) -> Reply:
    msg = await nc.request(subject, request.SerializeToString(), timeout=10, headers=headers)
    assert not (msg.headers or {}).get("Nats-Service-Error-Code"), msg.headers
    return reply.FromString(msg.data)


async def error(nc: Client, subject: str, payload: bytes, **headers: str) -> tuple[str, str]:
    msg = await nc.request(subject, payload, timeout=10, headers=headers or None)
    assert msg.data == b""
    assert msg.headers is not None
    return msg.headers["Nats-Service-Error-Code"], msg.headers["Nats-Service-Error"]


async def test_server_rpcs(nc: Client) -> None:
    assert (
        await call(nc, "oip.v2.server.live", pb.ServerLiveRequest(), pb.ServerLiveResponse)
    ).live
    ready = await call(nc, "oip.v2.server.ready", pb.ServerReadyRequest(), pb.ServerReadyResponse)
    assert ready.ready
    meta = await call(
        nc, "oip.v2.server.metadata", pb.ServerMetadataRequest(), pb.ServerMetadataResponse
    )
    assert (meta.name, meta.version) == (SERVER_NAME, __version__)


@pytest.mark.parametrize("model", ["digits", "digits-torch"])
async def test_model_rpcs(nc: Client, model: str, digits: Digits) -> None:
    subject = f"oip.v2.models.{model}"
    # The model travels in the subject; the message may leave its name empty.
    ready = await call(nc, f"{subject}.ready", pb.ModelReadyRequest(), pb.ModelReadyResponse)
    assert ready.ready
    meta = await call(
        nc, f"{subject}.metadata", pb.ModelMetadataRequest(name=model), pb.ModelMetadataResponse
    )
    assert (meta.name, list(meta.versions)) == (model, ["1"])
    pixels, labels = digits
    request = raw_request(pixels[:50], model, id="n1")
    response = await call(nc, f"{subject}.infer", request, pb.ModelInferResponse)
    assert (response.model_name, response.model_version, response.id) == (model, "1", "n1")
    assert (probabilities(response).argmax(axis=1) == labels[:50]).mean() > 0.9


@pytest.mark.parametrize(
    ("subject", "payload", "headers", "code", "message"),
    [
        (INFER, raw_request(np.zeros((1, 63), np.float32)), {}, "400", "shape [1, 63]"),
        (INFER, b"\xff\xff", {}, "400", "is not a serialized inference.ModelInferRequest"),
        (
            INFER,
            raw_request(np.zeros((1, 64), np.float32), "digits-torch"),
            {},
            "400",
            'the payload names model "digits-torch", the subject oip.v2.models.digits.infer',
        ),
        (
            "oip.v2.models.digits.metadata",
            pb.ModelMetadataRequest(name="digits", version="9"),
            {},
            "404",
            'model "digits" has no version "9"; versions: 1',
        ),
        (
            INFER,
            raw_request(np.zeros((1, 64), np.float32)),
            {"tandem-timeout": "0"},
            "504",
            "the caller's budget (tandem-timeout 0 ms) ran out before the work started",
        ),
        (
            INFER,
            raw_request(np.zeros((1, 64), np.float32)),
            {"tandem-timeout": "soon"},
            "400",
            'header tandem-timeout: "soon" is not a whole number of milliseconds',
        ),
        (
            INFER,
            raw_request(np.zeros((1, 64), np.float32)),
            {"tandem-deadline": "1_000"},
            "400",
            'header tandem-deadline: "1_000" is not a whole number of milliseconds',
        ),
        (
            INFER,
            raw_request(np.zeros((1, 64), np.float32)),
            # Sent a second ago with a budget of half a second: spent before it arrived.
            {"tandem-deadline": "NOW-500", "tandem-timeout": "60000"},
            "504",
            "the caller's deadline (tandem-deadline ",
        ),
        (
            INFER,
            raw_request(np.zeros((1, 64), np.float32)),
            # The earlier of the two wins: here the relative budget.
            {"tandem-deadline": "NOW+60000", "tandem-timeout": "0"},
            "504",
            "the caller's budget (tandem-timeout 0 ms) ran out before the work started",
        ),
    ],
)
async def test_errors_travel_as_headers(
    nc: Client,
    *,
    subject: str,
    payload: Message | bytes,
    headers: dict[str, str],
    code: str,
    message: str,
) -> None:
    data = payload if isinstance(payload, bytes) else payload.SerializeToString()
    # "NOW±ms": a wall-clock deadline relative to when the test runs, not to when
    # the parameters were collected (a long session would have spent it already).
    now_ms = int(time.time() * 1000)
    headers = {
        k: str(now_ms + int(v[3:])) if v.startswith("NOW") else v for k, v in headers.items()
    }
    got_code, got_message = await error(nc, subject, data, **headers)
    assert got_code == code
    assert message in got_message


async def test_a_budget_that_suffices_is_honoured(nc: Client, digits: Digits) -> None:
    request = raw_request(digits[0][:2])
    response = await call(nc, INFER, request, pb.ModelInferResponse, **{"tandem-timeout": "5000"})
    assert probabilities(response).shape == (2, 10)


async def test_services_api_finds_the_worker(nc: Client) -> None:
    ping = json.loads((await nc.request("$SRV.PING.tandem-inference", b"", timeout=5)).data)
    assert ping["name"] == SERVER_NAME
    info = json.loads((await nc.request(f"$SRV.INFO.tandem-inference.{ping['id']}", b"")).data)
    subjects = {e["subject"] for e in info["endpoints"]}
    assert {"oip.v2.server.live", INFER, "oip.v2.models.digits-torch.infer"} <= subjects
    assert {e["queue_group"] for e in info["endpoints"]} == {"tandem-inference"}


async def test_two_workers_in_the_queue_group_share_requests(
    nats_server: NatsServer, service: InferenceService, digits: Digits
) -> None:
    async with worker(service, nats_server.url) as a, worker(service, nats_server.url) as b:
        client = await nats.connect(nats_server.url)
        try:
            requests = [raw_request(digits[0][i : i + 1]) for i in range(60)]
            await asyncio.gather(*(call(client, INFER, r, pb.ModelInferResponse) for r in requests))
            inbox = client.new_inbox()
            sub = await client.subscribe(inbox)
            await client.publish("$SRV.STATS.tandem-inference", b"", reply=inbox)
            counts: dict[str, int] = {}
            # Every worker on the server answers; collect until the answers stop.
            while True:
                try:
                    stats = json.loads((await sub.next_msg(timeout=0.5)).data)
                except nats.errors.TimeoutError:
                    break
                counts[stats["id"]] = next(
                    e["num_requests"] for e in stats["endpoints"] if e["subject"] == INFER
                )
        finally:
            await client.close()
    ids = {a.service_id, b.service_id}
    assert all(counts[i] > 0 for i in ids), counts


@pytest.fixture
def private_server() -> Iterator[NatsServer]:
    """A server of its own, so that no other worker in the queue group takes the request."""
    server = NatsServer()
    server.start()
    yield server
    server.stop()


@pytest_asyncio.fixture
async def gated(
    model_repository: Path,
) -> AsyncIterator[tuple[InferenceService, Gated]]:
    """A service whose `digits` calls wait at a gate (and at most one more request may
    queue for it); `digits-torch` runs freely."""
    gates: list[Gated] = []

    def factory(backend: Backend, config: ModelConfig) -> DynamicBatcher:
        if config.name == "digits":
            gates.append(Gated(backend))
            backend = gates[-1]
            config = dataclasses.replace(config, dynamic_batching=DynamicBatching(max_queue_size=1))
        return DynamicBatcher(backend, config)

    repo = ModelRepository(model_repository, runner_factory=factory)
    repo.load()
    (gate,) = gates
    yield InferenceService(repo), gate
    gate.gate.set()
    repo.close()


async def test_a_slow_model_call_does_not_block_the_subscription(
    private_server: NatsServer, gated: tuple[InferenceService, Gated], digits: Digits
) -> None:
    service, gate = gated
    async with worker(service, private_server.url):
        client = await nats.connect(private_server.url)
        try:
            slow = asyncio.create_task(
                call(client, INFER, raw_request(digits[0][:1]), pb.ModelInferResponse)
            )
            assert await asyncio.to_thread(gate.started.wait, 10)
            # The same subject answers while the model call is still running ...
            bad = raw_request(np.zeros((1, 63), np.float32)).SerializeToString()
            assert (await error(client, INFER, bad))[0] == "400"
            # ... and so does another model.
            other = raw_request(digits[0][:1], "digits-torch")
            torch_subject = "oip.v2.models.digits-torch.infer"
            assert await call(client, torch_subject, other, pb.ModelInferResponse)
            assert not slow.done()
            gate.gate.set()
            assert probabilities(await slow).shape == (1, 10)
        finally:
            await client.close()


async def test_a_full_queue_is_429(
    private_server: NatsServer, gated: tuple[InferenceService, Gated], digits: Digits
) -> None:
    service, gate = gated
    payload = raw_request(digits[0][:1]).SerializeToString()
    async with worker(service, private_server.url):
        client = await nats.connect(private_server.url)
        try:
            running = asyncio.create_task(client.request(INFER, payload, timeout=10))
            assert await asyncio.to_thread(gate.started.wait, 10)
            queued = asyncio.create_task(client.request(INFER, payload, timeout=10))
            batcher = service.repository.resolve("digits").runner
            assert isinstance(batcher, DynamicBatcher)
            await eventually(lambda: batcher.queued == 1)
            code, message = await error(client, INFER, payload)
            assert (code, message) == (
                "429",
                'model "digits" is overloaded: its queue is full (max_queue_size 1); retry later',
            )
            gate.gate.set()
            for answered in await asyncio.gather(running, queued):
                assert not answered.headers
        finally:
            await client.close()


async def test_drain_answers_what_was_taken(
    private_server: NatsServer, gated: tuple[InferenceService, Gated], digits: Digits
) -> None:
    service, gate = gated
    client = await nats.connect(private_server.url)
    try:
        async with worker(service, private_server.url) as w:
            taken = asyncio.create_task(
                call(client, INFER, raw_request(digits[0][:1]), pb.ModelInferResponse)
            )
            assert await asyncio.to_thread(gate.started.wait, 10)
            stopping = asyncio.create_task(w.stop())
            await eventually(lambda: not w.serving)
            # Out of the queue group: a new request finds nobody.
            with pytest.raises(nats.errors.NoRespondersError):
                await client.request(INFER, raw_request(digits[0][:1]).SerializeToString())
            assert w.in_flight == 1
            assert not stopping.done()
            gate.gate.set()
            await stopping
            assert probabilities(await taken).shape == (1, 10)
    finally:
        await client.close()


async def test_connects_when_the_server_comes_and_reconnects_after_a_restart(
    service: InferenceService, digits: Digits
) -> None:
    server = NatsServer()
    w = NatsWorker(service, Settings(nats_url=server.url))
    connecting = asyncio.create_task(w.start())
    await asyncio.sleep(0.3)
    assert not connecting.done()
    server.start()
    try:
        await asyncio.wait_for(connecting, 10)
        await w.set_serving(serving=True)
        request = raw_request(digits[0][:1])
        for restart in (False, True):
            if restart:
                server.stop()
                server.start()
            client = await nats.connect(server.url)
            try:
                response = await _retry(
                    lambda c=client: call(c, INFER, request, pb.ModelInferResponse)
                )
                assert probabilities(response).shape == (1, 10)
            finally:
                await client.close()
    finally:
        await w.stop()
        server.stop()


async def eventually(predicate: Callable[[], bool]) -> None:
    for _ in range(500):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("never happened")


async def _retry(attempt: Any) -> Any:
    """The worker may not have resubscribed yet right after the server came back."""
    for _ in range(100):
        try:
            return await attempt()
        except (nats.errors.NoRespondersError, nats.errors.TimeoutError):
            await asyncio.sleep(0.05)
    return await attempt()


@pytest.fixture(scope="module")
def auth_server() -> Iterator[NatsServer]:
    """A server with CONTRACT.md's users and permissions, and no anonymous access."""
    server = NatsServer(AUTH_CONFIG)
    server.start()
    yield server
    server.stop()


async def test_with_credentials_the_worker_serves_the_gateway(
    auth_server: NatsServer, service: InferenceService, digits: Digits
) -> None:
    settings = Settings(
        nats_url=auth_server.url,
        nats_user="worker",
        nats_password=PASSWORDS["worker"],
        shutdown_grace_s=5,
    )
    w = NatsWorker(service, settings)
    await w.start()
    await w.set_serving(serving=True)
    try:
        gateway = await nats.connect(auth_server.url_for("gateway"))
        try:
            response = await call(gateway, INFER, raw_request(digits[0][:1]), pb.ModelInferResponse)
            assert probabilities(response).shape == (1, 10)
        finally:
            await gateway.close()
    finally:
        await w.stop()


async def test_an_anonymous_client_is_refused(auth_server: NatsServer) -> None:
    with pytest.raises(nats.errors.Error, match="Authorization Violation"):
        await nats.connect(auth_server.url, allow_reconnect=False, connect_timeout=5)


async def test_the_gateway_cannot_subscribe_to_the_model_subjects(
    auth_server: NatsServer,
) -> None:
    errors: list[Exception] = []

    async def note(err: Exception) -> None:
        errors.append(err)

    gateway = await nats.connect(auth_server.url_for("gateway"), error_cb=note)
    try:
        await gateway.subscribe("oip.v2.models.>")
        await gateway.flush()
        await eventually(lambda: bool(errors))
    finally:
        await gateway.close()
    assert "permissions violation for subscription" in str(errors[0]).lower(), errors


async def test_passwords_never_reach_the_log(
    auth_server: NatsServer, service: InferenceService
) -> None:
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(logs.JsonFormatter())
    logger = logging.getLogger("tandem_inference")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    parser = argparse.ArgumentParser()
    Settings.add_arguments(parser)
    in_url = Settings.from_args(
        parser.parse_args(["--nats-url", auth_server.url_for("worker")]), {}
    )
    in_env = Settings.from_args(
        parser.parse_args(["--nats-url", auth_server.url, "--nats-user", "worker"]),
        {"TANDEM_NATS_PASSWORD": PASSWORDS["worker"]},
    )
    try:
        for settings in (in_url, in_env):
            w = NatsWorker(service, settings)
            await w.start()
            await w.set_serving(serving=True)
            await w.stop()
    finally:
        logger.removeHandler(handler)
        logger.setLevel(logging.NOTSET)
    text = buffer.getvalue()
    assert "nats connected" in text
    assert "worker:xxxxx@" in text  # the URL was logged, redacted
    assert PASSWORDS["worker"] not in text


def test_connect_options_carry_the_credentials_and_tls(tmp_path: Path) -> None:
    certs = make_certs(tmp_path)
    seed = tmp_path / "seed.nk"
    seed.write_text("SU...")
    settings = Settings(
        nats_user="worker",
        nats_password="pw",
        nats_creds=seed,
        nats_nkey=seed,
        nats_tls_ca=certs.ca,
        nats_tls_cert=certs.client.cert,
        nats_tls_key=certs.client.key,
    )
    options = connect_options(settings)
    assert (options["user"], options["password"]) == ("worker", "pw")
    assert options["user_credentials"] == options["nkeys_seed"] == str(seed)
    context = options["tls"]
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert connect_options(Settings()) == {}


def batcher_of(service: InferenceService) -> DynamicBatcher:
    batcher = service.repository.resolve("digits").runner
    assert isinstance(batcher, DynamicBatcher)
    return batcher


async def test_a_deadline_that_passes_in_the_queue_is_not_run(
    private_server: NatsServer, gated: tuple[InferenceService, Gated], digits: Digits
) -> None:
    service, gate = gated
    batcher = batcher_of(service)
    payload = raw_request(digits[0][:1]).SerializeToString()
    async with worker(service, private_server.url):
        client = await nats.connect(private_server.url)
        try:
            running = asyncio.create_task(client.request(INFER, payload, timeout=10))
            assert await asyncio.to_thread(gate.started.wait, 10)
            ran = batcher.stats.requests
            soon = {"tandem-deadline": str(int(time.time() * 1000) + 200)}
            late = asyncio.create_task(error(client, INFER, payload, **soon))
            await eventually(lambda: batcher.queued == 1)
            await asyncio.sleep(0.4)  # past the deadline, still in the queue
            gate.gate.set()
            code, message = await late
            assert not (await running).headers
        finally:
            await client.close()
    assert code == "504"
    assert "the request was not run" in message
    assert batcher.stats.requests == ran + 1  # the first request only


async def test_a_cancel_drops_queued_work_and_sends_no_reply(
    private_server: NatsServer, gated: tuple[InferenceService, Gated], digits: Digits
) -> None:
    service, gate = gated
    batcher = batcher_of(service)
    payload = raw_request(digits[0][:1]).SerializeToString()
    async with worker(service, private_server.url):
        client = await nats.connect(private_server.url)
        try:
            running = asyncio.create_task(client.request(INFER, payload, timeout=10))
            assert await asyncio.to_thread(gate.started.wait, 10)
            ran = batcher.stats.requests
            headers = {"tandem-request-id": "c0ffee"}
            doomed = asyncio.create_task(
                client.request(INFER, payload, timeout=1.5, headers=headers)
            )
            await eventually(lambda: batcher.queued == 1)
            await client.publish("oip.v2.cancel", b"", headers=headers)
            await eventually(lambda: batcher.queued == 0)
            gate.gate.set()
            assert not (await running).headers
            with pytest.raises(nats.errors.TimeoutError):
                await doomed
        finally:
            await client.close()
    assert batcher.stats.requests == ran + 1  # the cancelled one never ran


async def test_a_request_id_seen_twice_runs_once(
    private_server: NatsServer, gated: tuple[InferenceService, Gated], digits: Digits
) -> None:
    service, gate = gated
    batcher = batcher_of(service)
    payload = raw_request(digits[0][:3]).SerializeToString()
    headers = {"tandem-request-id": "0123456789abcdef0123456789abcdef"}
    async with worker(service, private_server.url):
        client = await nats.connect(private_server.url)
        try:
            ran = batcher.stats.requests
            first = asyncio.create_task(client.request(INFER, payload, timeout=10, headers=headers))
            assert await asyncio.to_thread(gate.started.wait, 10)
            # While the first is pending ...
            second = asyncio.create_task(
                client.request(INFER, payload, timeout=10, headers=headers)
            )
            await asyncio.sleep(0.1)
            assert not second.done()
            gate.gate.set()
            replies = [await first, await second]
            # ... and once it has been answered.
            replies.append(await client.request(INFER, payload, timeout=10, headers=headers))
            other = await client.request(
                INFER, payload, timeout=10, headers={"tandem-request-id": "another"}
            )
        finally:
            await client.close()
    assert all(not r.headers or "Nats-Service-Error-Code" not in r.headers for r in replies)
    assert len({r.data for r in replies}) == 1
    assert probabilities(pb.ModelInferResponse.FromString(replies[0].data)).shape == (3, 10)
    assert probabilities(pb.ModelInferResponse.FromString(other.data)).shape == (3, 10)
    assert batcher.stats.requests == ran + 2  # the first and "another"


async def test_the_worker_serves_over_tls_with_a_client_certificate(
    tmp_path: Path, service: InferenceService, digits: Digits
) -> None:
    certs = make_certs(tmp_path)
    server = NatsServer(
        "tls {\n"
        f'  cert_file: "{certs.server.cert}"\n'
        f'  key_file: "{certs.server.key}"\n'
        f'  ca_file: "{certs.ca}"\n'
        "  verify: true\n"
        "}\n"
    )
    server.start()
    try:
        settings = Settings(
            nats_url=server.url,
            nats_tls_ca=certs.ca,
            nats_tls_cert=certs.client.cert,
            nats_tls_key=certs.client.key,
            shutdown_grace_s=5,
        )
        w = NatsWorker(service, settings)
        await w.start()
        await w.set_serving(serving=True)
        try:
            client = await nats.connect(server.url, **connect_options(settings))
            try:
                request = raw_request(digits[0][:1])
                response = await call(client, INFER, request, pb.ModelInferResponse)
                assert probabilities(response).shape == (1, 10)
            finally:
                await client.close()
            # Without a client certificate the server refuses the handshake.
            no_cert = dataclasses.replace(settings, nats_tls_cert=None, nats_tls_key=None)
            with pytest.raises((nats.errors.Error, OSError)):
                await nats.connect(
                    server.url,
                    allow_reconnect=False,
                    connect_timeout=5,
                    **connect_options(no_cert),
                )
        finally:
            await w.stop()
    finally:
        server.stop()


async def test_triton_extensions_over_nats(nc: Client) -> None:
    config = await call(
        nc, "oip.v2.models.digits.config", pb.ModelConfigRequest(), pb.ModelConfigResponse
    )
    assert (config.config.name, config.config.max_batch_size) == ("digits", 128)
    stats = await call(
        nc, "oip.v2.models.digits.stats", pb.ModelStatisticsRequest(), pb.ModelStatisticsResponse
    )
    assert [(s.name, s.version) for s in stats.model_stats] == [("digits", "1")]
    index = await call(
        nc, "oip.v2.repository.index", pb.RepositoryIndexRequest(), pb.RepositoryIndexResponse
    )
    assert {(m.name, m.state) for m in index.models} == {
        ("digits", "READY"),
        ("digits-torch", "READY"),
    }
    code, message = await error(
        nc,
        "oip.v2.repository.unload",
        pb.RepositoryModelUnloadRequest(model_name="digits").SerializeToString(),
    )
    assert (code, "--model-control explicit" in message) == ("400", True)


async def test_unload_and_load_unsubscribe_and_subscribe_the_model(
    nats_server: NatsServer, model_repository: Path, tmp_path: Path, digits: Digits
) -> None:
    shutil.copytree(model_repository / "digits", tmp_path / "digits")
    repository = ModelRepository(tmp_path)
    repository.load()
    service = InferenceService(repository, model_control="explicit")
    client = await nats.connect(nats_server.url)
    # A prefix of its own: the module's worker (model control off) serves oip.v2.
    prefix = "explicit.v2"
    settings = Settings(nats_url=nats_server.url, nats_subject_prefix=prefix, shutdown_grace_s=10)
    own = NatsWorker(service, settings)
    await own.start()
    await own.set_serving(serving=True)
    try:
        request = raw_request(digits[0][:2], "digits")
        await call(client, f"{prefix}.models.digits.infer", request, pb.ModelInferResponse)
        await call(
            client,
            f"{prefix}.repository.unload",
            pb.RepositoryModelUnloadRequest(model_name="digits"),
            pb.RepositoryModelUnloadResponse,
        )
        # Nobody serves the model's subjects any more: NATS says so at once.
        with pytest.raises(nats.errors.NoRespondersError):
            await client.request(
                f"{prefix}.models.digits.infer", request.SerializeToString(), timeout=5
            )
        await call(
            client,
            f"{prefix}.repository.load",
            pb.RepositoryModelLoadRequest(model_name="digits"),
            pb.RepositoryModelLoadResponse,
        )
        response = await call(
            client, f"{prefix}.models.digits.infer", request, pb.ModelInferResponse
        )
        assert probabilities(response).shape == (2, 10)
    finally:
        await own.stop()
        await client.close()
        repository.close()
