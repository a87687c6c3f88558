"""`run.py --locust`: each scenario's Locust user alone, headless, one Locust process per core."""

from __future__ import annotations

import csv
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from tandem_stack.stack import PYTHON, ROOT

import cpuset
from driver import wait
from sampling import Sampler
from services import Services, folder

if TYPE_CHECKING:
    from scenarios import Scenario
    from summary import LocustRow

BENCH = Path(__file__).resolve().parent
LOCUST = PYTHON.parent / "locust"
# locustfile.SERVER_TIMING: the request type of the Server-Timing parts.
SERVER_TIMING = "server-timing"


def locust(
    scenarios: Sequence[Scenario],
    services: Services,
    results: Path,
    users: int,
    run_time: str,
) -> list[LocustRow]:
    """Each scenario's Locust user alone, headless; on the driver's CPUs under a budget."""
    out = folder(results / "locust")
    pids = services.pids()
    rows: list[LocustRow] = []
    for s in scenarios:
        if s.locust is None:
            continue  # no Locust user makes this call
        prefix = out / s.name
        argv = [str(LOCUST), "-f", str(BENCH / "locustfile.py"), "--headless", "--only-summary"]
        argv += ["--processes", "-1", "--users", str(users), "--spawn-rate", str(users)]
        argv += ["--run-time", run_time, "--stop-timeout", "5", "--host", services.endpoint(s)]
        argv += ["--csv", str(prefix), "--html", f"{prefix}.html", "--exit-code-on-error", "0"]
        log_path = results / "raw" / f"locust-{s.name}.log"
        with log_path.open("wb") as log, cpuset.confined(services.budget.driver):
            proc = subprocess.Popen(  # noqa: S603 (our own venv and paths)
                [*argv, str(s.locust)], stdout=log, stderr=subprocess.STDOUT, cwd=ROOT
            )
        sampler = Sampler({**pids, "locust": proc.pid})
        started = time.time()
        sampler.start()
        try:
            # Locust stops itself after run_time; the margin covers start-up and the reports.
            code = wait(proc, seconds(run_time) + 120)
        finally:
            sampler.stop()
        if code != 0:
            raise RuntimeError(f"locust exited {code} for {s.name}; see {log_path.name}")
        with (out / f"{s.name}_stats.csv").open() as f:
            table = list(csv.DictReader(f))
        # The path's own row: not Aggregated, which also counts the Server-Timing parts.
        total = next(r for r in table if r["Type"] != SERVER_TIMING and r["Name"] != "Aggregated")
        # Locust's percentiles are whole milliseconds below 100 ms; its mean is exact.
        parts = {
            r["Name"].split(": ", 1)[-1]: round(float(r["Average Response Time"]), 3)
            for r in table
            if r["Type"] == SERVER_TIMING
        }
        rows.append(
            {
                "scenario": s.name,
                "user": str(s.locust),
                "users": users,
                "stats": total,
                "timing_mean_ms": parts,
                "samples": [x.to_json() for x in sampler.samples],
                "started": started,
                "ended": time.time(),
            }
        )
    return rows


def seconds(run_time: str) -> float:
    """A duration as Locust writes it (30s, 2m, 1h30m) in seconds."""
    total, number = 0.0, ""
    for ch in run_time:
        if ch.isdigit():
            number += ch
        else:
            total += int(number) * {"s": 1, "m": 60, "h": 3600}[ch]
            number = ""
    return total + (int(number) if number else 0)
