"""The purpose "gadget": lets payments' tests pay for items without orders or bookings."""

from collections.abc import Sequence

from payments.purposes import Payability, Payable, Purpose
from tests.testapp.models import Gadget

PAYABILITY = {
    Gadget.Status.FOR_SALE: Payability.PAYABLE,
    Gadget.Status.SOLD: Payability.PAID,
    Gadget.Status.WITHDRAWN: Payability.CLOSED,
}


class GadgetPurpose(Purpose):
    name = "gadget"

    def payables(self, item_ids: Sequence[str]) -> dict[str, Payable]:
        return {
            gadget.code: Payable(
                item_id=gadget.code,
                customer_id=gadget.customer_id,
                amount=gadget.price,
                currency=gadget.currency,
                payability=PAYABILITY[gadget.status],
                reason=f"is {gadget.status}",
                description=f"Gadget {gadget.code}",
            )
            for gadget in Gadget.objects.filter(code__in=item_ids)
        }
