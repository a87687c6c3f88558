"""The gateway's Server-Timing value, parsed (for the Locust users; no Locust import here)."""

from __future__ import annotations

import contextlib


def server_timing(value: str | None) -> list[tuple[str, float]]:
    """The parts of a Server-Timing value: [(name, ms)], skipping what does not parse."""
    parts = []
    for entry in (value or "").split(","):
        name, _, params = entry.partition(";")
        for param in params.split(";"):
            key, _, dur = param.partition("=")
            if key.strip() == "dur":
                with contextlib.suppress(ValueError):
                    parts.append((name.strip(), float(dur.strip().strip('"'))))
                break
    return [(n, ms) for n, ms in parts if n]
