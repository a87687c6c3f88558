"""What the benchmark measures: the gateway configurations, the scenarios, the plans.

Adding a scenario is one line in SCENARIOS; a gateway configuration, one in GATEWAYS.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from schema import Kind, Plan

MODEL = "digits"


@dataclass(frozen=True)
class Gateway:
    """One gateway configuration: a gateway process started with these settings.

    transport is the hop to the Python service (grpc or nats); coalesce turns edge
    request coalescing on with the shipped edge-go/routing.toml. otel_ratio, when
    set, exports traces to the run's OTLP receiver at that sampling ratio
    (parentbased_traceidratio); without it no OTEL endpoint is set, so tracing is off.
    shipped marks the configurations as shipped (edge-go/routing.toml: coalescing on),
    the ones the same-CPU headline compares with the baseline.
    """

    name: str
    transport: str = "grpc"
    coalesce: bool = False
    shipped: bool = False
    otel_ratio: str | None = None
    args: tuple[str, ...] = ()


# Each gateway configuration runs as its own process, all in front of one Python
# service that serves both front doors (gRPC and NATS), and one nats-server.
GATEWAYS = (
    Gateway("gateway-grpc"),
    Gateway("gateway-grpc-coalesce", coalesce=True, shipped=True),
    Gateway("gateway-nats", transport="nats"),
    Gateway("gateway-nats-coalesce", transport="nats", coalesce=True, shipped=True),
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


class Role(StrEnum):
    """How the summary uses a scenario."""

    BASELINE = "baseline"
    GATEWAY = "gateway"
    DIRECT = "direct"


class LocustUser(StrEnum):
    """The user classes in bench/locustfile.py (a test checks that each exists)."""

    GATEWAY_REST_JSON = "GatewayRestJson"
    GATEWAY_REST_BINARY = "GatewayRestBinary"
    GATEWAY_GRPC = "GatewayGrpc"
    PYTHON_GRPC = "PythonGrpc"
    BASELINE_REST = "BaselineRest"


@dataclass(frozen=True, kw_only=True)
class Scenario:
    """One way of reaching the model, measured by the driver.

    kind is the driver's transport; via is the process it talks to: "baseline",
    "python", or a Gateway's name. A scenario with hop_of is the same request as
    that scenario plus the Go gateway: their difference at one request in flight is
    the latency the gateway adds, and hop_note says what else the difference holds.
    same_call marks the pairs whose client call differs least, the ones the
    added-latency target is judged on. locust is the user class in
    bench/locustfile.py that makes the same call, for `run.py --locust` (None: none).
    """

    name: str
    kind: Kind
    via: str
    role: Role
    locust: LocustUser | None
    hop_of: str | None = None
    hop_note: str = ""
    same_call: bool = False
    sweep: bool = True
    closed: bool = True


SCENARIOS = (
    Scenario(
        name="baseline",
        kind=Kind.REST_JSON,
        via="baseline",
        role=Role.BASELINE,
        locust=LocustUser.BASELINE_REST,
    ),
    Scenario(
        name="rest-gateway-grpc",
        kind=Kind.REST_JSON,
        via="gateway-grpc",
        role=Role.GATEWAY,
        locust=LocustUser.GATEWAY_REST_JSON,
        hop_of="python-grpc",
        hop_note="also a REST/JSON client against a gRPC one",
    ),
    Scenario(
        name="rest-gateway-grpc-coalesce",
        kind=Kind.REST_JSON,
        via="gateway-grpc-coalesce",
        role=Role.GATEWAY,
        locust=LocustUser.GATEWAY_REST_JSON,
    ),
    Scenario(
        name="rest-gateway-nats",
        kind=Kind.REST_JSON,
        via="gateway-nats",
        role=Role.GATEWAY,
        locust=LocustUser.GATEWAY_REST_JSON,
        hop_of="python-nats",
        hop_note="also a REST/JSON client against a NATS one",
    ),
    Scenario(
        name="rest-gateway-nats-coalesce",
        kind=Kind.REST_JSON,
        via="gateway-nats-coalesce",
        role=Role.GATEWAY,
        locust=LocustUser.GATEWAY_REST_JSON,
    ),
    # The binary tensor extension through the best configuration.
    Scenario(
        name="rest-binary-gateway-grpc-coalesce",
        kind=Kind.REST_BINARY,
        via="gateway-grpc-coalesce",
        role=Role.GATEWAY,
        locust=LocustUser.GATEWAY_REST_BINARY,
    ),
    # The same client call as python-grpc, through the gateway's edge gRPC listener:
    # the cleanest measure of what the Go hop adds.
    Scenario(
        name="grpc-gateway-grpc",
        kind=Kind.GRPC,
        via="gateway-grpc",
        role=Role.GATEWAY,
        locust=LocustUser.GATEWAY_GRPC,
        hop_of="python-grpc",
        hop_note="the same ModelInfer call, with and without the gateway",
        same_call=True,
    ),
    # The same request message as python-nats, reaching the same NATS door of the
    # same service over the same hop; only the client's first leg differs (gRPC to
    # the gateway against a NATS request to the server). One in flight only.
    Scenario(
        name="grpc-gateway-nats",
        kind=Kind.GRPC,
        via="gateway-nats",
        role=Role.GATEWAY,
        locust=LocustUser.GATEWAY_GRPC,
        hop_of="python-nats",
        hop_note="the same ModelInferRequest; gRPC into the gateway against NATS from the client",
        same_call=True,
        sweep=False,
    ),
    Scenario(
        name="python-grpc",
        kind=Kind.GRPC,
        via="python",
        role=Role.DIRECT,
        locust=LocustUser.PYTHON_GRPC,
    ),
    Scenario(name="python-nats", kind=Kind.NATS, via="python", role=Role.DIRECT, locust=None),
)

# The driver's settings are a Plan (schema.py, the mirror of loadgen's) with no
# scenarios yet: one definition of every field.
Settings = Plan


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


FULL = Plan(model=MODEL)
FULL_PHASES = Phases()
# The same pipeline for a few seconds per scenario: proves every part works, measures nothing.
QUICK = Plan(
    model=MODEL,
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
