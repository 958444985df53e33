"""The subscriber the events benchmark measures, and its peer; a worker loads them with
`-A bench.event_subscribers`.

The subscriber's effect is the one every subscriber has: its (event, subscriber) row
committed in ProcessedEvent, in one transaction with the (here empty) body.

The peer is what a Django team writes without an outbox: `transaction.on_commit(lambda:
task.delay(event))` at the publisher, and a task whose effect is the same row in its own
transaction. It loses the event when the process dies between the commit and the publish, or
when the broker is down then; it is measured as the speed to beat.
"""

import os

import django

django.setup()

from django.db import transaction  # noqa: E402

from config.celery import app  # noqa: E402
from core import events  # noqa: E402
from core.events.runner import claim_processing  # noqa: E402

BENCH_EVENT = "stock.low"  # no subscriber of the project or its tests listens to it
BENCH_SUBSCRIBER = "bench.stock_low"
PEER_SUBSCRIBER = "bench.peer_stock_low"

__all__ = ["app"]


@events.subscriber(
    BENCH_EVENT,
    queue="default",
    name=BENCH_SUBSCRIBER,
    batch=int(os.environ.get("BENCH_SUBSCRIBER_BATCH", "1")),
)
def stock_low_noted(event: events.Event) -> None:
    """Nothing beyond the processed-event row: what is measured is the backbone's own cost."""


@app.task(name="bench.peer_stock_low", acks_late=True, queue="default")
def peer_stock_low(envelope: dict) -> None:
    """The peer's effect: the same ProcessedEvent row, in a transaction of its own."""
    with transaction.atomic():
        claim_processing(event_id=envelope["id"], subscriber=PEER_SUBSCRIBER)
