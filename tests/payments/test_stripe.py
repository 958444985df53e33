"""StripeGateway against FakeStripe: Checkout Sessions, verify, refunds, retries, signed webhooks."""

import json
import time
from decimal import Decimal

import pytest

from payments.gateways.base import (
    CheckoutRequest,
    GatewayError,
    RefundRequest,
    Status,
    WebhookAuthError,
    WebhookNotice,
)
from payments.gateways.stripe import StripeGateway
from tests.payments.fakes.stripe import FakeStripe, gateway_for


@pytest.fixture
def fake():
    with FakeStripe() as fake:
        yield fake


@pytest.fixture
def gateway(fake):
    return gateway_for(fake)


def checkout(amount: str = "25.50", currency: str = "USD", key: str = "checkout-1") -> CheckoutRequest:
    return CheckoutRequest(
        payment_id="pay_123",
        amount=Decimal(amount),
        currency=currency,
        description="Spring box",
        customer_email="ada@example.com",
        return_url="https://shop.example/return",
        idempotency_key=key,
        metadata={"order_id": "42"},
    )


def refund(reference: str, amount: str, key: str, reason: str = "requested_by_customer") -> RefundRequest:
    return RefundRequest(
        reference=reference, amount=Decimal(amount), currency="USD", reason=reason, idempotency_key=key
    )


def paid(gateway: StripeGateway, fake: FakeStripe, amount: str = "100.00") -> str:
    reference = gateway.create_checkout(checkout(amount)).reference
    fake.complete(reference)
    return reference


# --- create_checkout and verify ----------------------------------------------------------------


def test_checkout_sends_minor_units_and_our_payment_id(gateway, fake):
    session = gateway.create_checkout(checkout("25.50"))

    stored = fake.sessions[session.reference]
    assert stored["amount_total"] == 2550
    assert stored["currency"] == "usd"
    assert stored["client_reference_id"] == "pay_123"
    assert stored["metadata"] == {"order_id": "42", "payment_id": "pay_123"}
    assert stored["customer_email"] == "ada@example.com"
    assert stored["success_url"] == "https://shop.example/return"
    assert session.redirect_url == stored["url"]
    assert session.redirect_url.startswith("https://checkout.stripe.com/")


@pytest.mark.parametrize(("amount", "currency"), [("25.50", "USD"), ("1500", "JPY"), ("1.250", "KWD")])
def test_completed_checkout_verifies_succeeded_with_the_amount(gateway, fake, amount, currency):
    reference = gateway.create_checkout(checkout(amount, currency)).reference
    fake.complete(reference)

    state = gateway.verify(reference)

    assert state.reference == reference
    assert state.status == Status.SUCCEEDED
    assert state.amount == Decimal(amount)
    assert str(state.amount) == amount
    assert state.currency == currency
    assert state.error == ""


def test_open_checkout_is_pending(gateway):
    reference = gateway.create_checkout(checkout()).reference

    state = gateway.verify(reference)

    assert state.status == Status.PENDING
    assert state.amount == Decimal("25.50")


def test_declined_card_verifies_failed_with_the_reason(gateway, fake):
    reference = gateway.create_checkout(checkout()).reference
    fake.decline(reference, "Your card has insufficient funds.", decline_code="insufficient_funds")

    state = gateway.verify(reference)

    assert state.status == Status.FAILED
    assert state.error == "Your card has insufficient funds."


def test_payment_after_a_decline_verifies_succeeded(gateway, fake):
    reference = gateway.create_checkout(checkout()).reference
    fake.decline(reference)
    fake.complete(reference)

    state = gateway.verify(reference)

    assert state.status == Status.SUCCEEDED
    assert state.error == ""


def test_expired_checkout_verifies_cancelled(gateway, fake):
    reference = gateway.create_checkout(checkout()).reference
    fake.expire(reference)

    assert gateway.verify(reference).status == Status.CANCELLED


def test_unknown_reference_is_a_permanent_error(gateway):
    with pytest.raises(GatewayError) as caught:
        gateway.verify("cs_test_missing")

    assert caught.value.transient is False
    assert caught.value.code == "resource_missing"
    assert "No such checkout.session" in str(caught.value)


def test_wrong_secret_key_is_a_permanent_error(fake):
    gateway = StripeGateway({"secret_key": "sk_test_wrong", "base_url": fake.base_url})

    with pytest.raises(GatewayError) as caught:
        gateway.create_checkout(checkout())

    assert caught.value.transient is False
    assert caught.value.status == 401
    assert fake.sessions == {}


# --- idempotency, retries and timeouts -----------------------------------------------------------


def test_same_idempotency_key_creates_one_session(gateway, fake):
    first = gateway.create_checkout(checkout(key="checkout-1"))
    again = gateway.create_checkout(checkout(key="checkout-1"))
    other = gateway.create_checkout(checkout(key="checkout-2"))

    assert again.reference == first.reference
    assert other.reference != first.reference
    assert set(fake.sessions) == {first.reference, other.reference}


def test_reused_idempotency_key_with_other_parameters_is_refused(gateway, fake):
    gateway.create_checkout(checkout("25.50", key="checkout-1"))

    with pytest.raises(GatewayError) as caught:
        gateway.create_checkout(checkout("30.00", key="checkout-1"))

    assert caught.value.transient is False
    assert caught.value.code == "idempotency_error"
    assert len(fake.sessions) == 1


def test_a_503_is_retried_with_the_same_key(gateway, fake):
    fake.fail_next(503)

    session = gateway.create_checkout(checkout())

    assert list(fake.sessions) == [session.reference]
    posts = [r for r in fake.requests if r.method == "POST"]
    assert len(posts) == 2
    assert {r.headers["idempotency-key"] for r in posts} == {"checkout-1"}


def test_verify_is_retried_after_5xx(gateway, fake):
    reference = paid(gateway, fake)
    fake.fail_next(503, 502)

    assert gateway.verify(reference).status == Status.SUCCEEDED


def test_5xx_past_the_retries_is_transient(fake):
    gateway = gateway_for(fake, retries=1)
    fake.fail_next(503, 503)

    with pytest.raises(GatewayError) as caught:
        gateway.create_checkout(checkout())

    assert caught.value.transient is True
    assert caught.value.status == 503
    assert fake.sessions == {}


def test_a_stalled_request_times_out_as_transient(fake):
    gateway = gateway_for(fake, timeout=(0.5, 0.5), retries=0)
    reference = gateway.create_checkout(checkout()).reference
    fake.stall_seconds = 1.5
    fake.stall_next(1)

    started = time.monotonic()
    with pytest.raises(GatewayError) as caught:
        gateway.verify(reference)

    assert caught.value.transient is True
    assert "Timeout" in str(caught.value)
    assert time.monotonic() - started < 1.5


# --- refunds -------------------------------------------------------------------------------------


def test_partial_then_full_refund(gateway, fake):
    reference = paid(gateway, fake, "100.00")

    partial = gateway.refund(refund(reference, "30.00", "refund-1"))
    assert partial.status == Status.SUCCEEDED
    assert partial.amount == Decimal("30.00")
    assert partial.currency == "USD"
    assert gateway.verify(reference).status == Status.PARTIALLY_REFUNDED

    rest = gateway.refund(refund(reference, "70.00", "refund-2"))
    assert rest.amount == Decimal("70.00")
    assert rest.refund_reference != partial.refund_reference
    assert gateway.verify(reference).status == Status.REFUNDED
    assert sorted(r["amount"] for r in fake.refunds.values()) == [3000, 7000]


def test_refund_beyond_the_captured_amount_is_refused(gateway, fake):
    reference = paid(gateway, fake, "100.00")

    with pytest.raises(GatewayError) as caught:
        gateway.refund(refund(reference, "100.01", "refund-1"))

    assert caught.value.transient is False
    assert caught.value.status == 400
    assert "greater than unrefunded amount" in str(caught.value)
    assert fake.refunds == {}
    assert gateway.verify(reference).status == Status.SUCCEEDED


def test_refund_of_a_refunded_payment_is_refused(gateway, fake):
    reference = paid(gateway, fake, "100.00")
    gateway.refund(refund(reference, "100.00", "refund-1"))

    with pytest.raises(GatewayError) as caught:
        gateway.refund(refund(reference, "1.00", "refund-2"))

    assert caught.value.transient is False
    assert caught.value.code == "charge_already_refunded"


def test_same_refund_key_refunds_once(gateway, fake):
    reference = paid(gateway, fake, "100.00")

    first = gateway.refund(refund(reference, "30.00", "refund-1"))
    again = gateway.refund(refund(reference, "30.00", "refund-1"))

    assert again.refund_reference == first.refund_reference
    assert len(fake.refunds) == 1
    assert gateway.verify(reference).status == Status.PARTIALLY_REFUNDED


def test_free_text_refund_reason_goes_to_metadata(gateway, fake):
    reference = paid(gateway, fake, "100.00")

    result = gateway.refund(refund(reference, "10.00", "refund-1", reason="box arrived damaged"))

    stored = fake.refunds[result.refund_reference]
    assert stored["reason"] is None
    assert stored["metadata"] == {"reason": "box arrived damaged"}


def test_refund_of_an_unpaid_checkout_is_refused(gateway):
    reference = gateway.create_checkout(checkout()).reference

    with pytest.raises(GatewayError) as caught:
        gateway.refund(refund(reference, "10.00", "refund-1"))

    assert caught.value.transient is False
    assert caught.value.code == "no_payment"


# --- webhooks ------------------------------------------------------------------------------------


def test_signed_webhook_is_parsed(gateway, fake):
    reference = paid(gateway, fake, "25.50")
    headers, body = fake.signed_webhook("checkout.session.completed", reference)

    notice = gateway.parse_webhook(headers=headers, body=body)

    event = json.loads(body)
    assert event["id"].startswith("evt_")
    assert notice == WebhookNotice(
        event_id=event["id"],
        reference=reference,
        status_hint=Status.SUCCEEDED,
        amount=Decimal("25.50"),
        currency="USD",
        raw=event,
    )


@pytest.mark.parametrize(
    ("event_type", "outcome", "hint"),
    [
        ("checkout.session.completed", None, Status.PENDING),  # a delayed method, not yet paid
        ("checkout.session.async_payment_failed", "decline", Status.FAILED),
        ("checkout.session.expired", "expire", Status.CANCELLED),
    ],
)
def test_webhook_status_hints(gateway, fake, event_type, outcome, hint):
    reference = gateway.create_checkout(checkout()).reference
    if outcome:
        getattr(fake, outcome)(reference)
    headers, body = fake.signed_webhook(event_type, reference)

    notice = gateway.parse_webhook(headers=headers, body=body)

    assert notice.reference == reference
    assert notice.status_hint == hint


def test_webhook_about_another_object_carries_no_hint(gateway, fake):
    reference = paid(gateway, fake)
    intent_id = fake.sessions[reference]["payment_intent"]
    headers, body = fake.signed_webhook("payment_intent.succeeded", intent_id)

    notice = gateway.parse_webhook(headers=headers, body=body)

    assert notice.reference == intent_id
    assert notice.status_hint is None
    assert notice.amount is None


def test_webhook_header_name_is_case_insensitive_and_any_v1_may_match(gateway, fake):
    reference = paid(gateway, fake)
    headers, body = fake.signed_webhook("checkout.session.completed", reference)
    timestamp, good = headers["Stripe-Signature"].split(",")
    rotated = {"stripe-signature": f"{timestamp},v1={'0' * 64},{good}"}  # during a secret roll

    assert gateway.parse_webhook(headers=rotated, body=body).reference == reference


def _tampered(headers, body):
    changed = body.replace(b'"amount_total": 10000', b'"amount_total": 1')
    assert changed != body
    return headers, changed


def _unsigned(headers, body):
    return {}, body


def _without_v1(headers, body):
    return {"Stripe-Signature": headers["Stripe-Signature"].split(",")[0]}, body


@pytest.mark.parametrize("spoil", [_tampered, _unsigned, _without_v1])
def test_webhook_that_does_not_match_its_signature_is_refused(gateway, fake, spoil):
    reference = paid(gateway, fake)
    headers, body = spoil(*fake.signed_webhook("checkout.session.completed", reference))

    with pytest.raises(WebhookAuthError):
        gateway.parse_webhook(headers=headers, body=body)


@pytest.mark.parametrize(
    ("secret", "skew"),
    [
        ("whsec_someone_else", 0),
        (None, -301),  # a replay past the 5-minute tolerance
        (None, 301),
    ],
)
def test_webhook_with_wrong_secret_or_stale_timestamp_is_refused(gateway, fake, secret, skew):
    reference = paid(gateway, fake)
    signing = {"secret": secret, "timestamp": int(time.time()) + skew}
    headers, body = fake.signed_webhook("checkout.session.completed", reference, **signing)

    with pytest.raises(WebhookAuthError):
        gateway.parse_webhook(headers=headers, body=body)


def test_webhook_within_the_tolerance_is_accepted(gateway, fake):
    reference = paid(gateway, fake)
    headers, body = fake.signed_webhook(
        "checkout.session.completed", reference, timestamp=int(time.time()) - 290
    )

    assert gateway.parse_webhook(headers=headers, body=body).reference == reference


def test_webhook_is_refused_when_no_secret_is_configured(fake):
    gateway = StripeGateway({"secret_key": fake.secret, "webhook_secret": "", "base_url": fake.base_url})
    headers, body = fake.signed_webhook("checkout.session.completed", paid(gateway, fake), secret="")

    with pytest.raises(WebhookAuthError):
        gateway.parse_webhook(headers=headers, body=body)


def test_webhook_reply_is_an_empty_200(gateway, fake):
    reference = paid(gateway, fake)
    headers, body = fake.signed_webhook("checkout.session.completed", reference)
    notice = gateway.parse_webhook(headers=headers, body=body)

    reply = gateway.webhook_reply(notice)

    assert reply.status == 200
    assert reply.body == b""
