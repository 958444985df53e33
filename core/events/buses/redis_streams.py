"""Redis Streams: one XADD per event, a batch in one pipeline."""

from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from core.events.buses.base import (
    DEFAULT_PREFIX,
    Batch,
    Options,
    PerProcess,
    SinkUnavailable,
    domain_of,
    dumps,
)

STREAM_MODES = ("per_domain", "single")


class RedisStreamsSink:
    """Each event is one entry of the stream `<PREFIX>.<domain>` (STREAM=per_domain, the
    default; `fulfil.events.payment` for `payment.completed`) or `<PREFIX>` (STREAM=single),
    with the fields id, type, aggregate_id, request_id (when there is one) and envelope (the
    JSON envelope). Each XADD trims the stream to about MAXLEN entries (`MAXLEN ~`).

    Delivered: Redis answered the batch's XADD with an entry id for every event, so each is
    in the server's memory, readable by XREAD/XREADGROUP. It survives a Redis restart only as
    far as Redis's persistence does (appendonly with appendfsync), and a failover only if it
    reached a replica first: this sink does not WAIT for replicas.

    Order: one pipeline per batch (transaction=False, so one round trip, without MULTI's
    all-or-nothing), answered in order, so entries of one stream keep the batch's order.
    No retry inside the sink (redis-py's own retries are turned off): a failed batch is
    sent again whole by the relay, and the entries it had added are there twice.
    """

    def __init__(self, name: str, options: dict[str, Any]):
        opts = Options(
            name,
            options,
            {
                "URL": (str, Options.REQUIRED),
                "PREFIX": (str, DEFAULT_PREFIX),
                "STREAM": (str, "per_domain"),
                "MAXLEN": (int, 100_000),
            },
        )
        self.name = name
        self.url = opts.url("URL", ("redis", "rediss", "unix"))
        self.prefix = opts.name_token("PREFIX")
        self.mode = opts.choice("STREAM", STREAM_MODES)
        self.maxlen = opts.positive("MAXLEN")
        self._client = PerProcess()
        self._timeout: float | None = None

    def stream_for(self, event_type: str) -> str:
        return self.prefix if self.mode == "single" else f"{self.prefix}.{domain_of(event_type)}"

    def send(self, batch: Batch, *, timeout: float) -> None:
        if not batch:
            return
        client = self._connect(timeout)
        pipe = client.pipeline(transaction=False)
        for envelope, request_id in batch:
            pipe.xadd(
                self.stream_for(envelope["type"]),
                _fields(envelope, request_id),
                maxlen=self.maxlen,
                approximate=True,
            )
        try:
            replies = pipe.execute(raise_on_error=False)
        except redis.RedisError as exc:
            self.close()
            raise SinkUnavailable(f"redis {self.name!r}: {type(exc).__name__}: {exc}") from exc
        errors = [reply for reply in replies if isinstance(reply, Exception)]
        if errors:
            raise SinkUnavailable(
                f"redis {self.name!r} refused {len(errors)} of {len(batch)} events: {errors[0]}"
            )

    def close(self) -> None:
        client = self._client.take()
        if client is not None:
            client.close()

    def _connect(self, timeout: float) -> redis.Redis:
        """The process's client, rebuilt when the caller's timeout changes (it is the socket's)."""
        client = self._client.current()
        if client is not None and self._timeout == timeout:
            return client
        self.close()
        self._timeout = timeout
        return self._client.set(
            redis.Redis.from_url(
                self.url,
                socket_timeout=timeout,
                socket_connect_timeout=timeout,
                retry=Retry(NoBackoff(), 0),
                retry_on_timeout=False,
            )
        )


def _fields(envelope: dict[str, Any], request_id: str | None) -> dict[str, str]:
    fields = {
        "id": envelope["id"],
        "type": envelope["type"],
        "aggregate_id": envelope.get("aggregate_id") or "",
        "envelope": dumps(envelope),
    }
    if request_id:
        fields["request_id"] = request_id
    return fields
