"""StripeGateway's saved methods against FakeStripe: a card saved by the first Checkout Session,
renewals charged off-session (declines, retries after 5xx and timeouts), detaching."""

from decimal import Decimal

import pytest

from payments.gateways.base import (
    CheckoutRequest,
    GatewayError,
    RefundRequest,
    SavedChargeRequest,
    SavedMethod,
    Status,
)
from payments.gateways.stripe import StripeGateway
from tests.conftest import wait_for
from tests.payments.fakes.stripe import FakeStripe, gateway_for


@pytest.fixture
def fake():
    with FakeStripe() as fake:
        yield fake


@pytest.fixture
def gateway(fake):
    return gateway_for(fake)


def checkout(*, save: bool = True, key: str = "checkout-1", customer_key: str = "cus-42") -> CheckoutRequest:
    return CheckoutRequest(
        payment_id="pay_first",
        amount=Decimal("25.50"),
        currency="USD",
        description="Spring box, first month",
        customer_email="ada@example.com",
        return_url="https://shop.example/return",
        idempotency_key=key,
        save_method=save,
        customer_key=customer_key,
    )


def renewal(
    method: SavedMethod, *, amount: str = "25.50", payment_id: str = "pay_renew_1", key: str = ""
) -> SavedChargeRequest:
    return SavedChargeRequest(
        payment_id=payment_id,
        amount=Decimal(amount),
        currency="USD",
        description="Spring box, next month",
        customer_email="ada@example.com",
        method=method,
        idempotency_key=key or f"{payment_id}:charge",
        metadata={"payment_id": payment_id},
    )


def saved(gateway: StripeGateway, fake: FakeStripe, card: str = "4242424242424242", key: str = "checkout-1"):
    """The customer pays the first checkout with `card`, saving it: the SavedMethod verify() gives."""
    reference = gateway.create_checkout(checkout(key=key)).reference
    fake.complete(reference, card=card)
    method = gateway.verify(reference).saved_method
    assert method is not None
    return method


def intent_posts(fake: FakeStripe) -> list:
    return [r for r in fake.requests if r.method == "POST" and r.path == "/v1/payment_intents"]


# --- saving the method on the first checkout ------------------------------------------------------


def test_checkout_with_save_method_asks_for_a_customer_and_off_session_use(gateway, fake):
    gateway.create_checkout(checkout(customer_key="cus-42"))

    sent = fake.requests[-1].form
    assert sent["customer_creation"] == "always"
    assert sent["payment_intent_data[setup_future_usage]"] == "off_session"
    assert sent["metadata[customer_key]"] == "cus-42"
    assert sent["payment_intent_data[metadata][customer_key]"] == "cus-42"


def test_checkout_without_save_method_asks_for_nothing_and_saves_nothing(gateway, fake):
    reference = gateway.create_checkout(checkout(save=False)).reference
    fake.complete(reference)

    sent = fake.requests[0].form
    assert "customer_creation" not in sent
    assert "payment_intent_data[setup_future_usage]" not in sent
    state = gateway.verify(reference)
    assert state.status == Status.SUCCEEDED
    assert state.saved_method is None
    assert fake.customers == {}


def test_paid_checkout_verifies_with_the_saved_method(gateway, fake):
    reference = gateway.create_checkout(checkout()).reference
    fake.complete(reference, card="4242424242424242", expires=(12, 2030))

    state = gateway.verify(reference)

    assert state.status == Status.SUCCEEDED
    method = state.saved_method
    stored = fake.payment_methods[method.token]
    assert method.token.startswith("pm_")
    assert method.customer_reference == stored["customer"] == fake.sessions[reference]["customer"]
    assert method.customer_reference in fake.customers
    assert method.label == "visa •••• 4242, expires 12/2030"
    assert method.raw["card"]["last4"] == "4242"
    assert "billing_details" not in method.raw
    assert "4242424242424242" not in repr(method)


def test_saved_method_label_takes_the_brand_and_expiry(gateway, fake):
    reference = gateway.create_checkout(checkout()).reference
    fake.complete(reference, card="5555555555554444", expires=(3, 2031))

    assert gateway.verify(reference).saved_method.label == "mastercard •••• 4444, expires 03/2031"


def test_open_or_declined_checkout_has_no_saved_method(gateway, fake):
    reference = gateway.create_checkout(checkout()).reference
    assert gateway.verify(reference).saved_method is None

    fake.decline(reference)
    state = gateway.verify(reference)

    assert state.status == Status.FAILED
    assert state.saved_method is None


# --- charging the saved method --------------------------------------------------------------------


def test_saved_method_is_charged_off_session_and_verify_agrees(gateway, fake):
    method = saved(gateway, fake)

    state = gateway.charge_saved(renewal(method, amount="25.50"))

    assert state.status == Status.SUCCEEDED
    assert state.reference.startswith("pi_")
    assert (state.amount, state.currency, state.error) == (Decimal("25.50"), "USD", "")
    sent = intent_posts(fake)[0]
    assert sent.headers["idempotency-key"] == "pay_renew_1:charge"
    assert sent.form["amount"] == "2550"
    assert sent.form["customer"] == method.customer_reference
    assert sent.form["payment_method"] == method.token
    assert (sent.form["off_session"], sent.form["confirm"]) == ("true", "true")
    assert sent.form["metadata[payment_id]"] == "pay_renew_1"
    assert fake.captured_for("pay_renew_1") == 2550

    later = gateway.verify(state.reference)
    assert (later.reference, later.status, later.amount, later.currency) == (
        state.reference,
        Status.SUCCEEDED,
        Decimal("25.50"),
        "USD",
    )
    assert later.saved_method is None  # a renewal saves nothing new


def test_a_renewal_is_refunded_by_its_payment_intent(gateway, fake):
    reference = gateway.charge_saved(renewal(saved(gateway, fake), amount="25.50")).reference

    result = gateway.refund(
        RefundRequest(
            reference=reference,
            amount=Decimal("5.50"),
            currency="USD",
            reason="requested_by_customer",
            idempotency_key="refund-1",
        )
    )

    assert (result.status, result.amount) == (Status.SUCCEEDED, Decimal("5.50"))
    assert gateway.verify(reference).status == Status.PARTIALLY_REFUNDED


def test_declined_charge_is_failed_with_the_reason(gateway, fake):
    method = saved(gateway, fake)
    fake.decline_next_charge("insufficient_funds")

    state = gateway.charge_saved(renewal(method))

    assert state.status == Status.FAILED
    assert state.reference.startswith("pi_")
    assert state.error == "Your card has insufficient funds."
    assert state.raw["last_payment_error"]["decline_code"] == "insufficient_funds"
    assert fake.captured_for("pay_renew_1") == 0
    later = gateway.verify(state.reference)
    assert (later.status, later.error) == (Status.FAILED, "Your card has insufficient funds.")


@pytest.mark.parametrize(
    ("card", "code", "error"),
    [
        ("4000000000000341", "card_declined", "Your card was declined."),
        (
            "4000002760003184",  # wants 3-D Secure every time: nobody is there off-session
            "authentication_required",
            "Your card was declined. This transaction requires authentication.",
        ),
    ],
)
def test_cards_that_decline_off_session(gateway, fake, card, code, error):
    method = saved(gateway, fake, card=card)

    state = gateway.charge_saved(renewal(method))

    assert (state.status, state.error) == (Status.FAILED, error)
    assert state.raw["last_payment_error"]["code"] == code


def test_a_decline_retried_with_its_key_is_the_same_decline(gateway, fake):
    method = saved(gateway, fake)
    fake.decline_next_charge()
    first = gateway.charge_saved(renewal(method))

    again = gateway.charge_saved(renewal(method))

    assert again.reference == first.reference
    assert again.status == Status.FAILED
    assert len(fake.intents_for("pay_renew_1")) == 1


def test_next_renewal_with_a_new_key_is_a_new_charge(gateway, fake):
    method = saved(gateway, fake)

    first = gateway.charge_saved(renewal(method, payment_id="pay_renew_1"))
    second = gateway.charge_saved(renewal(method, payment_id="pay_renew_2"))

    assert first.reference != second.reference
    assert fake.captured_for("pay_renew_1") == fake.captured_for("pay_renew_2") == 2550


# --- retries: one charge whatever happens to the answers -------------------------------------------


def test_a_503_is_retried_with_the_same_key_and_charges_once(gateway, fake):
    method = saved(gateway, fake)
    fake.fail_next(503)

    state = gateway.charge_saved(renewal(method))

    assert state.status == Status.SUCCEEDED
    assert len(intent_posts(fake)) == 2
    assert {r.headers["idempotency-key"] for r in intent_posts(fake)} == {"pay_renew_1:charge"}
    assert len(fake.intents_for("pay_renew_1")) == 1
    assert fake.captured_for("pay_renew_1") == 2550


def test_5xx_past_the_retries_is_transient_and_the_callers_retry_charges_once(fake):
    gateway = gateway_for(fake, retries=0)
    method = saved(gateway, fake)
    fake.fail_next(502)

    with pytest.raises(GatewayError) as caught:
        gateway.charge_saved(renewal(method))
    assert (caught.value.transient, caught.value.status) == (True, 502)

    state = gateway.charge_saved(renewal(method))

    assert state.status == Status.SUCCEEDED
    assert len(fake.intents_for("pay_renew_1")) == 1
    assert fake.captured_for("pay_renew_1") == 2550


def test_an_answer_lost_to_a_timeout_is_replayed_by_the_retry(fake):
    gateway = gateway_for(fake, timeout=(0.5, 0.5), retries=1)
    method = saved(gateway, fake)
    fake.stall_seconds = 1.5
    fake.lose_next_charge_answer()  # Stripe charges, the client times out waiting for the answer

    state = gateway.charge_saved(renewal(method))

    assert state.status == Status.SUCCEEDED
    assert len(intent_posts(fake)) == 2
    assert len(fake.intents_for("pay_renew_1")) == 1
    assert fake.captured_for("pay_renew_1") == 2550
    assert state.reference == fake.intents_for("pay_renew_1")[0]["id"]


def test_a_timeout_past_the_retries_is_transient_and_the_callers_retry_charges_once(fake):
    gateway = gateway_for(fake, timeout=(0.5, 0.5), retries=0)
    method = saved(gateway, fake)
    fake.stall_seconds = 1.5
    fake.lose_next_charge_answer()

    with pytest.raises(GatewayError) as caught:
        gateway.charge_saved(renewal(method))
    assert caught.value.transient is True
    assert "Timeout" in str(caught.value)

    state = gateway.charge_saved(renewal(method))

    assert state.status == Status.SUCCEEDED
    assert len(fake.intents_for("pay_renew_1")) == 1
    assert fake.captured_for("pay_renew_1") == 2550


def test_a_retry_while_the_charge_is_still_running_is_a_transient_409(fake):
    gateway = gateway_for(fake, timeout=(0.5, 0.5), retries=0)
    method = saved(gateway, fake)
    fake.stall_seconds = 1.5
    fake.slow_next_charge()

    with pytest.raises(GatewayError) as timed_out:
        gateway.charge_saved(renewal(method))
    with pytest.raises(GatewayError) as in_flight:
        gateway.charge_saved(renewal(method))  # the first is still being charged
    assert timed_out.value.transient is True
    assert (in_flight.value.transient, in_flight.value.status) == (True, 409)

    def answered():  # 409 while the first request still holds the key, then its kept answer
        try:
            return gateway.charge_saved(renewal(method))
        except GatewayError as exc:
            if exc.status != 409:
                raise
            return None

    state = wait_for(answered, timeout=5, interval=0.1, what="the first charge's answer under its key")

    assert state.status == Status.SUCCEEDED
    assert len(fake.intents_for("pay_renew_1")) == 1
    assert fake.captured_for("pay_renew_1") == 2550


def test_the_same_key_with_another_amount_is_refused(gateway, fake):
    method = saved(gateway, fake)
    gateway.charge_saved(renewal(method, amount="25.50"))

    with pytest.raises(GatewayError) as caught:
        gateway.charge_saved(renewal(method, amount="30.00"))

    assert caught.value.transient is False
    assert caught.value.code == "idempotency_error"
    assert len(fake.intents_for("pay_renew_1")) == 1


# --- refusals --------------------------------------------------------------------------------------


def test_a_token_of_another_customer_is_refused(gateway, fake):
    ada = saved(gateway, fake, key="checkout-ada")
    bob = saved(gateway, fake, key="checkout-bob")
    assert ada.customer_reference != bob.customer_reference
    stolen = SavedMethod(token=ada.token, customer_reference=bob.customer_reference)

    with pytest.raises(GatewayError) as caught:
        gateway.charge_saved(renewal(stolen))

    assert (caught.value.transient, caught.value.status) == (False, 400)
    assert "does not belong to the Customer" in str(caught.value)
    assert fake.intents_for("pay_renew_1") == []


def test_an_unknown_token_is_refused(gateway, fake):
    method = saved(gateway, fake)
    unknown = SavedMethod(token="pm_unknown", customer_reference=method.customer_reference)

    with pytest.raises(GatewayError) as caught:
        gateway.charge_saved(renewal(unknown))

    assert (caught.value.transient, caught.value.code) == (False, "resource_missing")
    assert fake.intents_for("pay_renew_1") == []


def test_a_card_paid_with_but_not_saved_cannot_be_charged_again(gateway, fake):
    customer = saved(gateway, fake, key="checkout-saved").customer_reference
    reference = gateway.create_checkout(checkout(save=False, key="checkout-once")).reference
    fake.complete(reference)
    used_once = fake.intents[fake.sessions[reference]["payment_intent"]]["payment_method"]

    with pytest.raises(GatewayError) as caught:
        gateway.charge_saved(renewal(SavedMethod(token=used_once, customer_reference=customer)))

    assert (caught.value.transient, caught.value.status) == (False, 400)
    assert "may not be used again" in str(caught.value)


def test_a_method_without_its_customer_is_refused_before_asking_stripe(gateway, fake):
    method = saved(gateway, fake)

    with pytest.raises(GatewayError) as caught:
        gateway.charge_saved(renewal(SavedMethod(token=method.token)))

    assert (caught.value.transient, caught.value.code) == (False, "no_customer")
    assert intent_posts(fake) == []


def test_wrong_secret_key_is_a_permanent_error(gateway, fake):
    method = saved(gateway, fake)
    stranger = StripeGateway({"secret_key": "sk_test_wrong", "base_url": fake.base_url})

    with pytest.raises(GatewayError) as caught:
        stranger.charge_saved(renewal(method))

    assert (caught.value.transient, caught.value.status) == (False, 401)
    assert fake.intents_for("pay_renew_1") == []


def test_unknown_payment_intent_is_a_permanent_error(gateway):
    with pytest.raises(GatewayError) as caught:
        gateway.verify("pi_missing")

    assert (caught.value.transient, caught.value.code) == (False, "resource_missing")


# --- forgetting ------------------------------------------------------------------------------------


def test_forgotten_method_is_detached_and_cannot_be_charged(gateway, fake):
    reference = gateway.create_checkout(checkout()).reference
    fake.complete(reference)
    method = gateway.verify(reference).saved_method

    gateway.method_forget(method)

    assert fake.payment_methods[method.token]["customer"] is None
    assert gateway.verify(reference).saved_method is None  # Stripe no longer keeps it
    with pytest.raises(GatewayError) as caught:
        gateway.charge_saved(renewal(method))
    assert caught.value.transient is False
    assert fake.intents_for("pay_renew_1") == []


def test_forgetting_twice_is_harmless(gateway, fake):
    method = saved(gateway, fake)

    gateway.method_forget(method)
    gateway.method_forget(method)  # a retried task: Stripe replays the first detach

    assert fake.payment_methods[method.token]["customer"] is None


def test_forgetting_an_unknown_method_is_a_permanent_error(gateway):
    with pytest.raises(GatewayError) as caught:
        gateway.method_forget(SavedMethod(token="pm_unknown", customer_reference="cus_x"))

    assert (caught.value.transient, caught.value.status) == (False, 404)


# --- webhooks --------------------------------------------------------------------------------------


def test_webhook_about_a_renewal_carries_its_reference(gateway, fake):
    reference = gateway.charge_saved(renewal(saved(gateway, fake))).reference
    headers, body = fake.signed_webhook("payment_intent.succeeded", reference)

    notice = gateway.parse_webhook(headers=headers, body=body)

    assert notice.reference == reference  # the payment found by it is then verified
    assert gateway.verify(notice.reference).status == Status.SUCCEEDED
