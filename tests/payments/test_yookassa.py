"""YooKassaGateway against a fake YooKassa API v3 on localhost."""

import json
from decimal import Decimal

import pytest
import requests

from core.money import MoneyError
from payments.gateways.base import (
    CheckoutRequest,
    GatewayError,
    RefundRequest,
    Status,
    WebhookAuthError,
)
from payments.gateways.yookassa import BASE_URL, YooKassaGateway
from tests.payments.fakes.yookassa import FakeYooKassa


@pytest.fixture
def fake():
    with FakeYooKassa() as provider:
        yield provider


def make_gateway(fake: FakeYooKassa, **config) -> YooKassaGateway:
    return YooKassaGateway(
        {
            "shop_id": fake.shop_id,
            "secret_key": fake.secret_key,
            "base_url": fake.base_url,
            "timeout": (0.5, 0.5),
            **config,
        }
    )


@pytest.fixture
def gateway(fake):
    return make_gateway(fake)


def checkout(amount: str = "75.50", key: str = "idem-checkout-1", **fields) -> CheckoutRequest:
    return CheckoutRequest(
        **{
            "payment_id": "pay_9f3k",
            "amount": Decimal(amount),
            "currency": "RUB",
            "description": "Order 1042",
            "customer_email": "ann@example.com",
            "return_url": "https://shop.example/return",
            "idempotency_key": key,
            **fields,
        }
    )


def refund(reference: str, amount: str, key: str) -> RefundRequest:
    return RefundRequest(
        reference=reference, amount=Decimal(amount), currency="RUB", reason="damaged", idempotency_key=key
    )


def paid(fake: FakeYooKassa, gateway: YooKassaGateway, amount: str = "75.50") -> str:
    reference = gateway.create_checkout(checkout(amount)).reference
    fake.complete(reference)
    return reference


# --- checkout and verify ------------------------------------------------------------------


def test_checkout_creates_a_one_stage_payment_with_a_decimal_string_amount_and_our_id(fake, gateway):
    session = gateway.create_checkout(checkout("75", description="x" * 200, metadata={"order": "1042"}))

    payment = fake.payments[session.reference]
    assert payment["amount"] == {"value": "75.00", "currency": "RUB"}
    assert payment["metadata"] == {"order": "1042", "payment_id": "pay_9f3k"}
    assert payment["confirmation"]["return_url"] == "https://shop.example/return"
    assert len(payment["description"]) == 128  # cut to YooKassa's limit instead of refused
    assert session.redirect_url == payment["confirmation"]["confirmation_url"]
    assert session.reference not in fake.two_stage  # capture: true was sent


def test_completed_payment_verifies_succeeded_with_the_decimal_amount(fake, gateway):
    reference = gateway.create_checkout(checkout("75.50")).reference
    assert gateway.verify(reference).status == Status.PENDING

    fake.complete(reference)
    state = gateway.verify(reference)

    assert (state.reference, state.status, state.currency, state.error) == (
        reference,
        Status.SUCCEEDED,
        "RUB",
        "",
    )
    assert state.amount == Decimal("75.50") and isinstance(state.amount, Decimal)


def test_declined_payment_verifies_failed_with_the_reason(fake, gateway):
    reference = gateway.create_checkout(checkout()).reference
    fake.decline(reference, reason="insufficient_funds")

    state = gateway.verify(reference)

    assert state.status == Status.FAILED
    assert state.error == "insufficient_funds"


def test_payment_the_customer_never_confirmed_verifies_cancelled(fake, gateway):
    reference = gateway.create_checkout(checkout()).reference
    fake.decline(reference, reason="expired_on_confirmation", party="yoo_money")

    state = gateway.verify(reference)

    assert (state.status, state.error) == (Status.CANCELLED, "expired_on_confirmation")


def test_amount_with_more_digits_than_the_currency_is_refused_before_any_request(fake, gateway):
    with pytest.raises(MoneyError):
        gateway.create_checkout(checkout("75.005"))
    assert fake.requests == []


def test_unknown_payment_is_a_permanent_error_with_the_provider_code(gateway):
    with pytest.raises(GatewayError) as caught:
        gateway.verify("2419a771-000f-5000-9000-1edaf29243f2")

    assert (caught.value.transient, caught.value.code, caught.value.status) == (False, "not_found", 404)


def test_wrong_credentials_are_a_permanent_error(fake):
    gateway = make_gateway(fake, secret_key="test_wrong")

    with pytest.raises(GatewayError) as caught:
        gateway.create_checkout(checkout())

    assert (caught.value.transient, caught.value.code, caught.value.status) == (
        False,
        "invalid_credentials",
        401,
    )
    assert "incorrect" in str(caught.value)
    assert fake.payments == {}


def test_default_base_url_is_the_one_api_url_test_shops_use_too():
    assert YooKassaGateway({"shop_id": "1", "secret_key": "test_x"}).http.base_url == BASE_URL


# --- refunds ------------------------------------------------------------------------------


def test_partial_then_full_refund(fake, gateway):
    reference = paid(fake, gateway, "75.50")

    first = gateway.refund(refund(reference, "25.00", "idem-refund-1"))
    assert (first.status, first.amount, first.currency) == (Status.SUCCEEDED, Decimal("25.00"), "RUB")
    assert first.refund_reference in fake.refunds
    assert fake.refunds[first.refund_reference]["amount"] == {"value": "25.00", "currency": "RUB"}
    assert gateway.verify(reference).status == Status.PARTIALLY_REFUNDED

    second = gateway.refund(refund(reference, "50.50", "idem-refund-2"))
    assert (second.status, second.amount) == (Status.SUCCEEDED, Decimal("50.50"))
    assert second.refund_reference != first.refund_reference
    assert gateway.verify(reference).status == Status.REFUNDED


def test_refund_beyond_the_captured_amount_is_refused_permanently(fake, gateway):
    reference = paid(fake, gateway, "75.50")

    with pytest.raises(GatewayError) as caught:
        gateway.refund(refund(reference, "75.51", "idem-refund-1"))

    assert (caught.value.transient, caught.value.code, caught.value.status) == (False, "invalid_request", 400)
    assert fake.refunds == {}
    assert gateway.verify(reference).status == Status.SUCCEEDED


def test_refund_of_an_unpaid_payment_is_refused_permanently(fake, gateway):
    reference = gateway.create_checkout(checkout()).reference

    with pytest.raises(GatewayError) as caught:
        gateway.refund(refund(reference, "10.00", "idem-refund-1"))

    assert caught.value.transient is False
    assert fake.refunds == {}


# --- idempotency and retries --------------------------------------------------------------


def test_same_idempotency_key_creates_one_payment_and_one_refund(fake, gateway):
    first = gateway.create_checkout(checkout(key="idem-1"))
    again = gateway.create_checkout(checkout(key="idem-1"))

    assert again.reference == first.reference
    assert again.redirect_url == first.redirect_url
    assert len(fake.payments) == 1
    assert all(r.headers["idempotence-key"] == "idem-1" for r in fake.requests)

    fake.complete(first.reference)
    refunds = {gateway.refund(refund(first.reference, "10.00", "idem-r")).refund_reference for _ in range(2)}
    assert len(refunds) == len(fake.refunds) == 1


def test_new_idempotency_key_creates_a_new_payment(fake, gateway):
    gateway.create_checkout(checkout(key="idem-1"))
    gateway.create_checkout(checkout(key="idem-2"))

    assert len(fake.payments) == 2


def test_a_503_is_retried_and_the_retry_creates_one_payment(fake, gateway):
    fake.fail_next(503)

    session = gateway.create_checkout(checkout())

    assert list(fake.payments) == [session.reference]
    assert len(fake.requests) == 2


def test_a_503_on_verify_is_retried(fake, gateway):
    reference = paid(fake, gateway)
    fake.fail_next(503)

    assert gateway.verify(reference).status == Status.SUCCEEDED


def test_persistent_5xx_is_a_transient_error(fake):
    gateway = make_gateway(fake, retries=1)
    fake.fail_next(500, 500)

    with pytest.raises(GatewayError) as caught:
        gateway.create_checkout(checkout())

    assert (caught.value.transient, caught.value.status) == (True, 500)
    assert fake.payments == {}


def test_a_stalled_request_times_out_into_a_transient_error(fake):
    gateway = make_gateway(fake, retries=0)
    fake.stall_seconds = 1.5
    fake.stall_next(1)

    with pytest.raises(GatewayError) as caught:
        gateway.verify("2419a771-000f-5000-9000-1edaf29243f2")

    assert caught.value.transient is True
    assert "Timeout" in str(caught.value)


# --- what the fake refuses, as YooKassa does ----------------------------------------------


def test_fake_refuses_minor_units_numbers_and_a_missing_idempotence_key(fake):
    auth = (fake.shop_id, fake.secret_key)
    body = {"amount": {"value": "75.00", "currency": "RUB"}, "capture": True}
    body["confirmation"] = {"type": "redirect", "return_url": "https://shop.example/return"}
    url = f"{fake.base_url}/payments"

    for number, value in enumerate((7500, 75.0, "7500", "75.0")):
        answer = requests.post(
            url,
            auth=auth,
            json=body | {"amount": {"value": value, "currency": "RUB"}},
            headers={"Idempotence-Key": f"idem-{number}"},
            timeout=5,
        )
        assert (answer.status_code, answer.json()["parameter"]) == (400, "amount.value")
    assert requests.post(url, auth=auth, json=body, timeout=5).json()["parameter"] == "Idempotence-Key"
    assert fake.payments == {}


# --- notifications ------------------------------------------------------------------------


def test_payment_notification_is_parsed_into_a_notice(fake, gateway):
    reference = paid(fake, gateway, "75.50")
    headers, body = fake.notification(reference)

    notice = gateway.parse_webhook(headers=headers, body=body)

    assert notice.event_id == f"payment.succeeded:{reference}:succeeded"
    assert (notice.reference, notice.status_hint) == (reference, Status.SUCCEEDED)
    assert (notice.amount, notice.currency) == (Decimal("75.50"), "RUB")
    assert notice.raw["object"]["metadata"]["payment_id"] == "pay_9f3k"


def test_declined_payment_notification_hints_failed(fake, gateway):
    reference = gateway.create_checkout(checkout()).reference
    fake.decline(reference)

    headers, body = fake.notification(reference)

    notice = gateway.parse_webhook(headers=headers, body=body)

    assert notice.event_id == f"payment.canceled:{reference}:canceled"
    assert notice.status_hint == Status.FAILED


def test_refund_notification_points_at_the_payment(fake, gateway):
    reference = paid(fake, gateway)
    result = gateway.refund(refund(reference, "10.00", "idem-r"))
    headers, body = fake.notification(result.refund_reference)

    notice = gateway.parse_webhook(headers=headers, body=body)

    assert notice.event_id == f"refund.succeeded:{result.refund_reference}:succeeded"
    assert (notice.reference, notice.status_hint, notice.amount) == (reference, None, None)


def test_a_redelivered_event_keeps_its_event_id_and_another_event_gets_its_own(fake, gateway):
    reference = paid(fake, gateway)
    _, body = fake.notification(reference)
    refund_id = gateway.refund(refund(reference, "75.50", "idem-r")).refund_reference

    first = gateway.parse_webhook(headers={}, body=body)
    redelivered = gateway.parse_webhook(headers={}, body=body)
    refunded = gateway.parse_webhook(headers={}, body=fake.notification(refund_id)[1])

    assert first.event_id == redelivered.event_id
    assert refunded.event_id != first.event_id
    assert refunded.reference == first.reference == reference


def _notification(reference: str, **changes) -> dict:
    payment = {"id": reference, "status": "succeeded", "amount": {"value": "75.50", "currency": "RUB"}}
    return {"type": "notification", "event": "payment.succeeded", "object": payment} | changes


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"\xff\xfe",
        b"[]",
        b'"notification"',
        json.dumps(_notification("p1", type="error")).encode(),
        json.dumps({"type": "notification", "event": "payment.succeeded"}).encode(),
        json.dumps(_notification("p1", object="p1")).encode(),
        json.dumps(_notification("p1", event="payout.succeeded")).encode(),
        json.dumps(_notification("p1", event=None)).encode(),
        json.dumps(_notification("")).encode(),
        json.dumps(_notification("p1", object={"id": "p1", "status": "succeeded"})).encode(),
        json.dumps(
            _notification(
                "p1", object={"id": "p1", "status": "succeeded", "amount": {"value": 75.5, "currency": "RUB"}}
            )
        ).encode(),
        json.dumps(
            _notification(
                "p1", object={"id": "p1", "status": "paid", "amount": {"value": "1.00", "currency": "RUB"}}
            )
        ).encode(),
        json.dumps(
            {
                "type": "notification",
                "event": "refund.succeeded",
                "object": {"id": "r1", "status": "succeeded"},
            }
        ).encode(),
    ],
)
def test_a_body_that_is_not_a_well_formed_notification_is_refused(body):
    gateway = YooKassaGateway({"shop_id": "506751", "secret_key": "test_x"})  # parsing needs no API

    with pytest.raises(WebhookAuthError):
        gateway.parse_webhook(headers={"Content-Type": "application/json"}, body=body)


def test_a_forged_notification_parses_but_verify_tells_the_truth(fake, gateway):
    """YooKassa signs nothing: a well-formed forgery parses, and only verify() is to be trusted."""
    reference = gateway.create_checkout(checkout()).reference
    forged = json.dumps(_notification(reference)).encode()

    notice = gateway.parse_webhook(headers={}, body=forged)

    assert notice.status_hint == Status.SUCCEEDED
    assert gateway.verify(notice.reference).status == Status.PENDING


def test_webhook_reply_is_a_plain_200(fake, gateway):
    reference = paid(fake, gateway)
    notice = gateway.parse_webhook(headers={}, body=fake.notification(reference)[1])

    reply = gateway.webhook_reply(notice)

    assert (reply.status, reply.body) == (200, b"")
