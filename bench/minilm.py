"""The minilm section: sentence embeddings, where the model does real work.

The digits model runs in microseconds, so its sweeps measure overhead only;
all-MiniLM-L6-v2 takes milliseconds a call. For every CPU mode (`same`: every
server on the servers' CPUs, the driver on the rest; `all`: anywhere) each
configuration below is started on its own, swept with REST JSON (one sentence per
request, BYTES) by the same open-loop driver as the main sweep, measured one
request in flight, and stopped:

- `baseline`: bench/baseline/server.py --text, FastAPI serving the same ONNX file
  with the same tokenizer, written as a user would (no batching across requests);
- `gateway-<hop>`: the gateway in front of one Python worker over gRPC or NATS,
  Python's dynamic batcher on (models/minilm/config.toml as shipped);
- `gateway-<hop>-nobatch`: the same with batching off (preferred_batch_size = [1]:
  every request is its own model call, as in the baseline).

Then, on all cores, requests one at a time through a traced gateway per hop give
the per-hop breakdown from real spans (tandem_stack.otlp.hop_shares): which share
of a request the Go edge and the hop cost next to the model. Only orchestration
and the section's figures here; `render` writes its markdown.
"""

from __future__ import annotations

import json
import os
import statistics
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TypedDict

from tandem_stack import otlp
from tandem_stack.stack import MODELS, PYTHON, Process, Stack, free_port

import cpuset
import scenarios
from driver import drive, spec, with_scenarios
from phases import _settle as settle
from progress import Progress, say
from schema import Kind, Plan, Report, ScenarioSpec, spec_name
from services import wait_http

BENCH = Path(__file__).resolve().parent
BASELINE = BENCH / "baseline" / "server.py"
MODEL = "minilm"
# A sentence of 13 tokens, a typical search query or title.
TEXT = "A man is playing a guitar on the stage of a small club tonight."
HOPS = ("grpc", "nats")

# Calls take milliseconds, so the rates start low and the bound is wider than the
# main sweep's 20 ms: at 20 ms a 2-core box would leave little room for queueing.
FULL = replace(
    scenarios.FULL,
    model=MODEL,
    text=TEXT,
    bound_ms=50.0,
    step_s=3.0,
    warmup_s=2.0,
    pause_s=0.5,
    timeout_s=5.0,
    start_rps=25.0,
    factor=1.5,
    max_rps=4000.0,
    refine=1,
    max_steps=10,
    max_in_flight=256,
    closed_requests=200,
    closed_rounds=1,
)
QUICK = replace(
    FULL, step_s=0.5, warmup_s=0.3, pause_s=0.1, max_steps=2, refine=0, retries=0,
    closed_requests=20,
)  # fmt: skip
TRACE_REQUESTS = {"full": 200, "quick": 20}


@dataclass(frozen=True)
class Config:
    """One way of serving MiniLM."""

    name: str
    hop: str = ""  # empty: the baseline, no gateway
    batching: bool = True


CONFIGS = (
    Config("baseline", batching=False),
    Config("gateway-grpc", "grpc"),
    Config("gateway-grpc-nobatch", "grpc", batching=False),
    Config("gateway-nats", "nats"),
    Config("gateway-nats-nobatch", "nats", batching=False),
)


class Row(TypedDict):
    """One configuration in one CPU mode."""

    name: str
    capacity_rps: float
    capacity_bounded: bool
    p50_us: float | None
    p99_us: float | None
    errors: int


class HopRow(TypedDict):
    """The per-hop breakdown of one hop: medians over the traced requests, µs."""

    hop: str
    traces: int
    median_us: dict[str, float]


class Section(TypedDict):
    modes: dict[str, list[Row]]
    hops: list[HopRow]


def repository(workdir: Path, *, batching: bool) -> Path:
    """A repository of `minilm` alone (the built version linked), batching on or off."""
    root = workdir / ("models" if batching else "models-nobatch")
    (root / MODEL).mkdir(parents=True, exist_ok=True)
    config = (MODELS / MODEL / "config.toml").read_text()
    if not batching:
        config = config.replace(
            "[dynamic_batching]\n", "[dynamic_batching]\npreferred_batch_size = [1]\n"
        )
    (root / MODEL / "config.toml").write_text(config)
    link = root / MODEL / "1"
    if not link.exists():
        link.symlink_to(MODELS / MODEL / "1", target_is_directory=True)
    return root


@contextmanager
def serving(
    config: Config, workdir: Path, budget: cpuset.Budget, env: dict[str, str] | None = None
) -> Iterator[tuple[str, dict[str, Process]]]:
    """One configuration running, confined to the servers' CPUs: its REST URL and processes."""
    with ExitStack() as stack:
        with cpuset.confined(budget.servers):
            if not config.hop:
                port = free_port()
                argv = [str(PYTHON), str(BASELINE), "--port", str(port), "--text"]
                argv += ["--model", str(MODELS / MODEL / "1" / "model.onnx")]
                clean = {k: v for k, v in os.environ.items() if not k.startswith("TANDEM_")}
                proc = Process("baseline", argv, workdir / "baseline.log", clean).start()
                stack.callback(proc.stop)
                url = f"http://127.0.0.1:{port}"
                wait_http(proc, f"{url}/v2/health/ready")
                processes = {"baseline": proc}
            else:
                s = Stack(
                    transport=config.hop,
                    models=repository(workdir, batching=config.batching),
                    routing=None,
                    workdir=workdir,
                    env={**cpuset.go_env(budget.servers), **(env or {})},
                    nats_auth=False,
                )
                stack.enter_context(s)
                url = s.rest_url
                processes = {p.name: p for p in s.processes}
        if budget.servers is not None:
            for p in processes.values():
                if p.popen is not None:
                    cpuset.pin(p.popen.pid, budget.servers)
        yield url, processes


def sweep(config: Config, plan: Plan, raw: Path, mode: str, budget: cpuset.Budget) -> Report:
    workdir = raw / f"logs-minilm-{mode}" / config.name
    workdir.mkdir(parents=True, exist_ok=True)
    with serving(config, workdir, budget) as (url, processes):
        specs = [
            ScenarioSpec(name=config.name, kind=Kind.REST_JSON, target=url, sweep=True, closed=True)
        ]
        full = with_scenarios(plan, specs)
        name = f"minilm-{mode}-{config.name}"
        with cpuset.confined(budget.driver):
            report, _ = drive(
                full, raw, name, processes, cpus=budget.driver, on_line=Progress(name, full)
            )
    return report


def row(report: Report) -> Row:
    """A configuration's figures from its driver report."""
    (r,) = report["scenarios"]
    closed = r.get("closed")
    parts = [r.get("warmup"), closed, *r["steps"]]
    return {
        "name": spec_name(r),
        "capacity_rps": r["capacity_rps"],
        "capacity_bounded": r["capacity_bounded"],
        "p50_us": closed["latency"]["p50_us"] if closed else None,
        "p99_us": closed["latency"]["p99_us"] if closed else None,
        "errors": sum(p["errors"] for p in parts if p),
    }


def traces(raw: Path, requests: int) -> list[HopRow]:
    """Requests one at a time through a traced gateway per hop; the median of each part."""
    out: list[HopRow] = []
    for hop in HOPS:
        config = Config(f"traced-{hop}", hop)
        workdir = raw / "logs-minilm-traces" / hop
        workdir.mkdir(parents=True, exist_ok=True)
        with otlp.Receiver() as receiver:
            env = otlp.otel_env(receiver.endpoint)
            with serving(config, workdir, cpuset.Budget(), env) as (url, processes):
                plan = replace(
                    FULL, closed_requests=requests, warmup_s=0.5, start_rps=10.0,
                    scenarios=(),
                )  # fmt: skip
                full = with_scenarios(plan, [spec(config.name, Kind.REST_JSON, url, closed=True)])
                drive(full, raw, f"minilm-{config.name}", processes)
            settle(receiver)
            spans = list(receiver.spans)
        out.append(hop_row(hop, spans))
    return out


def hop_row(hop: str, spans: Sequence[otlp.Span]) -> HopRow:
    """The median of each of hop_shares' parts over the complete traces among `spans`."""
    by_trace: dict[str, list[otlp.Span]] = {}
    for s in spans:
        by_trace.setdefault(s.trace_id, []).append(s)
    shares = [
        otlp.hop_shares(t)
        for t in by_trace.values()
        if {"tandem-gateway", "tandem-inference"} <= {s.service for s in t}
        and any(s.name == "execute" for s in t)
    ]
    parts = [p for p, _ in shares[0]] if shares else []
    return {
        "hop": hop,
        "traces": len(shares),
        "median_us": {
            p: round(statistics.median(s[i][1] for s in shares), 1) for i, p in enumerate(parts)
        },
    }


def run(raw: Path, *, quick: bool) -> Section:
    """Both CPU modes (quick: same only), then the traces; raw/minilm.json."""
    plan = QUICK if quick else FULL
    modes = [("same", cpuset.Budget.split())] + ([] if quick else [("all", cpuset.Budget())])
    section: Section = {"modes": {}, "hops": []}
    for mode, budget in modes:
        say(f"minilm, {mode}: {', '.join(c.name for c in CONFIGS)} ({budget.label})")
        section["modes"][mode] = [row(sweep(c, plan, raw, mode, budget)) for c in CONFIGS]
    say("minilm: traced requests, one at a time, both hops")
    section["hops"] = traces(raw, TRACE_REQUESTS["quick" if quick else "full"])
    (raw / "minilm.json").write_text(json.dumps(section, indent=1))
    return section


def problems(section: Section) -> list[str]:
    """What quick mode asserts: every configuration swept without errors, traces complete."""
    out = [
        f"minilm, {mode}: {r['name']}: {r['errors']} errors"
        for mode, rows in section["modes"].items()
        for r in rows
        if r["errors"]
    ]
    out += [
        f"minilm: no complete trace over {h['hop']}" for h in section["hops"] if not h["traces"]
    ]
    return out


def _ms(us: float | None) -> str:
    return "–" if us is None else f"{us / 1e3:.2f} ms"


def render(section: Section) -> str:
    """The section's markdown."""
    lines = [
        "## MiniLM: sentence embeddings (real model work)",
        "",
        f"REST JSON, one sentence per request ({len(TEXT)} bytes, BYTES), capacity at "
        f"p99 ≤ {FULL.bound_ms:.0f} ms; one request in flight for p50 and p99.",
        "",
    ]
    for mode, rows in section["modes"].items():
        label = "same CPU (servers on half the CPUs)" if mode == "same" else "all cores"
        lines += [
            f"### {label}",
            "",
            "| configuration | capacity | vs baseline | 1 in flight p50 | p99 | errors |",
            "| --- | ---: | ---: | ---: | ---: | ---: |",
        ]
        base = next((r["capacity_rps"] for r in rows if r["name"] == "baseline"), 0.0)
        for r in rows:
            more = "" if r["capacity_bounded"] else "+"
            ratio = f"{r['capacity_rps'] / base:.2f}×" if base else "–"
            lines.append(
                f"| {r['name']} | {r['capacity_rps']:,.0f}{more} req/s | {ratio} | "
                f"{_ms(r['p50_us'])} | {_ms(r['p99_us'])} | {r['errors']} |"
            )
        lines.append("")
    if section["hops"]:
        lines += [
            "### Where a request's time goes (traces, one in flight, all cores)",
            "",
            "| part | " + " | ".join(h["hop"] for h in section["hops"]) + " |",
            "| --- |" + " ---: |" * len(section["hops"]),
        ]
        parts = list(section["hops"][0]["median_us"])
        for part in parts:
            cells = []
            for h in section["hops"]:
                total = sum(h["median_us"].values()) or 1.0
                us = h["median_us"].get(part, 0.0)
                cells.append(f"{us:,.0f} µs ({us / total:.1%})")
            lines.append(f"| {part} | " + " | ".join(cells) + " |")
        go = ("Go edge (HTTP, JSON, validation)", "transport (the hop, both ways)")
        for h in section["hops"]:
            total = sum(h["median_us"].values()) or 1.0
            share = sum(h["median_us"].get(p, 0.0) for p in go) / total
            lines.append("")
            lines.append(
                f"Over {h['hop']}, the Go edge and the hop are {share:.1%} of the median "
                f"request ({h['traces']} traces)."
            )
        lines.append("")
    return "\n".join(lines)
