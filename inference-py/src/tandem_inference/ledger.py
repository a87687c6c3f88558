"""A NATS worker's requests by `tandem-request-id`: to cancel them, and to run each once.

The gateway sends every request with an id, the same on every attempt of one
request (proto/README.md, "The NATS mapping"). The ledger keeps, per id, the task
answering it and the reply once there is one:

- `<prefix>.cancel` names an id: its task is cancelled, so work still queued is
  dropped (the batcher never runs a cancelled request) and no reply is sent.
- A second message with an id that is pending or was answered within `ttl_s` is
  not executed again: it gets the first attempt's reply (at-most-once per worker).

Bounded: at most `max_entries` ids; the oldest are forgotten first, and answered
ones after `ttl_s`. An id that was forgotten runs again, as it would on another
worker; the bound is what keeps a flood of ids from growing the process.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass

from tandem_inference.errors import TandemError

# What a worker answers: the reply's payload, or the error it sent instead.
Reply = bytes | TandemError

# Long enough for a copy of a message to arrive after its first (a redelivery, a
# duplicate publish), short enough that replies do not pile up: at the default
# bound, 4096 replies of the digits model are about 200 KiB.
DEFAULT_TTL_S = 10.0
DEFAULT_MAX_ENTRIES = 4096


@dataclass(slots=True, eq=False)
class _Entry:
    task: asyncio.Task[None]
    reply: asyncio.Future[Reply]
    answered_at: float | None = None


class RequestLedger:
    """Request ids this worker took, pending or recently answered."""

    def __init__(
        self,
        *,
        ttl_s: float = DEFAULT_TTL_S,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ttl_s = ttl_s
        self._max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        # Answered entries in the order they were answered, so that expiring them
        # looks only at the ones due.
        self._answered: deque[tuple[str, _Entry]] = deque()

    def __len__(self) -> int:
        return len(self._entries)

    def earlier(self, request_id: str) -> asyncio.Future[Reply] | None:
        """The reply (to come, or come) of an earlier attempt with this id, if any."""
        self._expire()
        entry = self._entries.get(request_id)
        return entry.reply if entry is not None else None

    def begin(self, request_id: str, task: asyncio.Task[None]) -> None:
        """`task` answers `request_id` from now on."""
        self._expire()
        reply: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        self._entries[request_id] = _Entry(task, reply)
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)

    def answered(self, request_id: str, reply: Reply) -> None:
        entry = self._entries.get(request_id)
        if entry is not None and not entry.reply.done():
            entry.reply.set_result(reply)
            entry.answered_at = self._clock()
            self._answered.append((request_id, entry))
            while len(self._answered) > self._max_entries:
                old_id, old = self._answered.popleft()
                if self._entries.get(old_id) is old:
                    del self._entries[old_id]

    def cancel(self, request_id: str) -> bool:
        """Cancel the pending work for `request_id`; whether there was any."""
        entry = self._entries.get(request_id)
        if entry is None or entry.reply.done():
            return False
        del self._entries[request_id]
        entry.reply.cancel()  # a copy waiting for the reply gets none either
        entry.task.cancel()
        return True

    def _expire(self) -> None:
        now = self._clock()
        while self._answered:
            request_id, entry = self._answered[0]
            assert entry.answered_at is not None
            if now - entry.answered_at <= self._ttl_s:
                break
            self._answered.popleft()
            if self._entries.get(request_id) is entry:
                del self._entries[request_id]
