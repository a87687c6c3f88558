"""The driver's plan and result, typed: one definition each, mirroring bench/loadgen.

The Go structs' JSON tags are the source of truth (plan.go, measure.go, main.go);
tests/test_bench_schema.py checks every field name here against them. The plan is
a dataclass because the Python side builds it; the result is TypedDicts because
the Python side only reads it (json.loads, then these types). No postponed
annotations here: the TypedDicts' NotRequired keys must be known at run time.
"""

import json
from dataclasses import asdict, dataclass, field, fields
from enum import StrEnum
from typing import NotRequired, Self, TypedDict, cast


class Kind(StrEnum):
    """The driver's transports (the keys of `transports` in loadgen/targets.go)."""

    REST_JSON = "rest-json"
    REST_BINARY = "rest-binary"
    GRPC = "grpc"
    NATS = "nats"


@dataclass(frozen=True)
class ScenarioSpec:
    """One way of reaching the model (Go: ScenarioSpec)."""

    name: str
    kind: Kind
    target: str  # base URL for REST, host:port for gRPC, NATS URL for nats
    subject: str = ""  # NATS subject for kind nats; empty: oip.v2.models.<model>.infer
    sweep: bool = False  # open-loop rate sweep for its capacity
    closed: bool = False  # one in flight, for the added-latency figure
    conns: int = 0  # gRPC connections; 0 means 1
    fixed_rps: float = 0.0  # when positive: max_steps steps at this rate instead of a sweep

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {f.name: getattr(self, f.name) for f in fields(self)}
        out["kind"] = str(self.kind)
        # The Go side's omitempty: absent rather than empty.
        for key in OMITEMPTY["ScenarioSpec"]:
            if not out[key]:
                del out[key]
        return out

    @classmethod
    def from_json(cls, raw: dict[str, object]) -> Self:
        return cls(**{**raw, "kind": Kind(str(raw["kind"]))})  # type: ignore[arg-type]


@dataclass(frozen=True)
class Plan:
    """Everything one run of the driver does (Go: Plan); see bench/README.md per field.

    scenarios.FULL and scenarios.QUICK are Plans without scenarios (the settings);
    the runner adds the scenarios and the pixels with dataclasses.replace.
    """

    model: str = "digits"
    pixels: tuple[float, ...] = ()  # one 8x8 digit, the same for every request
    batch: int = 1  # rows per request
    text: str = ""  # set: a text model's requests, this text in every row (minilm.py)
    bound_ms: float = 20.0  # capacity is the highest rate whose p99 stays within this
    step_s: float = 3.0  # seconds each offered rate is held
    warmup_s: float = 2.0  # seconds at start_rps per scenario before anything is measured
    pause_s: float = 0.5  # seconds between steps
    timeout_s: float = 2.0  # per request
    start_rps: float = 600.0  # first offered rate
    factor: float = 1.5  # each passing step multiplies the rate by this
    max_rps: float = 16_000.0  # the sweep never offers more than this
    refine: int = 2  # bisection steps between the last pass and the first failure
    retries: int = 1  # a failing rate is tried again this many times before it counts
    max_steps: int = 12  # per scenario, whatever happens
    max_in_flight: int = 1024  # open-loop workers (and HTTP connections) per scenario
    closed_requests: int = 1_500  # per round, one in flight
    closed_rounds: int = 3
    scenarios: tuple[ScenarioSpec, ...] = field(default=())

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {f.name: getattr(self, f.name) for f in fields(self)}
        out["pixels"] = list(self.pixels)
        out["scenarios"] = [s.to_json() for s in self.scenarios]
        return out

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=1)

    @classmethod
    def from_json(cls, raw: dict[str, object]) -> Self:
        specs = cast("list[dict[str, object]]", raw.get("scenarios") or [])
        pixels = cast("list[float]", raw.get("pixels") or [])
        rest = {k: v for k, v in raw.items() if k not in ("scenarios", "pixels")}
        return cls(
            **rest,  # type: ignore[arg-type]
            pixels=tuple(pixels),
            scenarios=tuple(ScenarioSpec.from_json(s) for s in specs),
        )

    def settings(self) -> dict[str, object]:
        """The plan less the pixels and the scenarios: what summary.json calls settings."""
        # No text for the digits plans: their summaries stay as they were.
        skip = ("pixels", "scenarios") + (() if self.text else ("text",))
        return {k: v for k, v in asdict(self).items() if k not in skip}


# Fields the Go side tags omitempty (absent from its JSON when empty).
OMITEMPTY: dict[str, tuple[str, ...]] = {
    "ScenarioSpec": ("subject", "fixed_rps"),
    "Step": ("error_kinds",),
    "Closed": ("error_kinds",),
    "ScenarioReport": ("warmup", "closed"),
}


class Stats(TypedDict):
    """Latencies of a step or a closed loop, µs (Go: Stats)."""

    count: int
    mean_us: float
    p50_us: float
    p90_us: float
    p99_us: float
    p999_us: float
    max_us: float
    # [percentile, µs] pairs; null when nothing was measured.
    cdf: list[list[float]] | None


# "pass" is a keyword: the functional form.
Step = TypedDict(
    "Step",
    {
        "offered_rps": float,
        "achieved_rps": float,
        "expected": int,
        "sent": int,
        "ok": int,
        "errors": int,
        "error_kinds": NotRequired[dict[str, int]],
        "latency": Stats,
        "service": Stats,
        "send_lag_p99_us": float,
        "pass": bool,
        "started": float,
        "ended": float,
    },
)
Step.__doc__ = "One offered rate held for step_s, open loop (Go: Step)."


class Window(TypedDict):
    """One closed-loop round (Go: Window)."""

    requests: int
    errors: int
    started: float
    ended: float


class Closed(TypedDict):
    """One request in flight, rounds merged (Go: Closed)."""

    rounds: list[Window]
    errors: int
    error_kinds: NotRequired[dict[str, int]]
    latency: Stats


class ScenarioReport(TypedDict):
    """Everything measured for one scenario (Go: ScenarioReport)."""

    spec: dict[str, object]  # ScenarioSpec.to_json(); ScenarioSpec.from_json reads it
    warmup: NotRequired[Step]
    closed: NotRequired[Closed]
    steps: list[Step]
    capacity_rps: float
    capacity_bounded: bool


class Report(TypedDict):
    """The driver's output (Go: Report)."""

    plan: dict[str, object]  # Plan.to_json(); Plan.from_json reads it
    started: float
    ended: float
    scenarios: list[ScenarioReport]


def load_report(text: str) -> Report:
    """The driver's result file, as the types above (the driver wrote it; not re-validated)."""
    return cast("Report", json.loads(text))


def spec_name(r: ScenarioReport) -> str:
    return str(r["spec"]["name"])


def spec_target(r: ScenarioReport) -> str:
    return str(r["spec"]["target"])


def spec_flag(r: ScenarioReport, key: str) -> bool:
    """spec's sweep or closed."""
    return bool(r["spec"].get(key))


# The process samples (raw/samples.json): what run.py's sampler records, not the driver.


class Usage(TypedDict):
    """One process (and its children) at one sample: CPU in % of one core, RSS in bytes."""

    cpu: float
    rss: int


@dataclass(frozen=True)
class Sample:
    """Every sampled process at time t (unix seconds).

    raw/samples.json keeps the flat form {"t": ..., "<process>": {"cpu", "rss"}, ...}.
    """

    t: float
    usage: dict[str, Usage]

    def to_json(self) -> dict[str, object]:
        return {"t": self.t, **self.usage}

    @classmethod
    def from_json(cls, raw: dict[str, object]) -> Self:
        usage = {k: cast("Usage", v) for k, v in raw.items() if k != "t"}
        return cls(t=float(cast("float", raw["t"])), usage=usage)


def load_samples(text: str) -> list[Sample]:
    return [Sample.from_json(s) for s in json.loads(text)]


def dump_samples(samples: list[Sample]) -> str:
    return json.dumps([s.to_json() for s in samples])
