"""Trim a real run's raw/ into the small committed fixture the golden tests read.

    python bench/tests/make_fixture.py bench/scratch/q1/latest   # then review and commit

Keeps a few scenarios (a baseline, gateways, the direct ones their hops are measured
against), every fourth process sample, short latency CDFs and the first lines of
the profile; rounds floats. The golden files are written by the tests themselves
when BENCH_UPDATE_GOLDEN=1 is set.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "quick"
KEEP = {"baseline", "rest-gateway-grpc", "rest-gateway-nats-coalesce", "grpc-gateway-grpc"}
KEEP |= {"python-grpc", "rest-gateway-grpc-coalesce"}
# The same-CPU pass: the baseline and the shipped configurations.
KEEP_SAME = {"baseline", "rest-gateway-grpc-coalesce", "rest-gateway-nats-coalesce"}
PROCESSES = {"python", "gateway-grpc", "gateway-grpc-coalesce", "gateway-nats-coalesce"}
PROCESSES |= {"baseline", "loadgen", "others"}
PROCESSES |= {"nats-server", "python-traced", "gateway-grpc-traced", "gateway-grpc-traced-1pct"}


def _round(v: Any) -> Any:  # noqa: ANN401 (any JSON)
    if isinstance(v, float):
        return round(v, 3 if v > 1e9 else 1)
    if isinstance(v, list):
        return [_round(x) for x in v]
    if isinstance(v, dict):
        return {k: _round(x) for k, x in v.items()}
    return v


def _stats(stats: dict[str, Any]) -> None:
    cdf = stats.get("cdf") or []
    stats["cdf"] = cdf[::32] + cdf[-1:] if cdf else stats.get("cdf")


def _report(report: dict[str, Any], keep: set[str] | None = None) -> dict[str, Any]:
    report["scenarios"] = [
        r for r in report["scenarios"] if keep is None or r["spec"]["name"] in keep
    ]
    report["plan"]["scenarios"] = [r["spec"] for r in report["scenarios"]]
    report["plan"]["pixels"] = report["plan"]["pixels"][:4]
    for r in report["scenarios"]:
        for part in [r.get("warmup"), *r["steps"]]:
            if part:
                _stats(part["latency"])
                _stats(part["service"])
        if r.get("closed"):
            _stats(r["closed"]["latency"])
    return report


def _samples(samples: list[dict[str, Any]], every: int = 8) -> list[dict[str, Any]]:
    return [{k: v for k, v in s.items() if k == "t" or k in PROCESSES} for s in samples[::every]]


def main(run: Path) -> None:
    raw = run / "raw"
    FIXTURE.mkdir(parents=True, exist_ok=True)
    loadgen = _report(json.loads((raw / "loadgen.json").read_text()), KEEP)
    phases = json.loads((raw / "phases.json").read_text())
    for name in ("profile", "traces", "overhead"):
        phase = phases[name]
        phase["result"] = _report(phase["result"])
        phase["samples"] = _samples(phase["samples"], every=4)
    phases["profile"]["top"] = {k: v[:4] for k, v in phases["profile"]["top"].items()}
    out = {
        "loadgen.json": loadgen,
        "samples.json": _samples(json.loads((raw / "samples.json").read_text())),
        "phases.json": phases,
    }
    # The same-CPU pass, when the run had one (--cpu both).
    if (raw / "samecpu.json").is_file():
        out["samecpu.json"] = _report(json.loads((raw / "samecpu.json").read_text()), KEEP_SAME)
        out["samecpu-samples.json"] = _samples(
            json.loads((raw / "samecpu-samples.json").read_text())
        )
        out["cpu.json"] = json.loads((raw / "cpu.json").read_text())
    for name, data in out.items():
        (FIXTURE / name).write_text(json.dumps(_round(data), separators=(",", ":")) + "\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
