"""What subscriptions do when payments report (invoices paid, or a renewal charge failed),
and when an invoice is paid (its period's toybox is built).

The payment subscribers declare `when={"purpose": "subscription"}`: the relay enqueues them
only for payments of invoices. Each one's effect commits with its processed-event row
(core.events), so a redelivered event changes nothing twice.
"""

import logging

from core import events
from payments import charges
from payments.policy import event_allocations
from subscriptions import services
from subscriptions.models import Invoice, Toybox
from subscriptions.purposes import PURPOSE

logger = logging.getLogger(__name__)
FOR_SUBSCRIPTIONS = {"purpose": PURPOSE}


def _invoices_paid_by(event: events.Event) -> list[str]:
    return [allocation["purpose_id"] for allocation in event_allocations(event.data, PURPOSE)]


@events.subscriber(
    "payment.completed",
    queue="subscriptions",
    name="subscriptions.on_payment_completed",
    when=FOR_SUBSCRIPTIONS,
)
def subscriptions_on_payment_completed(event: events.Event) -> None:
    services.invoices_paid_by(payment_id=event.data["payment_id"], invoice_numbers=_invoices_paid_by(event))


@events.subscriber(
    "payment.failed", queue="subscriptions", name="subscriptions.on_payment_failed", when=FOR_SUBSCRIPTIONS
)
def subscriptions_on_payment_failed(event: events.Event) -> None:
    """A renewal charge the gateway declined after answering "pending" (a decline it answered
    at once was counted by the charging task already: counted once per payment)."""
    if not event.data.get("off_session"):
        return  # a payment link the customer did not complete: dunning goes on as scheduled
    unknown = (event.data.get("error") or "").startswith(charges.OUTCOME_UNKNOWN)
    for number in _invoices_paid_by(event):
        invoice_id = Invoice.objects.filter(number=number).values_list("pk", flat=True).first()
        if invoice_id is not None and unknown:  # not a decline: held for staff
            services.invoice_held(invoice_id=invoice_id, error=event.data.get("error") or "")
        elif invoice_id is not None:
            services.invoice_attempt_failed(
                invoice_id=invoice_id,
                payment_id=event.data["payment_id"],
                error=event.data.get("error") or "",
            )


# The build waits on stock rows other builds hold, and a database away for a while should not
# dead-letter it: more retries than the default (backoff 1, 2, 4 ... 32 s, jittered).
@events.subscriber("invoice.paid", queue="subscriptions", name="subscriptions.on_invoice_paid", max_retries=6)
def subscriptions_on_invoice_paid(event: events.Event) -> None:
    """Build the box the invoice's payment opened. The event commits with the box, so the build
    is as durable as the payment: no task sent after the commit that a killed worker could lose."""
    number = event.data["invoice_id"]
    toybox_id = Toybox.objects.filter(invoice__number=number).values_list("pk", flat=True).first()
    if toybox_id is None:  # every paid invoice opens its box in the same transaction
        logger.error("invoice paid without a toybox", extra={"invoice": number})
        return
    services.toybox_build(toybox_id=toybox_id)
