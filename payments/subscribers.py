"""What payments do on their own events: forget a deleted saved method at its gateway."""

from core import events
from core.errors import TransientError
from payments import methods
from payments.gateways.base import GatewayError


@events.subscriber(
    "payment_method.deleted",
    queue="payments",
    name="payments.forget_deleted_method",
    retry_backoff=60,
    max_retries=10,  # a gateway down for hours: the card is never charged meanwhile anyway
)
def forget_deleted_method(event: events.Event) -> None:
    """Ask the gateway to forget the card, then remove it; a gateway that refuses (or has no call
    for it) does not keep it here: it is removed anyway and never charged again."""
    try:
        methods.method_forget(method_id=event.data["method_id"])
    except GatewayError as exc:
        if exc.transient:
            raise TransientError(f"{exc}") from exc
        methods.method_forget_refused(method_id=event.data["method_id"], error=str(exc))
