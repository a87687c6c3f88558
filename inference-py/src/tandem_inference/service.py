"""The six OIP v2 RPCs and five of Triton's extensions, implemented once for every transport.

Each method takes and returns the generated protobuf messages and raises
TandemError; rpcs.py says which method serves which RPC and how every outcome
is reported, and the front doors (gRPC and NATS) only move messages, so both
transports answer the same way.

Triton's extensions: ModelConfig (model_configuration), ModelStatistics
(statistics), RepositoryIndex, RepositoryModelLoad and RepositoryModelUnload
(model_repository). Load and unload change what is served, and loading runs a
model's code, so they are refused unless the service runs with
`--model-control explicit`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

from opentelemetry import trace

from tandem_inference import __version__, codec, telemetry
from tandem_inference.errors import Internal, InvalidArgument, TandemError, Unavailable
from tandem_inference.model_stats import Statistics
from tandem_inference.pb import grpc_service_pb2 as pb
from tandem_inference.pb import model_config_pb2 as mc
from tandem_inference.validation import decode_inputs, requested_outputs

if TYPE_CHECKING:
    from collections.abc import Sequence

    from tandem_inference.model_config import ModelConfig, TensorSpec
    from tandem_inference.repository import ModelRepository, ModelVersion
    from tandem_inference.runner import Timing

SERVER_NAME = "tandem-inference"
# The response parameter that carries this service's part of the Server-Timing
# header (queue, model, service); the gateway takes it out and adds its own parts.
SERVER_TIMING = "server_timing"
# The extensions served here, in Triton's names; the gateway adds its REST ones
# (binary_tensor_data, ...).
EXTENSIONS = ("model_configuration", "model_repository", "statistics")
MODEL_CONTROL_MODES = ("none", "explicit")

log = logging.getLogger(__name__)


class InferenceService:
    """OIP v2 over a model repository."""

    def __init__(
        self,
        repository: ModelRepository,
        *,
        version: str = __version__,
        model_control: str = "none",
    ) -> None:
        if model_control not in MODEL_CONTROL_MODES:
            raise ValueError(f"model_control must be one of {MODEL_CONTROL_MODES}")
        self.repository = repository
        self.statistics = Statistics()
        self._version = version
        self._model_control = model_control

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
        return pb.ServerMetadataResponse(
            name=SERVER_NAME, version=self._version, extensions=EXTENSIONS
        )

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
        stats = self.statistics.of(model.config.name, model.version)
        try:
            with self.repository.in_flight(model.config.name):
                response, timing, rows = await self._infer(model, request, deadline, received_ns)
        except (TandemError, asyncio.CancelledError):
            stats.failed(received_ns)
            raise
        stats.succeeded(rows, received_ns, timing)
        return response

    async def _infer(
        self,
        model: ModelVersion,
        request: pb.ModelInferRequest,
        deadline: float | None,
        received_ns: int,
    ) -> tuple[pb.ModelInferResponse, Timing, int]:
        inputs = decode_inputs(model.config, request)
        wanted = requested_outputs(model.config, request)
        rows = len(next(iter(inputs.values()))) if model.config.batched and inputs else 1
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
        return response, timing, rows

    async def model_config(self, request: pb.ModelConfigRequest) -> pb.ModelConfigResponse:
        config = self.repository.config(request.name)
        self.repository.choose_version(request.name, request.version)
        return pb.ModelConfigResponse(config=triton_config(config))

    async def model_statistics(
        self, request: pb.ModelStatisticsRequest
    ) -> pb.ModelStatisticsResponse:
        """Every loaded version of the model asked for (or of every model), as Triton:
        a version that is not loaded is NotFound."""
        if request.name:
            self.repository.config(request.name)  # NotFound for an unknown model
        entries = [
            e
            for e in self.repository.index()
            if e.version and (not request.name or e.name == request.name)
        ]
        if request.version:
            self.repository.choose_version(request.name, request.version)
            entries = [e for e in entries if e.version == request.version]
        if request.name and not entries:
            raise Unavailable(f'model "{request.name}" is not loaded')
        return pb.ModelStatisticsResponse(
            model_stats=[
                self.statistics.of(e.name, e.version).message(e.name, e.version) for e in entries
            ]
        )

    async def repository_index(
        self, request: pb.RepositoryIndexRequest
    ) -> pb.RepositoryIndexResponse:
        return pb.RepositoryIndexResponse(
            models=[
                pb.RepositoryIndexResponse.ModelIndex(
                    name=e.name, version=e.version, state=e.state.value, reason=e.reason
                )
                for e in self.repository.index(ready_only=request.ready)
            ]
        )

    async def repository_model_load(
        self, request: pb.RepositoryModelLoadRequest
    ) -> pb.RepositoryModelLoadResponse:
        self._check_model_control("load", request.model_name, request.parameters)
        await self.repository.load_model(request.model_name)
        self.statistics.forget(request.model_name)
        log.info("model loaded on request", extra={"model": request.model_name})
        return pb.RepositoryModelLoadResponse()

    async def repository_model_unload(
        self, request: pb.RepositoryModelUnloadRequest
    ) -> pb.RepositoryModelUnloadResponse:
        self._check_model_control("unload", request.model_name, request.parameters)
        await self.repository.unload_model(request.model_name)
        self.statistics.forget(request.model_name)
        return pb.RepositoryModelUnloadResponse()

    def _check_model_control(
        self, verb: str, name: str, parameters: Mapping[str, pb.ModelRepositoryParameter]
    ) -> None:
        if self._model_control != "explicit":
            # 400, as Triton answers over HTTP: the request cannot succeed as sent.
            raise InvalidArgument(
                f'cannot {verb} model "{name}": explicit model control is off; start the '
                "service with --model-control explicit to load and unload models at run time"
            )
        if not name:
            raise InvalidArgument(f"{verb}: model_name is empty")
        # tritonclient always sends unload_dependents; there are no ensembles here, so
        # no dependents. Triton's config and file:<path> overrides are refused: they
        # would let a caller ship the code that a load then runs.
        unknown = sorted(set(parameters) - {"unload_dependents"})
        if unknown:
            raise InvalidArgument(
                f"{verb} takes no parameters but unload_dependents; given {', '.join(unknown)}"
            )


def triton_config(config: ModelConfig) -> mc.ModelConfig:
    """`config` as Triton's ModelConfig: datatypes as TYPE_*, and with batching the
    shapes without the batch dimension (Triton's dims leave it out)."""
    skip = 1 if config.batched else 0
    policy = config.dynamic_batching
    return mc.ModelConfig(
        name=config.name,
        platform=config.platform,
        backend=config.backend,
        max_batch_size=config.max_batch_size,
        input=[
            mc.ModelInput(name=t.name, data_type=triton_datatype(t.datatype), dims=t.shape[skip:])
            for t in config.inputs
        ],
        output=[
            mc.ModelOutput(name=t.name, data_type=triton_datatype(t.datatype), dims=t.shape[skip:])
            for t in config.outputs
        ],
        dynamic_batching=mc.ModelDynamicBatching(
            preferred_batch_size=policy.preferred_batch_size,
            max_queue_delay_microseconds=policy.max_queue_delay_us,
            default_queue_policy=mc.ModelQueuePolicy(max_queue_size=policy.max_queue_size),
        ),
        default_model_filename=config.default_model_filename or "",
        parameters={k: mc.ModelParameter(string_value=str(v)) for k, v in config.options.items()},
    )


def triton_datatype(datatype: str) -> str:
    """An OIP datatype as the name of Triton's DataType: FP32 -> TYPE_FP32, BYTES -> TYPE_STRING."""
    name = "TYPE_STRING" if datatype == "BYTES" else f"TYPE_{datatype}"
    mc.DataType.Value(name)  # every OIP datatype has one; a ValueError here is a bug
    return name


def _tensor_metadata(
    specs: Sequence[TensorSpec],
) -> list[pb.ModelMetadataResponse.TensorMetadata]:
    return [
        pb.ModelMetadataResponse.TensorMetadata(name=s.name, datatype=s.datatype, shape=s.shape)
        for s in specs
    ]
