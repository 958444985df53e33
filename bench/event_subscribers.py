"""The subscriber the events benchmark measures; a worker loads it with `-A bench.event_subscribers`.

Its effect is the one every subscriber has: its (event, subscriber) row committed in
ProcessedEvent, in one transaction with the (here empty) body.
"""

import django

django.setup()

from config.celery import app  # noqa: E402
from core import events  # noqa: E402

BENCH_EVENT = "stock.low"  # no subscriber of the project or its tests listens to it
BENCH_SUBSCRIBER = "bench.stock_low"

__all__ = ["app"]


@events.subscriber(BENCH_EVENT, queue="default", name=BENCH_SUBSCRIBER)
def stock_low_noted(event: events.Event) -> None:
    """Nothing beyond the processed-event row: what is measured is the backbone's own cost."""
