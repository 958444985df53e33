"""Helpers for subscription tests: API clients, paying invoices through the sandbox without
a worker (what its page and webhook would do), and the events a test caused."""

from rest_framework.test import APIClient

from core.models import OutboxEvent
from payments import services as payment_services
from payments.gateways.sandbox import method_save
from payments.models import Payment, SandboxCharge
from subscriptions import services
from subscriptions.models import Subscription


def client_for(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def subscribe(client: APIClient, child, plan, key: str | None = None):
    return client.post(
        "/api/subscriptions",
        {"child_id": child.pk, "plan_id": plan.pk},
        format="json",
        HTTP_IDEMPOTENCY_KEY=key or f"sub-{child.pk}-{plan.pk}",
    )


def batch(client: APIClient, *subscription_ids: str, key: str = "batch-1"):
    return client.post(
        "/api/payments/batch",
        {"subscription_ids": list(subscription_ids)},
        format="json",
        HTTP_IDEMPOTENCY_KEY=key,
    )


def sandbox_pay(payment_public_id: str, *, save: bool = True) -> Payment:
    """Press Pay on the sandbox page and apply what its API then says (as the webhook's task would)."""
    payment = Payment.objects.get(public_id=payment_public_id)
    charge = SandboxCharge.objects.get(reference=payment.gateway_reference)
    charge.status = SandboxCharge.Status.SUCCEEDED
    if save and charge.save_method:
        charge.method = method_save(charge)
    charge.save()
    return payment_services.payment_verify(payment_id=payment.pk)


def completed(payment: Payment) -> None:
    """Deliver payment.completed to subscriptions' subscriber (what the worker would do)."""
    services.invoices_paid_by(
        payment_id=payment.public_id,
        invoice_numbers=[a.purpose_id for a in payment.allocations.order_by("purpose_id")],
    )


def payment_of(invoice) -> Payment:
    """The invoice's latest payment."""
    return Payment.objects.filter(allocations__purpose_id=invoice.number).latest("created_at")


def renewal_paid(subscription: Subscription) -> Subscription:
    """Renew at the period's end, charge the saved method, and deliver payment.completed."""
    invoice = services.subscription_renew(
        subscription_id=subscription.pk, now=subscription.current_period_end
    )
    services.invoice_charge(invoice_id=invoice.pk, now=subscription.current_period_end, force=True)
    completed(payment_of(invoice))
    return Subscription.objects.get(pk=subscription.pk)


def paid_subscription(client: APIClient, child, plan) -> Subscription:
    """A subscription whose first invoice was paid through the sandbox, its card saved."""
    subscription_id = subscribe(client, child, plan).json()["id"]
    payment = sandbox_pay(batch(client, subscription_id, key=f"pay-{subscription_id}").json()["id"])
    completed(payment)
    return Subscription.objects.get(public_id=subscription_id)


def event_types(since_seq: int = 0, prefix: str = "") -> list[str]:
    return list(
        OutboxEvent.objects.filter(seq__gt=since_seq, type__startswith=prefix)
        .order_by("seq")
        .values_list("type", flat=True)
    )


def last_seq() -> int:
    return OutboxEvent.objects.order_by("-seq").values_list("seq", flat=True).first() or 0
