"""PaystackGateway's saved methods (renewals without the customer) against the fake of Paystack."""

import uuid
from dataclasses import replace
from decimal import Decimal
from urllib.parse import quote

import pytest

from payments.gateways.base import (
    CheckoutRequest,
    GatewayError,
    RefundRequest,
    SavedChargeRequest,
    SavedMethod,
    Status,
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


@pytest.fixture
def impatient(fake):
    """A gateway that gives up after one try of 0.5 s: the caller retries, with the same key."""
    fake.stall_seconds = 1.5
    return PaystackGateway(
        {"secret_key": fake.secret, "base_url": fake.base_url, "timeout": (0.5, 0.5), "retries": 0}
    )


def checkout(email: str = "ada@example.com", *, save: bool = True) -> CheckoutRequest:
    return CheckoutRequest(
        payment_id="pay_9f3k",
        amount=Decimal("7500.50"),
        currency="NGN",
        description="Toybox, March",
        customer_email=email,
        return_url="https://shop.example.com/payments/return",
        idempotency_key=str(uuid.uuid4()),
        metadata={"order_id": "42"},
        save_method=save,
        customer_key="cus-42",
    )


def saved(fake: FakePaystack, gateway: PaystackGateway, email: str = "ada@example.com") -> SavedMethod:
    """A first checkout that saves the card, paid: the SavedMethod verify() gives."""
    reference = gateway.create_checkout(checkout(email)).reference
    fake.complete(reference)
    method = gateway.verify(reference).saved_method
    assert method is not None
    return method


def renewal(method: SavedMethod, amount: str = "2500.00", key: str | None = None) -> SavedChargeRequest:
    return SavedChargeRequest(
        payment_id="pay_renew1",
        amount=Decimal(amount),
        currency="NGN",
        description="Toybox, April",
        customer_email="ada@example.com",
        method=method,
        idempotency_key=key or f"pay_renew1:charge:{uuid.uuid4().hex[:8]}",
        metadata={"subscription_id": "7"},
    )


def test_gateway_saves_methods(gateway):
    assert gateway.saves_methods is True


def test_first_checkout_that_saves_then_verify_gives_the_saved_method(fake, gateway):
    session = gateway.create_checkout(checkout())
    sent = fake.transactions[session.reference]
    # Paystack keeps every card anyway: saving only marks the transaction for verify().
    assert sent["metadata"] == {
        "order_id": "42",
        "payment_id": "pay_9f3k",
        "description": "Toybox, March",
        "save_method": "true",
        "customer_key": "cus-42",
    }
    code = fake.complete(session.reference)

    state = gateway.verify(session.reference)
    assert state.status == Status.SUCCEEDED
    method = state.saved_method
    assert method.token == code
    assert method.customer_reference == "ada@example.com"
    assert method.label == "visa •••• 4081, expires 12/2030"
    assert method.raw["customer_code"] == fake.authorizations[code]["customer_code"]
    assert method.raw["reusable"] is True
    assert "bin" not in method.raw
    assert "408408" not in repr(method)  # no part of the card number beyond the last four


def test_a_checkout_that_does_not_save_gives_no_method(fake, gateway):
    session = gateway.create_checkout(checkout(save=False))
    assert "save_method" not in fake.transactions[session.reference]["metadata"]
    fake.complete(session.reference)
    assert gateway.verify(session.reference).saved_method is None


def test_a_card_paystack_will_not_charge_again_is_not_saved(fake, gateway):
    session = gateway.create_checkout(checkout())
    fake.complete(session.reference, reusable=False)
    state = gateway.verify(session.reference)
    assert state.status == Status.SUCCEEDED
    assert state.saved_method is None


def test_an_unpaid_or_declined_checkout_gives_no_method(fake, gateway):
    pending = gateway.create_checkout(checkout())
    assert gateway.verify(pending.reference).saved_method is None
    declined = gateway.create_checkout(checkout())
    fake.decline(declined.reference, "Insufficient Funds")
    assert gateway.verify(declined.reference).saved_method is None


def test_charge_saved_succeeds_and_verify_of_its_reference_agrees(fake, gateway):
    method = saved(fake, gateway)
    request = renewal(method, "2500.00", key="pay_renew1:charge:1")

    state = gateway.charge_saved(request)
    assert state.status == Status.SUCCEEDED
    assert state.reference == paystack_reference("pay_renew1:charge:1")
    assert (state.amount, state.currency, state.error) == (Decimal("2500.00"), "NGN", "")
    assert state.saved_method is None  # the method is the one already saved
    assert fake.charged == [state.reference]
    charge = fake.transactions[state.reference]
    assert charge["amount"] == 250000
    assert charge["authorization"]["authorization_code"] == method.token
    assert charge["metadata"] == {
        "subscription_id": "7",
        "payment_id": "pay_renew1",
        "description": "Toybox, April",
    }

    later = gateway.verify(state.reference)
    assert (later.status, later.amount, later.currency) == (Status.SUCCEEDED, Decimal("2500.00"), "NGN")

    result = gateway.refund(
        RefundRequest(state.reference, Decimal("2500.00"), "NGN", "cancelled", str(uuid.uuid4()))
    )
    assert fake.refunded(state.reference) == 250000
    assert result.amount == Decimal("2500.00")


def test_charge_uses_the_email_the_card_belongs_to_at_paystack(fake, gateway):
    """Our customer changed their email since: Paystack still checks the one on the card."""
    method = saved(fake, gateway)
    request = replace(renewal(method), customer_email="ada.new@example.com")
    assert gateway.charge_saved(request).status == Status.SUCCEEDED
    assert fake.transactions[fake.charged[0]]["customer"]["email"] == "ada@example.com"


def test_declined_charge_is_failed_with_the_banks_reason(fake, gateway):
    method = saved(fake, gateway)
    fake.decline_next_charge("Insufficient Funds")

    state = gateway.charge_saved(renewal(method))
    assert state.status == Status.FAILED
    assert state.error == "Insufficient Funds"
    assert gateway.verify(state.reference).status == Status.FAILED
    assert len(fake.charged) == 1


def test_charge_the_bank_pauses_for_the_customer_is_pending(fake, gateway):
    method = saved(fake, gateway)
    fake.pause_next_charge()

    state = gateway.charge_saved(renewal(method, "2500.00"))
    assert state.status == Status.PENDING
    assert (state.amount, state.currency) == (Decimal("2500.00"), "NGN")
    assert state.reference == fake.charged[0]


def test_5xx_after_the_charge_then_the_same_key_charges_once(fake, impatient):
    method = saved(fake, impatient)
    request = renewal(method)
    fake.fail_after_next_charge(502)

    with pytest.raises(GatewayError) as raised:
        impatient.charge_saved(request)
    assert raised.value.transient is True
    assert len(fake.charged) == 1  # made: only its answer was lost

    state = impatient.charge_saved(request)  # the caller's retry
    assert state.status == Status.SUCCEEDED
    assert state.reference == fake.charged[0]
    assert state.amount == Decimal("2500.00")
    assert len(fake.charged) == 1


def test_stalled_answer_then_the_same_key_charges_once(fake, impatient):
    method = saved(fake, impatient)
    request = renewal(method)
    fake.stall_after_next_charge()

    with pytest.raises(GatewayError) as raised:
        impatient.charge_saved(request)
    assert raised.value.transient is True

    state = impatient.charge_saved(request)
    assert state.status == Status.SUCCEEDED
    assert len(fake.charged) == 1


def test_clients_own_retry_after_a_lost_answer_charges_once(fake, gateway):
    """The HTTP client retries the POST itself: the retry is refused as a duplicate, then verified."""
    method = saved(fake, gateway)
    fake.fail_after_next_charge(503)
    before = len(fake.requests)

    state = gateway.charge_saved(renewal(method))
    assert state.status == Status.SUCCEEDED
    assert len(fake.charged) == 1
    calls = [(r.method, r.path) for r in fake.requests[before:]]
    assert calls == [
        ("POST", "/transaction/charge_authorization"),
        ("POST", "/transaction/charge_authorization"),
        ("GET", f"/transaction/verify/{quote(state.reference, safe='')}"),
    ]


def test_5xx_before_the_charge_is_retried_and_charges_once(fake, gateway):
    method = saved(fake, gateway)
    fake.fail_next(503)
    state = gateway.charge_saved(renewal(method))
    assert state.status == Status.SUCCEEDED
    assert len(fake.charged) == 1


def test_a_key_spent_on_another_transaction_is_refused(fake, gateway):
    method = saved(fake, gateway)
    first = gateway.charge_saved(renewal(method, "2500.00", key="pay_renew1:charge:1"))

    with pytest.raises(GatewayError) as raised:
        gateway.charge_saved(renewal(method, "3000.00", key="pay_renew1:charge:1"))
    assert raised.value.code == "duplicate_reference"
    assert raised.value.transient is False
    assert fake.charged == [first.reference]


def test_a_card_of_another_customer_is_refused(fake, gateway):
    ada = saved(fake, gateway, "ada@example.com")
    bob = saved(fake, gateway, "bob@example.com")
    stolen = SavedMethod(token=bob.token, customer_reference=ada.customer_reference)

    with pytest.raises(GatewayError) as raised:
        gateway.charge_saved(renewal(stolen))
    assert (raised.value.transient, raised.value.status) == (False, 400)
    assert "Email does not match Authorization code" in str(raised.value)
    assert fake.charged == []


def test_an_unknown_token_is_refused(fake, gateway):
    with pytest.raises(GatewayError) as raised:
        gateway.charge_saved(
            renewal(SavedMethod(token="AUTH_nosuchcode", customer_reference="ada@example.com"))
        )
    assert (raised.value.transient, raised.value.status) == (False, 400)
    assert "Invalid Authorization Code" in str(raised.value)
    assert fake.charged == []


def test_a_card_that_is_not_reusable_is_refused(fake, gateway):
    reference = gateway.create_checkout(checkout()).reference
    code = fake.complete(reference, reusable=False)
    method = SavedMethod(token=code, customer_reference="ada@example.com")

    with pytest.raises(GatewayError) as raised:
        gateway.charge_saved(renewal(method))
    assert raised.value.transient is False
    assert fake.charged == []


def test_wrong_secret_key_is_refused_for_a_charge(fake, gateway):
    method = saved(fake, gateway)
    wrong = PaystackGateway({"secret_key": "sk_test_wrong", "base_url": fake.base_url})
    with pytest.raises(GatewayError) as raised:
        wrong.charge_saved(renewal(method))
    assert (raised.value.transient, raised.value.status) == (False, 401)
    assert fake.charged == []


def test_forgotten_method_can_no_longer_be_charged(fake, gateway):
    method = saved(fake, gateway)

    gateway.method_forget(method)
    assert fake.authorizations[method.token]["active"] is False
    with pytest.raises(GatewayError) as raised:
        gateway.charge_saved(renewal(method))
    assert raised.value.transient is False
    assert fake.charged == []

    gateway.method_forget(method)  # again: nothing changes, nothing raised


def test_forgetting_a_token_paystack_does_not_know_is_done(fake, gateway):
    gateway.method_forget(SavedMethod(token="AUTH_nosuchcode"))
    assert fake.requests[-1].path == "/customer/authorization/deactivate"


def test_forget_with_a_wrong_secret_key_raises(fake, gateway):
    method = saved(fake, gateway)
    wrong = PaystackGateway({"secret_key": "sk_test_wrong", "base_url": fake.base_url})
    with pytest.raises(GatewayError) as raised:
        wrong.method_forget(method)
    assert raised.value.status == 401
    assert fake.authorizations[method.token]["active"] is True


def test_a_key_spent_on_another_card_with_the_same_amount_is_refused(fake, gateway):
    card_a, card_b = saved(fake, gateway), saved(fake, gateway)
    assert card_a.token != card_b.token
    first = gateway.charge_saved(renewal(card_a, "2500.00", key="pay_renew1:charge:1"))
    assert first.status == Status.SUCCEEDED
    with pytest.raises(GatewayError) as raised:  # the reference is card A's charge, not card B's
        gateway.charge_saved(renewal(card_b, "2500.00", key="pay_renew1:charge:1"))
    assert raised.value.code == "duplicate_reference"


def test_the_ledger_copy_of_a_verified_payment_holds_no_authorization(fake, gateway):
    card = saved(fake, gateway)
    state = gateway.charge_saved(renewal(card, "2500.00", key="pay_renew2:charge"))
    assert "authorization" not in gateway.verify(state.reference).raw
    assert card.token not in str(gateway.verify(state.reference).raw)
