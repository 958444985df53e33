"""YooKassaGateway's saved methods against the fake YooKassa API v3: save_payment_method on the
first checkout, autopayments with payment_method_id, and what a lost answer must not do
(charge twice)."""

import json
from decimal import Decimal

import pytest
import requests

from core.money import MoneyError
from payments.gateways.base import GatewayError, RefundRequest, SavedChargeRequest, SavedMethod, Status
from payments.gateways.yookassa import YooKassaGateway
from tests.payments.fakes.yookassa import FakeYooKassa
from tests.payments.test_yookassa import checkout, make_gateway


@pytest.fixture
def fake():
    with FakeYooKassa() as provider:
        yield provider


@pytest.fixture
def gateway(fake):
    return make_gateway(fake)


def saved_method(fake: FakeYooKassa, gateway: YooKassaGateway, customer_key: str = "cus-42") -> SavedMethod:
    """A first payment with save_method, paid: the method YooKassa now keeps, as verify() says."""
    reference = gateway.create_checkout(
        checkout(key=f"idem-first-{customer_key}", save_method=True, customer_key=customer_key)
    ).reference
    fake.complete(reference)
    method = gateway.verify(reference).saved_method
    assert method is not None
    return method


def charge(
    method: SavedMethod, amount: str = "299.00", key: str = "pay_r1:charge", **fields
) -> SavedChargeRequest:
    return SavedChargeRequest(
        **{
            "payment_id": "pay_r1",
            "amount": Decimal(amount),
            "currency": "RUB",
            "description": "Subscription, June",
            "customer_email": "ann@example.com",
            "method": method,
            "idempotency_key": key,
            "metadata": {"subscription": "sub_7"},
            **fields,
        }
    )


def test_gateway_says_it_saves_methods(gateway):
    assert gateway.saves_methods is True


# --- saving on the first checkout ---------------------------------------------------------


def test_first_checkout_with_save_method_asks_yookassa_to_keep_the_method(fake, gateway):
    session = gateway.create_checkout(checkout(save_method=True, customer_key="cus-42"))

    body = json.loads(fake.requests[-1].body)
    assert body["save_payment_method"] is True
    assert body["confirmation"]["type"] == "redirect"  # the customer is present for this one
    assert fake.payments[session.reference]["metadata"] == {
        "payment_id": "pay_9f3k",
        "customer_key": "cus-42",
    }
    assert session.reference in fake.save_requested


def test_verify_of_the_paid_first_payment_gives_the_saved_method(fake, gateway):
    reference = gateway.create_checkout(checkout(save_method=True, customer_key="cus-42")).reference
    assert gateway.verify(reference).saved_method is None  # not paid yet: nothing saved

    fake.complete(
        reference,
        card={
            "first6": "427600",
            "last4": "4081",
            "expiry_month": "12",
            "expiry_year": "2030",
            "card_type": "Visa",
        },
    )
    state = gateway.verify(reference)

    assert state.status == Status.SUCCEEDED
    method = state.saved_method
    assert (method.token, method.customer_reference) == (reference, "cus-42")  # the payment's id
    assert method.label == "visa •••• 4081, expires 12/2030"
    assert method.raw["saved"] is True and method.raw["card"]["last4"] == "4081"
    assert "427600" not in method.label  # the label shows last4 only


def test_checkout_without_save_method_says_false_and_leaves_nothing_reusable(fake, gateway):
    reference = gateway.create_checkout(checkout(customer_key="cus-42")).reference

    body = json.loads(fake.requests[-1].body)
    assert body["save_payment_method"] is False  # no "save the card?" offer on a one-off payment
    assert "customer_key" not in body["metadata"]

    fake.complete(reference)
    state = gateway.verify(reference)
    assert state.status == Status.SUCCEEDED
    assert state.saved_method is None
    assert state.raw["payment_method"]["saved"] is False


def test_declined_first_payment_saves_nothing(fake, gateway):
    reference = gateway.create_checkout(checkout(save_method=True, customer_key="cus-42")).reference
    fake.decline(reference)

    state = gateway.verify(reference)

    assert (state.status, state.saved_method) == (Status.FAILED, None)


def test_the_notification_carries_no_saved_method(fake, gateway):
    """YooKassa reports the method through its API (verify): an unsigned notice carries nothing kept."""
    method = saved_method(fake, gateway)

    notice = gateway.parse_webhook(headers={}, body=fake.notification(method.token)[1])

    assert notice.status_hint == Status.SUCCEEDED
    assert notice.saved_method is None


# --- charging it without the customer -----------------------------------------------------


def test_charge_saved_succeeds_and_verify_of_its_reference_agrees(fake, gateway):
    method = saved_method(fake, gateway)

    state = gateway.charge_saved(charge(method, "299.00"))

    assert (state.status, state.amount, state.currency, state.error) == (
        Status.SUCCEEDED,
        Decimal("299.00"),
        "RUB",
        "",
    )
    assert fake.charges == [state.reference] and state.reference != method.token
    body = json.loads(fake.requests[-1].body)
    assert body["payment_method_id"] == method.token
    assert body["capture"] is True and "confirmation" not in body
    assert body["amount"] == {"value": "299.00", "currency": "RUB"}
    assert body["metadata"] == {"customer_key": "cus-42", "payment_id": "pay_r1", "subscription": "sub_7"}
    assert fake.requests[-1].headers["idempotence-key"] == "pay_r1:charge"

    later = gateway.verify(state.reference)
    assert (later.reference, later.status, later.amount) == (
        state.reference,
        Status.SUCCEEDED,
        Decimal("299.00"),
    )
    assert later.saved_method.token == method.token  # the same method: kept once


def test_a_charge_can_be_refunded_by_its_reference(fake, gateway):
    state = gateway.charge_saved(charge(saved_method(fake, gateway), "299.00"))

    result = gateway.refund(
        RefundRequest(
            reference=state.reference,
            amount=Decimal("299.00"),
            currency="RUB",
            reason="cancelled",
            idempotency_key="r1",
        )
    )

    assert result.status == Status.SUCCEEDED
    assert gateway.verify(state.reference).status == Status.REFUNDED


@pytest.mark.parametrize("reason", ["insufficient_funds", "card_expired", "permission_revoked"])
def test_a_declined_charge_is_failed_with_the_reason(fake, gateway, reason):
    method = saved_method(fake, gateway)
    fake.decline_next_charge(reason)

    state = gateway.charge_saved(charge(method))

    assert (state.status, state.error) == (Status.FAILED, reason)
    assert state.saved_method is None
    assert gateway.verify(state.reference).status == Status.FAILED
    assert len(fake.charges) == 1


def test_a_card_past_its_expiry_is_declined_card_expired(fake, gateway):
    method = saved_method(fake, gateway)
    fake.methods[method.token]["card"].update(expiry_month="01", expiry_year="2020")

    state = gateway.charge_saved(charge(method))

    assert (state.status, state.error) == (Status.FAILED, "card_expired")


def test_a_pending_charge_is_decided_later_and_verify_tells(fake, gateway):
    method = saved_method(fake, gateway)
    fake.hold_next_charge()

    state = gateway.charge_saved(charge(method))
    assert state.status == Status.PENDING

    fake.complete(state.reference)
    assert gateway.verify(state.reference).status == Status.SUCCEEDED
    assert fake.charges == [state.reference]


def test_amount_with_more_digits_than_the_currency_is_refused_before_any_request(fake, gateway):
    method = saved_method(fake, gateway)
    sent = len(fake.requests)

    with pytest.raises(MoneyError):
        gateway.charge_saved(charge(method, "299.001"))
    assert len(fake.requests) == sent


# --- a lost answer, then the same request again: one charge -------------------------------


def test_a_500_after_the_charge_then_the_callers_retry_with_the_same_key_charges_once(fake):
    gateway = make_gateway(fake, retries=0)
    method = saved_method(fake, gateway)
    fake.lose_next_answer(500)

    with pytest.raises(GatewayError) as caught:
        gateway.charge_saved(charge(method))
    assert (caught.value.transient, caught.value.status) == (True, 500)
    assert len(fake.charges) == 1  # the money was taken: only the answer was lost

    state = gateway.charge_saved(charge(method))  # the caller's retry: same request, same key

    assert state.status == Status.SUCCEEDED
    assert fake.charges == [state.reference]


def test_a_stalled_answer_times_out_then_the_callers_retry_charges_once(fake):
    gateway = make_gateway(fake, retries=0)
    method = saved_method(fake, gateway)
    fake.stall_seconds = 1.5
    fake.lose_next_answer()

    with pytest.raises(GatewayError) as caught:
        gateway.charge_saved(charge(method))
    assert caught.value.transient is True
    assert "Timeout" in str(caught.value)
    assert len(fake.charges) == 1  # made before the answer stalled

    state = gateway.charge_saved(charge(method))

    assert state.status == Status.SUCCEEDED
    assert fake.charges == [state.reference]


def test_the_client_retries_a_stalled_or_5xx_charge_itself_and_charges_once(fake, gateway):
    method = saved_method(fake, gateway)
    fake.stall_seconds = 1.5
    fake.fail_next(503)  # the first try never reaches the API
    fake.lose_next_answer()  # the second is made, its answer too late; the third gets that answer

    state = gateway.charge_saved(charge(method))

    assert state.status == Status.SUCCEEDED
    assert fake.charges == [state.reference]
    charges_sent = [r for r in fake.requests if b"payment_method_id" in r.body]
    assert len(charges_sent) == 3
    assert {r.headers["idempotence-key"] for r in charges_sent} == {"pay_r1:charge"}
    assert len({r.body for r in charges_sent}) == 1  # byte for byte the same request


def test_the_retry_may_rebuild_the_metadata_in_another_order(fake):
    """A request rebuilt from the database (jsonb reorders keys) is still the same request."""
    gateway = make_gateway(fake, retries=0)
    method = saved_method(fake, gateway)
    fake.lose_next_answer(500)
    with pytest.raises(GatewayError):
        gateway.charge_saved(charge(method, metadata={"subscription": "sub_7", "period": "2025-06"}))

    state = gateway.charge_saved(charge(method, metadata={"period": "2025-06", "subscription": "sub_7"}))

    assert fake.charges == [state.reference]


def test_the_same_key_with_another_amount_is_refused_and_charges_nothing_more(fake, gateway):
    method = saved_method(fake, gateway)
    first = gateway.charge_saved(charge(method, "299.00"))

    with pytest.raises(GatewayError) as caught:
        gateway.charge_saved(charge(method, "300.00"))

    assert (caught.value.transient, caught.value.code) == (False, "invalid_request")
    assert fake.charges == [first.reference]


def test_a_new_key_is_a_new_charge(fake, gateway):
    method = saved_method(fake, gateway)

    first = gateway.charge_saved(charge(method, key="pay_r1:charge"))
    second = gateway.charge_saved(charge(method, key="pay_r2:charge", payment_id="pay_r2"))

    assert first.reference != second.reference
    assert fake.charges == [first.reference, second.reference]


# --- tokens YooKassa refuses --------------------------------------------------------------


def test_an_unknown_token_is_refused_permanently_and_charges_nothing(fake, gateway):
    method = SavedMethod(token="2419a771-000f-5000-9000-1edaf29243f2", customer_reference="cus-42")

    with pytest.raises(GatewayError) as caught:
        gateway.charge_saved(charge(method))

    assert (caught.value.transient, caught.value.code, caught.value.status) == (False, "invalid_request", 400)
    assert "payment_method_id" in str(caught.value)
    assert fake.charges == []


def test_the_method_of_a_payment_made_without_saving_is_refused(fake, gateway):
    reference = gateway.create_checkout(checkout()).reference
    fake.complete(reference)  # paid by card, but not saved: payment_method.saved is false

    with pytest.raises(GatewayError) as caught:
        gateway.charge_saved(charge(SavedMethod(token=reference)))

    assert (caught.value.transient, caught.value.code) == (False, "invalid_request")
    assert fake.charges == []


def test_a_token_of_another_shop_is_unknown_here(fake):
    """Methods belong to a shop: another shop's token is refused like an unknown one."""
    with FakeYooKassa(shop_id="665544", secret_key="test_other") as other:
        token = saved_method(other, make_gateway(other)).token

    with pytest.raises(GatewayError) as caught:
        make_gateway(fake).charge_saved(charge(SavedMethod(token=token, customer_reference="cus-42")))

    assert (caught.value.transient, caught.value.code) == (False, "invalid_request")
    assert fake.charges == []


def test_an_empty_token_is_refused_before_any_request(fake, gateway):
    with pytest.raises(GatewayError) as caught:
        gateway.charge_saved(charge(SavedMethod(token="")))

    assert caught.value.transient is False
    assert fake.requests == []


def test_wrong_credentials_are_a_permanent_refusal(fake, gateway):
    method = saved_method(fake, gateway)

    with pytest.raises(GatewayError) as caught:
        make_gateway(fake, secret_key="test_wrong").charge_saved(charge(method))

    assert (caught.value.transient, caught.value.code, caught.value.status) == (
        False,
        "invalid_credentials",
        401,
    )
    assert fake.charges == []


# --- forgetting it ------------------------------------------------------------------------


def test_method_forget_sends_nothing_since_yookassa_has_no_call_for_it(fake, gateway):
    method = saved_method(fake, gateway)
    sent = len(fake.requests)

    assert gateway.method_forget(method) is None

    assert len(fake.requests) == sent
    # YooKassa still keeps it: forgetting is ours to do, by never charging it again.
    assert fake.methods[method.token]["saved"] is True


# --- what the fake refuses, as YooKassa does ----------------------------------------------


def test_fake_refuses_an_autopayment_in_minor_units_or_without_an_idempotence_key(fake, gateway):
    method = saved_method(fake, gateway)
    auth = (fake.shop_id, fake.secret_key)
    body = {
        "amount": {"value": "299.00", "currency": "RUB"},
        "capture": True,
        "payment_method_id": method.token,
    }
    url = f"{fake.base_url}/payments"

    minor = body | {"amount": {"value": 29900, "currency": "RUB"}}
    answer = requests.post(url, auth=auth, json=minor, headers={"Idempotence-Key": "k1"}, timeout=5)
    assert (answer.status_code, answer.json()["parameter"]) == (400, "amount.value")
    answer = requests.post(url, auth=auth, json=body, timeout=5)
    assert (answer.status_code, answer.json()["parameter"]) == (400, "Idempotence-Key")
    answer = requests.post(url, json=body, headers={"Idempotence-Key": "k2"}, timeout=5)
    assert answer.status_code == 401
    assert fake.charges == []
