"""Reconciliation when a gateway and the database disagree (issue 18), at every gateway.

Each gateway's fake (the sandbox: its own charge rows) is told what the customer or staff did
at the provider, and nothing reaches us: (a) paid, no webhook; (b) declined, no webhook;
(c) paid and seen paid here, then refunded on the gateway's side (its dashboard), outside the
system. Beat's `payments.reconcile` then runs through RabbitMQ on a real worker, and each is
fixed or flagged as docs/payments.md says (*Reconciliation*).

`Provider` (a gateway with its fake, as the app is configured for it) is shared with
tests/security/test_webhook_fuzz.py.
"""

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from core.models import OutboxEvent
from orders.models import Order
from payments import policy, reconciliation, services
from payments.gateways.base import RefundRequest
from payments.gateways.sandbox import SIGNATURE_HEADER, sign
from payments.models import Payment, PaymentLedgerEntry, Refund, SandboxCharge
from payments.registry import gateway_for
from payments.tasks import reconcile
from tests.conftest import wait_for
from tests.factories import GadgetFactory, UserFactory
from tests.orders.factories import VariantFactory
from tests.orders.helpers import checkout, client_for, order_of
from tests.payments.fakes.paystack import FakePaystack
from tests.payments.fakes.sberpay import FakeSberPay
from tests.payments.fakes.stripe import FakeStripe
from tests.payments.fakes.tinkoff import FakeTinkoff
from tests.payments.fakes.yookassa import FakeYooKassa

GATEWAYS = ("sandbox", "paystack", "stripe", "yookassa", "tinkoff", "sberpay")
SANDBOX_SECRET = "sandbox-secret-fz"
DECLINE_REASON = "Insufficient Funds"


@dataclass
class Provider:
    """One gateway as the app is configured for it, and what its customers and staff do there."""

    name: str
    currency: str
    fake: Any  # the provider's fake API (None for the sandbox, whose state is our own table)
    config: dict[str, Any] = field(default_factory=dict)

    def pay(self, reference: str) -> None:
        if self.fake is None:
            SandboxCharge.objects.filter(reference=reference).update(status="succeeded")
        else:
            self.fake.complete(reference)

    def decline(self, reference: str) -> None:
        if self.fake is None:
            SandboxCharge.objects.filter(reference=reference).update(
                status="failed", decline_reason=DECLINE_REASON
            )
        elif self.name == "yookassa":
            self.fake.decline(reference, reason="insufficient_funds")
        else:
            self.fake.decline(reference, DECLINE_REASON)

    def refund_at_the_gateway(self, payment: Payment) -> None:
        """Staff refund the whole payment on the provider's dashboard: its API, not ours."""
        gateway_for(self.name).refund(
            RefundRequest(
                reference=payment.gateway_reference,
                amount=payment.amount,
                currency=payment.currency,
                reason="refunded on the dashboard",
                idempotency_key=f"dashboard-{payment.public_id}",
            )
        )

    def notice(self, reference: str) -> tuple[dict[str, str], bytes]:
        """(headers, body) of the genuine notification of the payment's current state, signed."""
        if self.fake is None:
            gateway = gateway_for("sandbox")
            body = gateway.webhook_body(SandboxCharge.objects.get(reference=reference))
            return {"Content-Type": "application/json", SIGNATURE_HEADER: sign(body, gateway.secret)}, body
        if self.name == "paystack":
            return self.fake.signed_webhook("charge.success", reference)
        if self.name == "stripe":
            headers, body = self.fake.signed_webhook("checkout.session.completed", reference)
            return {"Content-Type": "application/json", **headers}, body
        if self.name == "yookassa":
            return self.fake.notification(reference)
        return self.fake.signed_webhook(reference)  # tinkoff, sberpay


FAKES: dict[str, tuple[Callable[[], Any], str, Callable[[Any], dict[str, Any]]]] = {
    "paystack": (
        FakePaystack,
        "NGN",
        lambda fake: {"secret_key": fake.secret, "base_url": fake.base_url},
    ),
    "stripe": (
        FakeStripe,
        "USD",
        lambda fake: {
            "secret_key": fake.secret,
            "webhook_secret": fake.webhook_secret,
            "base_url": fake.base_url,
        },
    ),
    "yookassa": (
        FakeYooKassa,
        "RUB",
        lambda fake: {"shop_id": fake.shop_id, "secret_key": fake.secret_key, "base_url": fake.base_url},
    ),
    "tinkoff": (FakeTinkoff, "RUB", lambda fake: fake.config()),
    "sberpay": (
        FakeSberPay,
        "RUB",
        lambda fake: {
            "username": fake.username,
            "password": fake.password,
            "callback_token": fake.callback_token,
            "base_url": fake.base_url,
        },
    ),
}


@contextlib.contextmanager
def provider_running(name: str, settings) -> Iterator[Provider]:
    """Gateway `name` with its fake served on localhost, and the app pointed at it (PAYMENT_ENV=test)."""
    settings.PAYMENT_ENV = "test"
    if name == "sandbox":
        settings.PAYMENT_GATEWAYS = {"sandbox": {"secret": SANDBOX_SECRET}}
        yield Provider(name, "USD", None, settings.PAYMENT_GATEWAYS["sandbox"])
        return
    fake_class, currency, config_of = FAKES[name]
    with fake_class() as fake:
        config = config_of(fake)
        settings.PAYMENT_GATEWAYS = {name: config}
        yield Provider(name, currency, fake, config)


def open_payment(provider: Provider, price: str = "75.00") -> Payment:
    """A payment for a gadget, its checkout opened at the provider: pending, as the customer pays."""
    gadget = GadgetFactory(customer=UserFactory(), currency=provider.currency, price=price)
    payment = policy.payment_open(
        customer_id=gadget.customer_id, purpose="gadget", item_ids=[gadget.code], gateway=provider.name
    )
    return services.payment_start_checkout(
        payment_id=payment.pk,
        return_url="https://shop.example/return",
        description=f"Gadget {gadget.code}",
        customer_email="customer@example.com",
    )


def gone_quiet(payment: Payment) -> None:
    """Pending long enough for beat's re-verification (PAYMENT_REVERIFY_AFTER_MINUTES)."""
    Payment.objects.filter(pk=payment.pk).update(updated_at=timezone.now() - timedelta(hours=1))


def status_of(payment: Payment) -> str:
    return Payment.objects.get(pk=payment.pk).status


def events_about(payment: Payment, event_type: str) -> list[OutboxEvent]:
    return list(OutboxEvent.objects.filter(type=event_type, data__payment_id=payment.public_id))


@pytest.fixture(params=GATEWAYS)
def provider(request, settings) -> Iterator[Provider]:
    with provider_running(request.param, settings) as running:
        yield running


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_beat_fixes_or_flags_every_disagreement_with_the_gateway(provider, celery_worker):
    paid = open_payment(provider)  # (a) paid at the gateway, its webhook lost
    provider.pay(paid.gateway_reference)
    declined = open_payment(provider)  # (b) declined at the gateway, its webhook lost
    provider.decline(declined.gateway_reference)
    refunded = open_payment(provider)  # (c) paid and seen paid here, then refunded there
    provider.pay(refunded.gateway_reference)
    assert services.payment_verify(payment_id=refunded.pk).status == "succeeded"
    provider.refund_at_the_gateway(refunded)
    untouched = open_payment(provider)  # paid, and seen paid here: the gateway agrees
    provider.pay(untouched.gateway_reference)
    services.payment_verify(payment_id=untouched.pk)
    untouched_ledger = PaymentLedgerEntry.objects.filter(payment=untouched).count()
    for payment in (paid, declined):
        gone_quiet(payment)

    reconcile.delay()  # as beat sends it

    wait_for(lambda: status_of(paid) == "succeeded", what="(a) to complete")
    assert len(events_about(paid, "payment.completed")) == 1
    wait_for(lambda: status_of(declined) == "failed", what="(b) to fail")
    (failed,) = events_about(declined, "payment.failed")
    assert failed.data["error"]
    flagged = wait_for(
        lambda: Payment.objects.filter(pk=refunded.pk).exclude(flagged_reason="").first(),
        what="(c) to be flagged",
    )
    assert "refunded at the gateway, outside this system" in flagged.flagged_reason
    assert f"{provider.name} says refunded" in flagged.flagged_reason
    assert flagged.status == "succeeded"  # nothing moved on a guess
    (alert,) = events_about(refunded, "payment.flagged")
    assert alert.data["reason"] == flagged.flagged_reason
    assert flagged.ledger.filter(source="verify", reported_status="refunded").exists()
    assert not events_about(refunded, "payment.refunded") and not Refund.objects.exists()
    assert Payment.objects.get(pk=untouched.pk).flagged_reason == ""
    assert PaymentLedgerEntry.objects.filter(payment=untouched).count() == untouched_ledger

    # The next pass takes none of the paid payments again (once every few hours) ...
    assert reconciliation.payments_paid_take() == []
    # ... and when it does, the same answer raises no second alert.
    reconciliation.payment_paid_check(payment_id=refunded.pk)
    assert len(events_about(refunded, "payment.flagged")) == 1


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_an_order_paid_at_the_gateway_whose_webhook_was_lost_is_paid_by_beat(celery_worker):
    """(a) with the orders app: beat's pass, the outbox relay and orders' subscriber, end to end."""
    variant = VariantFactory(price="25.00", stock_on_hand=5)
    order = order_of(checkout(client_for(UserFactory()), (variant.pk, 2)))
    SandboxCharge.objects.filter(reference=order.payment.gateway_reference).update(status="succeeded")
    gone_quiet(order.payment)

    reconcile.delay()

    wait_for(lambda: Order.objects.get(pk=order.pk).status == "paid", timeout=60, what="the order to be paid")
    wait_for(
        lambda: OutboxEvent.objects.filter(aggregate_id=order.number, type="order.paid"),
        what="order.paid",
    )
    variant.refresh_from_db()
    assert (variant.stock_on_hand, variant.stock_reserved) == (3, 0)


@pytest.mark.django_db
def test_a_refund_of_ours_on_its_way_or_a_resolved_flag_raises_no_alert(settings, celery_app_without_worker):
    with provider_running("sandbox", settings) as sandbox:
        ours = open_payment(sandbox)
        sandbox.pay(ours.gateway_reference)
        services.payment_verify(payment_id=ours.pk)
        refund = services.refund_reserve(
            payment_id=ours.pk, amount=None, reason="x", idempotency_key="ours", requested_by_id=None
        )
        sandbox.refund_at_the_gateway(ours)  # the gateway has made it; its answer is not applied yet

        assert reconciliation.payment_paid_check(payment_id=ours.pk).flagged_reason == ""

        Refund.objects.filter(pk=refund.pk).update(status="failed")  # it was not ours after all
        flagged = reconciliation.payment_paid_check(payment_id=ours.pk)
        assert "refunded at the gateway" in Payment.objects.get(pk=flagged.pk).flagged_reason
        services.payment_flag_resolve(payment_id=ours.pk, note="refunded by hand, agreed", by="staff")

        reconciliation.payment_paid_check(payment_id=ours.pk)
        assert Payment.objects.get(pk=ours.pk).flagged_reason == ""
        assert len(events_about(ours, "payment.flagged")) == 1


@pytest.mark.django_db
def test_paid_payments_are_taken_in_turn_within_the_batch(settings, celery_app_without_worker):
    settings.PAYMENT_REVERIFY_BATCH = 2
    with provider_running("sandbox", settings) as sandbox:
        payments = [open_payment(sandbox) for _ in range(3)]
        for payment in payments:
            sandbox.pay(payment.gateway_reference)
            services.payment_verify(payment_id=payment.pk)
        old = open_payment(sandbox)
        Payment.objects.filter(pk=old.pk).update(
            status="succeeded",
            created_at=timezone.now() - timedelta(days=settings.PAYMENT_PAID_RECHECK_DAYS + 1),
        )

        first, second = reconciliation.payments_paid_take(), reconciliation.payments_paid_take()

    assert len(first) == 2 and len(second) == 1
    assert set(first + second) == {p.pk for p in payments}  # not the one made too long ago
