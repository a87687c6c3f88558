"""`serve`: open the front doors, load the models, serve until SIGTERM or SIGINT.

The front doors (`--serve grpc,nats`) share one repository, so one set of models
and one batcher per model serve both transports. They open before the models
load: the gRPC server listens with health NOT_SERVING (so health checks see the
service starting rather than a closed port) and the NATS worker connects, retrying
until the server is up. Once every model version has loaded and passed its warm-up
call, gRPC turns SERVING and the NATS worker joins the queue group; a worker that
cannot answer yet never takes requests from one that can.

On a stop signal each front door stops taking requests and answers those it has
taken (gRPC within the grace period, NATS draining its subscriptions), then the
model threads stop and the spans still buffered are exported.

Tracing (telemetry.py) is set up from the OTEL_* variables before anything else;
the metrics endpoint listens on `--metrics-addr` for the whole life of the process.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
from typing import TYPE_CHECKING, Protocol

from tandem_inference import telemetry
from tandem_inference.grpc_server import GrpcServer
from tandem_inference.metrics import MetricsServer
from tandem_inference.nats_worker import NatsWorker
from tandem_inference.repository import ModelRepository
from tandem_inference.service import InferenceService

if TYPE_CHECKING:
    from tandem_inference.settings import Settings

log = logging.getLogger(__name__)


class FrontDoor(Protocol):
    """A transport in front of the InferenceService."""

    async def start(self) -> object:
        """Open (listen, connect), not yet serving."""
        ...

    async def set_serving(self, *, serving: bool) -> None: ...

    async def stop(self) -> None:
        """Take no new requests, answer the ones taken, close."""
        ...


def front_doors(service: InferenceService, settings: Settings) -> list[FrontDoor]:
    doors: dict[str, type[GrpcServer | NatsWorker]] = {"grpc": GrpcServer, "nats": NatsWorker}
    return [doors[name](service, settings) for name in settings.front_doors]


async def serve(settings: Settings) -> None:
    """Run until a stop signal; raises ModelConfigError when a model cannot be loaded."""
    repository = ModelRepository(settings.model_repository)
    tracing = telemetry.setup()
    metrics_server = MetricsServer(settings.metrics_addr) if settings.metrics_addr else None
    try:
        if metrics_server is not None:
            metrics_server.start()
        await _serve(settings, repository)
    finally:
        if metrics_server is not None:
            metrics_server.stop()
        # Off the loop: a collector that does not answer must not stall the stop.
        await asyncio.to_thread(telemetry.shutdown, tracing)


async def _serve(settings: Settings, repository: ModelRepository) -> None:
    doors = front_doors(
        InferenceService(repository, model_control=settings.model_control), settings
    )

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    starting = asyncio.create_task(_start(repository, doors))
    stopping = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if starting.done():
            starting.result()
            frozen = freeze_startup_objects()
            log.info(
                "ready",
                extra={"models": repository.model_names, "serve": settings.serve, "frozen": frozen},
            )
            await stopping
        log.info("stopping")
    finally:
        starting.cancel()
        stopping.cancel()
        await asyncio.gather(*(door.stop() for door in doors))
        repository.close()


def freeze_startup_objects() -> int:
    """Move every object alive now out of the garbage collector's reach; their count.

    What start-up made (the libraries, torch, the models: some 370,000 objects with
    the shipped models) lives as long as the process, yet every full collection
    walks all of it, and objects that outlive a request for a while (traced spans
    waiting for export, above all) start one now and then: a full collection took
    177 ms here, a stall of the event loop and of every request in flight. Frozen,
    they are never walked (gc.freeze, which CPython's docs advise for long-lived
    start-up state); what is made later is collected as before. A model unloaded
    later (model control) is freed by reference counting; a cycle among its
    start-up objects stays until exit."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


async def _start(repository: ModelRepository, doors: list[FrontDoor]) -> None:
    await asyncio.gather(asyncio.to_thread(repository.load), *(door.start() for door in doors))
    for door in doors:
        await door.set_serving(serving=True)
