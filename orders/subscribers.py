"""What orders do when payments report: paid, failed, refunded. Only payments for orders."""

from core import events
from core.errors import TransientError
from orders import services
from orders.catalogue import cache_invalidate


def _for_orders(event: events.Event) -> bool:
    return event.data.get("purpose") == "order"


@events.subscriber("payment.completed", queue="orders", name="orders.on_payment_completed")
def order_on_payment_completed(event: events.Event) -> None:
    if _for_orders(event):
        services.order_payment_completed(
            order_number=event.data["purpose_id"], payment_id=event.data["payment_id"]
        )


@events.subscriber("payment.failed", queue="orders", name="orders.on_payment_failed")
def order_on_payment_failed(event: events.Event) -> None:
    if _for_orders(event):
        services.order_payment_failed(
            order_number=event.data["purpose_id"],
            payment_id=event.data["payment_id"],
            error=event.data.get("error", ""),
        )


@events.subscriber("payment.refunded", queue="orders", name="orders.on_payment_refunded")
def order_on_payment_refunded(event: events.Event) -> None:
    if _for_orders(event):
        services.order_payment_refunded(
            order_number=event.data["purpose_id"],
            payment_id=event.data["payment_id"],
            full=bool(event.data.get("full")),
            amount=str(event.data.get("amount", "")),
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
