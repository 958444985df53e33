"""What orders do when payments report: paid, failed, cancelled, refunded.

Each subscriber declares `when={"purpose": "order"}`: the relay enqueues it only for
payments of orders, so events of other purposes never reach this queue. A payment may pay
several orders (one allocation each); each is handled in the subscriber's transaction.
"""

from core import events
from core.errors import TransientError
from orders import services
from orders.catalogue import cache_invalidate
from orders.purposes import PURPOSE
from payments.policy import event_allocations, event_refunds

FOR_ORDERS = {"purpose": PURPOSE}


def _orders_paid_by(event: events.Event) -> list[dict]:
    return event_allocations(event.data, PURPOSE)


@events.subscriber("payment.completed", queue="orders", name="orders.on_payment_completed", when=FOR_ORDERS)
def order_on_payment_completed(event: events.Event) -> None:
    for allocation in _orders_paid_by(event):
        services.order_payment_completed(
            order_number=allocation["purpose_id"], payment_id=event.data["payment_id"]
        )


@events.subscriber("payment.failed", queue="orders", name="orders.on_payment_failed", when=FOR_ORDERS)
def order_on_payment_failed(event: events.Event) -> None:
    for allocation in _orders_paid_by(event):
        services.order_payment_failed(
            order_number=allocation["purpose_id"],
            payment_id=event.data["payment_id"],
            error=event.data.get("error", ""),
        )


@events.subscriber("payment.cancelled", queue="orders", name="orders.on_payment_cancelled", when=FOR_ORDERS)
def order_on_payment_cancelled(event: events.Event) -> None:
    for allocation in _orders_paid_by(event):
        services.order_payment_cancelled(
            order_number=allocation["purpose_id"],
            payment_id=event.data["payment_id"],
            reason=event.data.get("reason") or "",
            error=event.data.get("error") or "",
        )


@events.subscriber("payment.refunded", queue="orders", name="orders.on_payment_refunded", when=FOR_ORDERS)
def order_on_payment_refunded(event: events.Event) -> None:
    for refund in event_refunds(event.data, PURPOSE):
        services.order_payment_refunded(
            order_number=refund.item_id,
            payment_id=event.data["payment_id"],
            full=refund.full,
            amount=refund.amount,
        )


@events.subscriber(
    "product.updated",
    queue="orders",
    name="orders.catalogue_cache_invalidate",
    retry_backoff=2,
    max_retries=5,
)
def catalogue_cache_on_product_updated(event: events.Event) -> None:
    """The commit already invalidated the cache; this is the retry for when the cache was down."""
    try:
        cache_invalidate()
    except Exception as exc:
        raise TransientError(f"catalogue cache unreachable: {exc}") from exc
