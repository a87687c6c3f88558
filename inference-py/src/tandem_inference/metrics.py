"""Prometheus metrics (prefix `tandem_inference_`), served on `--metrics-addr` at /metrics.

The metrics live in prometheus-client's default registry, one set per process;
several workers on one machine each need their own `--metrics-addr`. Exemplars
(the trace id of a sampled request) appear in the OpenMetrics format, which
Prometheus asks for when exemplar storage is on.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections import Counter as Tally
from typing import TYPE_CHECKING, Protocol

from prometheus_client import REGISTRY, Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily

if TYPE_CHECKING:
    from collections.abc import Iterator
    from wsgiref.simple_server import WSGIServer

    from prometheus_client.metrics_core import Metric

log = logging.getLogger(__name__)

# The label for a model the repository does not have: a caller's typo must not
# become a new series. The gateway uses the same value (docs/architecture.md).
OTHER_MODEL = "_other"

# `code` as on the gateway: the gRPC status code's name (OK, INVALID_ARGUMENT, ...).
REQUESTS = Counter(
    "tandem_inference_requests",
    "Inference requests answered, by model, transport and code (OK or the gRPC status name)",
    ["model", "transport", "code"],
)
BATCH_SIZE = Histogram(
    "tandem_inference_batch_size",
    "Rows per model call",
    ["model", "backend"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128),
)
# From tens of microseconds (a lone request on ONNX Runtime) to seconds (overload).
_SECONDS = (
    *(1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3),
    *(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
QUEUE_SECONDS = Histogram(
    "tandem_inference_queue_seconds",
    "Time a request waited in its model's batcher queue",
    ["model", "backend"],
    buckets=_SECONDS,
)
EXECUTE_SECONDS = Histogram(
    "tandem_inference_execute_seconds",
    "Time of one model call (a whole batch)",
    ["model", "backend"],
    buckets=_SECONDS,
)


class Queue(Protocol):
    """What the queue-depth gauge reads from a batcher, at scrape time only."""

    @property
    def model(self) -> str: ...

    @property
    def queued(self) -> int: ...

    @property
    def closed(self) -> bool: ...


class _QueueDepth:
    """tandem_inference_queue_depth{model}: read from the batchers when scraped, so
    the request path pays nothing for it; the versions of a model add up."""

    def __init__(self) -> None:
        self._queues: weakref.WeakSet[Queue] = weakref.WeakSet()
        self._lock = threading.Lock()

    def watch(self, queue: Queue) -> None:
        with self._lock:
            self._queues.add(queue)

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "tandem_inference_queue_depth",
            "Requests waiting in a model's batcher queue (not the ones running)",
            labels=["model"],
        )
        depth: Tally[str] = Tally()
        with self._lock:
            queues = list(self._queues)
        for queue in queues:
            if not queue.closed:
                depth[queue.model] += queue.queued
        for model, queued in sorted(depth.items()):
            family.add_metric([model], queued)
        yield family


QUEUE_DEPTH = _QueueDepth()
REGISTRY.register(QUEUE_DEPTH)


def split_addr(addr: str) -> tuple[str, int]:
    """`host:port` (`[v6]:port`, `:port` for every interface) as (host, port)."""
    host, sep, port = addr.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"{addr!r} is not host:port")
    return host.strip("[]") or "0.0.0.0", int(port)  # noqa: S104 -- the documented default


class MetricsServer:
    """/metrics over HTTP on its own thread (prometheus-client's WSGI server)."""

    def __init__(self, addr: str) -> None:
        self._addr = addr
        self._server: WSGIServer | None = None

    def start(self) -> int | None:
        """Listen; returns the bound port. A port in use is logged as an error and the
        service goes on without metrics: a worker that can answer is not lost to it."""
        host, port = split_addr(self._addr)
        try:
            self._server, _ = start_http_server(port, addr=host)
        except OSError as err:
            log.error(
                "metrics not served: cannot listen; give each worker its own --metrics-addr",
                extra={"addr": self._addr, "error": str(err)},
            )
            return None
        bound = int(self._server.server_address[1])
        log.info("metrics listening", extra={"addr": self._addr, "port": bound})
        return bound

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
