"""Write a run's files: summary.json (summary.py), summary.md (markdown.py), the plots (plots.py).

The only module here that touches the machine (its CPU, the git commit, the clock)
and the results folder; the figures themselves come from pure functions.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import markdown
import plots
from summary import (
    HOP_PLOT,
    PLOTS,
    LocustRow,
    LocustSummary,
    Meta,
    PhasesRaw,
    ScalingPass,
    ScalingSummary,
    Summary,
    locust_summary,
    scaling_summary,
    summarize,
)

if TYPE_CHECKING:
    from scenarios import Scenario
    from schema import Report, Sample


def machine() -> dict[str, object]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpus": os.cpu_count(), "cpu_model": model, "platform": platform.platform()}


def git_commit(root: Path) -> str:
    try:
        out = subprocess.run(  # noqa: S603 (fixed arguments)
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"],  # noqa: S607
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return out.stdout.strip()


def meta(folder: Path, mode: str, made: tuple[str, str] | None = None) -> Meta:
    """This run's when, commit and machine; made is (generated, commit) of a run re-rendered."""
    return {
        "generated": made[0] if made else datetime.now(UTC).isoformat(timespec="seconds"),
        "mode": mode,
        "commit": made[1] if made else git_commit(folder),
        "machine": machine(),
        "cpus": os.cpu_count() or 1,
    }


def write_report(
    folder: Path,
    result: Report,
    samples: Sequence[Sample],
    scenarios: Sequence[Scenario],
    extra: PhasesRaw | None = None,
    *,
    quick: bool,
    made: tuple[str, str] | None = None,
    same_cpu: tuple[Report, Sequence[Sample], Sequence[int], Sequence[int]] | None = None,
    same_cpu_only: bool = False,
    scaling: Sequence[tuple[ScalingPass, Report, Sequence[Sample]]] | None = None,
) -> Summary:
    """Write the run's summary and plots; made is (generated, commit) of a run re-rendered."""
    about = meta(folder, "quick" if quick else "full", made)
    summary = summarize(
        result,
        samples,
        scenarios,
        extra,
        about,
        same_cpu=same_cpu,
        same_cpu_only=same_cpu_only,
    )
    if scaling:
        summary["scaling"] = scaling_summary(scaling, about["cpus"])
    (folder / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    (folder / "summary.md").write_text(markdown.render(summary))
    bound = summary["settings"]["bound_ms"]
    assert isinstance(bound, float | int)
    plots.latency_vs_rate(folder / PLOTS[0], summary["scenarios"], float(bound))
    plots.cdfs(folder / PLOTS[1], result)
    plots.cpu(folder / PLOTS[2], summary["scenarios"])
    phases = summary.get("phases", {})
    traces = phases.get("traces")
    if traces:
        plots.hops(folder / HOP_PLOT, traces)
    return summary


def write_locust_report(folder: Path, rows: Sequence[LocustRow]) -> LocustSummary:
    """summary.json and summary.md for a Locust run; Locust's own reports sit in locust/."""
    summary = locust_summary(rows, meta(folder, "locust"))
    (folder / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    (folder / "summary.md").write_text(markdown.render_locust(summary))
    return summary


def write_scaling_report(
    folder: Path, scaling: Sequence[tuple[ScalingPass, Report, Sequence[Sample]]], *, quick: bool
) -> ScalingSummary:
    """summary.json and summary.md for `run.py --scaling-only`: the scaling section alone."""
    about = meta(folder, "quick" if quick else "full")
    summary = scaling_summary(scaling, about["cpus"])
    (folder / "summary.json").write_text(json.dumps({**about, "scaling": summary}, indent=1) + "\n")
    head = [f"# Tandem benchmark, scaling only ({about['mode']}), {about['generated']}", ""]
    head += [f"Commit `{about['commit']}`, {about['cpus']} cores.", ""]
    text = "\n".join(head + markdown.scaling_markdown(summary, about["cpus"]))
    (folder / "summary.md").write_text(text)
    return summary
