"""Orders as something payments can take money for: the purpose "order", items by order number."""

from collections.abc import Sequence

from django.utils import timezone

from orders.models import Order
from payments.purposes import Payability, Payable, Purpose

PURPOSE = "order"


class OrderPurpose(Purpose):
    name = PURPOSE

    def payables(self, item_ids: Sequence[str]) -> dict[str, Payable]:
        now = timezone.now()
        return {
            order.number: Payable(
                item_id=order.number,
                customer_id=order.customer_id,
                amount=order.total,
                currency=order.currency,
                payability=_payability(order, now),
                reason=f"is {order.status.replace('_', ' ')}"
                if order.status != Order.Status.PENDING_PAYMENT
                else "is past its payment deadline",
                description=f"Order {order.number}",
                deadline=order.deadline,
            )
            for order in Order.objects.filter(number__in=item_ids)
        }


def _payability(order: Order, now) -> Payability:
    if order.status in (Order.Status.PAID, Order.Status.FULFILLED):
        return Payability.PAID
    if order.status == Order.Status.PENDING_PAYMENT and order.deadline > now:
        return Payability.PAYABLE
    return Payability.CLOSED
