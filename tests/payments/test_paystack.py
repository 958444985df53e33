"""PaystackGateway against a fake of Paystack's API served on localhost."""

import uuid
from decimal import Decimal

import pytest

from core.money import MoneyError
from payments.gateways.base import (
    CheckoutRequest,
    GatewayError,
    RefundRequest,
    Status,
    WebhookAuthError,
    WebhookReply,
)
from payments.gateways.paystack import PaystackGateway, paystack_reference
from tests.payments.fakes.paystack import FakePaystack


@pytest.fixture
def fake():
    with FakePaystack() as fake:
        yield fake


@pytest.fixture
def gateway(fake):
    return PaystackGateway({"secret_key": fake.secret, "base_url": fake.base_url, "timeout": (2, 2)})


def checkout(amount: str = "7500.50", key: str | None = None) -> CheckoutRequest:
    return CheckoutRequest(
        payment_id="pay_9f3k",
        amount=Decimal(amount),
        currency="NGN",
        description="Toybox, March",
        customer_email="ada@example.com",
        return_url="https://shop.example.com/payments/return",
        idempotency_key=key or str(uuid.uuid4()),
        metadata={"order_id": "42"},
    )


def refund(reference: str, amount: str) -> RefundRequest:
    return RefundRequest(
        reference=reference,
        amount=Decimal(amount),
        currency="NGN",
        reason="damaged item",
        idempotency_key=str(uuid.uuid4()),
    )


def paid(fake: FakePaystack, gateway: PaystackGateway, amount: str = "7500.50") -> str:
    reference = gateway.create_checkout(checkout(amount)).reference
    fake.complete(reference)
    return reference


def test_checkout_sends_subunits_and_our_ids_then_verifies_succeeded(fake, gateway):
    request = checkout("7500.50")
    session = gateway.create_checkout(request)

    assert session.reference == request.idempotency_key  # a UUID fits Paystack's alphabet as is
    assert session.redirect_url.startswith("https://checkout.paystack.com/")
    sent = fake.transactions[session.reference]
    assert sent["amount"] == 750050
    assert sent["currency"] == "NGN"
    assert sent["metadata"] == {"order_id": "42", "payment_id": "pay_9f3k", "description": "Toybox, March"}
    assert sent["callback_url"] == request.return_url

    fake.complete(session.reference)
    state = gateway.verify(session.reference)
    assert state.status == Status.SUCCEEDED
    assert state.amount == Decimal("7500.50")
    assert state.currency == "NGN"
    assert state.error == ""


def test_a_checkout_nobody_has_paid_yet_is_pending(gateway):
    """Paystack calls it "abandoned" from the start; the customer may still pay."""
    session = gateway.create_checkout(checkout())
    assert gateway.verify(session.reference).status == Status.PENDING


def test_declined_payment_verifies_failed_with_the_banks_reason(fake, gateway):
    session = gateway.create_checkout(checkout())
    fake.decline(session.reference, "Insufficient Funds")

    state = gateway.verify(session.reference)
    assert state.status == Status.FAILED
    assert state.error == "Insufficient Funds"


def test_verify_of_an_unknown_reference_is_a_permanent_error(gateway):
    with pytest.raises(GatewayError) as raised:
        gateway.verify("no-such-reference")
    assert raised.value.transient is False
    assert raised.value.status == 404
    assert "Transaction reference not found" in str(raised.value)


def test_wrong_secret_key_is_refused(fake):
    gateway = PaystackGateway({"secret_key": "sk_test_wrong", "base_url": fake.base_url})
    with pytest.raises(GatewayError) as raised:
        gateway.create_checkout(checkout())
    assert (raised.value.transient, raised.value.status) == (False, 401)
    assert fake.transactions == {}


def test_amount_with_more_decimals_than_the_currency_is_refused_before_any_call(fake, gateway):
    with pytest.raises(MoneyError):
        gateway.create_checkout(checkout("10.005"))
    assert fake.requests == []


def test_partial_then_full_refund(fake, gateway):
    reference = paid(fake, gateway, "100.00")

    first = gateway.refund(refund(reference, "30.25"))
    assert first.status == Status.PENDING
    assert first.amount == Decimal("30.25")
    assert first.currency == "NGN"
    assert fake.refunds[int(first.refund_reference)]["amount"] == 3025
    assert gateway.verify(reference).status == Status.SUCCEEDED  # partly refunded: still a success

    rest = gateway.refund(refund(reference, "69.75"))
    assert rest.amount == Decimal("69.75")
    assert rest.refund_reference != first.refund_reference
    assert fake.refunded(reference) == 10000
    assert gateway.verify(reference).status == Status.REFUNDED

    with pytest.raises(GatewayError) as raised:
        gateway.refund(refund(reference, "1.00"))
    assert raised.value.transient is False
    assert "fully reversed" in str(raised.value)


def test_refund_beyond_the_captured_amount_is_refused(fake, gateway):
    reference = paid(fake, gateway, "100.00")
    gateway.refund(refund(reference, "60.00"))

    with pytest.raises(GatewayError) as raised:
        gateway.refund(refund(reference, "40.01"))
    assert raised.value.transient is False
    assert raised.value.status == 400
    assert fake.refunded(reference) == 6000


def test_signed_refund_webhook_names_the_payment(fake, gateway):
    reference = paid(fake, gateway)
    result = gateway.refund(refund(reference, "7500.50"))
    fake.process_refund(int(result.refund_reference))
    headers, body = fake.signed_webhook("refund.processed", refund_id=int(result.refund_reference))

    notice = gateway.parse_webhook(headers=headers, body=body)
    assert notice.reference == reference
    assert notice.event_id == f"refund.processed:{result.refund_reference}"
    assert notice.status_hint is None  # the payment's state comes from verify()
    assert notice.amount is None


def test_same_idempotency_key_creates_one_transaction(fake, gateway):
    key = str(uuid.uuid4())
    first = gateway.create_checkout(checkout(key=key))

    with pytest.raises(GatewayError) as raised:
        gateway.create_checkout(checkout(key=key))
    assert raised.value.code == "duplicate_reference"
    assert raised.value.transient is False
    assert list(fake.transactions) == [first.reference]

    gateway.create_checkout(checkout())  # a new key is a new transaction
    assert len(fake.transactions) == 2


def test_keys_outside_paystacks_alphabet_map_to_distinct_references():
    assert paystack_reference("pay_9f3k:1") == "pay=5F9f3k=3A1"
    assert paystack_reference("a_b") != paystack_reference("a=5Fb")
    key = str(uuid.uuid4())
    assert paystack_reference(key) == key


def test_key_with_underscore_is_accepted_by_paystack(fake, gateway):
    session = gateway.create_checkout(checkout(key="pay_9f3k:checkout:1"))
    fake.complete(session.reference)
    assert gateway.verify(session.reference).status == Status.SUCCEEDED


def test_503_then_success_is_retried(fake, gateway):
    fake.fail_next(503)
    session = gateway.create_checkout(checkout())
    assert len(fake.transactions) == 1

    fake.fail_next(503, 503)
    assert gateway.verify(session.reference).status == Status.PENDING
    assert len(fake.requests) == 2 + 3


def test_refund_is_not_retried_after_a_503(fake, gateway):
    reference = paid(fake, gateway)
    fake.fail_next(503)
    before = len(fake.requests)

    with pytest.raises(GatewayError) as raised:
        gateway.refund(refund(reference, "10.00"))
    assert raised.value.transient is True
    assert len(fake.requests) == before + 1
    assert fake.refunds == {}


def test_stalled_request_times_out_as_transient(fake):
    gateway = PaystackGateway(
        {"secret_key": fake.secret, "base_url": fake.base_url, "timeout": (0.5, 0.5), "retries": 0}
    )
    fake.stall_seconds = 1.5
    fake.stall_next()
    with pytest.raises(GatewayError) as raised:
        gateway.verify("any-reference")
    assert raised.value.transient is True


def test_signed_charge_webhook_is_parsed(fake, gateway):
    reference = paid(fake, gateway, "7500.50")
    headers, body = fake.signed_webhook("charge.success", reference)

    notice = gateway.parse_webhook(headers=headers, body=body)
    assert notice.event_id == f"charge.success:{fake.transactions[reference]['id']}"
    assert notice.reference == reference
    assert notice.status_hint == Status.SUCCEEDED
    assert notice.amount == Decimal("7500.50")
    assert notice.currency == "NGN"
    assert notice.raw["event"] == "charge.success"


def test_tampered_body_is_refused(fake, gateway):
    reference = paid(fake, gateway)
    headers, body = fake.signed_webhook("charge.success", reference)
    with pytest.raises(WebhookAuthError):
        gateway.parse_webhook(headers=headers, body=body.replace(b"750050", b"999999"))


def test_signature_with_another_key_is_refused(fake, gateway):
    reference = paid(fake, gateway)
    headers, body = fake.signed_webhook("charge.success", reference, secret="sk_test_someone_else")
    with pytest.raises(WebhookAuthError):
        gateway.parse_webhook(headers=headers, body=body)


def test_missing_signature_is_refused(fake, gateway):
    reference = paid(fake, gateway)
    _, body = fake.signed_webhook("charge.success", reference)
    with pytest.raises(WebhookAuthError):
        gateway.parse_webhook(headers={"Content-Type": "application/json"}, body=body)


def test_webhook_reply_is_an_empty_200(fake, gateway):
    reference = paid(fake, gateway)
    headers, body = fake.signed_webhook("charge.success", reference)
    reply = gateway.webhook_reply(gateway.parse_webhook(headers=headers, body=body))
    assert reply == WebhookReply(status=200, body=b"")
