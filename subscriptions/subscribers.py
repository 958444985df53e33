"""What subscriptions do when payments report: invoices paid, or a renewal charge failed.

Each subscriber declares `when={"purpose": "subscription"}`: the relay enqueues it only for
payments of invoices. Each one's effect commits with its processed-event row (core.events),
so a redelivered event changes nothing twice.
"""

from core import events
from payments import charges
from payments.policy import event_allocations
from subscriptions import services
from subscriptions.models import Invoice
from subscriptions.purposes import PURPOSE

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
