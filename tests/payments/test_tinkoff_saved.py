"""TinkoffGateway's saved cards (Recurrent parent payment, Charge, RemoveCard) against the fake API."""

import json
from dataclasses import replace
from decimal import Decimal

import pytest

from payments.gateways.base import (
    CheckoutRequest,
    GatewayError,
    RefundRequest,
    SavedChargeRequest,
    SavedMethod,
    Status,
    WebhookAuthError,
)
from payments.gateways.tinkoff import TinkoffGateway, card_label, renewal_order_id
from tests.payments.fakes.tinkoff import FakePayment, FakeTinkoff, documented_token


@pytest.fixture
def fake():
    with FakeTinkoff() as provider:
        yield provider


@pytest.fixture
def gateway(fake):
    return TinkoffGateway(fake.config())


def checkout(
    payment_id: str = "pay_first", *, save: bool = True, customer: str = "cus-42"
) -> CheckoutRequest:
    return CheckoutRequest(
        payment_id=payment_id,
        amount=Decimal("990.00"),
        currency="RUB",
        description="Monthly plan",
        customer_email="buyer@example.com",
        return_url="https://shop.example/return",
        idempotency_key=payment_id,
        metadata={"subscription": "sub-7"},
        save_method=save,
        customer_key=customer if save else "",
    )


def saved_card(
    gateway: TinkoffGateway, fake: FakeTinkoff, customer: str = "cus-42", pan: str = "430000******0777"
) -> SavedMethod:
    """The first payment, paid with the card kept: the method its notification reports."""
    session = gateway.create_checkout(checkout(f"pay_first_{customer}", customer=customer))
    fake.complete(session.reference, pan=pan)
    notice = gateway.parse_webhook(headers={}, body=fake.signed_webhook(session.reference)[1])
    assert notice.saved_method is not None
    return notice.saved_method


def renewal(
    method: SavedMethod, key: str = "renew-sub-7-2025-07", amount: str = "990.00"
) -> SavedChargeRequest:
    return SavedChargeRequest(
        payment_id="pay_renewal",
        amount=Decimal(amount),
        currency="RUB",
        description="Monthly plan, July",
        customer_email="buyer@example.com",
        method=method,
        idempotency_key=key,
        metadata={"subscription": "sub-7"},
    )


def calls(fake: FakeTinkoff, method: str) -> list[dict]:
    return [json.loads(r.body) for r in fake.requests if r.path == f"/v2/{method}"]


def order_payments(fake: FakeTinkoff, key: str) -> list[str]:
    return [p.status for p in fake.payments.values() if p.order_id == renewal_order_id(key)]


# --- the first payment keeps the card ------------------------------------------------------
def test_checkout_with_save_method_is_a_recurrent_parent_payment(gateway, fake):
    session = gateway.create_checkout(checkout())

    [init] = calls(fake, "Init")
    assert (init["Recurrent"], init["CustomerKey"]) == ("Y", "cus-42")
    assert init["DATA"] == {
        "Email": "buyer@example.com",
        "subscription": "sub-7",
        "OperationInitiatorType": "1",  # customer-initiated, card kept
    }
    payment = fake.payments[session.reference]
    assert (payment.recurrent, payment.customer_key) == (True, "cus-42")


def test_paid_parent_payment_notification_gives_the_saved_card(gateway, fake):
    session = gateway.create_checkout(checkout())
    fake.complete(session.reference, pan="430000******4081", exp_date="1230")

    notice = gateway.parse_webhook(headers={}, body=fake.signed_webhook(session.reference)[1])

    method = notice.saved_method
    card = fake.cards[fake.payments[session.reference].card_id]
    assert method == SavedMethod(
        token=card.rebill_id,
        customer_reference="cus-42",
        label="visa •••• 4081, expires 12/2030",
        raw={
            "RebillId": card.rebill_id,
            "CardId": card.card_id,
            "CustomerKey": "cus-42",
            "ExpDate": "1230",
            "PaymentId": session.reference,
        },
    )
    assert "430000" not in json.dumps(method.raw)  # no card number, not even masked
    # GetState reports no RebillId: verify() confirms the payment, the notification gave the card
    state = gateway.verify(session.reference)
    assert (state.status, state.saved_method) == (Status.SUCCEEDED, None)


def test_checkout_without_save_method_keeps_nothing(gateway, fake):
    session = gateway.create_checkout(checkout(save=False))
    fake.complete(session.reference)

    notice = gateway.parse_webhook(headers={}, body=fake.signed_webhook(session.reference)[1])

    [init] = calls(fake, "Init")
    assert "Recurrent" not in init and "CustomerKey" not in init
    assert "OperationInitiatorType" not in init["DATA"]
    assert notice.saved_method is None
    assert fake.cards == {}


def test_save_method_without_a_customer_key_is_refused_before_any_call(gateway, fake):
    with pytest.raises(GatewayError) as caught:
        gateway.create_checkout(replace(checkout(), customer_key=""))

    assert (caught.value.transient, caught.value.code) == (False, "customer")
    assert fake.requests == []


def test_declined_parent_payment_saves_nothing(gateway, fake):
    session = gateway.create_checkout(checkout())
    fake.decline(session.reference, "Недостаточно средств на карте.")
    headers, body = fake.signed_webhook(session.reference, RebillId=3207469999)  # even if one came

    notice = gateway.parse_webhook(headers=headers, body=body)

    assert notice.status_hint is Status.FAILED
    assert notice.saved_method is None


def test_rebill_id_is_only_taken_where_it_is_signed(gateway, fake):
    session = gateway.create_checkout(checkout(save=False))
    fake.complete(session.reference)
    notice = json.loads(fake.signed_webhook(session.reference)[1])

    # Nested objects take no part in the Token: added after signing, the notice still verifies...
    nested = gateway.parse_webhook(headers={}, body=json.dumps(notice | {"RebillId": {"id": 1}}).encode())
    assert nested.saved_method is None  # ...but nothing is read from them
    # ...while a root RebillId added after signing breaks the Token
    with pytest.raises(WebhookAuthError):
        gateway.parse_webhook(headers={}, body=json.dumps(notice | {"RebillId": 1}).encode())


@pytest.mark.parametrize(
    ("pan", "exp_date", "label"),
    [
        ("430000******0777", "1230", "visa •••• 0777, expires 12/2030"),
        ("518223******0036", "0229", "mastercard •••• 0036, expires 02/2029"),
        ("222100******1234", "1127", "mastercard •••• 1234, expires 11/2027"),
        ("220070******5555", "0628", "mir •••• 5555, expires 06/2028"),
        ("940000******9999", "1330", "card •••• 9999"),  # month 13: no expiry shown
        ("+7 (9**) ***-**-12", "", ""),  # SBP: a phone, not a card
    ],
)
def test_card_label_shows_brand_last_four_and_expiry(pan, exp_date, label):
    assert card_label(pan, exp_date) == label


# --- renewals -------------------------------------------------------------------------------
def test_charge_saved_succeeds_and_verify_agrees(gateway, fake):
    method = saved_card(gateway, fake)

    state = gateway.charge_saved(renewal(method))

    assert (state.status, state.amount, state.currency, state.error) == (
        Status.SUCCEEDED,
        Decimal("990.00"),
        "RUB",
        "",
    )
    [charge] = fake.charges
    assert (charge.payment_id, charge.rebill_id, charge.amount) == (state.reference, method.token, 99000)
    renewal_init = calls(fake, "Init")[-1]
    assert renewal_init["OrderId"] == "renew-sub-7-2025-07"
    assert "Recurrent" not in renewal_init and "CustomerKey" not in renewal_init
    assert renewal_init["DATA"]["OperationInitiatorType"] == "R"  # merchant-initiated, recurring
    later = gateway.verify(state.reference)
    assert (later.status, later.amount) == (Status.SUCCEEDED, Decimal("990.00"))
    # and the renewal is a payment like any other: it can be refunded
    gateway.refund(RefundRequest(state.reference, Decimal("990.00"), "RUB", "", "refund-renewal"))
    assert gateway.verify(state.reference).status is Status.REFUNDED


def test_declined_charge_is_failed_with_the_reason_and_never_charged_again(gateway, fake):
    method = saved_card(gateway, fake)
    fake.decline_next_charge("Недостаточно средств на карте.", code="1051")

    state = gateway.charge_saved(renewal(method))
    again = gateway.charge_saved(renewal(method))  # the same attempt, retried

    assert (state.status, state.error) == (Status.FAILED, "Недостаточно средств на карте.")
    assert (again.status, again.reference, again.error) == (Status.FAILED, state.reference, state.error)
    assert gateway.verify(state.reference).status is Status.FAILED
    assert [c.status for c in fake.charges] == ["REJECTED"]
    assert len(calls(fake, "Charge")) == 1


@pytest.mark.parametrize(
    ("call", "failure", "handled"),
    [
        ("Charge", 503, False),  # refused by a proxy: never charged, the retry charges
        ("Charge", "stall", False),
        ("Charge", 502, True),  # charged, the answer lost: the retry must not charge again
        ("Charge", "stall", True),
        ("Init", "stall", True),  # the order's payment exists: the retry charges that one
        ("Init", 503, False),
        ("CheckOrder", 504, False),
        ("GetCardList", "stall", False),
    ],
)
def test_a_transient_failure_then_a_retry_with_the_same_key_charges_once(fake, call, failure, handled):
    gateway = TinkoffGateway(fake.config(timeout=(0.5, 0.5), retries=0))
    fake.stall_seconds = 1.5
    method = saved_card(gateway, fake)
    fake.fail_next_call(call, failure, handled=handled)

    with pytest.raises(GatewayError) as caught:
        gateway.charge_saved(renewal(method))
    assert caught.value.transient is True
    state = gateway.charge_saved(renewal(method))

    assert (state.status, state.amount) == (Status.SUCCEEDED, Decimal("990.00"))
    assert [c.status for c in fake.charges] == ["CONFIRMED"]
    assert order_payments(fake, "renew-sub-7-2025-07") == ["CONFIRMED"]
    assert fake.charges[0].payment_id == state.reference
    if call == "Charge" and handled:  # the retry found the charge and sent no second Charge
        assert len(calls(fake, "Charge")) == 1


def test_an_init_retried_after_its_answer_was_lost_reuses_the_orders_payment(fake):
    gateway = TinkoffGateway(fake.config(retries=1))
    method = saved_card(gateway, fake)
    fake.fail_next_call("Init", 503, handled=True)  # created; the retry is told "repeated OrderId"

    state = gateway.charge_saved(renewal(method))

    assert state.status is Status.SUCCEEDED
    inits = [i for i in calls(fake, "Init") if i["OrderId"] == "renew-sub-7-2025-07"]
    assert len(inits) == 2  # the lost one, and its retry refused as a repeated OrderId
    assert order_payments(fake, "renew-sub-7-2025-07") == ["CONFIRMED"]
    assert len(fake.charges) == 1


def test_a_charge_succeeded_once_is_answered_again_for_the_same_key(gateway, fake):
    method = saved_card(gateway, fake)
    key = "renewal:" + "sub-7:" * 10 + "2025-07"  # longer than OrderId's 36 characters

    first = gateway.charge_saved(renewal(method, key=key))
    second = gateway.charge_saved(renewal(method, key=key))

    assert (second.status, second.reference) == (Status.SUCCEEDED, first.reference)
    assert len(fake.charges) == 1 and len(calls(fake, "Charge")) == 1
    assert len(renewal_order_id(key)) <= 36
    assert order_payments(fake, key) == ["CONFIRMED"]


def test_an_order_listing_a_charged_payment_beside_a_new_one_is_not_charged_again(gateway, fake):
    # CheckOrder can list several payments of one order (its docs: OrderId "is not a unique
    # identifier"): a charged one wins over a NEW one that a repeated Init may have left
    method = saved_card(gateway, fake)
    order_id = renewal_order_id("renew-sub-7-2025-07")
    fake.payments["7000000101"] = FakePayment("7000000101", order_id, 99000, status="CONFIRMED")
    fake.payments["7000000100"] = FakePayment("7000000100", order_id, 99000)

    state = gateway.charge_saved(renewal(method))

    assert (state.status, state.reference) == (Status.SUCCEEDED, "7000000101")
    assert calls(fake, "Charge") == [] and calls(fake, "Init")[-1]["OrderId"] != order_id


def test_the_same_key_with_another_amount_is_refused(gateway, fake):
    method = saved_card(gateway, fake)
    fake.fail_next_call("Charge", 503)
    with pytest.raises(GatewayError):
        gateway.charge_saved(renewal(method))

    with pytest.raises(GatewayError) as caught:
        gateway.charge_saved(renewal(method, amount="1990.00"))

    assert (caught.value.transient, caught.value.code) == (False, "idempotency_key_reused")
    assert fake.charges == []


def test_each_attempt_with_its_own_key_is_its_own_charge(gateway, fake):
    method = saved_card(gateway, fake)
    fake.decline_next_charge()

    declined = gateway.charge_saved(renewal(method, key="renew-sub-7-2025-07-a1"))
    retried = gateway.charge_saved(renewal(method, key="renew-sub-7-2025-07-a2"))

    assert (declined.status, retried.status) == (Status.FAILED, Status.SUCCEEDED)
    assert [c.status for c in fake.charges] == ["REJECTED", "CONFIRMED"]


def test_an_unknown_rebill_id_is_refused(gateway, fake):
    saved_card(gateway, fake)
    unknown = SavedMethod(token="1111111111")  # no customer to check it against: Charge decides

    with pytest.raises(GatewayError) as caught:
        gateway.charge_saved(renewal(unknown))

    assert (caught.value.transient, caught.value.code) == (False, "104")
    assert fake.charges == []
    assert order_payments(fake, "renew-sub-7-2025-07") == ["NEW"]  # never charged; it expires


def test_a_token_of_another_customer_is_refused_before_anything_is_created(gateway, fake):
    saved_card(gateway, fake, customer="cus-42")
    theirs = saved_card(gateway, fake, customer="cus-7", pan="518223******0036")
    payments_before = len(fake.payments)

    with pytest.raises(GatewayError) as caught:
        gateway.charge_saved(renewal(replace(theirs, customer_reference="cus-42")))

    assert (caught.value.transient, caught.value.code) == (False, "method_not_found")
    assert fake.charges == [] and len(fake.payments) == payments_before


def test_a_token_not_among_the_customers_cards_is_refused(gateway, fake):
    mine = saved_card(gateway, fake)

    with pytest.raises(GatewayError) as caught:
        gateway.charge_saved(renewal(SavedMethod(token="1111111111", customer_reference="cus-42")))
    assert (caught.value.transient, caught.value.code) == (False, "method_not_found")

    with pytest.raises(GatewayError) as caught:
        gateway.charge_saved(renewal(replace(mine, customer_reference="cus-nobody")))
    assert (caught.value.transient, caught.value.code) == (False, "503")  # CustomerKey не найден
    assert fake.charges == []


def test_charge_switched_off_on_the_terminal_is_refused_then_charges_once_enabled(gateway, fake):
    method = saved_card(gateway, fake)
    fake.charge_enabled = False

    with pytest.raises(GatewayError) as caught:
        gateway.charge_saved(renewal(method))
    assert (caught.value.transient, caught.value.code) == (False, "10")
    assert fake.charges == []

    fake.charge_enabled = True
    assert gateway.charge_saved(renewal(method)).status is Status.SUCCEEDED
    assert order_payments(fake, "renew-sub-7-2025-07") == ["CONFIRMED"]


def test_a_two_stage_terminal_leaves_the_renewal_pending(gateway, fake):
    method = saved_card(gateway, fake)
    fake.two_stage = True

    state = gateway.charge_saved(renewal(method))

    assert state.status is Status.PENDING
    assert [c.status for c in fake.charges] == ["AUTHORIZED"]


def test_charge_with_the_wrong_password_is_refused(fake):
    method = saved_card(TinkoffGateway(fake.config()), fake)
    gateway = TinkoffGateway(fake.config(password="not-the-password"))

    with pytest.raises(GatewayError) as caught:
        gateway.charge_saved(renewal(method))

    assert (caught.value.transient, caught.value.code) == (False, "204")
    assert fake.charges == []


def test_a_non_rouble_renewal_is_refused_before_any_call(gateway, fake):
    with pytest.raises(GatewayError) as caught:
        gateway.charge_saved(replace(renewal(SavedMethod(token="1")), currency="USD"))

    assert caught.value.transient is False
    assert fake.requests == []


# --- forgetting the card --------------------------------------------------------------------
def test_method_forget_removes_the_card_and_it_is_not_charged_afterwards(gateway, fake):
    method = saved_card(gateway, fake)

    gateway.method_forget(method)

    [remove] = calls(fake, "RemoveCard")
    assert (remove["CustomerKey"], remove["CardId"]) == ("cus-42", method.raw["CardId"])
    assert fake.card(method.token).status == "D"
    with pytest.raises(GatewayError) as caught:
        gateway.charge_saved(renewal(method))
    assert (caught.value.transient, caught.value.code) == (False, "method_removed")
    assert fake.charges == []


def test_method_forget_twice_is_not_an_error(gateway, fake):
    method = saved_card(gateway, fake)
    gateway.method_forget(method)

    gateway.method_forget(method)  # RemoveCard refuses a removed card; the card list shows it removed

    assert fake.card(method.token).status == "D"


def test_method_forget_whose_answer_was_lost_can_be_retried(fake):
    gateway = TinkoffGateway(fake.config(timeout=(0.5, 0.5), retries=0))
    fake.stall_seconds = 1.5
    method = saved_card(gateway, fake)
    fake.fail_next_call("RemoveCard", "stall", handled=True)

    with pytest.raises(GatewayError) as caught:
        gateway.method_forget(method)
    assert caught.value.transient is True
    gateway.method_forget(method)

    assert fake.card(method.token).status == "D"


def test_method_forget_without_card_id_finds_it_by_rebill_id(gateway, fake):
    method = saved_card(gateway, fake)

    gateway.method_forget(replace(method, raw={}))

    assert fake.card(method.token).status == "D"


def test_method_forget_of_another_customers_card_is_refused(gateway, fake):
    saved_card(gateway, fake, customer="cus-42")
    theirs = saved_card(gateway, fake, customer="cus-7")

    with pytest.raises(GatewayError) as caught:
        gateway.method_forget(replace(theirs, customer_reference="cus-42"))

    assert (caught.value.transient, caught.value.code) == (False, "107")
    assert fake.card(theirs.token).status == "A"


def test_method_forget_without_a_customer_key_cannot_ask(gateway, fake):
    with pytest.raises(GatewayError) as caught:
        gateway.method_forget(SavedMethod(token="1111111111", raw={"CardId": "322264"}))

    assert (caught.value.transient, caught.value.code) == (False, "customer")
    assert fake.requests == []


def test_parent_notification_carries_rebill_id_and_card_id_as_numbers(fake, gateway):
    # as documented for NotificationPayment; the gateway keeps them as text
    method = saved_card(gateway, fake)
    reference = method.raw["PaymentId"]
    notice = json.loads(fake.signed_webhook(reference)[1])

    assert notice["Token"] == documented_token(notice, fake.password)
    assert (notice["RebillId"], notice["CardId"]) == (int(method.token), int(method.raw["CardId"]))
