"""What tracing costs: a real `tandem_inference serve` at several sampling ratios.

For each sampling setting (off, then parentbased_traceidratio at each ratio) it
starts an OTLP/HTTP receiver (tandem_stack.otlp.Receiver, in its own process), a
nats-server, and `python -m tandem_inference serve --serve grpc,nats` exporting to
the receiver, then drives ModelInfer for the digits model straight at Python, over
gRPC and over NATS: one request in flight (p50, p99), then a closed loop of
`--concurrency` callers (requests/s, and the server's CPU time per request, which
other work on the machine moves less). The settings take turns, `--rounds` times,
so that a noisy machine spreads its noise over all of them; the figures printed
are the medians over the rounds. Run from the repository root after `make setup`:

    PYTHONPATH=inference-py/src .venv/bin/python inference-py/scripts/measure_tracing.py \
        [--ratios off,0.01,0.1,1] [--seconds 3] [--rounds 3] [--server-cpus 0] \
        [--trees before=../main/inference-py/src,after=inference-py/src]

`--server-cpus` pins the server (taskset), leaving the other cores to the load,
the receiver and the nats-server. `--trees` compares versions of the service side
by side: each setting runs once per tree (its `src` folder as the server's
PYTHONPATH), in turn. Compare rows of one run with each other.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import nats
import numpy as np
import psutil
from tandem_stack.stack import free_port

from tandem_inference import codec
from tandem_inference.dataset import heldout
from tandem_inference.pb import grpc_service_pb2 as pb
from tandem_inference.pb import grpc_service_pb2_grpc as pb_grpc

ROOT = Path(__file__).resolve().parents[2]
RECEIVER = """
import sys, time
from tandem_stack.otlp import Receiver
with Receiver() as r:
    print(r.endpoint, flush=True)
    while sys.stdin.readline():
        pass
"""


def trees_arg(value: str) -> dict[str, str]:
    """`label=path,...` as {label: absolute path}."""
    pairs = [t.split("=", 1) for t in value.split(",")]
    if any(len(p) != 2 or not p[0] for p in pairs):
        raise argparse.ArgumentTypeError("expected label=path,...")
    return {label: str(Path(path).resolve()) for label, path in pairs}


def request(row: np.ndarray) -> pb.ModelInferRequest:
    tensor = pb.ModelInferRequest.InferInputTensor(name="pixels", datatype="FP32", shape=[1, 64])
    return pb.ModelInferRequest(
        model_name="digits", inputs=[tensor], raw_input_contents=[codec.encode_raw(row[None])]
    )


class Stack:
    """A receiver, a nats-server and the Python service, for one sampling setting."""

    def __init__(self, ratio: str, args: argparse.Namespace, tree: str = "") -> None:
        self.ratio = ratio
        self.args = args
        self.tree = tree
        self.procs: list[subprocess.Popen[Any]] = []
        self.grpc_port = free_port()
        self.nats_url = f"nats://127.0.0.1:{free_port()}"
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 -- kept open with the server

    def start(self) -> None:
        env = dict(os.environ)
        for key in list(env):
            if key.startswith("OTEL_"):
                del env[key]
        if self.tree:
            env["PYTHONPATH"] = self.tree
        if self.ratio != "off":
            receiver = subprocess.Popen(  # noqa: S603
                [sys.executable, "-c", RECEIVER],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
                env=env,
            )
            self.procs.append(receiver)
            assert receiver.stdout is not None
            endpoint = receiver.stdout.readline().strip()
            env |= {
                "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
                "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
                "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
                "OTEL_TRACES_SAMPLER_ARG": self.ratio,
                "OTEL_SEMCONV_STABILITY_OPT_IN": "rpc",
            }
        port = self.nats_url.rsplit(":", 1)[1]
        self.procs.append(
            subprocess.Popen(  # noqa: S603
                [str(self.args.nats_server), "-a", "127.0.0.1", "-p", port],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        pin = ["taskset", "-c", self.args.server_cpus] if self.args.server_cpus else []
        self.procs.append(
            subprocess.Popen(  # noqa: S603
                [
                    *pin,
                    sys.executable,
                    "-m",
                    "tandem_inference",
                    "serve",
                    "--serve",
                    "grpc,nats",
                    "--model-repository",
                    str(self.args.model_repository),
                    "--grpc-addr",
                    f"127.0.0.1:{self.grpc_port}",
                    "--nats-url",
                    self.nats_url,
                    "--metrics-addr",
                    "",
                    "--log-level",
                    "warning",
                ],
                env=env,
                stdout=self.log,
                stderr=self.log,
            )
        )

    @property
    def server_pid(self) -> int:
        return self.procs[-1].pid

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        self.log.close()


async def ready_grpc(stub: pb_grpc.GRPCInferenceServiceStub, message: pb.ModelInferRequest) -> None:
    for _ in range(300):
        try:
            await stub.ModelInfer(message, timeout=1)
            return
        except grpc.aio.AioRpcError:
            await asyncio.sleep(0.1)
    raise RuntimeError("the server did not come up")


async def drive(
    call: Callable[[], Awaitable[None]], seconds: float, concurrency: int
) -> list[float]:
    latencies: list[float] = []
    stop = time.perf_counter() + seconds

    async def caller() -> None:
        while time.perf_counter() < stop:
            started = time.perf_counter()
            await call()
            latencies.append(time.perf_counter() - started)

    await asyncio.gather(*(caller() for _ in range(concurrency)))
    return latencies


async def measure(stack: Stack, args: argparse.Namespace) -> dict[str, float]:
    message = request(heldout()[0][0].astype(np.float32))
    payload = message.SerializeToString()
    figures: dict[str, float] = {}
    async with grpc.aio.insecure_channel(f"127.0.0.1:{stack.grpc_port}") as channel:
        stub: Any = pb_grpc.GRPCInferenceServiceStub(channel)  # type: ignore[no-untyped-call]
        await ready_grpc(stub, message)
        nc = await nats.connect(stack.nats_url)
        subject = "oip.v2.models.digits.infer"
        for _ in range(300):
            try:
                await nc.request(subject, payload, timeout=1)
                break
            except Exception:  # not subscribed yet
                await asyncio.sleep(0.1)

        async def over_grpc() -> None:
            await stub.ModelInfer(message, timeout=5)

        async def over_nats() -> None:
            reply = await nc.request(subject, payload, timeout=5)
            if reply.headers and "Nats-Service-Error" in reply.headers:
                raise RuntimeError(reply.headers)

        calls = {"grpc": over_grpc, "nats": over_nats}
        for transport in args.transports.split(","):
            call = calls[transport]
            await drive(call, 0.3, 1)  # warm up
            one = await drive(call, args.seconds, 1)
            q = statistics.quantiles(one, n=100)
            figures[f"{transport} p50"] = q[49] * 1e6
            figures[f"{transport} p99"] = q[98] * 1e6
            cpu = psutil.Process(stack.server_pid).cpu_times()
            many = await drive(call, args.seconds, args.concurrency)
            figures[f"{transport} req/s"] = len(many) / args.seconds
            # The server's own CPU per request (all its threads), which other work on
            # a shared machine moves much less than it moves the rate.
            after = psutil.Process(stack.server_pid).cpu_times()
            used = after.user + after.system - cpu.user - cpu.system
            figures[f"{transport} CPU µs/req"] = used / len(many) * 1e6
        await nc.close()
    return figures


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-repository", type=Path, default=ROOT / "models")
    parser.add_argument("--ratios", default="off,0.01,0.1,1")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--transports", default="grpc,nats")
    parser.add_argument("--server-cpus", default="", help="taskset CPU list for the server")
    parser.add_argument(
        "--trees",
        type=trees_arg,
        default={},
        help="label=path,...: service source trees (their src folders) to compare",
    )
    parser.add_argument(
        "--nats-server",
        type=Path,
        default=Path(os.environ.get("TANDEM_NATS_SERVER", ROOT / "edge-go/bin/nats-server")),
    )
    parser.add_argument(
        "--hold",
        action="store_true",
        help="start the first setting, print the server's pid, and load one request at a "
        "time until interrupted (to attach py-spy)",
    )
    args = parser.parse_args()
    if args.server_cpus and not shutil.which("taskset"):
        parser.error("--server-cpus needs taskset")
    ratios = args.ratios.split(",")
    if args.hold:
        stack = Stack(ratios[0], args)
        stack.start()
        try:
            print(f"server pid {stack.server_pid}", flush=True)
            args.seconds = 1e9
            await measure(stack, args)
        finally:
            stack.stop()
        return
    trees: dict[str, str] = args.trees or {"": ""}
    rows = [(label, ratio) for ratio in ratios for label in trees]
    results: dict[tuple[str, str], list[dict[str, float]]] = defaultdict(list)
    for round_ in range(args.rounds):
        for label, ratio in rows:
            stack = Stack(ratio, args, tree=trees[label])
            stack.start()
            try:
                figures = await measure(stack, args)
            finally:
                stack.stop()
            results[label, ratio].append(figures)
            print(f"round {round_ + 1} {label} {ratio}: {figures}", file=sys.stderr, flush=True)
    columns = list(results[rows[0]][0])
    print("| sampling | " + " | ".join(columns) + " |")
    print("| --- " * (len(columns) + 1) + "|")
    for label, ratio in rows:
        cells = [statistics.median(r[c] for r in results[label, ratio]) for c in columns]
        name = "off" if ratio == "off" else f"{float(ratio):.0%}"
        print(
            f"| {f'{label} ' if label else ''}{name} | "
            + " | ".join(
                f"{v:,.0f}" if c.endswith(("req/s", "/req")) else f"{v / 1e3:.2f} ms"
                for c, v in zip(columns, cells, strict=True)
            )
            + " |"
        )


if __name__ == "__main__":
    asyncio.run(main())
