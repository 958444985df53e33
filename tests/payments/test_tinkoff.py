"""TinkoffGateway against a fake of the Tinkoff acquiring API v2 served on localhost."""

import hashlib
import json
from dataclasses import replace
from decimal import Decimal

import pytest

from payments.gateways.base import (
    CheckoutRequest,
    GatewayError,
    RefundRequest,
    Status,
    WebhookAuthError,
    WebhookReply,
)
from payments.gateways.tinkoff import PRODUCTION_URL, TEST_URL, TinkoffGateway, tinkoff_token
from tests.payments.fakes.tinkoff import FakeTinkoff


@pytest.fixture
def fake():
    with FakeTinkoff() as provider:
        yield provider


@pytest.fixture
def gateway(fake):
    return TinkoffGateway(fake.config())


def checkout(payment_id: str = "pay_7Hq2", amount: str = "1500.50") -> CheckoutRequest:
    return CheckoutRequest(
        payment_id=payment_id,
        amount=Decimal(amount),
        currency="RUB",
        description="Order 1042",
        customer_email="buyer@example.com",
        return_url="https://shop.example/return",
        idempotency_key=f"checkout-{payment_id}",
        metadata={"order": "1042"},
    )


def refund(reference: str, amount: str, key: str) -> RefundRequest:
    return RefundRequest(
        reference=reference, amount=Decimal(amount), currency="RUB", reason="", idempotency_key=key
    )


def paid(gateway: TinkoffGateway, fake: FakeTinkoff, payment_id: str = "pay_7Hq2") -> str:
    reference = gateway.create_checkout(checkout(payment_id)).reference
    fake.complete(reference)
    return reference


def test_token_follows_the_documented_example():
    # https://developer.tbank.ru/eacq/intro/developer/token: DATA and Receipt take no part
    fields = {
        "TerminalKey": "MerchantTerminalKey",
        "Amount": 19200,
        "OrderId": "00000",
        "Description": "Подарочная карта на 1000 рублей",
        "DATA": {"Phone": "+71234567890"},
        "Receipt": {"Email": "a@test.ru"},
    }
    joined = "19200" + "Подарочная карта на 1000 рублей" + "00000" + "11111111111111" + "MerchantTerminalKey"
    assert tinkoff_token(fields, "11111111111111") == hashlib.sha256(joined.encode()).hexdigest()


def test_checkout_then_payment_verifies_as_succeeded_with_the_amount(gateway, fake):
    session = gateway.create_checkout(checkout(amount="1500.50"))

    payment = fake.payments[session.reference]
    assert (payment.order_id, payment.amount) == ("pay_7Hq2", 150050)
    assert session.redirect_url == f"{fake.base_url}/new/{session.reference}"
    assert gateway.verify(session.reference).status is Status.PENDING

    fake.complete(session.reference)
    state = gateway.verify(session.reference)

    assert state.status is Status.SUCCEEDED
    assert state.amount == Decimal("1500.50")
    assert state.currency == "RUB"
    assert state.error == ""


def test_declined_payment_verifies_as_failed_with_the_reason(gateway, fake):
    reference = gateway.create_checkout(checkout()).reference
    fake.decline(reference, "Недостаточно средств на карте")

    state = gateway.verify(reference)

    assert state.status is Status.FAILED
    assert state.error == "Недостаточно средств на карте"


def test_partial_then_full_refund(gateway, fake):
    reference = paid(gateway, fake)

    first = gateway.refund(refund(reference, "500.50", "refund-1"))
    assert (first.status, first.amount) == (Status.SUCCEEDED, Decimal("500.50"))
    state = gateway.verify(reference)
    assert (state.status, state.amount) == (Status.PARTIALLY_REFUNDED, Decimal("1000.00"))

    second = gateway.refund(refund(reference, "1000.00", "refund-2"))
    assert (second.status, second.amount) == (Status.SUCCEEDED, Decimal("1000.00"))
    assert gateway.verify(reference).status is Status.REFUNDED
    assert fake.payments[reference].refunds == [50050, 100000]
    assert first.refund_reference != second.refund_reference


def test_refund_beyond_the_captured_amount_is_refused(gateway, fake):
    reference = paid(gateway, fake)

    with pytest.raises(GatewayError) as caught:
        gateway.refund(refund(reference, "1500.51", "refund-too-much"))

    assert caught.value.transient is False
    assert caught.value.code == "1027"
    assert "Сумма отмены больше суммы платежа" in str(caught.value)
    assert (fake.payments[reference].status, fake.payments[reference].refunds) == ("CONFIRMED", [])


def test_same_order_twice_makes_one_payment(gateway, fake):
    first = gateway.create_checkout(checkout("pay_once"))

    with pytest.raises(GatewayError) as caught:
        gateway.create_checkout(checkout("pay_once"))

    assert caught.value.transient is False
    assert caught.value.code == "20"  # "Ошибка повторного идентификатора заказа"
    assert list(fake.payments) == [first.reference]


def test_wrong_password_is_refused_by_the_token_check(fake):
    gateway = TinkoffGateway(fake.config(password="not-the-password"))

    with pytest.raises(GatewayError) as caught:
        gateway.create_checkout(checkout())

    assert (caught.value.transient, caught.value.code) == (False, "204")
    assert fake.payments == {}


def test_non_rouble_checkout_is_refused_before_any_call(gateway, fake):
    with pytest.raises(GatewayError) as caught:
        gateway.create_checkout(replace(checkout(), currency="USD"))

    assert caught.value.transient is False
    assert fake.requests == []


def test_503_then_success_is_retried_for_state_and_init(gateway, fake):
    fake.fail_next(503)
    reference = gateway.create_checkout(checkout()).reference
    assert len(fake.payments) == 1

    fake.fail_next(503, 503)
    assert gateway.verify(reference).status is Status.PENDING
    assert len(fake.requests) == 5  # Init x2, GetState x3


def test_refund_is_not_retried_on_503(gateway, fake):
    reference = paid(gateway, fake)
    fake.fail_next(503)

    with pytest.raises(GatewayError) as caught:
        gateway.refund(refund(reference, "100.00", "refund-503"))

    assert caught.value.transient is True
    assert fake.payments[reference].refunds == []
    assert [r.path for r in fake.requests].count("/v2/Cancel") == 1


def test_stalled_request_times_out_as_transient(fake):
    gateway = TinkoffGateway(fake.config(timeout=(0.5, 0.5), retries=0))
    fake.stall_seconds = 1.5
    fake.stall_next()

    with pytest.raises(GatewayError) as caught:
        gateway.verify("7000000001")

    assert caught.value.transient is True


def test_signed_webhook_is_parsed(gateway, fake):
    reference = paid(gateway, fake)
    headers, body = fake.signed_webhook(reference)

    notice = gateway.parse_webhook(headers=headers, body=body)

    assert notice.event_id == f"{reference}:CONFIRMED"
    assert notice.reference == reference
    assert notice.status_hint is Status.SUCCEEDED
    assert (notice.amount, notice.currency) == (Decimal("1500.50"), "RUB")
    assert notice.raw["Success"] is True


def test_each_partial_refund_notification_is_its_own_event(gateway, fake):
    reference = paid(gateway, fake)
    event_ids = set()
    for key in ("r1", "r2"):
        gateway.refund(refund(reference, "100.00", key))
        notice = gateway.parse_webhook(headers={}, body=fake.signed_webhook(reference)[1])
        assert notice.status_hint is Status.PARTIALLY_REFUNDED
        event_ids.add(notice.event_id)

    assert len(event_ids) == 2


def test_declined_webhook_signs_the_false_boolean(gateway, fake):
    reference = gateway.create_checkout(checkout()).reference
    fake.decline(reference, "Do not honor")

    notice = gateway.parse_webhook(headers={}, body=fake.signed_webhook(reference)[1])

    assert notice.raw["Success"] is False
    assert notice.status_hint is Status.FAILED


def test_tampered_webhook_is_rejected(gateway, fake):
    reference = paid(gateway, fake)
    headers, body = fake.signed_webhook(reference)
    tampered = json.loads(body) | {"Amount": 1}

    with pytest.raises(WebhookAuthError):
        gateway.parse_webhook(headers=headers, body=json.dumps(tampered).encode())


def test_webhook_signed_with_another_password_is_rejected(gateway, fake):
    reference = paid(gateway, fake)
    fake.password = "someone-else"
    headers, body = fake.signed_webhook(reference)

    with pytest.raises(WebhookAuthError):
        gateway.parse_webhook(headers=headers, body=body)


@pytest.mark.parametrize("token", [None, "", 42])
def test_webhook_without_a_token_is_rejected(gateway, fake, token):
    reference = paid(gateway, fake)
    notice = json.loads(fake.signed_webhook(reference)[1])
    if token is None:
        del notice["Token"]
    else:
        notice["Token"] = token

    with pytest.raises(WebhookAuthError):
        gateway.parse_webhook(headers={}, body=json.dumps(notice).encode())


def test_webhook_that_is_not_json_is_rejected(gateway):
    with pytest.raises(WebhookAuthError):
        gateway.parse_webhook(headers={}, body=b"TerminalKey=x&Token=y")


def test_webhook_reply_is_plain_ok(gateway, fake):
    reference = paid(gateway, fake)
    notice = gateway.parse_webhook(headers={}, body=fake.signed_webhook(reference)[1])

    assert gateway.webhook_reply(notice) == WebhookReply(status=200, body=b"OK", content_type="text/plain")


@pytest.mark.parametrize(
    ("env", "url"), [("test", TEST_URL), ("production", PRODUCTION_URL), ("mock", PRODUCTION_URL)]
)
def test_base_url_follows_payment_env(env, url):
    gateway = TinkoffGateway({"terminal_key": "T", "password": "p", "env": env})

    assert gateway.http.base_url == url
