"""Renewals against the fakes of Paystack's and Stripe's APIs: the first payment keeps the card
(our checkout asks for it, verify reports it, payments keep it), and the renewal charges it
without the customer, once, or is declined into dunning."""

import pytest

from payments import services as payment_services
from payments.errors import GatewayUnreachable
from payments.models import Payment, SavedPaymentMethod, WebhookEvent
from payments.registry import gateway_for
from payments.webhooks import webhook_receive, webhook_verify
from subscriptions import services
from subscriptions.models import Invoice
from tests.payments.fakes.paystack import FakePaystack
from tests.payments.fakes.stripe import FakeStripe
from tests.payments.fakes.tinkoff import FakeTinkoff
from tests.subscriptions.factories import ChildFactory, PlanFactory
from tests.subscriptions.helpers import client_for, completed, payment_of, subscribe

pytestmark = pytest.mark.django_db


@pytest.fixture
def paystack(settings):
    with FakePaystack() as fake:
        settings.PAYMENT_ENV = "test"
        settings.PAYMENT_GATEWAYS = {"paystack": {"secret_key": fake.secret, "base_url": fake.base_url}}
        yield fake


@pytest.fixture
def stripe(settings):
    with FakeStripe() as fake:
        settings.PAYMENT_ENV = "test"
        settings.PAYMENT_GATEWAYS = {
            "stripe": {
                "secret_key": fake.secret,
                "webhook_secret": fake.webhook_secret,
                "base_url": fake.base_url,
            }
        }
        yield fake


def first_payment(gateway: str, currency: str, complete) -> tuple:
    """Subscribe, pay the first invoice at `gateway` (the fake's `complete` plays the customer),
    apply what the gateway's API says, and deliver payment.completed."""
    child = ChildFactory()
    client = client_for(child.customer)
    subscription_id = subscribe(client, child, PlanFactory(price="5000.00", currency=currency)).json()["id"]
    response = client.post(
        "/api/payments/batch",
        {
            "subscription_ids": [subscription_id],
            "gateway": gateway,
            "return_url": "https://shop.example.com/done",
        },
        format="json",
        HTTP_IDEMPOTENCY_KEY="first",
    )
    assert response.status_code == 201, response.json()
    payment = Payment.objects.get(public_id=response.json()["id"])
    complete(payment.gateway_reference)
    completed(payment_services.payment_verify(payment_id=payment.pk))
    return child.customer, Invoice.objects.get(status="paid").subscription


def renew(subscription) -> tuple[Invoice, str]:
    now = subscription.current_period_end
    invoice = services.subscription_renew(subscription_id=subscription.pk, now=now)
    return invoice, services.invoice_charge(invoice_id=invoice.pk, now=now, force=True)  # as its task


def test_paystack_renewal_charges_the_kept_authorization_once(paystack):
    customer, subscription = first_payment("paystack", "NGN", paystack.complete)
    method = SavedPaymentMethod.objects.get(customer=customer)
    assert method.gateway == "paystack" and method.token.startswith("AUTH_")
    assert method.customer_reference == customer.email and "4081" in method.label

    invoice, outcome = renew(subscription)

    assert outcome == "charged"
    payment = payment_of(invoice)
    assert payment.status == "succeeded" and payment.saved_method == method
    assert len(paystack.charged) == 1 and paystack.transactions[paystack.charged[0]]["amount"] == 500000
    completed(payment)
    assert Invoice.objects.get(pk=invoice.pk).status == "paid"


def test_paystack_decline_moves_the_subscription_into_dunning(paystack):
    _, subscription = first_payment("paystack", "NGN", paystack.complete)
    paystack.decline_next_charge("Insufficient Funds")

    invoice, outcome = renew(subscription)

    assert outcome == "failed"
    invoice.refresh_from_db()
    assert invoice.attempts == 1 and "Insufficient Funds" in invoice.last_error
    assert invoice.subscription.status == "past_due"


def test_stripe_renewal_is_an_off_session_payment_intent_on_the_kept_card(stripe):
    customer, subscription = first_payment("stripe", "USD", stripe.complete)
    method = SavedPaymentMethod.objects.get(customer=customer)
    assert method.token.startswith("pm_") and method.customer_reference.startswith("cus_")

    invoice, outcome = renew(subscription)

    assert outcome == "charged"
    payment = payment_of(invoice)
    assert payment.gateway_reference.startswith("pi_")
    intents = stripe.intents_for(payment.public_id)
    assert len(intents) == 1 and intents[0]["status"] == "succeeded" and intents[0]["amount"] == 500000


def test_stripe_timeout_then_retry_charges_once(stripe, settings):
    _, subscription = first_payment("stripe", "USD", stripe.complete)
    # No retry inside the call: the task's retry (with the same key) is what gets the answer.
    settings.PAYMENT_GATEWAYS = {
        "stripe": {**settings.PAYMENT_GATEWAYS["stripe"], "timeout": (1, 1), "retries": 0}
    }
    stripe.lose_next_charge_answer()
    now = subscription.current_period_end
    invoice = services.subscription_renew(subscription_id=subscription.pk, now=now)

    with pytest.raises(GatewayUnreachable):
        services.invoice_charge(invoice_id=invoice.pk, now=now, force=True)
    assert services.invoice_charge(invoice_id=invoice.pk, now=now, force=True) == "charged"

    payment = payment_of(invoice)
    assert len(stripe.intents_for(payment.public_id)) == 1
    assert Payment.objects.filter(allocations__purpose_id=invoice.number).count() == 1


@pytest.fixture
def tinkoff(settings):
    with FakeTinkoff() as fake:
        settings.PAYMENT_ENV = "test"
        settings.PAYMENT_GATEWAYS = {"tinkoff": fake.config()}
        yield fake


def test_tinkoff_keeps_the_card_from_its_signed_notice_and_renews_with_it(tinkoff):
    """Tinkoff names the saved card (RebillId) only in its notification: it is kept once the
    webhook's verification confirms the payment, then a renewal is Init + Charge on it."""

    def pay_and_notify(reference: str) -> None:
        tinkoff.complete(reference)
        headers, body = tinkoff.signed_webhook(reference)
        status, _ = webhook_receive(gateway=gateway_for("tinkoff"), headers=headers, body=body)
        assert status == 200
        webhook_verify(webhook_event_id=WebhookEvent.objects.latest("received_at").pk)

    customer, subscription = first_payment("tinkoff", "RUB", pay_and_notify)
    method = SavedPaymentMethod.objects.get(customer=customer)
    assert method.gateway == "tinkoff" and method.customer_reference == f"customer-{customer.pk}"
    assert "CardId" in method.details and "Pan" not in method.details

    _, outcome = renew(subscription)

    assert outcome == "charged"
    assert len([p for p in tinkoff.payments.values() if p.status == "CONFIRMED"]) == 2
