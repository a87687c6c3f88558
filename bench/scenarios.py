"""What the benchmark measures: the gateway configurations, the scenarios, the plans.

Adding a scenario is one line in SCENARIOS; a gateway configuration, one in GATEWAYS.
"""

from __future__ import annotations

from dataclasses import dataclass

MODEL = "digits"


@dataclass(frozen=True)
class Gateway:
    """One gateway configuration: a gateway process started with these settings.

    transport is the hop to the Python service (grpc or nats); coalesce turns edge
    request coalescing on with the shipped edge-go/routing.toml. otel_ratio, when
    set, exports traces to the run's OTLP receiver at that sampling ratio
    (parentbased_traceidratio); without it no OTEL endpoint is set, so tracing is off.
    """

    name: str
    transport: str = "grpc"
    coalesce: bool = False
    otel_ratio: str | None = None
    args: tuple[str, ...] = ()


# Each gateway configuration runs as its own process, all in front of one Python
# service that serves both front doors (gRPC and NATS), and one nats-server.
GATEWAYS = (
    Gateway("gateway-grpc"),
    Gateway("gateway-grpc-coalesce", coalesce=True),
    Gateway("gateway-nats", transport="nats"),
    Gateway("gateway-nats-coalesce", transport="nats", coalesce=True),
)

# The traced configurations, started after the capacity and latency scenarios (so
# that tracing never runs beside them) in front of a second, traced Python service.
# The 1% gateway shares that service: with parent-based sampling the service
# follows the gateway's decision.
TRACED = (
    Gateway("gateway-grpc-traced", otel_ratio="1"),
    Gateway("gateway-grpc-traced-1pct", otel_ratio="0.01"),
    Gateway("gateway-nats-traced", transport="nats", otel_ratio="1"),
)


@dataclass(frozen=True)
class Scenario:
    """One way of reaching the model, measured by the driver.

    kind is the driver's transport (rest-json, rest-binary, grpc, nats); via is the
    process it talks to: "baseline", "python", or a Gateway's name. A scenario with
    hop_of is the same request as that scenario plus the Go gateway: their
    difference at one request in flight is the latency the gateway adds, and
    hop_note says what else the difference holds. same_call marks the pairs whose
    client call differs least, the ones the added-latency target is judged on.
    locust names the user class in bench/locustfile.py that makes the same call,
    for `run.py --locust` ("" for none).
    """

    name: str
    kind: str
    via: str
    role: str  # "baseline", "gateway" or "direct": how the summary uses it
    locust: str
    hop_of: str | None = None
    hop_note: str = ""
    same_call: bool = False
    sweep: bool = True
    closed: bool = True


SCENARIOS = (
    Scenario("baseline", "rest-json", "baseline", "baseline", "BaselineRest"),
    Scenario(
        "rest-gateway-grpc",
        "rest-json",
        "gateway-grpc",
        "gateway",
        "GatewayRestJson",
        hop_of="python-grpc",
        hop_note="also a REST/JSON client against a gRPC one",
    ),
    Scenario(
        "rest-gateway-grpc-coalesce",
        "rest-json",
        "gateway-grpc-coalesce",
        "gateway",
        "GatewayRestJson",
    ),
    Scenario(
        "rest-gateway-nats",
        "rest-json",
        "gateway-nats",
        "gateway",
        "GatewayRestJson",
        hop_of="python-nats",
        hop_note="also a REST/JSON client against a NATS one",
    ),
    Scenario(
        "rest-gateway-nats-coalesce",
        "rest-json",
        "gateway-nats-coalesce",
        "gateway",
        "GatewayRestJson",
    ),
    # The binary tensor extension through the best configuration.
    Scenario(
        "rest-binary-gateway-grpc-coalesce",
        "rest-binary",
        "gateway-grpc-coalesce",
        "gateway",
        "GatewayRestBinary",
    ),
    # The same client call as python-grpc, through the gateway's edge gRPC listener:
    # the cleanest measure of what the Go hop adds.
    Scenario(
        "grpc-gateway-grpc",
        "grpc",
        "gateway-grpc",
        "gateway",
        "GatewayGrpc",
        hop_of="python-grpc",
        hop_note="the same ModelInfer call, with and without the gateway",
        same_call=True,
    ),
    # The same request message as python-nats, reaching the same NATS door of the
    # same service over the same hop; only the client's first leg differs (gRPC to
    # the gateway against a NATS request to the server). One in flight only.
    Scenario(
        "grpc-gateway-nats",
        "grpc",
        "gateway-nats",
        "gateway",
        "GatewayRestJson",
        hop_of="python-nats",
        hop_note="the same ModelInferRequest; gRPC into the gateway against NATS from the client",
        same_call=True,
        sweep=False,
    ),
    Scenario("python-grpc", "grpc", "python", "direct", "PythonGrpc"),
    Scenario("python-nats", "nats", "python", "direct", ""),
)


@dataclass(frozen=True)
class Settings:
    """The driver's plan, less the scenarios; see bench/README.md for each field."""

    bound_ms: float = 20.0
    step_s: float = 3.0
    warmup_s: float = 2.0
    pause_s: float = 0.5
    timeout_s: float = 2.0
    start_rps: float = 600.0
    factor: float = 1.5
    max_rps: float = 16_000.0
    refine: int = 2
    retries: int = 1
    max_steps: int = 12
    max_in_flight: int = 1024
    closed_requests: int = 1_500
    closed_rounds: int = 3
    batch: int = 1


@dataclass(frozen=True)
class Phases:
    """The short phases after the capacity and latency scenarios."""

    # Traces: requests one at a time through each traced gateway at 100% sampling.
    trace_requests: int = 200
    # Tracing overhead: off, 100% and 1% through gateway-grpc at one fixed rate,
    # this share of rest-gateway-grpc's capacity, steps of step_s each, interleaved.
    overhead_share: float = 0.5
    overhead_steps: int = 3
    overhead_step_s: float = 4.0
    # The CPU profile: the best gateway scenario at this share of its capacity,
    # profile_s seconds of `go tool pprof` CPU profile in the middle of the step.
    profile_share: float = 0.9
    profile_s: int = 10


FULL = Settings()
FULL_PHASES = Phases()
# The same pipeline for a few seconds per scenario: proves every part works, measures nothing.
QUICK = Settings(
    step_s=1.0,
    warmup_s=0.5,
    pause_s=0.2,
    start_rps=200.0,
    factor=2.0,
    max_rps=400.0,
    refine=0,
    retries=0,
    max_steps=2,
    max_in_flight=64,
    closed_requests=200,
    closed_rounds=1,
)
QUICK_PHASES = Phases(
    trace_requests=20, overhead_steps=1, overhead_step_s=1.0, profile_share=0.5, profile_s=1
)
