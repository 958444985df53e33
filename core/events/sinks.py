"""The relay's RabbitMQ side: a confirming publisher and the topic exchange every event goes to.

The exchange is where the in-project subscribers' queues are bound (core/events/consumer.py)
and where other services bind theirs. Other buses follow the relay on their own
(core/events/delivery.py, core/events/buses/).
"""

import json
import logging
from typing import Any

from django.conf import settings
from kombu import Connection, Exchange, Producer

from core.logging import REQUEST_ID_HEADER

logger = logging.getLogger(__name__)


class BrokerUnavailable(Exception):
    """The broker could not be reached, refused a message, or did not confirm in time."""


class ConfirmingPublisher:
    """One AMQP channel in publisher-confirm mode: publish a batch, then wait once for all confirms.

    Waiting per message (kombu's confirm_publish) costs a round trip each; here the relay sends
    the whole batch and then waits for the broker's acks, which RabbitMQ may give several at
    a time (`multiple`). A nack, a lost connection or a timeout fails the whole batch.
    On a transport without confirms (the embedded filesystem broker) publishing is plain.
    """

    def __init__(self, url: str, *, connect_timeout: float = 4.0, transport_options: dict | None = None):
        self.connection = Connection(
            url, connect_timeout=connect_timeout, transport_options=transport_options or {}
        )
        self.channel = None
        self.producer: Producer | None = None
        self.confirms = False
        self._sent = 0
        self._unconfirmed: set[int] = set()
        self._nacked: set[int] = set()

    def open(self) -> "ConfirmingPublisher":
        try:
            self.connection.ensure_connection(
                max_retries=1, interval_start=0, timeout=self.connection.connect_timeout
            )
            self.channel = self.connection.channel()
            self.confirms = self.connection.transport.driver_type == "amqp"
            if self.confirms:
                self.channel.confirm_select()
                self.channel.events["basic_ack"].add(self._on_ack)
                self.channel.events["basic_nack"].add(self._on_nack)
            self.producer = Producer(self.channel, auto_declare=False)
        except Exception as exc:
            self.close()
            raise BrokerUnavailable(f"cannot reach the broker: {type(exc).__name__}: {exc}") from exc
        return self

    def close(self) -> None:
        try:
            self.connection.release()
        except Exception:
            logger.debug("error closing the relay connection", exc_info=True)
        self.channel = self.producer = None

    def declare(self, *entities) -> None:
        for entity in entities:
            entity(self.channel).declare()

    def _on_ack(self, delivery_tag: int, multiple: bool) -> None:
        if multiple:
            self._unconfirmed = {tag for tag in self._unconfirmed if tag > delivery_tag}
        else:
            self._unconfirmed.discard(delivery_tag)

    def _on_nack(self, delivery_tag: int, multiple: bool) -> None:
        nacked = {t for t in self._unconfirmed if t <= delivery_tag} if multiple else {delivery_tag}
        self._nacked |= nacked
        self._unconfirmed -= nacked

    def publish(self, body: Any, *, exchange: Exchange | str, routing_key: str, **properties: Any) -> None:
        """Publish one persistent message (a str is sent as JSON text; pass serializer= otherwise)."""
        if isinstance(body, str):
            properties.setdefault("content_type", "application/json")
            properties.setdefault("content_encoding", "utf-8")
        self.producer.publish(
            body, exchange=exchange, routing_key=routing_key, delivery_mode=2, retry=False, **properties
        )
        self._sent += 1
        if self.confirms:
            self._unconfirmed.add(self._sent)

    def wait_for_confirms(self, timeout: float) -> None:
        if not self.confirms:
            return
        import time

        deadline = time.monotonic() + timeout
        try:
            while self._unconfirmed:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise BrokerUnavailable(f"{len(self._unconfirmed)} messages not confirmed in {timeout}s")
                self.connection.drain_events(timeout=remaining)
        except TimeoutError as exc:
            raise BrokerUnavailable(f"{len(self._unconfirmed)} messages not confirmed in {timeout}s") from exc
        if self._nacked:
            count, self._nacked = len(self._nacked), set()
            raise BrokerUnavailable(f"the broker refused {count} messages (nack)")


class RabbitMQSink:
    """Persistent JSON envelopes to the durable topic exchange EVENTS_EXCHANGE, key = event type."""

    def __init__(self, publisher: ConfirmingPublisher):
        self.publisher = publisher
        self.exchange = events_exchange()

    def publish(self, envelope: dict[str, Any], *, request_id: str | None = None) -> None:
        headers = {"event_type": envelope["type"], "event_version": envelope["version"]}
        if request_id:
            headers[REQUEST_ID_HEADER] = request_id
        self.publisher.publish(
            json.dumps(envelope, separators=(",", ":")),
            exchange=self.exchange,
            routing_key=envelope["type"],
            message_id=envelope["id"],
            type=envelope["type"],
            headers=headers,
        )

    def flush(self) -> None:
        """Nothing of its own: the relay waits once for the publisher's confirms."""


def events_exchange() -> Exchange:
    return Exchange(settings.EVENTS_EXCHANGE, type="topic", durable=True)
