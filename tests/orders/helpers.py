"""Shared steps of the orders tests: fill a cart and check out through the API, pay through
the payments services as a verified webhook would."""

import uuid

from rest_framework.test import APIClient

from orders.models import Order
from payments import services as payments
from payments.gateways.base import PaymentState, Status
from payments.models import Payment, PaymentLedgerEntry


def client_for(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def checkout(client: APIClient, *items: tuple[int, int], key: str | None = None):
    """Put (variant id, quantity) items in the cart and check out; the checkout response."""
    for variant_id, quantity in items:
        response = client.post("/api/cart/items", {"variant_id": variant_id, "quantity": quantity})
        assert response.status_code == 201, response.json()
    return client.post("/api/checkout", {}, HTTP_IDEMPOTENCY_KEY=key or str(uuid.uuid4()))


def gateway_reports(payment: Payment, status: Status, *, error: str = "") -> Payment:
    """Apply what the gateway's API says about the payment (as verification does)."""
    state = PaymentState(
        reference=payment.gateway_reference or "ref",
        status=status,
        amount=payment.amount,
        currency=payment.currency,
        error=error,
    )
    return payments.payment_apply_state(
        payment_id=payment.pk, state=state, source=PaymentLedgerEntry.Source.VERIFY
    )


def order_of(response) -> Order:
    return Order.objects.select_related("payment").get(number=response.json()["number"])


def deliver(event_type: str, **data) -> None:
    """Run the orders subscribers of the newest outbox event of `event_type` (whose data
    contains `data`) in this thread, as the worker would (the e2e tests use the worker)."""
    from core.events.registry import Event, subscribers_for
    from core.models import OutboxEvent

    rows = OutboxEvent.objects.filter(type=event_type).order_by("-seq")
    row = next(r for r in rows if all(r.data.get(k) == v for k, v in data.items()))
    event = Event(
        id=row.event_id,
        type=row.type,
        version=row.version,
        occurred_at=row.occurred_at,
        source=row.source,
        data=row.data,
    )
    for subscriber in subscribers_for(event_type):
        if subscriber.name.startswith("orders.") and subscriber.accepts(event.data):
            subscriber.func(event)
