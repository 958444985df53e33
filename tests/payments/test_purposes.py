"""Registered purposes and allocations: payments prices items itself and refuses what cannot be paid."""

import dataclasses
from decimal import Decimal

import pytest

from core.models import OutboxEvent
from payments import policy, purposes, services
from payments.errors import PaymentErrorCode, PaymentRefused
from payments.gateways.base import PaymentState, RefundResult, Status
from payments.models import Payment, PaymentAllocation, Refund
from tests.factories import GadgetFactory, UserFactory
from tests.testapp.models import Gadget

pytestmark = pytest.mark.django_db


def open_for(customer, *gadgets, purpose="gadget", gateway="sandbox") -> Payment:
    return policy.payment_open(
        customer_id=customer.pk, purpose=purpose, item_ids=[g.code for g in gadgets], gateway=gateway
    )


def refused(customer, *gadgets, **kwargs) -> PaymentRefused:
    with pytest.raises(PaymentRefused) as caught:
        open_for(customer, *gadgets, **kwargs)
    assert not Payment.objects.exists()
    assert not OutboxEvent.objects.filter(type="payment.created").exists()
    return caught.value


def paid(payment: Payment) -> Payment:
    payment = services.payment_checkout_started(
        payment_id=payment.pk, reference=f"ref-{payment.pk}", checkout_url="https://pay.example/x", raw={}
    )
    return services.payment_apply_state(
        payment_id=payment.pk,
        state=PaymentState(payment.gateway_reference, Status.SUCCEEDED, payment.amount, payment.currency),
        source="verify",
    )


def test_the_server_prices_the_items_and_the_payment_is_their_sum():
    customer = UserFactory()
    first, second = (
        GadgetFactory(customer=customer, price="10.00"),
        GadgetFactory(customer=customer, price="5.50"),
    )

    payment = open_for(customer, first, second)

    assert payment.amount == Decimal("15.50")
    assert [(a.purpose, a.purpose_id, a.amount) for a in payment.allocations.all()] == [
        ("gadget", first.code, Decimal("10.000")),
        ("gadget", second.code, Decimal("5.500")),
    ]
    data = OutboxEvent.objects.get(type="payment.created").data
    assert "purpose_id" not in data  # several items: see the allocations
    assert [a["purpose_id"] for a in data["allocations"]] == [first.code, second.code]


def test_an_unregistered_purpose_is_refused():
    error = refused(UserFactory(), GadgetFactory(), purpose="gift-card")
    assert error.code == PaymentErrorCode.PURPOSE_NOT_REGISTERED
    assert error.status_code == 422


def test_an_unknown_item_is_refused():
    customer = UserFactory()
    error = refused(customer, Gadget(code="nope"))
    assert (error.code, error.extra["item_id"]) == (PaymentErrorCode.ITEM_NOT_FOUND, "nope")


def test_another_customers_item_is_refused_as_if_unknown():
    error = refused(UserFactory(), GadgetFactory())
    assert error.code == PaymentErrorCode.ITEM_NOT_FOUND


@pytest.mark.parametrize(
    ("status", "code"),
    [("sold", PaymentErrorCode.ITEM_ALREADY_PAID), ("withdrawn", PaymentErrorCode.ITEM_NOT_PAYABLE)],
)
def test_an_item_paid_or_not_payable_is_refused(status, code):
    gadget = GadgetFactory(status=status)
    error = refused(gadget.customer, gadget)
    assert error.code == code
    assert status in error.message


def test_an_item_a_succeeded_payment_already_pays_is_refused():
    gadget = GadgetFactory()
    paid(open_for(gadget.customer, gadget))

    with pytest.raises(PaymentRefused) as caught:
        open_for(gadget.customer, gadget)
    assert caught.value.code == PaymentErrorCode.ITEM_ALREADY_PAID
    assert Payment.objects.count() == 1


def test_a_batch_with_one_bad_item_is_refused_whole():
    customer = UserFactory()
    good, foreign = GadgetFactory(customer=customer), GadgetFactory()
    assert refused(customer, good, foreign).code == PaymentErrorCode.ITEM_NOT_FOUND
    assert refused(customer, good, good).code == PaymentErrorCode.ITEM_REPEATED
    euro = GadgetFactory(customer=customer, currency="EUR")
    assert refused(customer, good, euro).code == PaymentErrorCode.MIXED_CURRENCIES


def test_an_open_payment_for_the_same_items_is_reused(settings):
    settings.PAYMENT_ENV = "test"  # gateways as asked (with "mock" every payment goes to the sandbox)
    gadget = GadgetFactory()
    first = open_for(gadget.customer, gadget)

    assert open_for(gadget.customer, gadget) == first
    other_gateway = open_for(gadget.customer, gadget, gateway="paystack")
    assert other_gateway != first
    assert Payment.objects.count() == 2


def test_a_repeated_completion_is_recognised_by_the_allocation():
    gadget = GadgetFactory()
    payment = paid(open_for(gadget.customer, gadget))

    completion = policy.completion_claim(payment_id=payment.public_id, purpose="gadget", item_id=gadget.code)
    assert completion is not None and completion.amount == Decimal("75.00")
    policy.completion_accept(completion)

    assert (
        policy.completion_claim(payment_id=payment.public_id, purpose="gadget", item_id=gadget.code) is None
    )
    assert PaymentAllocation.objects.get().outcome == "accepted"


def test_a_refused_completion_is_refunded_and_flagged(celery_app_without_worker):
    gadget = GadgetFactory()
    payment = paid(open_for(gadget.customer, gadget))
    completion = policy.completion_claim(payment_id=payment.public_id, purpose="gadget", item_id=gadget.code)

    outcome = policy.completion_refuse(completion, reason="gadget withdrawn")

    assert outcome.requested and not outcome.flagged
    refund = Refund.objects.get()
    assert (refund.amount, refund.shares.get().allocation.purpose_id) == (Decimal("75.000"), gadget.code)
    payment.refresh_from_db()
    assert "gadget withdrawn" in payment.flagged_reason
    allocation = PaymentAllocation.objects.get()
    assert (allocation.outcome, allocation.outcome_note) == ("refused", "gadget withdrawn")
    # Asked again for the same cause: the same refund, nothing more.
    again = policy.allocation_refund(allocation_id=allocation.pk, reason="gadget withdrawn", cause="unwanted")
    assert again.requested and Refund.objects.count() == 1


def test_money_already_refunded_is_not_asked_for_again(celery_app_without_worker):
    gadget = GadgetFactory()
    payment = paid(open_for(gadget.customer, gadget))
    services.refund_request(
        payment_id=payment.pk, amount=None, reason="staff", idempotency_key="staff-1", requested_by_id=None
    )

    outcome = policy.allocation_refund(
        payment_id=payment.pk, purpose="gadget", item_id=gadget.code, reason="cancelled", cause="cancelled"
    )

    assert not outcome.requested and not outcome.flagged
    assert "already requested" in outcome.note  # the staff refund is on its way
    assert Refund.objects.count() == 1


def test_a_refund_names_its_allocation_or_is_shared_in_proportion(celery_app_without_worker):
    customer = UserFactory()
    small, big = (
        GadgetFactory(customer=customer, price="10.00"),
        GadgetFactory(customer=customer, price="30.00"),
    )
    payment = paid(open_for(customer, small, big))
    small_allocation, big_allocation = payment.allocations.all()

    named = services.refund_reserve(
        payment_id=payment.pk,
        amount=None,
        reason="small one broken",
        idempotency_key="r-1",
        requested_by_id=None,
        allocation_id=small_allocation.pk,
    )
    assert named.amount == Decimal("10.00")
    services.refund_apply_result(
        refund_id=named.pk, result=RefundResult("re-1", Status.SUCCEEDED, named.amount, "USD")
    )
    proportional = services.refund_reserve(
        payment_id=payment.pk, amount="9.99", reason="goodwill", idempotency_key="r-2", requested_by_id=None
    )
    assert {s.allocation_id: s.amount for s in proportional.shares.all()} == {
        big_allocation.pk: Decimal("9.99")
    }
    services.refund_apply_result(
        refund_id=proportional.pk, result=RefundResult("re-2", Status.SUCCEEDED, Decimal("9.99"), "USD")
    )

    small_allocation.refresh_from_db()
    big_allocation.refresh_from_db()
    assert (small_allocation.refunded_amount, big_allocation.refunded_amount) == (
        Decimal("10.00"),
        Decimal("9.99"),
    )
    last = OutboxEvent.objects.filter(type="payment.refunded").order_by("seq").last().data
    assert last["refund_allocations"] == [{"purpose": "gadget", "purpose_id": big.code, "amount": "9.99"}]
    assert [a["refunded_amount"] for a in last["allocations"]] == ["10.00", "9.99"]
    with pytest.raises(Exception, match=r"At most 0\.00"):
        services.refund_reserve(
            payment_id=payment.pk,
            amount="0.01",
            reason="again",
            idempotency_key="r-3",
            requested_by_id=None,
            allocation_id=small_allocation.pk,
        )


def test_a_proportional_refund_splits_by_what_is_left_of_each():
    customer = UserFactory()
    items = [GadgetFactory(customer=customer, price=p) for p in ("10.00", "10.00", "10.00")]
    payment = paid(open_for(customer, *items))

    refund = services.refund_reserve(
        payment_id=payment.pk, amount="10.00", reason="x", idempotency_key="r", requested_by_id=None
    )

    shares = sorted(s.amount for s in refund.shares.all())
    assert shares == [Decimal("3.33"), Decimal("3.33"), Decimal("3.34")]


def test_registering_two_purposes_of_one_name_is_an_error():
    class Impostor(purposes.Purpose):
        name = "gadget"

        def payables(self, item_ids):
            return {}

    with pytest.raises(ValueError, match="two purposes"):
        purposes.register(Impostor())


def test_a_completion_stands_when_only_another_items_part_was_refunded(celery_app_without_worker):
    customer = UserFactory()
    first, second = GadgetFactory(customer=customer), GadgetFactory(customer=customer)
    payment = paid(open_for(customer, first, second))
    first_allocation = payment.allocations.get(purpose_id=first.code)
    refund = services.refund_reserve(
        payment_id=payment.pk,
        amount=None,
        reason="first one broken",
        idempotency_key="r-1",
        requested_by_id=None,
        allocation_id=first_allocation.pk,
    )
    services.refund_apply_result(
        refund_id=refund.pk, result=RefundResult("re-1", Status.SUCCEEDED, refund.amount, "USD")
    )
    assert Payment.objects.get(pk=payment.pk).status == "partially_refunded"

    second_part = policy.completion_claim(payment_id=payment.public_id, purpose="gadget", item_id=second.code)
    first_part = policy.completion_claim(payment_id=payment.public_id, purpose="gadget", item_id=first.code)

    assert second_part.succeeded  # the second gadget's money is all there
    assert not first_part.succeeded  # the first's went back


def test_each_allocation_keeps_the_kind_its_item_was_priced_with(monkeypatch):
    customer = UserFactory()
    deposit, full = GadgetFactory(customer=customer), GadgetFactory(customer=customer)
    priced = purposes.PURPOSES["gadget"].payables

    def with_a_deposit(item_ids):
        found = priced(item_ids)
        found[deposit.code] = dataclasses.replace(found[deposit.code], kind="deposit")
        return found

    monkeypatch.setattr(purposes.PURPOSES["gadget"], "payables", with_a_deposit)
    payment = paid(open_for(customer, deposit, full))

    assert payment.kind == "full"  # the items' kinds differ
    assert dict(payment.allocations.values_list("purpose_id", "kind")) == {
        deposit.code: "deposit",
        full.code: "full",
    }
    claimed = policy.completion_claim(payment_id=payment.public_id, purpose="gadget", item_id=deposit.code)
    assert claimed.kind == "deposit"
    data = OutboxEvent.objects.get(type="payment.completed").data
    assert {a["purpose_id"]: a["kind"] for a in data["allocations"]} == {
        deposit.code: "deposit",
        full.code: "full",
    }


def test_only_payments_for_the_item_alone_are_closed_with_it():
    customer = UserFactory()
    first, second = GadgetFactory(customer=customer), GadgetFactory(customer=customer)
    alone = open_for(customer, first)
    shared = open_for(customer, first, second)

    assert policy.item_payments_close(purpose="gadget", item_id=first.code) == [alone.public_id]

    assert Payment.objects.get(pk=alone.pk).status == "expired"
    assert Payment.objects.get(pk=shared.pk).status == "created"  # still pays the second gadget


def test_an_item_knows_a_payment_for_it_succeeded_before_its_completion_is_applied():
    gadget = GadgetFactory()
    assert not policy.item_payment_received(purpose="gadget", item_id=gadget.code)
    payment = paid(open_for(gadget.customer, gadget))
    assert policy.item_payment_received(purpose="gadget", item_id=gadget.code)

    policy.completion_accept(
        policy.completion_claim(payment_id=payment.public_id, purpose="gadget", item_id=gadget.code)
    )
    assert not policy.item_payment_received(purpose="gadget", item_id=gadget.code)  # applied


def test_a_long_item_id_still_gets_a_refund_key(celery_app_without_worker):
    gadget = GadgetFactory(code="g" * 100)  # an item id as long as an allocation takes
    payment = paid(open_for(gadget.customer, gadget))
    allocation = payment.allocations.get()

    outcome = policy.allocation_refund(allocation_id=allocation.pk, reason="x", cause="a-rather-long-cause")

    assert outcome.requested
    assert Refund.objects.get().idempotency_key.startswith("gadget:" + "g" * 100)
