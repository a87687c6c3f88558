"""How the dynamic batcher behaves under concurrency: batch sizes, throughput, latency.

Closed loop, in process: `concurrency` callers each send one-row ModelInfer requests
to InferenceService (decode, validate, queue, batch, model, encode) as fast as
answers come, for a few seconds per setting. No transport, so the figures are the
batcher's and the model's alone. Run from the repository root after `make setup`:

    .venv/bin/python inference-py/scripts/measure_batching.py [--seconds 2] [--model digits]

It prints one row per (policy, concurrency): requests/s, mean rows per model call,
the median and 99th percentile latency of a request, and the largest batch seen.
Figures are for comparing rows of one run with each other (ratios measured side
by side), not with other machines.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import statistics
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from tandem_inference import codec
from tandem_inference.batcher import DynamicBatcher
from tandem_inference.dataset import heldout
from tandem_inference.model_config import DynamicBatching, ModelConfig
from tandem_inference.pb import grpc_service_pb2 as pb
from tandem_inference.repository import ModelRepository
from tandem_inference.service import InferenceService

if TYPE_CHECKING:
    from tandem_inference.backends import Backend

# name -> (max_batch_size, or None for the model's; the [dynamic_batching] policy)
POLICIES: dict[str, tuple[int | None, DynamicBatching]] = {
    "no batching (max_batch_size 1)": (1, DynamicBatching()),
    "delay 0, always the thread (inline_execute_us 0)": (
        None,
        DynamicBatching(inline_execute_us=0),
    ),
    "delay 0, inline under 200 us (the default)": (None, DynamicBatching()),
    "delay 100 us": (None, DynamicBatching(max_queue_delay_us=100)),
    "delay 500 us": (None, DynamicBatching(max_queue_delay_us=500)),
}
CONCURRENCY = (1, 8, 32, 128, 512)


def request(model: str, row: np.ndarray) -> pb.ModelInferRequest:
    tensor = pb.ModelInferRequest.InferInputTensor(name="pixels", datatype="FP32", shape=[1, 64])
    return pb.ModelInferRequest(
        model_name=model, inputs=[tensor], raw_input_contents=[codec.encode_raw(row[None])]
    )


async def measure(
    service: InferenceService, batcher: DynamicBatcher, model: str, concurrency: int, seconds: float
) -> str:
    pixels = heldout()[0].astype(np.float32)
    latencies: list[float] = []
    stop = time.perf_counter() + seconds

    async def caller(i: int) -> None:
        message = request(model, pixels[i % len(pixels)])
        while time.perf_counter() < stop:
            started = time.perf_counter()
            await service.model_infer(message)
            latencies.append(time.perf_counter() - started)

    runs_before, requests_before = batcher.stats.runs, batcher.stats.requests
    sizes_before = dict(batcher.stats.sizes)
    began = time.perf_counter()
    await asyncio.gather(*(caller(i) for i in range(concurrency)))
    elapsed = time.perf_counter() - began
    runs = batcher.stats.runs - runs_before
    requests = batcher.stats.requests - requests_before
    largest = max(s for s, n in batcher.stats.sizes.items() if n > sizes_before.get(s, 0))
    q = statistics.quantiles(latencies, n=100)
    return (
        f"{concurrency:>5} {len(latencies) / elapsed:>10,.0f} {requests / runs:>9.1f} "
        f"{q[49] * 1e6:>9,.0f} {q[98] * 1e6:>9,.0f} {largest:>7}"
    )


def load(
    root: Path, max_batch_size: int | None, policy: DynamicBatching
) -> tuple[ModelRepository, dict[str, DynamicBatcher]]:
    """The repository with every model under `policy`; its batchers by model name."""
    batchers: dict[str, DynamicBatcher] = {}

    def factory(backend: Backend, config: ModelConfig) -> DynamicBatcher:
        config = dataclasses.replace(
            config,
            max_batch_size=max_batch_size or config.max_batch_size,
            dynamic_batching=policy,
        )
        batchers[config.name] = DynamicBatcher(backend, config)
        return batchers[config.name]

    repository = ModelRepository(root, runner_factory=factory)
    repository.load()
    return repository, batchers


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-repository", type=Path, default=Path("models"))
    parser.add_argument("--model", default="digits")
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument(
        "--policies", help="comma-separated indexes into the policies (default all)"
    )
    parser.add_argument("--concurrency", help="comma-separated in-flight counts")
    args = parser.parse_args()
    chosen = list(POLICIES.items())
    if args.policies:
        chosen = [chosen[int(i)] for i in args.policies.split(",")]
    levels = tuple(int(c) for c in args.concurrency.split(",")) if args.concurrency else CONCURRENCY

    for name, (max_batch_size, policy) in chosen:
        repository, batchers = load(args.model_repository, max_batch_size, policy)
        service = InferenceService(repository)
        print(f"\n{args.model}, {name}")
        print("  conc      req/s  rows/run  p50 (us)  p99 (us) largest")
        for concurrency in levels:
            row = await measure(
                service, batchers[args.model], args.model, concurrency, args.seconds
            )
            print(row, flush=True)
        repository.close()


if __name__ == "__main__":
    asyncio.run(main())
