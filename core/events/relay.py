"""The relay: outbox rows -> the events exchange and one Celery task per matching subscriber.

A subscriber matches an event when one of its patterns matches the type and the data meet
its `when`, if it has one.

One batch at a time (a PostgreSQL advisory lock serialises relays, so rows reach the broker
in `seq` order and per-aggregate order holds), rows claimed with FOR UPDATE SKIP LOCKED,
published on one confirming channel, and marked published in the same transaction only
after the broker confirmed every message of the batch. If the broker cannot be reached, the
batch's rows get an attempt and the error, and the whole relay backs off (exponentially, up
to EVENTS_RELAY_MAX_BACKOFF seconds) so that no later row can overtake an earlier one.
"""

import logging
import os
import time
from dataclasses import dataclass

from celery import current_app
from celery.signals import worker_process_shutdown
from django.conf import settings
from django.core.cache import cache
from django.core.signals import setting_changed
from django.db import connection, transaction
from django.db.models import F
from django.dispatch import receiver
from django.utils import timezone

from core.events.consumer import topology as consumer_topology
from core.events.delivery import deliveries_add
from core.events.registry import subscribers_for
from core.events.sinks import BrokerUnavailable, ConfirmingPublisher, RabbitMQSink, events_exchange
from core.logging import REQUEST_ID_HEADER
from core.models import OutboxEvent
from core.queues import QUEUE_NAMES, dead_letter_queue, work_queue

logger = logging.getLogger(__name__)

RELAY_LOCK_ID = 0x6576_656E_7473  # "events": the advisory lock that serialises relays
# A relay that finds the lock taken tries again this many times, this long apart, then leaves
# the work to the holder: it loops until no row is left, so a second relay has nothing to add,
# and waiting longer would only keep a pool process (one that could run subscribers) idle.
# The tries cover the holder's last, empty, transaction, so that a kick sent by a commit just
# after the holder's last look still finds the lock free.
RELAY_LOCK_TRIES = 5
RELAY_LOCK_RETRY_SECONDS = 0.05
BACKOFF_KEY = "events:relay:backoff"

_publisher: ConfirmingPublisher | None = None


@dataclass
class RelayResult:
    published: int = 0
    batches: int = 0
    failed: bool = False
    more: bool = False  # the time budget ran out with rows still waiting
    busy: bool = False  # another relay held the lock through every try


def _get_publisher() -> ConfirmingPublisher:
    """The process's relay connection, opened on first use and reused across runs."""
    global _publisher
    if _publisher is None:
        publisher = ConfirmingPublisher(
            settings.EVENTS_BROKER_URL or settings.CELERY_BROKER_URL,
            transport_options={
                k: v for k, v in settings.CELERY_BROKER_TRANSPORT_OPTIONS.items() if k != "confirm_publish"
            },
        ).open()
        publisher.declare(
            events_exchange(),
            *(work_queue(n) for n in QUEUE_NAMES),
            *(dead_letter_queue(n) for n in QUEUE_NAMES),
            # The subscribers' queues, bound before anything is published to the exchange.
            *(consumer_topology() if settings.EVENTS_CONSUMER else ()),
        )
        _publisher = publisher
    return _publisher


def _forget_publisher_after_fork() -> None:
    """A forked pool child must not share its parent's socket: it opens its own."""
    global _publisher
    _publisher = None


os.register_at_fork(after_in_child=_forget_publisher_after_fork)


@worker_process_shutdown.connect
def _close_publisher_on_shutdown(**kwargs) -> None:
    _drop_publisher()


def _drop_publisher() -> None:
    global _publisher
    if _publisher is not None:
        _publisher.close()
        _publisher = None


@receiver(setting_changed)
def _reconnect_on_settings_change(setting: str, **kwargs) -> None:
    if setting in {"EVENTS_BROKER_URL", "CELERY_BROKER_URL", "EVENTS_CONSUMER"}:
        _drop_publisher()


def _backoff_state() -> dict:
    try:
        return cache.get(BACKOFF_KEY) or {}
    except Exception:  # noqa: BLE001 - without a cache, no backoff: try the broker
        return {}


def _backoff_record_failure() -> float:
    state = _backoff_state()
    failures = state.get("failures", 0) + 1
    delay = min(settings.EVENTS_RELAY_MAX_BACKOFF, settings.EVENTS_RELAY_BACKOFF * 2 ** (failures - 1))
    try:
        cache.set(BACKOFF_KEY, {"failures": failures, "until": time.time() + delay}, timeout=3600)
    except Exception:  # noqa: BLE001
        logger.warning("cache unavailable; relay backoff not recorded")
    return delay


def _backoff_clear() -> None:
    if _backoff_state():
        cache.delete(BACKOFF_KEY)


def _lock_relay() -> bool:
    """Take the relay lock for this transaction (one round trip); False if another relay has it."""
    if connection.vendor != "postgresql":
        return True  # SQLite (embedded default): IMMEDIATE transactions already serialise writers
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_xact_lock(%s)", [RELAY_LOCK_ID])
        return cursor.fetchone()[0]


class RelayBusy(Exception):
    """Another relay holds the lock: it is delivering."""


def relay_batch(*, batch_size: int) -> int:
    """Publish one batch of the oldest unpublished events; the number published (0: none left)."""
    with transaction.atomic():
        if not _lock_relay():
            raise RelayBusy
        rows = list(
            OutboxEvent.objects.select_for_update(skip_locked=True)
            .filter(published_at__isnull=True)
            .order_by("seq")[:batch_size]
        )
        if not rows:
            return 0
        seqs = [row.seq for row in rows]
        try:
            _publish_reconnecting(rows)
        except Exception as exc:  # noqa: BLE001 - any failure: the rows wait, with the error
            _drop_publisher()
            failure = (
                exc
                if isinstance(exc, BrokerUnavailable)
                else BrokerUnavailable(f"{type(exc).__name__}: {exc}")
            )
            OutboxEvent.objects.filter(seq__in=seqs).update(
                attempts=F("attempts") + 1, last_error=str(failure)[:2000]
            )
        else:
            failure = None
            OutboxEvent.objects.filter(seq__in=seqs).update(
                published_at=timezone.now(), attempts=F("attempts") + 1, last_error=""
            )
            deliveries_add(seqs)  # the other buses follow, each at its own pace
    if failure is not None:
        raise failure
    return len(rows)


def _publish_reconnecting(rows: list[OutboxEvent]) -> None:
    """Publish on the process's connection, or on a new one if the broker closed the old one.

    A connection kept between runs may have been closed by the broker since (a restart, a node
    failover, an operator closing connections): its first use fails though the broker answers.
    One fresh connection is tried before the broker is called unavailable and the relay backs
    off. The rows sent on the dead connection were never confirmed, so they are sent again;
    consumers are idempotent on the event id.
    """
    reused = _publisher is not None
    try:
        _publish_rows(rows)
    except Exception:
        if not reused:
            raise
        logger.info("event relay connection was closed; reconnecting")
        _drop_publisher()
        _publish_rows(rows)


def _publish_rows(rows: list[OutboxEvent]) -> None:
    """Send each row's envelope to the sink and to its subscribers; return once all are confirmed.

    A subscriber gets a task only if the row's data meet its `when`. Subscriber tasks are
    built with Celery's own message format and published on the relay's confirming channel
    (apply_async would cost twice as much per message and wait for a confirm each time).
    """
    publisher = _get_publisher()
    sink = RabbitMQSink(publisher)
    as_task = current_app.amqp.as_task_v2
    per_subscriber = not settings.EVENTS_CONSUMER  # else the envelope alone reaches their queues
    for row in rows:
        envelope = row.envelope
        sink.publish(envelope, request_id=row.request_id or None)
        for sub in subscribers_for(row.type) if per_subscriber else ():
            if sub.when and not sub.accepts(row.data):
                continue
            headers, properties, body, _ = as_task(
                sub.task_id(envelope["id"]),
                sub.task.name,
                args=[envelope],
                # What Flower and the logs show: the event, not its data.
                argsrepr=f"[{envelope['type']} {envelope['id']}]",
                kwargsrepr="{}",
            )
            if row.request_id:
                headers[REQUEST_ID_HEADER] = row.request_id
            publisher.publish(
                body,
                exchange=sub.queue,
                routing_key=sub.queue,
                serializer="json",
                headers=headers,
                **properties,
            )
    sink.flush()
    publisher.wait_for_confirms(timeout=settings.EVENTS_CONFIRM_TIMEOUT)


def relay_run(
    *, time_budget: float | None = None, batch_size: int | None = None, force: bool = False
) -> RelayResult:
    """Publish unpublished events, batch after batch, until none are left or the budget is spent."""
    result = RelayResult()
    state = _backoff_state()
    if not force and state.get("until", 0) > time.time():
        return result  # backing off after a broker failure
    budget = settings.EVENTS_RELAY_TIME_BUDGET if time_budget is None else time_budget
    deadline = time.monotonic() + budget
    busy = 0  # tries that found another relay holding the lock
    while True:
        try:
            published = relay_batch(batch_size=batch_size or settings.EVENTS_RELAY_BATCH_SIZE)
        except RelayBusy:
            if busy < RELAY_LOCK_TRIES - 1 and not result.batches:
                busy += 1
                time.sleep(RELAY_LOCK_RETRY_SECONDS)
                continue
            result.busy = not result.batches
            return result
        except BrokerUnavailable as exc:
            delay = _backoff_record_failure()
            logger.warning(
                "event relay cannot publish; backing off", extra={"error": str(exc), "backoff_s": delay}
            )
            result.failed = True
            return result
        if not published:
            break
        result.published += published
        result.batches += 1
        if time.monotonic() >= deadline:
            result.more = True
            break
    _backoff_clear()
    return result


def outbox_lag_seconds() -> float:
    """Age of the oldest unpublished event (0 when everything is published)."""
    oldest = (
        OutboxEvent.objects.filter(published_at__isnull=True).order_by("seq").values("occurred_at").first()
    )
    return (timezone.now() - oldest["occurred_at"]).total_seconds() if oldest else 0.0
