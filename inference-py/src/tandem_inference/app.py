"""`serve`: start the front doors, load the models, serve until SIGTERM or SIGINT.

The gRPC server listens before the models load so that health checks see the
service starting (live, NOT_SERVING) rather than a closed port; it turns SERVING
once every model version has loaded and passed its warm-up call.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import TYPE_CHECKING

from tandem_inference.grpc_server import GrpcServer
from tandem_inference.repository import ModelRepository
from tandem_inference.service import InferenceService

if TYPE_CHECKING:
    from tandem_inference.settings import Settings

log = logging.getLogger(__name__)


async def serve(settings: Settings) -> None:
    """Run until a stop signal; raises ModelConfigError when a model cannot be loaded."""
    repository = ModelRepository(settings.model_repository)
    server = GrpcServer(InferenceService(repository), settings)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    await server.start()
    try:
        loading = asyncio.create_task(asyncio.to_thread(repository.load))
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait({loading, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if loading.done():
            loading.result()
            await server.set_serving(serving=True)
            log.info("ready", extra={"models": repository.model_names})
            await stopping
        log.info("stopping")
    finally:
        await server.stop()
        repository.close()
