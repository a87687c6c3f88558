"""Locust users for Tandem: closed-loop load over each path to the model.

Name the user classes to run; all of them run otherwise:

    locust -f bench/locustfile.py --headless --processes -1 -u 64 -r 64 -t 60s \\
        --csv bench/scratch/locust --html bench/scratch/locust.html GatewayRestJson

| class | path |
| --- | --- |
| GatewayRestJson | gateway, OIP REST with JSON tensors |
| GatewayRestBinary | gateway, OIP REST with the binary tensor extension |
| GatewayGrpc | gateway, OIP gRPC at the edge |
| PythonGrpc | the Python service's OIP gRPC, directly |
| BaselineRest | the all-Python baseline (bench/baseline/server.py) |

Where each one connects comes from the environment, defaulting to `make run`'s ports
(gateway REST :8000, gateway gRPC :8001, Python gRPC :50051; baseline :8080):
TANDEM_BENCH_GATEWAY_URL, TANDEM_BENCH_GATEWAY_GRPC, TANDEM_BENCH_PYTHON_GRPC,
TANDEM_BENCH_BASELINE_URL. `python bench/run.py --locust` starts everything on free
ports and sets them. Locust is closed loop (each user waits for its answer), so its
figures are throughput at a concurrency; bench/loadgen measures capacity open loop.

Each path reports under a name of its own (`gateway REST json`, `gateway REST
binary`, `gateway gRPC`, `python gRPC`, `baseline`), and every gateway answer's
Server-Timing parts (edge, hop, python, queue, model; the header for REST, the
trailer for gRPC) as entries of their own, `<path>: <part>` with request type
`server-timing`, so that Locust's UI and CSV show where the gateway's time goes.

With no arguments (`locust -f bench/locustfile.py`) the web UI starts with the class
picker on (pick one user class per test) against `make run`'s default ports.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import grpc
import grpc.experimental.gevent as grpc_gevent
import numpy as np
from locust import User, constant, events, task
from locust.contrib.fasthttp import FastHttpUser
from sklearn.datasets import load_digits
from tandem_inference.pb import grpc_service_pb2 as pb
from tandem_inference.pb import grpc_service_pb2_grpc as pb_grpc

from servertiming import server_timing

# gRPC's C core blocks the thread while it waits; under gevent that would stall every
# user in the process. This makes it yield to the gevent loop instead.
grpc_gevent.init_gevent()

MODEL = os.environ.get("TANDEM_BENCH_MODEL", "digits")
INFER_PATH = f"/v2/models/{MODEL}/infer"
# One real digit, pixel values 0-16 as the model expects; the same in every request.
PIXELS = np.asarray(load_digits().data[0], dtype=np.float32).reshape(1, 64)

JSON_BODY = json.dumps(
    {
        "inputs": [
            {
                "name": "pixels",
                "shape": [1, 64],
                "datatype": "FP32",
                "data": PIXELS.ravel().tolist(),
            }
        ]
    }
)


def _binary_request() -> tuple[bytes, dict[str, str]]:
    """OIP's binary tensor extension: a JSON header, then the raw little-endian tensor."""
    raw = PIXELS.astype("<f4").tobytes()
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "pixels",
                    "shape": [1, 64],
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": len(raw)},
                }
            ],
            "outputs": [{"name": "probabilities", "parameters": {"binary_data": True}}],
        }
    ).encode()
    headers = {
        "Content-Type": "application/octet-stream",
        "Inference-Header-Content-Length": str(len(header)),
    }
    return header + raw, headers


BINARY_BODY, BINARY_HEADERS = _binary_request()

GRPC_REQUEST = pb.ModelInferRequest(
    model_name=MODEL,
    inputs=[pb.ModelInferRequest.InferInputTensor(name="pixels", datatype="FP32", shape=[1, 64])],
    raw_input_contents=[PIXELS.astype("<f4").tobytes()],
)


# The request names, one per path, as Locust's UI and CSV show them.
GATEWAY_REST_JSON = "gateway REST json"
GATEWAY_REST_BINARY = "gateway REST binary"
GATEWAY_GRPC = "gateway gRPC"
PYTHON_GRPC = "python gRPC"
BASELINE = "baseline"
SERVER_TIMING = "server-timing"


@events.init_command_line_parser.add_listener  # type: ignore[untyped-decorator]
def _defaults(parser: Any, **_: Any) -> None:  # noqa: ANN401 (Locust's parser)
    # One user class per test from the web UI: running them all at once mixes paths.
    parser.set_defaults(class_picker=True)


def _timing_header(resp: Any) -> str | None:  # noqa: ANN401 (Locust's response types)
    value = resp.headers.get("Server-Timing") if resp.headers else None
    return value if isinstance(value, str) else None


def fire_parts(environment: Any, name: str, value: str | None) -> None:  # noqa: ANN401 (Locust)
    """Each Server-Timing part as a request entry of its own: `<name>: <part>`."""
    for part, ms in server_timing(value):
        environment.events.request.fire(
            request_type=SERVER_TIMING,
            name=f"{name}: {part}",
            response_time=ms,
            response_length=0,
            exception=None,
            context={},
        )


class GatewayRestJson(FastHttpUser):
    host = os.environ.get("TANDEM_BENCH_GATEWAY_URL", "http://127.0.0.1:8000")
    wait_time = constant(0)

    @task
    def infer(self) -> None:
        resp = self.client.post(
            INFER_PATH,
            data=JSON_BODY,
            headers={"Content-Type": "application/json"},
            name=GATEWAY_REST_JSON,
        )
        fire_parts(self.environment, GATEWAY_REST_JSON, _timing_header(resp))


class GatewayRestBinary(FastHttpUser):
    host = os.environ.get("TANDEM_BENCH_GATEWAY_URL", "http://127.0.0.1:8000")
    wait_time = constant(0)

    @task
    def infer(self) -> None:
        # Locust annotates data as str, but sends bytes as they are (see its docstring).
        resp = self.client.post(
            INFER_PATH,
            data=BINARY_BODY,  # type: ignore[arg-type]
            headers=BINARY_HEADERS,
            name=GATEWAY_REST_BINARY,
        )
        fire_parts(self.environment, GATEWAY_REST_BINARY, _timing_header(resp))


class BaselineRest(FastHttpUser):
    host = os.environ.get("TANDEM_BENCH_BASELINE_URL", "http://127.0.0.1:8080")
    wait_time = constant(0)

    @task
    def infer(self) -> None:
        self.client.post(
            INFER_PATH, data=JSON_BODY, headers={"Content-Type": "application/json"}, name=BASELINE
        )


class GrpcUser(User):
    """ModelInfer over one channel per user, reported to Locust as request events."""

    abstract = True
    wait_time = constant(0)
    request_name = ""  # how Locust names its requests

    def __init__(self, *args: Any, **kwargs: Any) -> None:  # noqa: ANN401 (Locust's signature)
        super().__init__(*args, **kwargs)
        self.channel: grpc.Channel | None = None
        self.stub: Any = None

    def on_start(self) -> None:
        assert self.host, "no gRPC address"
        self.channel = grpc.insecure_channel(self.host)
        self.stub = pb_grpc.GRPCInferenceServiceStub(self.channel)  # type: ignore[no-untyped-call]

    def on_stop(self) -> None:
        if self.channel is not None:
            self.channel.close()

    @task
    def infer(self) -> None:
        start = time.perf_counter()
        error: Exception | None = None
        size = 0
        timing = None
        try:
            resp, call = self.stub.ModelInfer.with_call(GRPC_REQUEST, timeout=10)
            size = resp.ByteSize()
            # The gateway sends Server-Timing as a trailer; the Python service, none.
            timing = dict(call.trailing_metadata() or ()).get("server-timing")
        except grpc.RpcError as err:
            error = err
        self.environment.events.request.fire(
            request_type="grpc",
            name=self.request_name,
            response_time=(time.perf_counter() - start) * 1000,
            response_length=size,
            exception=error,
            context={},
        )
        if error is None:
            fire_parts(self.environment, self.request_name, timing)


class GatewayGrpc(GrpcUser):
    host = os.environ.get("TANDEM_BENCH_GATEWAY_GRPC", "127.0.0.1:8001")
    request_name = GATEWAY_GRPC


class PythonGrpc(GrpcUser):
    host = os.environ.get("TANDEM_BENCH_PYTHON_GRPC", "127.0.0.1:50051")
    request_name = PYTHON_GRPC
