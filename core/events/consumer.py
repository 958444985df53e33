"""Events consumed inside the worker at the broker's pace (EVENTS_CONSUMER; RabbitMQ only).

With EVENTS_CONSUMER on, the relay publishes each event once, its envelope to the events
topic exchange, and no Celery task per subscriber. Subscribers are grouped by their `queue`:
group G has

  G.events             durable, bound to the events exchange by every pattern of G's
                       subscribers; what the worker consumes for G
  G.events.retry.<n>   where a failed delivery waits before its n-th retry: a per-message TTL
                       (the subscriber's backoff with jitter), then RabbitMQ dead-letters it
                       back to G.events, naming the one subscriber to run again
  G.events.dlq         a delivery whose retries are spent, beside its DeadLetter row

A worker consumes G.events for each queue G it consumes tasks from (`-Q`), through a consumer
step of its own (EventsConsumer) that never blocks the worker's event loop: it hands the
events to the worker's pool, a few per pool job (EVENTS_CONSUMER_BATCH), each event and
subscriber in its own transaction with its processed-event row (core.events.runner), and
acknowledges a message once every subscriber it was for has either committed, been sent to
a retry queue, or been dead-lettered. A worker that dies before that leaves the message
unacknowledged: RabbitMQ delivers it again and the processed-event rows keep what already
committed from happening twice.
"""

import logging
import traceback as tb
from collections.abc import Iterable
from functools import partial
from typing import TYPE_CHECKING, Any

from celery import bootsteps
from celery.utils.time import get_exponential_backoff_interval
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import close_old_connections
from kombu import Consumer, Exchange, Producer, Queue, binding

from core.alarm import raise_after
from core.events.sinks import events_exchange
from core.logging import REQUEST_ID_HEADER, request_id_var
from core.queues import DEAD_LETTER_EXCHANGE

if TYPE_CHECKING:
    from core.events.registry import Subscriber

# config/celery.py adds EventsConsumer to the worker before Django's apps are loaded: the
# registry (and through it the models) is imported where it is used, never at import time.

logger = logging.getLogger(__name__)

SUBSCRIBER_HEADER = "x-subscriber"  # the one subscriber a retried or replayed message is for
ATTEMPT_HEADER = "x-attempt"  # retries this delivery follows (0: the first)
REPLAY_HEADER = "x-replay"
MAX_BACKOFF_SECONDS = 600
UNSETTLED_RETRY_SECONDS = 5.0  # a delivery whose failure could not be recorded is tried again
DEFAULT_EXCHANGE = Exchange("", type="direct")


# --- Topology ---------------------------------------------------------------------------------
def groups() -> dict[str, list["Subscriber"]]:
    """Subscribers by group (their `queue`)."""
    from core.events.registry import SUBSCRIBERS

    grouped: dict[str, list[Subscriber]] = {}
    for sub in SUBSCRIBERS.values():
        grouped.setdefault(sub.queue, []).append(sub)
    return grouped


def events_queue(group: str) -> Queue:
    exchange = events_exchange()
    patterns = sorted({pattern for sub in groups().get(group, []) for pattern in sub.patterns})
    return Queue(
        f"{group}.events",
        bindings=[binding(exchange, routing_key=pattern) for pattern in patterns],
        durable=True,
    )


def retry_queue(group: str, attempt: int) -> Queue:
    return Queue(
        f"{group}.events.retry.{attempt}",
        DEFAULT_EXCHANGE,
        routing_key=f"{group}.events.retry.{attempt}",
        durable=True,
        queue_arguments={"x-dead-letter-exchange": "", "x-dead-letter-routing-key": f"{group}.events"},
    )


def events_dead_letter_queue(group: str) -> Queue:
    return Queue(f"{group}.events.dlq", DEAD_LETTER_EXCHANGE, routing_key=f"{group}.events", durable=True)


def topology() -> list[Queue]:
    """Every group's queues: declared by the relay before it publishes (a topic exchange drops
    what no queue is bound for) and by the consumer before it consumes."""
    queues = []
    for group, subs in sorted(groups().items()):
        queues.append(events_queue(group))
        queues += [retry_queue(group, n) for n in range(1, max(s.max_retries for s in subs) + 1)]
        queues.append(events_dead_letter_queue(group))
    return queues


def check_transport(broker_url: str) -> None:
    if not broker_url.startswith(("amqp", "pyamqp")):
        raise ImproperlyConfigured(
            "EVENTS_CONSUMER needs RabbitMQ (its retries are per-message TTLs dead-lettered back); "
            "the embedded filesystem broker runs a Celery task per subscriber (EVENTS_CONSUMER=0)"
        )


def replay_send(sub: "Subscriber", envelope: dict[str, Any]) -> None:
    """Send a dead letter's event to its one subscriber again, through its group's queue."""
    from celery import current_app

    with current_app.producer_or_acquire() as producer:
        producer.publish(
            envelope,
            exchange=DEFAULT_EXCHANGE,
            routing_key=events_queue(sub.queue).name,
            headers={SUBSCRIBER_HEADER: sub.name, REPLAY_HEADER: True},
            serializer="json",
            delivery_mode=2,
            retry=True,
            declare=[events_queue(sub.queue)],
        )


# --- In the pool ------------------------------------------------------------------------------
def run_deliveries(
    deliveries: list[tuple[dict[str, Any], list[str], int, bool, str | None]],
) -> list[list[tuple]]:
    """Run each (envelope, subscriber names, attempt, replay, request id) in this pool process.

    Per delivery, per subscriber (in the order of its names): ("done",), ("retry", name,
    attempt, delay seconds), or ("dead", name) once its dead letter is recorded. Never raises
    for a subscriber's failure. A subscriber that declared `batch` first gets its first
    deliveries of the job together (run_batches); the rest run one event at a time, in order.
    """
    from core.db import connections_mark_used, connections_trust_recent
    from core.events.registry import SUBSCRIBERS

    connections_trust_recent()  # as around a task (config/celery.py): no SELECT 1 for a busy one
    outcomes: list[dict[str, tuple]] = [{} for _ in deliveries]
    run_batches(deliveries, outcomes)
    for (envelope, names, attempt, replay, request_id), settled in zip(deliveries, outcomes, strict=True):
        token = request_id_var.set(request_id)  # the publishing request's id, on every log line
        try:
            for name in names:
                if name in settled:
                    continue
                sub = SUBSCRIBERS.get(name)
                if sub is None:  # gone since the message was published: nothing to run
                    settled[name] = ("done",)
                    continue
                try:
                    settled[name] = _run_one(sub, envelope, attempt, replay)
                except Exception:  # e.g. the database went while recording a dead letter
                    logger.exception("event delivery not settled; trying again", extra={"subscriber": name})
                    close_old_connections()
                    settled[name] = ("retry", name, attempt, UNSETTLED_RETRY_SECONDS)
        finally:
            request_id_var.reset(token)
    close_old_connections()  # as after a task: one that errored or outlived its age goes
    connections_mark_used()
    return [
        [settled[name] for name in names]
        for (_, names, *_), settled in zip(deliveries, outcomes, strict=True)
    ]


def run_batches(deliveries: list[tuple], outcomes: list[dict[str, tuple]]) -> None:
    """The first deliveries of the job for each subscriber that declared `batch`, that many per
    transaction; a batch that fails leaves its events unsettled, to run one by one."""
    from core.events.registry import SUBSCRIBERS
    from core.events.runner import subscriber_run_batch

    waiting: dict[str, list[int]] = {}
    for index, (_, names, attempt, replay, _) in enumerate(deliveries):
        if attempt or replay:
            continue
        for name in names:
            sub = SUBSCRIBERS.get(name)
            if sub is not None and sub.batch > 1:
                waiting.setdefault(name, []).append(index)
    for name, indexes in waiting.items():
        sub = SUBSCRIBERS[name]
        for first in range(0, len(indexes), sub.batch):
            chunk = indexes[first : first + sub.batch]
            if len(chunk) < 2:
                continue  # one event: the usual path
            limit = settings.EVENTS_SUBSCRIBER_TIME_LIMIT * len(chunk)
            try:
                with raise_after(
                    limit, lambda limit=limit: SubscriberTimeLimit(f"took more than {limit:g} s")
                ):
                    subscriber_run_batch(sub, [(deliveries[i][0], deliveries[i][4]) for i in chunk])
            except Exception as exc:  # noqa: BLE001 - every event of it runs again on its own
                logger.info(
                    "batch failed; running its events one by one",
                    extra={"subscriber": name, "events": len(chunk), "error": f"{type(exc).__name__}: {exc}"},
                )
                close_old_connections()
                continue
            for i in chunk:
                outcomes[i][name] = ("done",)


class SubscriberTimeLimit(Exception):
    """A subscriber ran past EVENTS_SUBSCRIBER_TIME_LIMIT with one event: it is retried."""


def _run_one(sub: "Subscriber", envelope: dict[str, Any], attempt: int, replay: bool) -> tuple:
    from core.events.runner import dead_letter_record, subscriber_run

    try:
        limit = settings.EVENTS_SUBSCRIBER_TIME_LIMIT
        # In a pool process's main thread; in the tests' threads pool the job's own limit applies.
        with raise_after(limit, lambda: SubscriberTimeLimit(f"took more than {limit:g} s")):
            subscriber_run(sub, envelope, replay=replay)
        return ("done",)
    except (*sub.retry_for, SubscriberTimeLimit) as exc:
        if attempt < sub.max_retries:
            close_old_connections()
            delay = get_exponential_backoff_interval(
                factor=sub.retry_backoff,
                retries=attempt,
                maximum=MAX_BACKOFF_SECONDS,
                full_jitter=sub.retry_jitter,
            )
            logger.warning(
                "subscriber failed; retrying",
                extra={"subscriber": sub.name, "event_id": envelope["id"], "error": str(exc), "in_s": delay},
            )
            return ("retry", sub.name, attempt + 1, delay)
        failure = exc
    except Exception as exc:  # noqa: BLE001 - a bug: dead-lettered at once
        failure = exc
    close_old_connections()
    logger.error(
        "subscriber dead-lettered",
        extra={"subscriber": sub.name, "event_id": envelope["id"], "error": str(failure)},
    )
    dead_letter_record(
        subscriber=sub.name,
        envelope=envelope,
        exc=failure,
        attempts=attempt + 1,
        trace="".join(tb.format_exception(failure))[-20000:],
    )
    return ("dead", sub.name)


def _headers(name: str, attempt: int, replay: bool, request_id: str | None) -> dict[str, Any]:
    """A retry's headers: the one subscriber, its attempt, and what the delivery carried (a
    replay stays a replay, so its success resolves the dead letter)."""
    headers: dict[str, Any] = {SUBSCRIBER_HEADER: name, ATTEMPT_HEADER: attempt}
    if replay:
        headers[REPLAY_HEADER] = True
    if request_id:
        headers[REQUEST_ID_HEADER] = request_id
    return headers


# --- In the worker's main process -------------------------------------------------------------
class EventsConsumer(bootsteps.ConsumerStep):
    """Consumes G.events for every queue G the worker takes tasks from, into the pool."""

    def __init__(self, parent, **kwargs):
        super().__init__(parent, **kwargs)
        self.pending: list[tuple[Any, str, tuple]] = []
        self.flush_scheduled = False
        self.in_flight = 0  # pool jobs handed out and not yet settled
        self.unacked: set[int] = set()  # delivery tags handed to the pool (or about to be)

    def start(self, c):
        if not settings.EVENTS_CONSUMER:
            return
        check_transport(c.app.conf.broker_url)
        self.c = c
        consumed = set(c.app.amqp.queues.consume_from or c.app.amqp.queues)
        self.groups = sorted(set(groups()) & consumed)
        if self.groups:
            super().start(c)

    def get_consumers(self, channel) -> Iterable[Consumer]:
        channel.basic_qos(0, settings.EVENTS_CONSUMER_PREFETCH, False)
        self.producer = Producer(channel)
        self.unacked = set()  # a new channel: the old one's deliveries come again
        for queue in topology():
            queue(channel).declare()
        return [
            Consumer(
                channel,
                queues=[events_queue(group)],
                callbacks=[partial(self.on_message, group)],
                accept=["json"],
            )
            for group in self.groups
        ]

    def on_message(self, group: str, envelope: dict[str, Any], message) -> None:
        from core.events.registry import SUBSCRIBERS, subscribers_for

        headers = message.headers or {}
        only = headers.get(SUBSCRIBER_HEADER)
        attempt = int(headers.get(ATTEMPT_HEADER, 0))
        replay = bool(headers.get(REPLAY_HEADER))
        request_id = headers.get(REQUEST_ID_HEADER)
        if only:
            names = [only] if only in SUBSCRIBERS else []
        else:
            # A subscriber's `when` is applied here, before any work: no pool job for an
            # event none of the group's subscribers wants.
            names = [
                s.name
                for s in subscribers_for(envelope.get("type", ""))
                if s.queue == group and s.accepts(envelope.get("data") or {})
            ]
        if not names:
            message.ack()
            return
        self.unacked.add(message.delivery_tag)
        self.pending.append((message, group, (envelope, names, attempt, replay, request_id)))
        if len(self.pending) >= settings.EVENTS_CONSUMER_BATCH:
            self.flush()
        elif not self.flush_scheduled:
            self.flush_scheduled = True
            self.c.hub.call_soon(self.flush)  # what else arrived in this loop turn joins them

    def flush(self) -> None:
        self.flush_scheduled = False
        batch, self.pending = self.pending, []
        if not batch:
            return
        # Each subscriber has its own limit inside the job; the job's hard limit is the backstop
        # for a process stuck where no signal reaches it.
        runs = sum(len(delivery[1]) for _, _, delivery in batch)
        self.in_flight += 1
        self.c.pool.apply_async(
            run_deliveries,
            args=([delivery for _, _, delivery in batch],),
            callback=partial(self._in_loop, self.settle, batch),
            error_callback=partial(self._in_loop, self.lost, batch),
            timeout=settings.EVENTS_SUBSCRIBER_TIME_LIMIT * runs + 10,
        )

    def _in_loop(self, handler, batch, result) -> None:
        """Pool callbacks come from the pool's result handling: a thread with the threads pool.
        The channel is the event loop's, so what uses it runs there."""
        self.c.hub.call_soon(partial(handler, batch, result))

    def settle(self, batch, results) -> None:
        self.in_flight -= 1
        try:
            self._settle(batch, results)
        except Exception:  # the channel went with the connection: RabbitMQ delivers them again
            logger.warning("events not acknowledged; they will be delivered again", exc_info=True)

    def _settle(self, batch, results) -> None:
        for (_, group, (envelope, _, _, replay, request_id)), outcomes in zip(batch, results, strict=True):
            for outcome in outcomes:
                if outcome[0] == "retry":
                    _, name, attempt, delay = outcome
                    # an unsettled first try (attempt 0) waits in retry.1 too
                    self._to_retry(group, envelope, _headers(name, attempt, replay, request_id), delay)
                elif outcome[0] == "dead":
                    self._to_dead_letter(group, envelope, outcome[1])
        self._ack([message for message, _, _ in batch])

    def _to_retry(self, group: str, envelope: dict[str, Any], headers: dict[str, Any], delay: float) -> None:
        """To `G.events.retry.<attempt>` (at least 1), back on `G.events` after `delay` seconds."""
        self.producer.publish(
            envelope,
            exchange=DEFAULT_EXCHANGE,
            routing_key=retry_queue(group, max(headers[ATTEMPT_HEADER], 1)).name,
            headers=headers,
            expiration=max(delay, 0.001),
            serializer="json",
            delivery_mode=2,
        )

    def _to_dead_letter(self, group: str, envelope: dict[str, Any], subscriber: str) -> None:
        self.producer.publish(
            envelope,
            exchange=DEAD_LETTER_EXCHANGE,
            routing_key=f"{group}.events",
            headers={SUBSCRIBER_HEADER: subscriber},
            serializer="json",
            delivery_mode=2,
        )

    def _ack(self, messages: list) -> None:
        """Acknowledge a settled job's messages: with one frame (`multiple`, up to the newest)
        when no older delivery of the channel is still out, else one by one (never holding a
        settled message back for a slower one)."""
        tags = {message.delivery_tag for message in messages}
        self.unacked -= tags
        newest = max(messages, key=lambda message: message.delivery_tag)
        if not any(tag < newest.delivery_tag for tag in self.unacked):
            newest.ack(multiple=True)
            return
        for message in messages:
            message.ack()

    def lost(self, batch, exc) -> None:
        self.in_flight -= 1
        try:
            self._lost(batch, exc)
        except Exception:  # the channel went with the connection: RabbitMQ delivers them again
            logger.warning("events not acknowledged; they will be delivered again", exc_info=True)

    def _lost(self, batch, exc) -> None:
        """The pool process died or overran its hard limit mid-job: every message of the job is
        delivered again (what committed is not done twice). A message that already was goes to
        each subscriber's next retry instead, so an event that kills its process cannot loop for
        ever; past the last retry it lands on G.events.dlq (logged: no DeadLetter row, which only
        a pool process could write)."""
        from core.events.registry import SUBSCRIBERS

        logger.error("events pool job lost", extra={"error": repr(exc), "messages": len(batch)})
        self.unacked -= {message.delivery_tag for message, _, _ in batch}
        for message, group, (envelope, names, attempt, replay, request_id) in batch:
            if not message.delivery_info.get("redelivered"):
                message.reject(requeue=True)
                continue
            for name in names:
                sub = SUBSCRIBERS.get(name)
                if sub is not None and attempt < sub.max_retries:
                    self._to_retry(group, envelope, _headers(name, attempt + 1, replay, request_id), 1)
                else:
                    logger.critical(
                        "event killed its pool process on every try; on the dead-letter queue",
                        extra={
                            "subscriber": name,
                            "event_id": envelope.get("id"),
                            "queue": f"{group}.events.dlq",
                        },
                    )
                    self._to_dead_letter(group, envelope, name)
            message.ack()
