"""The six OIP v2 RPCs, implemented once for every transport.

Each method takes and returns the generated protobuf messages and raises
TandemError; rpcs.py says which method serves which RPC and how every outcome
is reported, and the front doors (gRPC and NATS) only move messages, so both
transports answer the same way.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from opentelemetry import trace

from tandem_inference import __version__, codec, telemetry
from tandem_inference.errors import Internal, Unavailable
from tandem_inference.pb import grpc_service_pb2 as pb
from tandem_inference.validation import decode_inputs, requested_outputs

if TYPE_CHECKING:
    from collections.abc import Sequence

    from tandem_inference.model_config import TensorSpec
    from tandem_inference.repository import ModelRepository

SERVER_NAME = "tandem-inference"
# The response parameter that carries this service's part of the Server-Timing
# header (queue, model, service); the gateway takes it out and adds its own parts.
SERVER_TIMING = "server_timing"

log = logging.getLogger(__name__)


class InferenceService:
    """OIP v2 over a model repository."""

    def __init__(self, repository: ModelRepository, *, version: str = __version__) -> None:
        self.repository = repository
        self._version = version

    async def server_live(self, request: pb.ServerLiveRequest) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=True)

    async def server_ready(self, request: pb.ServerReadyRequest) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=self.repository.ready)

    async def model_ready(self, request: pb.ModelReadyRequest) -> pb.ModelReadyResponse:
        try:
            self.repository.resolve(request.name, request.version)
        except Unavailable:
            return pb.ModelReadyResponse(ready=False)
        return pb.ModelReadyResponse(ready=True)

    async def server_metadata(self, request: pb.ServerMetadataRequest) -> pb.ServerMetadataResponse:
        # No OIP extensions: the REST ones (binary_tensor_data, ...) live in the gateway.
        return pb.ServerMetadataResponse(name=SERVER_NAME, version=self._version, extensions=[])

    async def model_metadata(self, request: pb.ModelMetadataRequest) -> pb.ModelMetadataResponse:
        config = self.repository.config(request.name)
        versions = self.repository.versions(request.name)
        self.repository.choose_version(request.name, request.version)
        return pb.ModelMetadataResponse(
            name=config.name,
            versions=versions,
            platform=config.platform,
            inputs=_tensor_metadata(config.inputs),
            outputs=_tensor_metadata(config.outputs),
        )

    async def model_infer(
        self, request: pb.ModelInferRequest, deadline: float | None = None
    ) -> pb.ModelInferResponse:
        """`deadline`: the event loop's time by which the caller needs the answer.

        The response's `server_timing` parameter says, in Server-Timing syntax and
        milliseconds, how long the request waited in the batcher (queue), how long
        its batch's model call took (model), and the whole call here (service).
        """
        received_ns = time.monotonic_ns()
        model = self.repository.resolve(request.model_name, request.model_version)
        inputs = decode_inputs(model.config, request)
        wanted = requested_outputs(model.config, request)
        span = trace.get_current_span()
        timing = telemetry.timing(span)
        results = await model.runner.infer(inputs, deadline, timing)
        response = pb.ModelInferResponse(
            model_name=model.config.name, model_version=model.version, id=request.id
        )
        for spec in wanted:
            array = results.get(spec.name)
            if array is None:
                raise Internal(f'model "{model.config.name}" returned no output "{spec.name}"')
            response.outputs.add(name=spec.name, datatype=spec.datatype, shape=array.shape)
            response.raw_output_contents.append(codec.encode_raw(array))
        run = timing.batch
        if run is not None:
            response.parameters[SERVER_TIMING].string_param = (
                f"queue;dur={(run.taken_ns - timing.queued_ns) / 1e6:.3f}, "
                f"model;dur={(run.ended_ns - run.started_ns) / 1e6:.3f}, "
                f"service;dur={(time.monotonic_ns() - received_ns) / 1e6:.3f}"
            )
            tracer = telemetry.tracer()
            if tracer is not None and span.is_recording():
                telemetry.batch_spans(
                    tracer,
                    timing,
                    model=model.config.name,
                    version=model.version,
                    backend=model.config.backend,
                )
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "infer",
                extra={
                    "model": model.config.name,
                    "version": model.version,
                    "batch_size": run.rows if run else None,
                },
            )
        return response


def _tensor_metadata(
    specs: Sequence[TensorSpec],
) -> list[pb.ModelMetadataResponse.TensorMetadata]:
    return [
        pb.ModelMetadataResponse.TensorMetadata(name=s.name, datatype=s.datatype, shape=s.shape)
        for s in specs
    ]
