"""The same CPU budget: every server process on one CPU set, the load driver on the rest.

Processes inherit the CPU affinity of the thread that forks them, and every thread
they create later inherits theirs. So the runner confines its own calling thread to
the servers' set while tandem_stack starts them (`confined`), and each server
starts, and stays, on that set; `pin` then sets it again on every thread of every
process (each TID in /proc/<pid>/task) and of its children, and checks it, in
case anything was started from another thread. Go sizes GOMAXPROCS from the
affinity it starts with; `go_env` sets it explicitly to the set's size as well.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psutil


@dataclass(frozen=True)
class Budget:
    """Where the servers and the driver run; None for both: anywhere (all cores)."""

    servers: tuple[int, ...] | None = None
    driver: tuple[int, ...] | None = None

    @classmethod
    def split(cls, cpus: Sequence[int] | None = None) -> Budget:
        """The first half of the CPUs this process may use for the servers, the rest for the
        driver: on two cores, servers on core 0 and the driver on core 1."""
        every = sorted(cpus if cpus is not None else os.sched_getaffinity(0))
        if len(every) < 2:
            raise ValueError(f"a same-CPU budget needs two CPUs or more, not {every}")
        half = len(every) // 2
        return cls(servers=tuple(every[:half]), driver=tuple(every[half:]))

    @property
    def label(self) -> str:
        if self.servers is None:
            return "all cores"
        return f"servers on CPU {_cpus(self.servers)}, driver on CPU {_cpus(self.driver or ())}"


def _cpus(cpus: Sequence[int]) -> str:
    return ",".join(str(c) for c in cpus)


def go_env(cpus: Sequence[int] | None) -> dict[str, str]:
    """GOMAXPROCS for a Go process on these CPUs (nothing when unconfined)."""
    return {} if cpus is None else {"GOMAXPROCS": str(len(cpus))}


@contextmanager
def confined(cpus: Sequence[int] | None) -> Iterator[None]:
    """Run the block with the calling thread on cpus: what it forks starts there."""
    if cpus is None:
        yield
        return
    before = os.sched_getaffinity(0)  # pid 0: the calling thread
    os.sched_setaffinity(0, cpus)
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def threads(pid: int) -> list[int]:
    try:
        return [int(t) for t in os.listdir(Path("/proc") / str(pid) / "task")]
    except FileNotFoundError:
        return []


def pin(pid: int, cpus: Sequence[int]) -> None:
    """Every thread of pid and of its children onto cpus; raises if one is elsewhere after."""
    family = [pid]
    try:
        family += [c.pid for c in psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return
    want = set(cpus)
    for p in family:
        for tid in threads(p):
            try:
                os.sched_setaffinity(tid, want)
            except ProcessLookupError:
                continue  # a thread that ended meanwhile
            if os.sched_getaffinity(tid) != want:
                raise RuntimeError(f"thread {tid} of {p} is not on CPUs {sorted(want)}")


def affinity(pid: int) -> set[int]:
    """The union of the affinities of every thread of pid (for the record)."""
    out: set[int] = set()
    for tid in threads(pid):
        try:
            out |= os.sched_getaffinity(tid)
        except ProcessLookupError:
            continue
    return out
