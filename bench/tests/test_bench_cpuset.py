"""The same-CPU budget: how the CPUs are split, and that confinement holds and ends."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import cpuset

# Waits for its standard input to close, then prints its affinity.
CHILD = "import os, sys; sys.stdin.read(); print(os.sched_getaffinity(0))"


def test_two_cores_put_the_servers_on_0_and_the_driver_on_1() -> None:
    budget = cpuset.Budget.split([1, 0])
    assert budget.servers == (0,)
    assert budget.driver == (1,)
    assert cpuset.go_env(budget.servers) == {"GOMAXPROCS": "1"}


def test_more_cores_are_halved() -> None:
    budget = cpuset.Budget.split([0, 1, 2, 3, 4])
    assert budget.servers == (0, 1)
    assert budget.driver == (2, 3, 4)


def test_one_core_cannot_be_split() -> None:
    with pytest.raises(ValueError, match="two CPUs"):
        cpuset.Budget.split([0])


def test_unconfined_sets_nothing() -> None:
    assert cpuset.go_env(None) == {}
    assert cpuset.Budget().label == "all cores"


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs")
def test_a_child_started_while_confined_stays_there_and_the_caller_is_restored() -> None:
    before = os.sched_getaffinity(0)
    one = min(before)
    with cpuset.confined([one]):
        child = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "import os, sys; sys.stdin.read(); print(os.sched_getaffinity(0))",
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
    assert os.sched_getaffinity(0) == before
    try:
        assert cpuset.affinity(child.pid) == {one}
        cpuset.pin(child.pid, [one])  # every thread, checked
    finally:
        out, _ = child.communicate("")
    assert out.strip() == str({one})
