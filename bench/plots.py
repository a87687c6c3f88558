"""The plots, from a summary (summary.py) and the driver's result: matplotlib, files only."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib as mpl

mpl.use("Agg")  # files only, never a display
import matplotlib.pyplot as plt
from matplotlib.lines import Line2D
from matplotlib.ticker import FixedLocator, FuncFormatter

from schema import Report, spec_name

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from summary import ScenarioRow, TraceRow


def hops(path: Path, traces: dict[str, TraceRow]) -> None:
    names = list(traces)
    parts = list(next(iter(traces.values()))["median_us"])
    fig, ax = plt.subplots(figsize=(8, 1.6 + 0.8 * len(names)))
    left = [0.0] * len(names)
    for i, p in enumerate(parts):
        widths = [traces[n]["median_us"].get(p, 0.0) for n in names]
        ax.barh(names, widths, left=left, color=f"C{i}", label=p)
        left = [a + b for a, b in zip(left, widths, strict=True)]
    ax.set(
        xlabel="µs (median per part, one request in flight)", title="Where a request's time goes"
    )
    ax.invert_yaxis()
    ax.legend(fontsize="small", loc="upper center", bbox_to_anchor=(0.5, -0.35), ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def latency_vs_rate(path: Path, rows: Sequence[ScenarioRow], bound_ms: float) -> None:
    """p50 and p99 against offered rate, in two panels; one legend outside the data."""
    fig, (p50_ax, p99_ax) = plt.subplots(1, 2, figsize=(13, 5), sharex=True)
    for i, r in enumerate(rows):
        steps = sorted(r["steps"], key=lambda s: s["offered_rps"])
        if not steps:
            continue
        x = [s["offered_rps"] for s in steps]
        for ax, key in ((p50_ax, "p50_us"), (p99_ax, "p99_us")):
            ys = [s["latency"][key] / 1000 for s in steps]  # type: ignore[literal-required]
            ax.plot(x, ys, "o-", color=f"C{i}", label=r["name"])
    p99_ax.axhline(bound_ms, color="grey", linestyle=":", label=f"p99 bound {bound_ms:g} ms")
    for ax, which in ((p50_ax, "p50"), (p99_ax, "p99")):
        ax.set(
            xlabel="offered rate (req/s)",
            ylabel=f"{which} from intended send (ms)",
            yscale="log",
            title=f"{which} against offered rate (open loop)",
        )
        _plain_log_labels(ax)
        ax.grid(visible=True, which="both", alpha=0.3)
    p99_ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.02, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def _plain_log_labels(ax: Axes) -> None:
    # 0.5, 2, 20 read better than 5×10⁻¹, 2×10⁰, 2×10¹.
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(
        FuncFormatter(lambda v, _: f"{v:g}" if f"{v:e}"[0] in "25" else "")
    )


def _cdf_axes(ax: Axes, title: str) -> None:
    # x is 1/(1-p): the tail gets as much room as the body, as in HdrHistogram plots.
    ticks = [50.0, 90.0, 99.0, 99.9, 99.99]
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(FixedLocator([1 / (1 - p / 100) for p in ticks]))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{100 * (1 - 1 / v):g}%"))
    ax.xaxis.set_minor_locator(FixedLocator([]))
    ax.set(xlabel="percentile", ylabel="latency (ms)", yscale="log", title=title)
    _plain_log_labels(ax)
    ax.grid(visible=True, which="both", alpha=0.3)


def _plot_series(ax: Axes, cdf: Sequence[Sequence[float]] | None, label: str, color: str) -> None:
    points = [(1 / (1 - p / 100), us / 1000) for p, us in cdf or [] if p < 100]
    if points:
        ax.plot(*zip(*points, strict=True), "-", color=color, label=label)


def cdfs(path: Path, result: Report) -> None:
    fig, (open_ax, closed_ax) = plt.subplots(1, 2, figsize=(12, 5))
    for i, r in enumerate(result["scenarios"]):
        name, color = spec_name(r), f"C{i}"
        passing = [s for s in r["steps"] if s["pass"]]
        step = max(passing, key=lambda s: s["offered_rps"]) if passing else None
        if step is None and r["steps"]:
            step = min(r["steps"], key=lambda s: s["offered_rps"])
        if step is not None:
            _plot_series(
                open_ax, step["latency"]["cdf"], f"{name} @ {step['offered_rps']:,.0f}/s", color
            )
        closed = r.get("closed")
        if closed:
            _plot_series(closed_ax, closed["latency"]["cdf"], name, color)
    _cdf_axes(open_ax, "Open loop, at each scenario's capacity")
    _cdf_axes(closed_ax, "One request in flight")
    for ax in (open_ax, closed_ax):
        if ax.lines:
            # Below the panel: the tail, where lines cross, stays clear.
            ax.legend(fontsize="small", loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def cpu(path: Path, rows: Sequence[ScenarioRow]) -> None:
    swept = [r for r in rows if r["steps"]]
    # Three panels a row: nine scenarios in one row would be too wide to read.
    ncols = max(1, min(3, len(swept)))
    nrows = max(1, -(-len(swept) // ncols))
    fig, grid = plt.subplots(
        nrows, ncols, figsize=(5 * ncols, 4 * nrows), squeeze=False, sharey=True
    )
    axes = [list(grid.flat)]
    for ax in axes[0][len(swept) :]:
        ax.set_visible(False)
    # One colour per process across all panels.
    every = sorted({n for r in swept for s in r["steps"] for n in s["processes"]})
    colour = {n: f"C{i}" for i, n in enumerate(every)}
    plotted: set[str] = set()
    for ax, r in zip(axes[0], swept, strict=False):
        steps = sorted(r["steps"], key=lambda s: s["offered_rps"])
        # Only the processes that worked in this scenario; the idle ones are flat at zero.
        names = sorted({n for s in steps for n, v in s["processes"].items() if v["cpu_pct"] >= 2})
        for n in names:
            xs = [s["offered_rps"] for s in steps if n in s["processes"]]
            ys = [s["processes"][n]["cpu_pct"] for s in steps if n in s["processes"]]
            ax.plot(xs, ys, "o-", color=colour[n], label=n)
            plotted.add(n)
        ax.set(title=r["name"], xlabel="offered rate (req/s)", ylabel="CPU (% of one core)")
        ax.grid(visible=True, alpha=0.3)
    # One legend for every panel, right of them: the colours are the same throughout.
    handles = [Line2D([], [], color=colour[n], marker="o", label=n) for n in sorted(plotted)]
    fig.tight_layout()
    fig.legend(handles=handles, fontsize="small", loc="upper left", bbox_to_anchor=(1.0, 0.98))
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
