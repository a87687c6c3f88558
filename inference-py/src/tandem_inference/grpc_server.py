"""The gRPC front door: OIP v2's GRPCInferenceService and grpc.health.v1 on one grpc.aio server.

The servicer only translates: it hands each request to InferenceService and turns a
TandemError into a gRPC status with the error's code and message. The health
service reports NOT_SERVING until the models are loaded and again once shutdown
begins, for the whole server ("") and for the inference service by name.

With tracing on, every RPC but the health checks (ServerLive, ServerReady,
ModelReady, grpc.health.v1) gets a SERVER span that continues the caller's trace
from the metadata; ModelInfer is counted in tandem_inference_requests_total.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, TypeVar

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio

from tandem_inference import metrics, telemetry
from tandem_inference.errors import TandemError, Unavailable
from tandem_inference.pb import grpc_service_pb2 as pb
from tandem_inference.pb import grpc_service_pb2_grpc as pb_grpc

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from tandem_inference.service import InferenceService
    from tandem_inference.settings import Settings

log = logging.getLogger(__name__)

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name

Request = TypeVar("Request")
Response = TypeVar("Response")


def _ignore(status: str) -> None:
    pass


async def _answer(
    rpc: str,
    call: Awaitable[Response],
    context: grpc.aio.ServicerContext[Request, Response],
    outcome: Callable[[str], None] = _ignore,
) -> Response:
    """The response, or the call's error as a gRPC status; `outcome` hears the status
    code's name (OK, INVALID_ARGUMENT, ..., CANCELLED when the caller went away)."""
    try:
        response = await call
    except TandemError as err:
        outcome(err.grpc_status.name)
        await context.abort(err.grpc_status, err.message)
    except asyncio.CancelledError:
        outcome(grpc.StatusCode.CANCELLED.name)
        raise
    except Exception:
        # A bug: the caller gets INTERNAL (not gRPC's UNKNOWN), the log gets the traceback.
        log.exception("unhandled error", extra={"rpc": rpc})
        outcome(grpc.StatusCode.INTERNAL.name)
        await context.abort(grpc.StatusCode.INTERNAL, "internal error; see the service's log")
    outcome(grpc.StatusCode.OK.name)
    return response


class _InferenceServicer(pb_grpc.GRPCInferenceServiceServicer):
    def __init__(self, service: InferenceService) -> None:
        self._service = service

    async def _traced(
        self,
        rpc: str,
        call: Awaitable[Response],
        context: grpc.aio.ServicerContext[Request, Response],
        *,
        model: str | None = None,
    ) -> Response:
        """`_answer` in a SERVER span when tracing is on; with `model`, an inference
        request, counted in the metrics."""
        count = _ignore if model is None else self._counter(model)
        tracer = telemetry.tracer()
        if tracer is None:
            return await _answer(rpc, call, context, count)
        metadata = context.invocation_metadata()
        with telemetry.grpc_server_span(tracer, f"{SERVICE_NAME}/{rpc}", metadata) as span:

            def outcome(status: str) -> None:
                telemetry.set_grpc_status(span, status)
                count(status)

            return await _answer(rpc, call, context, outcome)

    def _counter(self, model: str) -> Callable[[str], None]:
        label = model if model in self._service.repository else metrics.OTHER_MODEL

        def count(status: str) -> None:
            metrics.REQUESTS.labels(label, "grpc", status).inc()

        return count

    async def ServerLive(  # noqa: N802 -- the generated servicer's method names
        self,
        request: pb.ServerLiveRequest,
        context: grpc.aio.ServicerContext[pb.ServerLiveRequest, pb.ServerLiveResponse],
    ) -> pb.ServerLiveResponse:
        return await _answer("ServerLive", self._service.server_live(request), context)

    async def ServerReady(  # noqa: N802
        self,
        request: pb.ServerReadyRequest,
        context: grpc.aio.ServicerContext[pb.ServerReadyRequest, pb.ServerReadyResponse],
    ) -> pb.ServerReadyResponse:
        return await _answer("ServerReady", self._service.server_ready(request), context)

    async def ModelReady(  # noqa: N802
        self,
        request: pb.ModelReadyRequest,
        context: grpc.aio.ServicerContext[pb.ModelReadyRequest, pb.ModelReadyResponse],
    ) -> pb.ModelReadyResponse:
        return await _answer("ModelReady", self._service.model_ready(request), context)

    async def ServerMetadata(  # noqa: N802
        self,
        request: pb.ServerMetadataRequest,
        context: grpc.aio.ServicerContext[pb.ServerMetadataRequest, pb.ServerMetadataResponse],
    ) -> pb.ServerMetadataResponse:
        return await self._traced("ServerMetadata", self._service.server_metadata(request), context)

    async def ModelMetadata(  # noqa: N802
        self,
        request: pb.ModelMetadataRequest,
        context: grpc.aio.ServicerContext[pb.ModelMetadataRequest, pb.ModelMetadataResponse],
    ) -> pb.ModelMetadataResponse:
        return await self._traced("ModelMetadata", self._service.model_metadata(request), context)

    async def ModelInfer(  # noqa: N802
        self,
        request: pb.ModelInferRequest,
        context: grpc.aio.ServicerContext[pb.ModelInferRequest, pb.ModelInferResponse],
    ) -> pb.ModelInferResponse:
        remaining = context.time_remaining()
        deadline = None if remaining is None else asyncio.get_running_loop().time() + remaining
        return await self._traced(
            "ModelInfer",
            self._service.model_infer(request, deadline),
            context,
            model=request.model_name,
        )


class GrpcServer:
    """A grpc.aio server carrying the inference and health services."""

    def __init__(self, service: InferenceService, settings: Settings) -> None:
        self._settings = settings
        self._health = health_aio.HealthServicer()
        limit = settings.max_message_bytes
        self._server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", limit),
                ("grpc.max_send_message_length", limit),
                # gRPC's default SO_REUSEPORT would let a second instance bind the same
                # port and silently take half the calls; failing to start is clearer.
                ("grpc.so_reuseport", 0),
            ]
        )
        # The generated module has no stubs; its .pyi files cover the messages only.
        pb_grpc.add_GRPCInferenceServiceServicer_to_server(  # type: ignore[no-untyped-call]
            _InferenceServicer(service), self._server
        )
        health_pb2_grpc.add_HealthServicer_to_server(self._health, self._server)

    async def start(self) -> int:
        """Listen on settings.grpc_addr, not yet serving; returns the bound port.

        Unavailable when the address cannot be bound."""
        try:
            port = self._server.add_insecure_port(self._settings.grpc_addr)
        except RuntimeError as err:
            raise Unavailable(str(err)) from err
        await self.set_serving(serving=False)
        await self._server.start()
        log.info("grpc listening", extra={"addr": self._settings.grpc_addr, "port": port})
        return port

    async def set_serving(self, *, serving: bool) -> None:
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for name in ("", SERVICE_NAME):
            await self._health.set(name, status)

    async def stop(self) -> None:
        """Report NOT_SERVING, refuse new calls, give in-flight calls the grace period."""
        await self._health.enter_graceful_shutdown()
        await self._server.stop(self._settings.shutdown_grace_s)
        log.info("grpc stopped")
