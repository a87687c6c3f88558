"""What the benchmark measures: the gateway configurations, the scenarios, the plans.

Adding a scenario is one line in SCENARIOS; a gateway configuration, one in GATEWAYS.
"""

from __future__ import annotations

from dataclasses import dataclass

MODEL = "digits"


@dataclass(frozen=True)
class Gateway:
    """One gateway configuration: a gateway process started with these flags."""

    name: str
    args: tuple[str, ...] = ()


# Each gateway configuration runs as its own process, all in front of one Python service.
GATEWAYS = (
    Gateway("gateway", ()),
    # Edge coalescing, once it has a flag: a Gateway named for it, with the flag, and a
    # scenario via it.
)


@dataclass(frozen=True)
class Scenario:
    """One way of reaching the model, measured by the driver.

    kind is the driver's transport (rest-json, rest-binary, grpc); via is the
    process it talks to: "baseline", "python", or a Gateway's name. A scenario with
    hop_of is the same call as that scenario plus the Go hop: their difference at
    one request in flight is the latency the hop adds. locust names the user class
    in bench/locustfile.py that makes the same call, for `run.py --locust`.
    """

    name: str
    kind: str
    via: str
    role: str  # "baseline", "gateway" or "direct": how the summary uses it
    locust: str
    hop_of: str | None = None
    sweep: bool = True
    closed: bool = True


SCENARIOS = (
    Scenario("baseline", "rest-json", "baseline", "baseline", "BaselineRest"),
    Scenario(
        "gateway-rest-grpc",
        "rest-json",
        "gateway",
        "gateway",
        "GatewayRestJson",
        hop_of="python-grpc",
    ),
    # The same client call as python-grpc, through the gateway's edge gRPC listener:
    # the cleanest measure of what the Go hop adds.
    Scenario(
        "gateway-grpc-grpc", "grpc", "gateway", "gateway", "GatewayGrpc", hop_of="python-grpc"
    ),
    Scenario("python-grpc", "grpc", "python", "direct", "PythonGrpc"),
    # Still to come, a line each: the binary tensor extension once the gateway serves
    # it (kind "rest-binary", Locust user GatewayRestBinary); NATS (a nats-server
    # process and a Gateway with --transport nats).
)


@dataclass(frozen=True)
class Settings:
    """The driver's plan, less the scenarios; see bench/README.md for each field."""

    bound_ms: float = 20.0
    step_s: float = 5.0
    warmup_s: float = 3.0
    pause_s: float = 1.0
    timeout_s: float = 2.0
    start_rps: float = 500.0
    factor: float = 1.5
    max_rps: float = 60_000.0
    refine: int = 3
    retries: int = 1
    max_steps: int = 16
    max_in_flight: int = 1024
    closed_requests: int = 2_000
    closed_rounds: int = 5
    batch: int = 1


FULL = Settings()
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
