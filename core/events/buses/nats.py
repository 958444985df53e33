"""NATS JetStream: one message per event on `<PREFIX>.<event type>`, each awaiting its ack.

nats-py is asyncio-only and the relay is synchronous, so each process runs one private event
loop in a daemon thread and the sink submits coroutines to it with
asyncio.run_coroutine_threadsafe(...).result(timeout). The loop and the connections on it
belong to the process that started them: a forked Celery child starts its own.
"""

import asyncio
import contextlib
import threading
import time
from typing import Any

import nats
from nats.js.errors import NotFoundError

from core.events.buses.base import DEFAULT_PREFIX, Batch, Options, PerProcess, SinkUnavailable, dumps
from core.logging import REQUEST_ID_HEADER

CLOSE_TIMEOUT = 2.0  # draining a connection on close() never holds the caller longer


class _LoopThread:
    """An asyncio loop running forever in a daemon thread (one per process)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, name="nats-sink-loop", daemon=True).start()

    def run(self, coro, timeout: float) -> Any:
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result(timeout)
        except TimeoutError:
            future.cancel()
            raise


_loop = PerProcess()
_loop_lock = threading.Lock()


def _loop_thread() -> _LoopThread:
    with _loop_lock:
        return _loop.current() or _loop.set(_LoopThread())


class NatsJetStreamSink:
    """Each event is published to `<PREFIX>.<event type>` (`fulfil.events.payment.completed`)
    with the JSON envelope as payload and the headers `Nats-Msg-Id` (the event id),
    `event_type`, `event_version` and `request_id` (when there is one). On its first
    connection the sink creates the stream STREAM_NAME (subjects `<PREFIX>.>`, file storage,
    duplicate window DUPLICATE_WINDOW seconds) if it does not exist; an existing stream is
    left as it is.

    Delivered: JetStream answered the publish with a PubAck, so the event is stored in the
    stream (persisted to the stream's storage, and on a replicated stream by its quorum). A
    PubAck marked `duplicate` counts too: JetStream already stored that event id within its
    duplicate window, which is how a re-sent batch leaves each event once.

    Why one publish at a time, each awaiting its ack, rather than pipelined: with pipelined
    publishes, event 2 can fail (a timeout, a limit) while event 3 is stored; the relay then
    re-sends the batch, 2 is stored after 3, and per-subject order is broken for good.
    Awaiting each ack before the next publish means a stored event always follows every
    earlier event of the batch, and dedupe by Nats-Msg-Id removes the re-sent prefix. The
    cost is one round trip per event, well under a millisecond to a nearby server.
    """

    def __init__(self, name: str, options: dict[str, Any]):
        opts = Options(
            name,
            options,
            {
                "URL": (str, Options.REQUIRED),
                "PREFIX": (str, DEFAULT_PREFIX),
                "STREAM_NAME": (str, "FULFIL_EVENTS"),
                "DUPLICATE_WINDOW": ((int, float), 120),
            },
        )
        self.name = name
        self.url = opts.url("URL", ("nats", "tls"))
        self.prefix = opts.name_token("PREFIX")
        self.stream_name = opts["STREAM_NAME"]
        if not self.stream_name or any(c in self.stream_name for c in " \t.*>/\\"):
            raise opts.error(
                f"option STREAM_NAME must be a word without spaces, . * > / \\: {self.stream_name!r}"
            )
        self.duplicate_window = opts.positive("DUPLICATE_WINDOW")
        self._conn = PerProcess()

    def subject_for(self, event_type: str) -> str:
        return f"{self.prefix}.{event_type}"

    def send(self, batch: Batch, *, timeout: float) -> None:
        if not batch:
            return
        deadline = time.monotonic() + timeout
        try:
            _loop_thread().run(self._publish(batch, deadline), timeout)
        except SinkUnavailable:
            self.close()
            raise
        except Exception as exc:
            self.close()
            what = "no acknowledgement in time" if isinstance(exc, TimeoutError) else f"{type(exc).__name__}"
            raise SinkUnavailable(f"nats {self.name!r}: {what}: {exc}") from exc

    def close(self) -> None:
        nc = self._conn.take()
        if nc is not None and not nc.is_closed:
            # Closing is best effort: the socket goes either way.
            with contextlib.suppress(Exception):
                _loop_thread().run(nc.close(), CLOSE_TIMEOUT)

    async def _publish(self, batch: Batch, deadline: float) -> None:
        js = (await self._connection(deadline)).jetstream()
        for position, (envelope, request_id) in enumerate(batch):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise SinkUnavailable(
                    f"nats {self.name!r}: {len(batch) - position} events not acknowledged in time"
                )
            await js.publish(
                self.subject_for(envelope["type"]),
                dumps(envelope).encode(),
                timeout=remaining,
                headers=_headers(envelope, request_id),
            )

    async def _connection(self, deadline: float):
        """The process's connection, opened (and the stream ensured) on first use."""
        nc = self._conn.current()
        if nc is not None and nc.is_connected:
            return nc
        remaining = max(deadline - time.monotonic(), 0.001)
        nc = await nats.connect(
            self.url,
            name=f"fulfil-{self.name}",
            connect_timeout=remaining,
            allow_reconnect=False,  # a lost connection fails the batch; the next send reconnects
            max_reconnect_attempts=0,
            error_cb=_ignore,  # failures surface as exceptions from connect and publish
        )
        try:
            await self._ensure_stream(nc.jetstream(timeout=max(deadline - time.monotonic(), 0.001)))
        except BaseException:
            await nc.close()
            raise
        return self._conn.set(nc)

    async def _ensure_stream(self, js) -> None:
        try:
            await js.stream_info(self.stream_name)
        except NotFoundError:
            await js.add_stream(
                name=self.stream_name,
                subjects=[f"{self.prefix}.>"],
                duplicate_window=self.duplicate_window,
            )


def _headers(envelope: dict[str, Any], request_id: str | None) -> dict[str, str]:
    headers = {
        "Nats-Msg-Id": envelope["id"],
        "event_type": envelope["type"],
        "event_version": str(envelope["version"]),
    }
    if request_id:
        headers[REQUEST_ID_HEADER] = request_id
    return headers


async def _ignore(exc: Exception) -> None:
    """nats-py logs every connection error by default; the sink raises them instead."""
