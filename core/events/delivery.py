"""Delivery to the other buses (EVENTS_SINKS): Redis Streams, NATS JetStream, Kafka, memory.

RabbitMQ's topic exchange gets every event from the relay itself: it is where the in-project
subscribers read them. Each other bus follows the relay on its own: when the relay marks a
batch published, it adds one OutboxDelivery row per event and bus in the same transaction;
the bus's delivery (`sink_run`, kicked after that commit and run by beat's sweep) sends its
rows in outbox order and deletes them once the bus acknowledged them. A bus that is down
keeps its rows, with their attempts and last error, and backs off on its own (1, 2, 4 ... up
to EVENTS_RELAY_MAX_BACKOFF seconds) while the relay and the other buses go on; when it is
back, what waited arrives once (a batch the bus half took may arrive twice: consumers
de-duplicate by event id), in order.
"""

import logging
import time
import zlib

from django.conf import settings
from django.core.cache import cache
from django.core.signals import setting_changed
from django.db import OperationalError, connection, transaction
from django.db.models import F
from django.dispatch import receiver

from core.events import buses
from core.events.buses import Sink, SinkUnavailable
from core.models import OutboxDelivery

logger = logging.getLogger(__name__)

SINK_LOCK_CLASS = 0x6576_6E74  # the advisory lock class of the buses' deliveries; the bus is the key
# As the relay's: the holder delivers until nothing waits, so another need not wait long.
SINK_LOCK_WAIT = "200ms"
KICK_KEY = "events:sink:{}:kicked"
BACKOFF_KEY = "events:sink:{}:backoff"

_sinks: dict[str, Sink] | None = None


def sinks() -> dict[str, Sink]:
    """The configured buses besides RabbitMQ, by name; built (and their options checked) once
    per process. Raises ImproperlyConfigured for a wrong option or URL."""
    global _sinks
    if _sinks is None:
        _sinks = {name: buses.load(name, options) for name, options in settings.EVENTS_SINKS.items()}
    return _sinks


@receiver(setting_changed)
def _rebuild_on_settings_change(setting: str, **kwargs) -> None:
    global _sinks
    if setting == "EVENTS_SINKS" and _sinks is not None:
        for sink in _sinks.values():
            sink.close()
        _sinks = None


def deliveries_add(seqs: list[int]) -> None:
    """In the relay's transaction: the published events wait for every other bus."""
    names = list(sinks())
    if names and seqs:
        OutboxDelivery.objects.bulk_create(
            [OutboxDelivery(sink=name, event_id=seq) for name in names for seq in seqs]
        )
        transaction.on_commit(kick_all, robust=True)


def kick_all() -> None:
    for name in sinks():
        sink_kick(name)


def sink_kick(name: str) -> None:
    """Ask a worker to deliver to bus `name` now (one kick per burst); never raises."""
    from core.events.tasks import deliver  # tasks -> relay -> delivery

    try:
        if not cache.add(KICK_KEY.format(name), 1, timeout=settings.EVENTS_KICK_DEDUP_SECONDS):
            return
    except Exception:  # noqa: BLE001 - no cache: kick anyway, delivery is idempotent
        logger.warning("cache unavailable; kicking a bus delivery without de-duplication")
    try:
        deliver.apply_async(args=[name], retry=False)
    except Exception:
        logger.warning(
            "could not kick a bus delivery; the beat sweep will", extra={"sink": name}, exc_info=True
        )


def sink_kick_clear(name: str) -> None:
    try:
        cache.delete(KICK_KEY.format(name))
    except Exception:  # noqa: BLE001
        logger.warning("cache unavailable; could not clear a bus's kick flag", extra={"sink": name})


class SinkBusy(Exception):
    """Another process holds this bus's delivery lock: it is delivering."""


def _lock(name: str) -> bool:
    if connection.vendor != "postgresql":
        return True  # SQLite (embedded default): writers are serialised already
    with connection.cursor() as cursor:
        cursor.execute(f"SET LOCAL lock_timeout = '{SINK_LOCK_WAIT}'")
        try:
            with transaction.atomic():
                cursor.execute(
                    "SELECT pg_advisory_xact_lock(%s, %s)",
                    [SINK_LOCK_CLASS, zlib.crc32(name.encode()) & 0x7FFF_FFFF],
                )
        except OperationalError:
            return False
    return True


def sink_batch(name: str, *, batch_size: int) -> int:
    """Send the oldest waiting events to bus `name`; how many it acknowledged (0: none waited).
    Raises SinkUnavailable, after recording the attempt, when the bus did not take them all."""
    sink = sinks()[name]
    with transaction.atomic():
        if not _lock(name):
            raise SinkBusy
        rows = list(
            OutboxDelivery.objects.select_for_update(skip_locked=True, of=("self",))
            .filter(sink=name)
            .select_related("event")
            .order_by("event_id")[:batch_size]
        )
        if not rows:
            return 0
        pks = [row.pk for row in rows]
        try:
            sink.send(
                [(row.event.envelope, row.event.request_id or None) for row in rows],
                timeout=settings.EVENTS_CONFIRM_TIMEOUT,
            )
        except Exception as exc:  # noqa: BLE001 - any failure: the rows wait, with the error
            sink.close()
            failure = (
                exc if isinstance(exc, SinkUnavailable) else SinkUnavailable(f"{type(exc).__name__}: {exc}")
            )
            OutboxDelivery.objects.filter(pk__in=pks).update(
                attempts=F("attempts") + 1, last_error=str(failure)[:2000]
            )
        else:
            failure = None
            OutboxDelivery.objects.filter(pk__in=pks).delete()
    if failure is not None:
        raise failure
    return len(rows)


def sink_run(name: str, *, time_budget: float | None = None, force: bool = False) -> tuple[int, bool]:
    """Deliver what waits for bus `name`, batch after batch, within the time budget;
    (events delivered, whether more wait). Backs off on its own after a failure."""
    state = _backoff_state(name)
    if not force and state.get("until", 0) > time.time():
        return 0, False
    deadline = time.monotonic() + (settings.EVENTS_RELAY_TIME_BUDGET if time_budget is None else time_budget)
    delivered = 0
    while True:
        try:
            sent = sink_batch(name, batch_size=settings.EVENTS_RELAY_BATCH_SIZE)
        except SinkBusy:
            return delivered, False
        except SinkUnavailable as exc:
            delay = _backoff_record_failure(name, state)
            logger.warning(
                "event bus cannot take events; backing off",
                extra={"sink": name, "error": str(exc), "backoff_s": delay},
            )
            return delivered, False
        if not sent:
            break
        delivered += sent
        if time.monotonic() >= deadline:
            return delivered, True
    if state:
        cache.delete(BACKOFF_KEY.format(name))
    return delivered, False


def sinks_sweep() -> None:
    """Beat's sweep: every bus with events waiting is delivered to (or kicked for more)."""
    waiting = set(OutboxDelivery.objects.values_list("sink", flat=True).distinct())
    for name in sinks():
        if name in waiting:
            _, more = sink_run(name)
            if more:
                sink_kick(name)


def _backoff_state(name: str) -> dict:
    try:
        return cache.get(BACKOFF_KEY.format(name)) or {}
    except Exception:  # noqa: BLE001 - without a cache, no backoff: try the bus
        return {}


def _backoff_record_failure(name: str, state: dict) -> float:
    failures = state.get("failures", 0) + 1
    delay = min(settings.EVENTS_RELAY_MAX_BACKOFF, settings.EVENTS_RELAY_BACKOFF * 2 ** (failures - 1))
    try:
        cache.set(
            BACKOFF_KEY.format(name), {"failures": failures, "until": time.time() + delay}, timeout=3600
        )
    except Exception:  # noqa: BLE001
        logger.warning("cache unavailable; bus backoff not recorded", extra={"sink": name})
    return delay


def sink_lag() -> dict[str, tuple[int, float]]:
    """Per bus: (events waiting, age in seconds of the oldest one's event)."""
    from django.db.models import Count, Min
    from django.utils import timezone

    now = timezone.now()
    figures = {name: (0, 0.0) for name in sinks()}
    for row in OutboxDelivery.objects.values("sink").annotate(
        n=Count("pk"), oldest=Min("event__occurred_at")
    ):
        figures[row["sink"]] = (row["n"], (now - row["oldest"]).total_seconds())
    return figures
