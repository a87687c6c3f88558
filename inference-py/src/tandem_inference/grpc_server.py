"""The gRPC front door: OIP v2's GRPCInferenceService and grpc.health.v1 on one grpc.aio server.

It only translates: each method of rpcs.RPCS is registered with its request
message, and a call goes to rpcs.answer with the caller's deadline; a TandemError
that comes back becomes a gRPC status with the error's code and message. Which
RPCs are traced and counted is the table's business. The health service reports
NOT_SERVING until the models are loaded and again once shutdown begins, for the
whole server ("") and for the inference service by name.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio

from tandem_inference import telemetry
from tandem_inference.errors import TandemError, Unavailable
from tandem_inference.pb import grpc_service_pb2 as pb
from tandem_inference.rpcs import RPCS, Rpc, answer

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from google.protobuf.message import Message

    from tandem_inference.service import InferenceService
    from tandem_inference.settings import Settings

log = logging.getLogger(__name__)

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name

Context = grpc.aio.ServicerContext[Any, Any]


def _serialize(message: Message) -> bytes:
    return message.SerializeToString()


def _method(
    service: InferenceService, rpc: Rpc
) -> Callable[[Message, Context], Awaitable[Message]]:
    """The grpc.aio behaviour of one RPC: its deadline, the policy, the status."""
    method = f"{SERVICE_NAME}/{rpc.name}"

    async def behaviour(request: Message, context: Context) -> Message:
        remaining = context.time_remaining()
        deadline = None if remaining is None else asyncio.get_running_loop().time() + remaining
        outcome = await answer(
            rpc,
            lambda: rpc.handler(service, request, deadline),
            transport="grpc",
            model=rpc.model(request),
            models=service.repository,
            open_span=lambda tracer: telemetry.grpc_server_span(
                tracer, method, context.invocation_metadata()
            ),
        )
        if isinstance(outcome, TandemError):
            await context.abort(outcome.grpc_status, outcome.message)
        return outcome

    return behaviour


def _handlers(service: InferenceService) -> dict[str, grpc.RpcMethodHandler[Any, Any]]:
    return {
        rpc.name: grpc.unary_unary_rpc_method_handler(
            _method(service, rpc),
            request_deserializer=rpc.request_type.FromString,
            response_serializer=_serialize,
        )
        for rpc in RPCS
    }


def server_credentials(settings: Settings) -> grpc.ServerCredentials | None:
    """TLS from --grpc-tls-cert/--grpc-tls-key; with --grpc-tls-client-ca, clients
    must present a certificate that CA signed (mTLS). None: plaintext."""
    if settings.grpc_tls_cert is None or settings.grpc_tls_key is None:
        return None
    try:
        chain = (settings.grpc_tls_key.read_bytes(), settings.grpc_tls_cert.read_bytes())
        client_ca = settings.grpc_tls_client_ca
        roots = client_ca.read_bytes() if client_ca is not None else None
    except OSError as err:
        raise Unavailable(f"gRPC TLS: {err}") from err
    return grpc.ssl_server_credentials(
        [chain], root_certificates=roots, require_client_auth=roots is not None
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
        # What the generated add_GRPCInferenceServiceServicer_to_server does, from the table.
        self._server.add_registered_method_handlers(SERVICE_NAME, _handlers(service))
        health_pb2_grpc.add_HealthServicer_to_server(self._health, self._server)

    async def start(self) -> int:
        """Listen on settings.grpc_addr, not yet serving; returns the bound port.

        Unavailable when the address cannot be bound."""
        credentials = server_credentials(self._settings)
        try:
            if credentials is None:
                port = self._server.add_insecure_port(self._settings.grpc_addr)
            else:
                port = self._server.add_secure_port(self._settings.grpc_addr, credentials)
        except RuntimeError as err:
            raise Unavailable(str(err)) from err
        await self.set_serving(serving=False)
        await self._server.start()
        log.info(
            "grpc listening",
            extra={
                "addr": self._settings.grpc_addr,
                "port": port,
                "tls": "off"
                if credentials is None
                else "mtls"
                if self._settings.grpc_tls_client_ca
                else "on",
            },
        )
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
