"""CPU and RSS of every process of a run, sampled on a thread of the runner."""

from __future__ import annotations

import threading
import time

import psutil

from schema import Sample, Usage
from summary import OTHERS


class Sampler(threading.Thread):
    """CPU (% of one core) and RSS of each named process and its children, every interval."""

    def __init__(self, pids: dict[str, int], interval: float = 0.25) -> None:
        super().__init__(name="sampler", daemon=True)
        self.pids = pids
        self.interval = interval
        self.samples: list[Sample] = []
        self._done = threading.Event()
        self._procs: dict[int, psutil.Process] = {}

    def _family(self, pid: int) -> list[psutil.Process]:
        root = self._procs.setdefault(pid, psutil.Process(pid))
        family = [root, *root.children(recursive=True)]
        # cpu_percent is measured from the previous call on the same object: keep them.
        return [self._procs.setdefault(p.pid, p) for p in family]

    def sample(self) -> Sample:
        usage: dict[str, Usage] = {}
        for name, pid in self.pids.items():
            try:
                if self._procs.get(pid) and self._procs[pid].status() == psutil.STATUS_ZOMBIE:
                    continue  # exited, not yet reaped: no figures to take
                family = self._family(pid)
                cpu = sum(p.cpu_percent(None) for p in family)
                rss = sum(p.memory_info().rss for p in family)
            except psutil.NoSuchProcess:
                continue
            usage[name] = {"cpu": cpu, "rss": rss}
        # Whatever else ran on the machine (this runner's own sampling included, a few
        # percent): on shared cores, the noise in the figures.
        machine = psutil.cpu_percent(None) * (psutil.cpu_count() or 1)
        ours = sum(u["cpu"] for u in usage.values())
        usage[OTHERS] = {"cpu": max(0.0, machine - ours), "rss": 0}
        return Sample(t=time.time(), usage=usage)

    def run(self) -> None:
        self.sample()  # primes cpu_percent
        while not self._done.wait(self.interval):
            self.samples.append(self.sample())

    def stop(self) -> None:
        self._done.set()
        self.join()
