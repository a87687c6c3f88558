"""The NATS worker's request ledger: pending ids to cancel, answered ids to reuse."""

from __future__ import annotations

import asyncio

import pytest

from tandem_inference.errors import NotFound
from tandem_inference.ledger import RequestLedger


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def idle() -> None:
    await asyncio.Event().wait()


async def test_an_answered_id_is_reused_until_its_ttl() -> None:
    clock = Clock()
    ledger = RequestLedger(ttl_s=10, clock=clock)
    task = asyncio.create_task(idle())
    ledger.begin("a", task)
    pending = ledger.earlier("a")
    assert pending is not None
    assert not pending.done()
    ledger.answered("a", b"reply")
    task.cancel()
    clock.now = 10
    earlier = ledger.earlier("a")
    assert earlier is not None
    assert earlier.result() == b"reply"
    clock.now = 10.5
    assert ledger.earlier("a") is None
    assert len(ledger) == 0


async def test_errors_are_replies_too() -> None:
    ledger = RequestLedger()
    task = asyncio.create_task(idle())
    ledger.begin("a", task)
    error = NotFound("no")
    ledger.answered("a", error)
    task.cancel()
    earlier = ledger.earlier("a")
    assert earlier is not None
    assert earlier.result() is error


async def test_cancel_stops_the_pending_task_and_its_copies() -> None:
    ledger = RequestLedger()
    task = asyncio.create_task(idle())
    ledger.begin("a", task)
    reply = ledger.earlier("a")
    assert reply is not None
    assert ledger.cancel("a")
    with pytest.raises(asyncio.CancelledError):
        await task
    assert reply.cancelled()
    assert ledger.earlier("a") is None
    assert not ledger.cancel("a")
    assert not ledger.cancel("never-seen")


async def test_an_answered_id_cannot_be_cancelled() -> None:
    ledger = RequestLedger()
    task = asyncio.create_task(idle())
    ledger.begin("a", task)
    ledger.answered("a", b"done")
    assert not ledger.cancel("a")
    assert not task.cancelled()
    task.cancel()


async def test_bounded() -> None:
    ledger = RequestLedger(max_entries=3)
    tasks = [asyncio.create_task(idle()) for _ in range(5)]
    for i, task in enumerate(tasks):
        ledger.begin(str(i), task)
        ledger.answered(str(i), b"x")
    assert len(ledger) == 3
    assert ledger.earlier("0") is None
    assert ledger.earlier("4") is not None
    for task in tasks:
        task.cancel()
