"""SberPayGateway against a fake of Sberbank's acquiring REST API served on localhost."""

from decimal import Decimal
from urllib.parse import parse_qsl, urlencode

import pytest

from payments.gateways.base import (
    CheckoutRequest,
    GatewayError,
    RefundRequest,
    Status,
    WebhookAuthError,
    WebhookNotice,
)
from payments.gateways.sberpay import PRODUCTION_URL, TEST_URL, SberPayGateway, callback_checksum
from tests.payments.fakes.sberpay import FakeSberPay


@pytest.fixture
def fake():
    with FakeSberPay() as provider:
        yield provider


def make_gateway(fake: FakeSberPay, **overrides) -> SberPayGateway:
    config = {
        "username": fake.username,
        "password": fake.password,
        "callback_token": fake.callback_token,
        "base_url": fake.base_url,
        "timeout": (0.5, 0.5),
        "retries": 2,
        **overrides,
    }
    return SberPayGateway(config)


def checkout(payment_id: str = "pay_1", amount: str = "1250.50") -> CheckoutRequest:
    return CheckoutRequest(
        payment_id=payment_id,
        amount=Decimal(amount),
        currency="RUB",
        description="Toybox, March",
        customer_email="parent@example.com",
        return_url="https://shop.example.com/payments/pay_1/return",
        idempotency_key=f"checkout:{payment_id}",
    )


def refund_request(reference: str, amount: str, key: str) -> RefundRequest:
    return RefundRequest(
        reference=reference, amount=Decimal(amount), currency="RUB", reason="returned", idempotency_key=key
    )


def test_checkout_sends_minor_units_and_our_payment_id(fake):
    session = make_gateway(fake).create_checkout(checkout())

    order = fake.orders[session.reference]
    assert (order.order_number, order.amount, order.currency) == ("pay_1", 125050, "643")
    assert session.redirect_url.endswith(f"mdOrder={session.reference}")


def test_completed_payment_verifies_as_succeeded_with_decimal_amount(fake):
    gateway = make_gateway(fake)
    session = gateway.create_checkout(checkout())
    assert gateway.verify(session.reference).status == Status.PENDING

    fake.complete(session.reference)
    state = gateway.verify(session.reference)

    assert state.status == Status.SUCCEEDED
    assert state.amount == Decimal("1250.50")
    assert state.currency == "RUB"
    assert state.error == ""


def test_declined_payment_verifies_as_failed_with_reason(fake):
    gateway = make_gateway(fake)
    session = gateway.create_checkout(checkout())
    fake.decline(session.reference, "Insufficient funds")

    state = gateway.verify(session.reference)

    assert state.status == Status.FAILED
    assert state.error == "Insufficient funds"


def test_partial_then_full_refund(fake):
    gateway = make_gateway(fake)
    session = gateway.create_checkout(checkout(amount="100.00"))
    fake.complete(session.reference)

    first = gateway.refund(refund_request(session.reference, "30.00", "refund:1"))
    assert (first.status, first.amount) == (Status.SUCCEEDED, Decimal("30.00"))
    assert gateway.verify(session.reference).status == Status.PARTIALLY_REFUNDED

    second = gateway.refund(refund_request(session.reference, "70.00", "refund:2"))
    assert second.refund_reference != first.refund_reference
    assert gateway.verify(session.reference).status == Status.REFUNDED
    assert fake.refunds == [(session.reference, 3000), (session.reference, 7000)]


def test_refund_beyond_captured_amount_is_refused(fake):
    gateway = make_gateway(fake)
    session = gateway.create_checkout(checkout(amount="100.00"))
    fake.complete(session.reference)

    with pytest.raises(GatewayError) as caught:
        gateway.refund(refund_request(session.reference, "100.01", "refund:1"))

    assert caught.value.transient is False
    assert caught.value.code == "7"
    assert fake.refunds == []


def test_same_payment_registered_twice_makes_one_order(fake):
    gateway = make_gateway(fake)
    gateway.create_checkout(checkout())

    with pytest.raises(GatewayError) as caught:
        gateway.create_checkout(checkout())

    assert (caught.value.code, caught.value.transient) == ("1", False)
    assert len(fake.orders) == 1


def test_wrong_credentials_are_a_permanent_error(fake):
    with pytest.raises(GatewayError) as caught:
        make_gateway(fake, password="wrong").create_checkout(checkout())

    assert (caught.value.code, caught.value.transient) == ("5", False)
    assert fake.orders == {}


def test_503_then_success_is_retried(fake):
    gateway = make_gateway(fake)
    session = gateway.create_checkout(checkout())
    fake.complete(session.reference)
    fake.fail_next(503)

    assert gateway.verify(session.reference).status == Status.SUCCEEDED


def test_refund_is_not_retried_after_a_503(fake):
    gateway = make_gateway(fake)
    session = gateway.create_checkout(checkout())
    fake.complete(session.reference)
    fake.fail_next(503)

    with pytest.raises(GatewayError) as caught:
        gateway.refund(refund_request(session.reference, "10.00", "refund:1"))

    assert caught.value.transient is True
    assert fake.refunds == []
    assert [r.path for r in fake.requests].count("/refund.do") == 1


def test_stalled_request_times_out_as_transient(fake):
    gateway = make_gateway(fake, retries=0)
    fake.stall_seconds = 1.5
    fake.stall_next(1)

    with pytest.raises(GatewayError) as caught:
        gateway.create_checkout(checkout())

    assert caught.value.transient is True


def test_signed_webhook_is_parsed(fake):
    gateway = make_gateway(fake)
    session = gateway.create_checkout(checkout())
    headers, body = fake.signed_webhook(session.reference, "deposited", "1", extra={"amount": "125050"})

    notice = gateway.parse_webhook(headers=headers, body=body)

    assert notice.event_id == f"{session.reference}:deposited:1"
    assert notice.reference == session.reference
    assert notice.status_hint == Status.SUCCEEDED
    assert notice.raw["orderNumber"] == "pay_1"


def test_lower_case_checksum_and_query_string_callback_are_accepted(fake):
    gateway = make_gateway(fake)
    session = gateway.create_checkout(checkout())
    _, body = fake.signed_webhook(session.reference, "refunded", "1")
    params = dict(parse_qsl(body.decode()))
    params["checksum"] = params["checksum"].lower()

    notice = gateway.parse_webhook(headers={}, body=urlencode(params).encode())

    assert notice.status_hint == Status.REFUNDED


def test_failed_deposit_webhook_hints_failure(fake):
    gateway = make_gateway(fake)
    session = gateway.create_checkout(checkout())
    headers, body = fake.signed_webhook(session.reference, "deposited", "0")

    notice = gateway.parse_webhook(headers=headers, body=body)

    assert notice.status_hint == Status.FAILED
    assert notice.event_id == f"{session.reference}:deposited:0"


def test_tampered_webhook_is_refused(fake):
    gateway = make_gateway(fake)
    session = gateway.create_checkout(checkout())
    headers, body = fake.signed_webhook(session.reference, "declinedByTimeout", "0")

    with pytest.raises(WebhookAuthError):
        gateway.parse_webhook(headers=headers, body=body.replace(b"declinedByTimeout", b"deposited"))


def test_webhook_signed_with_another_key_is_refused(fake):
    gateway = make_gateway(fake)
    session = gateway.create_checkout(checkout())
    headers, body = fake.signed_webhook(session.reference, key="someone-else")

    with pytest.raises(WebhookAuthError):
        gateway.parse_webhook(headers=headers, body=body)


def test_webhook_without_checksum_is_refused(fake):
    gateway = make_gateway(fake)
    session = gateway.create_checkout(checkout())
    _, body = fake.signed_webhook(session.reference)
    unsigned = urlencode([(k, v) for k, v in parse_qsl(body.decode()) if k != "checksum"]).encode()

    with pytest.raises(WebhookAuthError):
        gateway.parse_webhook(headers={}, body=unsigned)


def test_a_signed_callback_that_names_no_order_is_malformed_not_forged(fake):
    """Signed with the right key but without mdOrder: GatewayError (the endpoint's
    `malformed_webhook`), not WebhookAuthError (`bad_signature`)."""
    params = {"operation": "deposited", "status": "1"}
    body = urlencode({**params, "checksum": callback_checksum(params, fake.callback_token)}).encode()

    with pytest.raises(GatewayError, match="without mdOrder") as refused:
        make_gateway(fake).parse_webhook(headers={}, body=body)
    assert refused.value.transient is False


def test_webhook_is_refused_when_no_callback_token_is_configured(fake):
    session = make_gateway(fake).create_checkout(checkout())
    headers, body = fake.signed_webhook(session.reference, key="")

    with pytest.raises(WebhookAuthError):
        make_gateway(fake, callback_token="").parse_webhook(headers=headers, body=body)


def test_webhook_reply_is_plain_ok():
    notice = WebhookNotice(
        event_id="e", reference="r", status_hint=Status.SUCCEEDED, amount=None, currency=None, raw={}
    )

    reply = SberPayGateway({"username": "u", "password": "p"}).webhook_reply(notice)

    assert (reply.status, reply.body) == (200, b"OK")


@pytest.mark.parametrize(("env", "url"), [("test", TEST_URL), ("production", PRODUCTION_URL)])
def test_base_url_follows_payment_env(settings, env, url):
    settings.PAYMENT_ENV = env

    assert SberPayGateway({"username": "u", "password": "p"}).http.base_url == url
