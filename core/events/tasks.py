"""Celery adapters of the event backbone (queue `events`), and the kick that sends the relay.

These are housekeeping: a failure is logged and the next kick or sweep tries again, so they
acknowledge failures instead of filling the dead-letter queue.
"""

import logging

from celery import shared_task
from django.conf import settings
from django.core.cache import cache

from core.events.delivery import sink_kick, sink_kick_clear, sink_run, sinks, sinks_sweep
from core.events.maintenance import events_prune
from core.events.relay import outbox_lag_seconds, relay_run

logger = logging.getLogger(__name__)
KICK_KEY = "events:relay:kicked"


@shared_task(name="core.events.relay", acks_late=True, acks_on_failure_or_timeout=True)
def relay() -> None:
    """Kicked after commits: publish everything waiting in the outbox."""
    try:
        cache.delete(KICK_KEY)  # a commit from now on kicks again, so nothing waits for the sweep
    except Exception:  # noqa: BLE001 - no cache: kicks were not de-duplicated either
        logger.warning("cache unavailable; could not clear the relay kick flag")
    result = relay_run()
    if result.more:
        relay_kick()
    elif result.busy:
        # The holder may have taken its last look before this kick's rows committed: look
        # again in a second rather than leave them to beat's sweep.
        try:
            relay.apply_async(countdown=1, retry=False)
        except Exception:
            logger.warning("could not kick the event relay again; the beat sweep will deliver", exc_info=True)


@shared_task(name="core.events.deliver", acks_late=True, acks_on_failure_or_timeout=True)
def deliver(sink: str) -> None:
    """Kicked after the relay: deliver what waits for one of the other buses (EVENTS_SINKS)."""
    if sink not in sinks():
        logger.warning("no event bus of that name is configured", extra={"sink": sink})
        return
    sink_kick_clear(sink)
    if sink_run(sink)[1]:
        sink_kick(sink)


@shared_task(name="core.events.sweep", acks_late=True, acks_on_failure_or_timeout=True)
def sweep() -> None:
    """Every few seconds (beat): publish what no kick delivered, e.g. while the broker was down,
    and deliver what waits for the other buses."""
    result = relay_run()
    if result.more:
        relay_kick()
    sinks_sweep()
    lag = outbox_lag_seconds()
    if lag > settings.EVENTS_LAG_WARNING_SECONDS:
        logger.warning("outbox lagging", extra={"oldest_unpublished_s": round(lag, 1)})


@shared_task(name="core.events.prune", acks_late=True, acks_on_failure_or_timeout=True)
def prune() -> None:
    events_prune()


def relay_kick() -> None:
    """Ask a worker to run the relay now; the commits of a burst share one kick.

    publish() schedules it on commit. Never raises: with the broker or the cache down, the
    beat sweep delivers the event.
    """
    try:
        if not cache.add(KICK_KEY, 1, timeout=settings.EVENTS_KICK_DEDUP_SECONDS):
            return
    except Exception:  # noqa: BLE001 - no cache: kick anyway, the relay is idempotent
        logger.warning("cache unavailable; kicking the event relay without de-duplication")
    try:
        relay.apply_async(retry=False)
    except Exception:
        logger.warning("could not kick the event relay; the beat sweep will deliver", exc_info=True)
