"""The NATS front door: the OIP RPCs as a NATS service, per proto/README.md.

The worker joins the queue group as the NATS service `tandem-inference` (ADR-32,
via nats.micro), so `$SRV.PING`, `$SRV.INFO` and `$SRV.STATS` find it, with one
endpoint per subject: `<prefix>.server.{live,ready,metadata}`,
`<prefix>.repository.{index,load,unload}` and, per model it serves,
`<prefix>.models.<model>.{ready,metadata,infer,config,stats}`. A model loaded or
unloaded at run time (explicit model control) gains or loses its endpoints.
Payloads are the serialized protobuf messages; it hands each request to the same
InferenceService as the gRPC front door and only translates: bytes to messages and
back, a TandemError to the `Nats-Service-Error` / `Nats-Service-Error-Code`
headers with an empty body.

nats-py runs one subscription's callbacks one at a time, so a callback that
awaited the model would hold up every later message on its subject. The callback
therefore only notes when the message came (the deadline counts from there, or
from `tandem-deadline` if earlier) and starts a task; the task does the work and
answers. The tasks are kept in a set, which holds them until done (the event
loop keeps only weak references) and tells shutdown what is still in flight.

Requests with a `tandem-request-id` are kept in the worker's RequestLedger
(ledger.py): a message on `<prefix>.cancel` cancels the task of its id, and a
copy of a request the worker has is answered with the first attempt's reply
instead of running twice.

The endpoints come from rpcs.RPCS, and every call goes through rpcs.answer, the
policy it shares with the gRPC door (errors, span status, metrics); a traced RPC
gets a CONSUMER span `process <subject>` whose parent is the trace in its
lowercase `traceparent`/`tracestate` headers.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import re
import socket
import ssl
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import nats
import nats.errors
from google.protobuf.message import DecodeError
from nats import micro
from nats.micro.service import ServiceConfig

from tandem_inference import __version__, telemetry
from tandem_inference.errors import DeadlineExceeded, InvalidArgument, TandemError, TooLarge
from tandem_inference.ledger import Reply, RequestLedger
from tandem_inference.rpcs import RPCS, Rpc, answer
from tandem_inference.service import SERVER_NAME
from tandem_inference.settings import is_subject_token, redacted

if TYPE_CHECKING:
    from google.protobuf.message import Message
    from nats.aio.client import Client
    from nats.aio.msg import Msg
    from nats.micro.request import Request
    from nats.micro.service import Service

    from tandem_inference.service import InferenceService
    from tandem_inference.settings import Settings

log = logging.getLogger(__name__)

# proto/README.md, "Headers": the caller's budget (relative ms), its deadline
# (absolute, Unix ms), and the request's id (the same on every attempt).
TIMEOUT_HEADER = "tandem-timeout"
DEADLINE_HEADER = "tandem-deadline"
REQUEST_ID_HEADER = "tandem-request-id"
# Short, so that a worker is back within a fraction of a second of the server; and
# the first connect retries the same way, since the gateway's embedded NATS server
# may start after the worker.
RECONNECT_WAIT_S = 0.25
_WHOLE_MS = re.compile(r"-?[0-9]{1,18}")


@dataclass(frozen=True, slots=True)
class _Endpoint:
    """One subject this worker serves: an RPC, and for the per-model RPCs, its model."""

    rpc: Rpc
    subject: str
    model: str = ""


class NatsWorker:
    """Serves an InferenceService on NATS: connect, serve, drain."""

    def __init__(self, service: InferenceService, settings: Settings) -> None:
        self._service = service
        self._settings = settings
        self._nc: Client | None = None
        self._micro: Service | None = None
        self._in_flight: set[asyncio.Task[None]] = set()
        self._ledger = RequestLedger()
        self._connected_once = False
        self._stopping = False
        self._serving = False
        service.repository.add_listener(self._on_model_change)

    @property
    def serving(self) -> bool:
        """In the queue group: taking requests."""
        return self._serving

    @property
    def service_id(self) -> str:
        """This worker's id in the NATS services API ($SRV.INFO, $SRV.STATS)."""
        return self._micro.id if self._micro else ""

    @property
    def in_flight(self) -> int:
        """Requests taken and not yet answered."""
        return len(self._in_flight)

    async def start(self) -> None:
        """Connect; retries until the server is up, then reconnects for ever."""
        log.info("nats connecting", extra={"url": redacted(self._settings.nats_url)})
        self._nc = await nats.connect(
            servers=[u.strip() for u in self._settings.nats_url.split(",")],
            name=f"{SERVER_NAME} {socket.gethostname()} pid {os.getpid()}",
            max_reconnect_attempts=-1,
            reconnect_time_wait=RECONNECT_WAIT_S,
            error_cb=self._on_error,
            disconnected_cb=self._on_disconnected,
            reconnected_cb=self._on_reconnected,
            **connect_options(self._settings),
        )
        self._connected_once = True
        log.info("nats connected", extra={"url": self._url()})

    async def set_serving(self, *, serving: bool) -> None:
        """True: join the queue group on every subject. False: leave it, and hand the
        messages already taken to tasks (they are answered; no new ones come)."""
        if serving:
            await self._add_service()
            self._serving = True
            return
        # Cancels still matter for what was taken; the connection's drain ends them.
        if self._micro is None:
            return
        # Service.stop() would unsubscribe, which drops the messages this worker has
        # taken but not yet handled; draining the subscriptions hands them over first.
        # nats.micro exposes no way to do that, hence its internals (nats-py is pinned).
        endpoints = self._micro._endpoints
        subscriptions = [e._subscription for e in endpoints if e._subscription]
        await asyncio.gather(*(s.drain() for s in subscriptions), return_exceptions=True)
        self._serving = False

    async def stop(self) -> None:
        """Stop taking requests, answer the ones taken (for up to the grace period),
        then drain the connection."""
        nc = self._nc
        if nc is None or nc.is_closed:
            return
        self._stopping = True
        try:
            # Bounded: a connection whose server just went away can hang a flush.
            async with asyncio.timeout(self._settings.shutdown_grace_s):
                if nc.is_connected:
                    await self.set_serving(serving=False)
                if self._in_flight:
                    await asyncio.wait(self._in_flight)
        except TimeoutError:
            log.warning(
                "nats shutdown grace period over", extra={"unanswered": len(self._in_flight)}
            )
            await nc.close()
        else:
            try:
                await nc.drain()  # flushes the replies, then closes
            except nats.errors.Error:  # reconnecting: nothing can be flushed
                await nc.close()
        log.info("nats stopped")

    async def _add_service(self) -> None:
        assert self._nc is not None, "start() first"
        # Every worker hears every cancel (no queue group): any of them may hold the id.
        await self._nc.subscribe(f"{self._settings.nats_subject_prefix}.cancel", cb=self._on_cancel)
        self._micro = await micro.add_service(
            self._nc,
            ServiceConfig(
                name=SERVER_NAME,
                version=__version__,
                description="Open Inference Protocol v2 (proto/README.md)",
                queue_group=self._settings.nats_queue_group,
            ),
        )
        for endpoint in self._endpoints():
            await self._add_endpoint(endpoint)
        await self._nc.flush()
        log.info(
            "nats serving",
            extra={
                "prefix": self._settings.nats_subject_prefix,
                "queue_group": self._settings.nats_queue_group,
            },
        )

    def _endpoints(self) -> list[_Endpoint]:
        prefix = self._settings.nats_subject_prefix
        endpoints = [_Endpoint(rpc, rpc.subject(prefix)) for rpc in RPCS if not rpc.per_model]
        for model in self._service.repository.serving_names:
            endpoints += self._model_endpoints(model)
        return endpoints

    def _model_endpoints(self, model: str) -> list[_Endpoint]:
        if not is_subject_token(model):
            log.warning(
                "model name is not a NATS subject token; not served over NATS",
                extra={"model": model},
            )
            return []
        prefix = self._settings.nats_subject_prefix
        return [_Endpoint(rpc, rpc.subject(prefix, model), model) for rpc in RPCS if rpc.per_model]

    async def _add_endpoint(self, endpoint: _Endpoint) -> None:
        assert self._micro is not None
        await self._micro.add_endpoint(
            name=endpoint.rpc.name,
            subject=endpoint.subject,
            handler=functools.partial(self._take, endpoint),
            metadata={"model": endpoint.model} if endpoint.model else None,
        )

    async def _on_model_change(self, model: str, serving: bool) -> None:
        """A model loaded (subscribe its subjects) or being unloaded (leave them first,
        handing over what was delivered, so that its requests go to other workers)."""
        if self._micro is None or not self._serving or self._nc is None:
            return
        subjects = {e.subject for e in self._model_endpoints(model)}
        # nats.micro has no remove_endpoint; its endpoint list is internal (as in
        # set_serving), and nats-py is pinned.
        endpoints = self._micro._endpoints
        present = [e for e in endpoints if e._subject in subjects]
        if serving:
            if not present:
                for endpoint in self._model_endpoints(model):
                    await self._add_endpoint(endpoint)
        else:
            for endpoint in present:
                if endpoint._subscription is not None:
                    await endpoint._subscription.drain()
                    endpoint._subscription = None
                endpoints.remove(endpoint)
        await self._nc.flush()
        log.info(
            "nats model subjects " + ("subscribed" if serving else "unsubscribed"),
            extra={"model": model},
        )

    async def _take(self, endpoint: _Endpoint, msg: Request) -> None:
        """The subscription's callback: note when, hand off, return."""
        # First, so that the budget counts from as close to the wire as it can.
        received = _Received(asyncio.get_running_loop().time(), time.time())
        request_id = _header(msg, REQUEST_ID_HEADER)
        earlier = self._ledger.earlier(request_id) if request_id else None
        if earlier is not None:
            # At most once: a copy of a request this worker has is answered with the
            # first attempt's reply, not run again.
            self._track(asyncio.create_task(_answer_again(msg, earlier)))
            return
        task = asyncio.create_task(self._answer(endpoint, msg, received, request_id))
        self._track(task)
        if request_id:
            self._ledger.begin(request_id, task)

    def _track(self, task: asyncio.Task[None]) -> None:
        self._in_flight.add(task)
        task.add_done_callback(self._in_flight.discard)

    async def _on_cancel(self, msg: Msg) -> None:
        request_id = (msg.headers or {}).get(REQUEST_ID_HEADER)
        if request_id and self._ledger.cancel(request_id):
            log.debug("cancelled", extra={"request_id": request_id})

    async def _answer(
        self, endpoint: _Endpoint, msg: Request, received: _Received, request_id: str | None
    ) -> None:
        outcome = await answer(
            endpoint.rpc,
            lambda: self._work(endpoint, msg, received),
            transport="nats",
            model=endpoint.model,
            models=self._service.repository,
            open_span=lambda tracer: telemetry.nats_consumer_span(
                tracer, endpoint.subject, msg.headers, self._settings.nats_queue_group
            ),
        )
        if request_id:
            self._ledger.answered(request_id, outcome)
        await _reply(msg, outcome)

    async def _work(self, endpoint: _Endpoint, msg: Request, received: _Received) -> bytes:
        """The reply's payload: the caller's budget, the request, the call, the size."""
        deadline = _deadline(msg, received)
        if deadline is not None and deadline.at <= asyncio.get_running_loop().time():
            raise DeadlineExceeded(f"{deadline.source} ran out before the work started")
        request = _parse(endpoint, msg.data)
        response = (
            await endpoint.rpc.handler(
                self._service, request, deadline.at if deadline is not None else None
            )
        ).SerializeToString()
        if self._nc is not None and len(response) > self._nc.max_payload:
            raise TooLarge(
                f"the response is {len(response)} bytes; the NATS server's max_payload "
                f"is {self._nc.max_payload}"
            )
        return response

    async def _on_error(self, err: Exception) -> None:
        if self._connected_once:
            log.warning("nats error", extra={"error": repr(err)})
        else:
            log.debug("nats not reachable yet", extra={"error": repr(err)})

    async def _on_disconnected(self) -> None:
        if self._connected_once and not self._stopping:
            log.warning("nats disconnected; reconnecting")

    async def _on_reconnected(self) -> None:
        log.info("nats reconnected", extra={"url": self._url()})

    def _url(self) -> str:
        url = self._nc.connected_url if self._nc else None
        return redacted(url.geturl()) if url else ""


def connect_options(settings: Settings) -> dict[str, Any]:
    """nats.connect's options for the credentials and TLS in `settings`
    (a `user:pass@` in the URL needs none: nats-py reads it from there)."""
    options: dict[str, Any] = {}
    if settings.nats_user:
        options["user"] = settings.nats_user
        options["password"] = settings.nats_password
    if settings.nats_creds is not None:
        options["user_credentials"] = str(settings.nats_creds)
    if settings.nats_nkey is not None:
        options["nkeys_seed"] = str(settings.nats_nkey)
    if settings.nats_tls_ca is not None or settings.nats_tls_cert is not None:
        context = ssl.create_default_context(
            cafile=str(settings.nats_tls_ca) if settings.nats_tls_ca else None
        )
        if settings.nats_tls_cert is not None:
            context.load_cert_chain(settings.nats_tls_cert, settings.nats_tls_key)
        options["tls"] = context
    return options


def _header(msg: Request, key: str) -> str | None:
    return (msg.headers or {}).get(key)


@dataclass(frozen=True, slots=True)
class _Received:
    """When the worker took a message, on the loop's clock and on the wall clock."""

    loop: float
    wall: float


@dataclass(frozen=True, slots=True)
class _Deadline:
    at: float  # the loop's time
    source: str  # which header set it, for the 504's message


def _deadline(msg: Request, received: _Received) -> _Deadline | None:
    """The earlier of receipt + `tandem-timeout` and `tandem-deadline` (wall clock
    to loop time at receipt), so the budget counts from when the gateway sent."""
    found: list[_Deadline] = []
    budget_ms = _milliseconds(msg, TIMEOUT_HEADER)
    if budget_ms is not None:
        found.append(
            _Deadline(
                received.loop + budget_ms / 1000,
                f"the caller's budget ({TIMEOUT_HEADER} {budget_ms} ms)",
            )
        )
    unix_ms = _milliseconds(msg, DEADLINE_HEADER)
    if unix_ms is not None:
        found.append(
            _Deadline(
                received.loop + unix_ms / 1000 - received.wall,
                f"the caller's deadline ({DEADLINE_HEADER} {unix_ms} ms since 1970)",
            )
        )
    return min(found, key=lambda d: d.at, default=None)


def _milliseconds(msg: Request, header: str) -> int | None:
    text = _header(msg, header)
    if text is None:
        return None
    # ASCII digits only: int() would also take "1_000", " 5" and other scripts' digits.
    if not _WHOLE_MS.fullmatch(text):
        raise InvalidArgument(f'header {header}: "{text}" is not a whole number of milliseconds')
    return int(text)


async def _answer_again(msg: Request, earlier: asyncio.Future[Reply]) -> None:
    """A copy's reply: the first attempt's, once it is there; none if it was cancelled."""
    try:
        outcome = await asyncio.shield(earlier)
    except asyncio.CancelledError:
        return
    await _reply(msg, outcome)


async def _reply(msg: Request, outcome: Reply) -> None:
    if isinstance(outcome, TandemError):
        await _respond(msg, error=outcome)
    else:
        await _respond(msg, outcome)


def _parse(endpoint: _Endpoint, data: bytes) -> Message:
    rpc = endpoint.rpc
    try:
        request = rpc.request_type.FromString(data)
    except DecodeError as err:
        name = rpc.request_type.DESCRIPTOR.full_name
        raise InvalidArgument(f"the payload is not a serialized {name}: {err}") from None
    if rpc.per_model:
        named = rpc.model(request)
        if not named:
            setattr(request, rpc.model_field, endpoint.model)
        elif named != endpoint.model:
            raise InvalidArgument(
                f'the payload names model "{named}", the subject {endpoint.subject} '
                f'model "{endpoint.model}"'
            )
    return request


async def _respond(msg: Request, payload: bytes = b"", error: TandemError | None = None) -> None:
    try:
        if error is None:
            await msg.respond(payload)
        else:
            # A header value is one line.
            description = " ".join(error.message.splitlines())
            await msg.respond_error(str(error.code), description)
    except (nats.errors.Error, ValueError) as err:
        # Closed connection, or no reply subject (a publish, not a request).
        log.warning("nats reply not sent", extra={"subject": msg.subject, "error": repr(err)})
