"""What the runner is doing, and about how long it has left, on standard error."""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from schema import Plan


def plan_bound_s(plan: Plan) -> float:
    """An upper estimate of how long the driver takes over plan.

    Every sweep at max_steps, every step with its pause; one in flight at ~3 ms a
    request (a lone request takes less on loopback); drains after failed steps
    are not counted.
    """
    specs = plan.scenarios
    swept = sum(1 for s in specs if s.sweep or s.fixed_rps)
    closed = sum(1 for s in specs if s.closed)
    step = plan.step_s + plan.pause_s
    return (
        len(specs) * (plan.warmup_s + plan.pause_s)
        + plan.closed_rounds * closed * (plan.closed_requests * 0.003 + plan.pause_s)
        + swept * plan.max_steps * step
    )


class Progress:
    """Prints each driver line with its part of the run and the time left at most."""

    def __init__(self, label: str, plan: Plan, later_s: float = 0.0) -> None:
        self.label = label
        self.bound = plan_bound_s(plan)
        self.later = later_s  # what the run still has to do after this part
        self.start = time.monotonic()
        then = f" (then ~{later_s:.0f} s more)" if later_s else ""
        say(f"{label}: {len(plan.scenarios)} scenario(s), at most ~{self.bound:.0f} s{then}")

    def __call__(self, line: str) -> None:
        elapsed = time.monotonic() - self.start
        left = max(0.0, self.bound - elapsed) + self.later
        text = line.removeprefix("loadgen: ").split(" ", 1)[-1]
        say(f"[{self.label} {elapsed:4.0f}s, ≤ ~{left:.0f}s left] {text}")


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)
