"""The OIP RPCs (and Triton's extensions) once, for every front door: what each is,
and how a call ends.

`RPCS` is the one table: each RPC's name, request message, handler on
InferenceService, NATS subject (proto/README.md), whether it is traced and whether
it is counted. `answer` is the one policy every call goes through, on either front
door: it runs the call (in a span when tracing is on and the RPC is traced), maps
any exception to a TandemError (a bug becomes Internal, logged with its
traceback), sets the span's status and counts the outcome in
tandem_inference_requests_total. The front doors (grpc_server.py,
nats_worker.py) only translate between their wire and these messages, in the
manner of MLServer's DataPlane and its one error handler.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import grpc
from google.protobuf.message import Message

from tandem_inference import metrics, telemetry
from tandem_inference.errors import Internal, TandemError, is_server_fault
from tandem_inference.pb import grpc_service_pb2 as pb
from tandem_inference.service import InferenceService

if TYPE_CHECKING:
    from collections.abc import Container
    from contextlib import AbstractContextManager

    from opentelemetry.trace import Span

    from tandem_inference.tracing import Recorder

log = logging.getLogger(__name__)

# What a caller sees of a bug; the details are in the log, never on the wire.
INTERNAL_MESSAGE = "internal error; see the service's log"

# An RPC's implementation: (service, request, deadline) -> response. `deadline` is
# the event loop's time by which the caller needs the answer, or None.
Handler = Callable[[InferenceService, Any, float | None], Awaitable[Message]]
Result = TypeVar("Result")


@dataclass(frozen=True, slots=True)
class Rpc:
    """One RPC of GRPCInferenceService, as both front doors serve it."""

    name: str  # the gRPC method, e.g. ModelInfer
    request_type: type[Message]
    handler: Handler
    verb: str  # the last token of its NATS subject (proto/README.md)
    # Per-model RPCs: the request's field naming the model (the NATS subject names
    # it too, <prefix>.models.<model>.<verb>); empty for the others.
    model_field: str = ""
    # The others' subject is <prefix>.<group>.<verb>: server or repository.
    group: str = "server"
    # Health checks are not traced: they would drown the traces that matter.
    traced: bool = True
    # Counted in tandem_inference_requests_total: the inference requests.
    counted: bool = False

    @property
    def per_model(self) -> bool:
        return bool(self.model_field)

    def subject(self, prefix: str, model: str = "") -> str:
        """The NATS subject: <prefix>.models.<model>.<verb> or <prefix>.<group>.<verb>."""
        if self.per_model:
            return f"{prefix}.models.{model}.{self.verb}"
        return f"{prefix}.{self.group}.{self.verb}"

    def model(self, request: Message) -> str:
        """The model the request names ("" for the server-wide RPCs)."""
        return str(getattr(request, self.model_field)) if self.model_field else ""


def _without_deadline(method: Callable[[InferenceService, Any], Awaitable[Message]]) -> Handler:
    """An RPC that answers at once from memory: a deadline has nothing to stop."""

    async def call(service: InferenceService, request: Message, deadline: float | None) -> Message:
        return await method(service, request)

    return call


# In the order of inference/grpc_service.proto.
RPCS: tuple[Rpc, ...] = (
    Rpc(
        "ServerLive",
        pb.ServerLiveRequest,
        _without_deadline(InferenceService.server_live),
        "live",
        traced=False,
    ),
    Rpc(
        "ServerReady",
        pb.ServerReadyRequest,
        _without_deadline(InferenceService.server_ready),
        "ready",
        traced=False,
    ),
    Rpc(
        "ModelReady",
        pb.ModelReadyRequest,
        _without_deadline(InferenceService.model_ready),
        "ready",
        model_field="name",
        traced=False,
    ),
    Rpc(
        "ServerMetadata",
        pb.ServerMetadataRequest,
        _without_deadline(InferenceService.server_metadata),
        "metadata",
    ),
    Rpc(
        "ModelMetadata",
        pb.ModelMetadataRequest,
        _without_deadline(InferenceService.model_metadata),
        "metadata",
        model_field="name",
    ),
    Rpc(
        "ModelInfer",
        pb.ModelInferRequest,
        InferenceService.model_infer,
        "infer",
        model_field="model_name",
        counted=True,
    ),
    # Triton's extensions (proto/README.md, "Triton's extensions").
    Rpc(
        "ModelConfig",
        pb.ModelConfigRequest,
        _without_deadline(InferenceService.model_config),
        "config",
        model_field="name",
    ),
    Rpc(
        "ModelStatistics",
        pb.ModelStatisticsRequest,
        _without_deadline(InferenceService.model_statistics),
        "stats",
        model_field="name",
    ),
    Rpc(
        "RepositoryIndex",
        pb.RepositoryIndexRequest,
        _without_deadline(InferenceService.repository_index),
        "index",
        group="repository",
    ),
    # Loading reads and warms a model up and unloading waits for its requests: both
    # take what they take, whatever the caller's deadline.
    Rpc(
        "RepositoryModelLoad",
        pb.RepositoryModelLoadRequest,
        _without_deadline(InferenceService.repository_model_load),
        "load",
        group="repository",
    ),
    Rpc(
        "RepositoryModelUnload",
        pb.RepositoryModelUnloadRequest,
        _without_deadline(InferenceService.repository_model_unload),
        "unload",
        group="repository",
    ),
)


async def answer(
    rpc: Rpc,
    work: Callable[[], Awaitable[Result]],
    *,
    transport: str,
    model: str,
    models: Container[str],
    open_span: Callable[[Recorder], AbstractContextManager[Span]],
) -> Result | TandemError:
    """Run `work` (the front door's whole handling of one call) under the policy.

    Returns its result, or the TandemError to answer with. A cancelled call
    (the gRPC caller went away, a NATS cancel) is reported as CANCELLED and the
    cancellation goes on. `open_span` makes the front door's kind of span;
    `models` tells a known model from a caller's typo for the metric's label.
    """
    tracer = telemetry.tracer() if rpc.traced else None
    if tracer is None:
        return await _settle(rpc, work, transport=transport, model=model, models=models, span=None)
    with open_span(tracer) as span:
        return await _settle(rpc, work, transport=transport, model=model, models=models, span=span)


async def _settle(
    rpc: Rpc,
    work: Callable[[], Awaitable[Result]],
    *,
    transport: str,
    model: str,
    models: Container[str],
    span: Span | None,
) -> Result | TandemError:
    def report(status: grpc.StatusCode) -> None:
        if span is not None:
            telemetry.set_outcome(
                span, transport, status.name, server_fault=is_server_fault(status)
            )
        if rpc.counted:
            label = model if model in models else metrics.OTHER_MODEL
            metrics.REQUESTS.labels(label, transport, status.name).inc()

    try:
        result = await work()
    except asyncio.CancelledError:
        report(grpc.StatusCode.CANCELLED)
        raise
    except TandemError as err:
        report(err.grpc_status)
        return err
    except Exception:
        # A bug: the caller gets INTERNAL (not gRPC's UNKNOWN), the log the traceback.
        log.exception("unhandled error", extra={"rpc": rpc.name, "transport": transport})
        report(grpc.StatusCode.INTERNAL)
        return Internal(INTERNAL_MESSAGE)
    report(grpc.StatusCode.OK)
    return result
