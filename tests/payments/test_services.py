"""Payment services: creation, applying the gateway's answers, expiry, refunds."""

import threading
from decimal import Decimal

import pytest
from django.db import connection
from django.utils import timezone

from core.errors import BusinessRuleViolation, InvalidInput
from core.models import OutboxEvent
from payments import policy, services
from payments.gateways.base import PaymentState, RefundResult, Status
from payments.gateways.sandbox import SandboxGateway
from payments.models import Payment, PaymentLedgerEntry, Refund
from tests.factories import GadgetFactory

pytestmark = pytest.mark.django_db


def new_payment(*, amount: str = "75.00", currency: str = "USD", gateway: str = "sandbox") -> Payment:
    """A payment for one gadget (the tests' registered purpose), opened by payments' policy."""
    gadget = GadgetFactory(price=amount, currency=currency)
    return policy.payment_open(
        customer_id=gadget.customer_id, purpose="gadget", item_ids=[gadget.code], gateway=gateway
    )


def pending_payment(**overrides) -> Payment:
    payment = new_payment(**overrides)
    return services.payment_checkout_started(
        payment_id=payment.pk, reference=f"ref-{payment.pk}", checkout_url="https://pay.example/x", raw={}
    )


def state(payment: Payment, status: Status, amount: str = "75.00", currency: str = "USD", error: str = ""):
    return PaymentState(
        reference=payment.gateway_reference,
        status=status,
        amount=Decimal(amount),
        currency=currency,
        error=error,
    )


def events_of(event_type: str) -> list[dict]:
    return [e.data for e in OutboxEvent.objects.filter(type=event_type).order_by("seq")]


def paid_payment() -> Payment:
    payment = pending_payment()
    return services.payment_apply_state(
        payment_id=payment.pk, state=state(payment, Status.SUCCEEDED), source="verify"
    )


def test_create_publishes_payment_created_with_the_documented_data():
    payment = new_payment()

    assert payment.status == "created"
    assert payment.public_id.startswith("pay_")
    (data,) = events_of("payment.created")
    assert data["payment_id"] == payment.public_id
    assert data["purpose"] == "gadget"
    (allocation,) = payment.allocations.all()
    assert data["purpose_id"] == allocation.purpose_id
    assert data["allocations"] == [
        {
            "purpose": "gadget",
            "purpose_id": allocation.purpose_id,
            "amount": "75.00",
            "refunded_amount": "0.00",
            "kind": "full",
            "outcome": "open",
        }
    ]
    assert data["amount"] == "75.00"
    assert data["currency"] == "USD"


@pytest.mark.parametrize(("amount", "currency"), [("75.001", "USD"), ("0", "USD"), ("75.00", "XYZ")])
def test_an_item_priced_wrongly_by_its_app_is_refused_and_nothing_is_created(amount, currency):
    with pytest.raises(InvalidInput) as caught:
        new_payment(amount=amount, currency=currency)
    assert "amount" in caught.value.extra["fields"]
    assert not Payment.objects.exists()
    assert not OutboxEvent.objects.exists()


def test_success_completes_once():
    payment = pending_payment()

    services.payment_apply_state(
        payment_id=payment.pk, state=state(payment, Status.SUCCEEDED), source="webhook"
    )
    services.payment_apply_state(
        payment_id=payment.pk, state=state(payment, Status.SUCCEEDED), source="verify"
    )

    payment.refresh_from_db()
    assert payment.status == "succeeded"
    assert len(events_of("payment.completed")) == 1
    assert PaymentLedgerEntry.objects.filter(payment=payment).count() == 3  # checkout, webhook, verify


@pytest.mark.parametrize(("amount", "currency"), [("70.00", "USD"), ("75.00", "EUR")])
def test_a_success_for_another_amount_or_currency_is_flagged_not_applied(amount, currency):
    payment = pending_payment()

    services.payment_apply_state(
        payment_id=payment.pk, state=state(payment, Status.SUCCEEDED, amount, currency), source="webhook"
    )

    payment.refresh_from_db()
    assert payment.status == "pending"
    assert f"{amount} {currency}" in payment.flagged_reason
    assert not events_of("payment.completed")


def test_failure_records_the_error_and_publishes_it():
    payment = pending_payment()

    services.payment_apply_state(
        payment_id=payment.pk,
        state=state(payment, Status.FAILED, error="Insufficient funds"),
        source="verify",
    )

    payment.refresh_from_db()
    assert (payment.status, payment.last_error) == ("failed", "Insufficient funds")
    assert events_of("payment.failed")[0]["error"] == "Insufficient funds"


def test_a_success_after_expiry_is_recorded_flagged_and_published_as_late():
    payment = pending_payment()
    services.payment_expire(payment_id=payment.pk)
    assert events_of("payment.cancelled")[0]["reason"] == "expired"

    services.payment_apply_state(
        payment_id=payment.pk, state=state(payment, Status.SUCCEEDED), source="webhook"
    )

    payment.refresh_from_db()
    assert payment.status == "succeeded"
    assert payment.flagged_reason == "paid after it was expired"
    assert events_of("payment.completed")[0]["late"] is True


def test_a_payment_settled_meanwhile_does_not_expire():
    payment = paid_payment()  # a webhook won the race against the expiry pass

    services.payment_expire(payment_id=payment.pk)

    assert Payment.objects.get(pk=payment.pk).status == "succeeded"
    assert not events_of("payment.cancelled")


def test_partial_then_full_refund():
    payment = paid_payment()

    first = services.refund_reserve(
        payment_id=payment.pk, amount="25.00", reason="damaged", idempotency_key="r1", requested_by_id=None
    )
    services.refund_apply_result(
        refund_id=first.pk,
        result=RefundResult(
            refund_reference="gw-r1", status=Status.SUCCEEDED, amount=Decimal("25.00"), currency="USD"
        ),
    )
    payment.refresh_from_db()
    assert (payment.status, payment.refunded_amount) == ("partially_refunded", Decimal("25.00"))

    rest = services.refund_reserve(
        payment_id=payment.pk, amount=None, reason="cancelled", idempotency_key="r2", requested_by_id=None
    )
    assert rest.amount == Decimal("50.00") and rest.full
    services.refund_apply_result(
        refund_id=rest.pk,
        result=RefundResult(
            refund_reference="gw-r2", status=Status.SUCCEEDED, amount=Decimal("50.00"), currency="USD"
        ),
    )

    payment.refresh_from_db()
    assert payment.status == "refunded"
    refunded = events_of("payment.refunded")
    assert [(e["amount"], e["full"], e["refund_id"]) for e in refunded] == [
        ("25.00", False, first.public_id),
        ("50.00", True, rest.public_id),
    ]


def test_a_refund_larger_than_what_is_left_is_refused():
    payment = paid_payment()
    services.refund_reserve(
        payment_id=payment.pk, amount="60.00", reason="x", idempotency_key="r1", requested_by_id=None
    )

    with pytest.raises(BusinessRuleViolation) as caught:
        services.refund_reserve(
            payment_id=payment.pk, amount="20.00", reason="x", idempotency_key="r2", requested_by_id=None
        )
    assert caught.value.code == "refund_too_large"
    assert caught.value.extra["refundable"] == "15.00"  # the pending 60.00 counts


def test_the_same_refund_key_returns_the_same_refund():
    payment = paid_payment()
    first = services.refund_reserve(
        payment_id=payment.pk, amount="10.00", reason="x", idempotency_key="same", requested_by_id=None
    )
    again = services.refund_reserve(
        payment_id=payment.pk, amount="10.00", reason="x", idempotency_key="same", requested_by_id=None
    )
    assert first.pk == again.pk
    assert Refund.objects.count() == 1


def test_a_failed_refund_frees_the_amount_again():
    payment = paid_payment()
    refund = services.refund_reserve(
        payment_id=payment.pk, amount=None, reason="x", idempotency_key="r1", requested_by_id=None
    )
    services.refund_apply_result(refund_id=refund.pk, result=None, error="gateway refused")

    again = services.refund_reserve(
        payment_id=payment.pk, amount=None, reason="x", idempotency_key="r2", requested_by_id=None
    )
    assert again.amount == Decimal("75.00")


def test_an_unpaid_payment_cannot_be_refunded():
    payment = pending_payment()
    with pytest.raises(BusinessRuleViolation, match="Only a paid payment"):
        services.refund_reserve(
            payment_id=payment.pk, amount=None, reason="x", idempotency_key="r", requested_by_id=None
        )


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_refunds_cannot_exceed_the_captured_amount():
    payment = paid_payment()
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def refund(key: str) -> None:
        barrier.wait()
        try:
            services.refund_reserve(
                payment_id=payment.pk, amount="60.00", reason="x", idempotency_key=key, requested_by_id=None
            )
            outcomes.append("reserved")
        except BusinessRuleViolation:
            outcomes.append("refused")
        finally:
            connection.close()

    threads = [threading.Thread(target=refund, args=(k,)) for k in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(outcomes) == ["refused", "reserved"]
    assert Refund.objects.get().amount == Decimal("60.00")


def test_an_out_of_order_pending_report_after_success_changes_nothing():
    payment = paid_payment()

    services.payment_apply_state(
        payment_id=payment.pk, state=state(payment, Status.PENDING), source="webhook"
    )

    payment.refresh_from_db()
    assert payment.status == "succeeded"
    assert len(events_of("payment.completed")) == 1


def test_a_refund_at_a_gateway_without_refund_idempotency_is_never_sent_twice(monkeypatch):
    payment = paid_payment()
    refund = services.refund_reserve(
        payment_id=payment.pk, amount=None, reason="x", idempotency_key="r1", requested_by_id=None
    )
    Refund.objects.filter(pk=refund.pk).update(sent_at=timezone.now())  # a worker died mid-call
    monkeypatch.setattr(SandboxGateway, "idempotent_refunds", False)

    services.refund_execute(refund_id=refund.pk)

    refund.refresh_from_db()
    payment.refresh_from_db()
    assert refund.status == "pending"  # sent, the sandbox would have failed it: it has no such charge
    assert "outcome unknown" in payment.flagged_reason
