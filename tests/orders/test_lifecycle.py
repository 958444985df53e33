"""The order lifecycle driven by payment events (subscribers run here in-thread; the e2e
tests run them in a real worker): paid, failed, refunded, cancelled, expired, late payment."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.cache import cache
from django.utils import timezone

from core.errors import BusinessRuleViolation, TransitionNotAllowed
from core.models import OutboxEvent
from orders import services
from orders.catalogue import GENERATION_KEY
from orders.models import Order, Variant
from orders.transitions import ORDER
from payments import services as payments
from payments.gateways.base import Status
from payments.models import Payment, PaymentAllocation, Refund
from payments.purposes import Payable
from tests.factories import UserFactory
from tests.orders.factories import VariantFactory
from tests.orders.helpers import checkout, client_for, deliver, gateway_reports, order_of

pytestmark = pytest.mark.django_db


@pytest.fixture
def customer():
    return UserFactory()


@pytest.fixture
def client(customer):
    return client_for(customer)


@pytest.fixture
def variant():
    return VariantFactory(stock_on_hand=10, low_stock_threshold=2)


def stock(variant) -> tuple[int, int]:
    variant.refresh_from_db()
    return variant.stock_on_hand, variant.stock_reserved


def order_events(order) -> list[str]:
    return list(
        OutboxEvent.objects.filter(aggregate_id=order.number).order_by("seq").values_list("type", flat=True)
    )


def pay(order: Order) -> Order:
    gateway_reports(order.payment, Status.SUCCEEDED)
    deliver("payment.completed", payment_id=order.payment.public_id)
    order.refresh_from_db()
    return order


def test_payment_completed_sells_the_reserved_stock(client, variant):
    order = order_of(checkout(client, (variant.pk, 3)))
    assert stock(variant) == (10, 3)

    order = pay(order)

    assert order.status == "paid" and order.paid_at and order.stock_state == "sold"
    assert stock(variant) == (7, 0)
    assert order_events(order) == ["order.created", "order.paid"]
    assert [(a.from_status, a.to_status) for a in order.audit.all()] == [
        ("", "pending_payment"),
        ("pending_payment", "paid"),
    ]


def test_a_redelivered_payment_completed_changes_nothing(client, variant):
    order = pay(order_of(checkout(client, (variant.pk, 3))))
    deliver("payment.completed", payment_id=order.payment.public_id)

    assert stock(variant) == (7, 0)
    assert order_events(order) == ["order.created", "order.paid"]
    assert Order.objects.get(pk=order.pk).audit.count() == 2


def test_a_failed_payment_keeps_the_error_and_the_order_payable(client, variant):
    order = order_of(checkout(client, (variant.pk, 1)))
    first = order.payment
    gateway_reports(first, Status.FAILED, error="Card declined")
    deliver("payment.failed", payment_id=first.public_id)
    order.refresh_from_db()

    assert order.status == "pending_payment" and order.payment_error == "Card declined"
    assert client.get(f"/api/orders/{order.number}").json()["payment_error"] == "Card declined"
    assert stock(variant) == (10, 1)

    retry = client.post(f"/api/orders/{order.number}/pay", {}, HTTP_IDEMPOTENCY_KEY="again-1")

    assert retry.status_code == 201, retry.json()
    order.refresh_from_db()
    assert order.payment_id != first.pk and order.payment.status == "pending"
    assert retry.json()["checkout_url"] == order.payment.checkout_url
    assert order.payment_error == ""
    assert pay(order).status == "paid"


def test_paying_again_while_the_payment_is_open_returns_it(client, variant):
    order = order_of(checkout(client, (variant.pk, 1)))
    response = client.post(f"/api/orders/{order.number}/pay", {}, HTTP_IDEMPOTENCY_KEY="again-2")
    assert response.json()["payment"]["id"] == order.payment.public_id
    assert Payment.objects.count() == 1


def test_a_paid_order_cannot_be_paid_again(client, variant):
    order = pay(order_of(checkout(client, (variant.pk, 1))))
    response = client.post(f"/api/orders/{order.number}/pay", {}, HTTP_IDEMPOTENCY_KEY="again-3")
    assert response.status_code == 422 and response.json()["code"] == "not_payable"


def test_cancel_returns_the_stock_and_closes_the_payment(client, variant):
    order = order_of(checkout(client, (variant.pk, 4)))

    response = client.post(f"/api/orders/{order.number}/cancel", {"reason": "changed my mind"})

    assert response.status_code == 200 and response.json()["status"] == "cancelled"
    assert stock(variant) == (10, 0)
    order.refresh_from_db()
    assert order.stock_state == "released" and order.payment.status == "expired"
    assert order_events(order) == ["order.created", "order.cancelled"]
    again = client.post(f"/api/orders/{order.number}/cancel")
    assert again.status_code == 200 and stock(variant) == (10, 0)


def test_a_paid_order_cannot_be_cancelled_by_the_customer(client, variant):
    order = pay(order_of(checkout(client, (variant.pk, 1))))
    response = client.post(f"/api/orders/{order.number}/cancel")
    assert response.status_code == 409 and response.json()["code"] == "transition_not_allowed"


def test_beat_expires_orders_past_their_deadline_only(client, variant):
    overdue = order_of(checkout(client, (variant.pk, 2)))
    fresh = order_of(checkout(client, (variant.pk, 3)))
    Order.objects.filter(pk=overdue.pk).update(deadline=timezone.now() - timedelta(seconds=1))

    assert services.order_expire_overdue() == 1

    overdue.refresh_from_db()
    fresh.refresh_from_db()
    assert (overdue.status, fresh.status) == ("expired", "pending_payment")
    assert stock(variant) == (10, 3)
    assert overdue.payment.status == "expired"
    assert order_events(overdue) == ["order.created", "order.expired"]
    assert services.order_expire_overdue() == 0


def test_a_full_refund_refunds_the_order_and_returns_unshipped_stock(client, variant):
    order = pay(order_of(checkout(client, (variant.pk, 3))))
    refund_fully(order)

    order.refresh_from_db()
    assert order.status == "refunded" and order.stock_state == "returned"
    assert stock(variant) == (10, 0)
    assert order_events(order) == ["order.created", "order.paid", "order.refunded"]


def test_a_refund_after_shipping_keeps_the_stock_sold(client, variant):
    order = pay(order_of(checkout(client, (variant.pk, 3))))
    services.order_fulfil(order_id=order.pk, actor="staff 1")
    refund_fully(order)

    order.refresh_from_db()
    assert order.status == "refunded" and order.stock_state == "sold"
    assert stock(variant) == (7, 0)


def test_a_partial_refund_is_noted_only(client, variant):
    order = pay(order_of(checkout(client, (variant.pk, 2))))
    refund(order, amount="10.00")

    order.refresh_from_db()
    assert order.status == "paid"
    assert "partial refund of 10.00 USD" in order.audit.last().note


def refund(order: Order, *, amount=None) -> None:
    from payments import services as payments
    from payments.gateways.base import RefundResult

    reserved = payments.refund_reserve(
        payment_id=order.payment_id,
        amount=amount,
        reason="test",
        idempotency_key=f"r-{amount}",
        requested_by_id=None,
    )
    payments.refund_apply_result(
        refund_id=reserved.pk,
        result=RefundResult(
            refund_reference="re_1", status=Status.SUCCEEDED, amount=reserved.amount, currency="USD"
        ),
    )
    deliver("payment.refunded", refund_id=reserved.public_id)


def refund_fully(order: Order) -> None:
    refund(order)


def test_stock_low_is_published_once_when_crossing_the_threshold(client, variant):
    checkout(client, (variant.pk, 7))  # 3 left: not under 2
    assert not OutboxEvent.objects.filter(type="stock.low").exists()
    checkout(client, (variant.pk, 2))  # 1 left: under
    checkout(client_for(UserFactory()), (variant.pk, 1))  # 0 left: still under, no second event

    low = OutboxEvent.objects.get(type="stock.low")
    assert low.data == {
        "variant_id": variant.pk,
        "sku": variant.sku,
        "product_id": variant.product_id,
        "available": 1,
        "threshold": 2,
    }


@pytest.mark.django_db(transaction=True)  # commits: the cache is emptied after them
def test_a_stock_move_says_product_updated_when_what_can_be_sold_changed(client, variant):
    """Reserve and release change what the catalogue shows: product.updated, and the cache
    emptied after the commit. A sale (reserved and on hand both down by the same amount) shows
    nothing new: neither, so a paid order keeps the catalogue cache."""

    def updates() -> list[str]:
        rows = OutboxEvent.objects.filter(type="product.updated", data__product_id=variant.product_id)
        return [e.data["reason"] for e in rows.order_by("seq")]

    cancelled = order_of(checkout(client, (variant.pk, 1)))
    generation = cache.get(GENERATION_KEY)
    services.order_cancel(order_id=cancelled.pk, actor="customer")
    assert updates() == ["stock", "stock"]
    assert cache.get(GENERATION_KEY) != generation

    paid = order_of(checkout(client, (variant.pk, 2)))
    generation = cache.get(GENERATION_KEY)
    pay(paid)

    assert stock(variant) == (8, 0)  # sold: on hand and reserved both down by 2
    assert updates() == ["stock", "stock", "stock"]  # its reservation only
    assert cache.get(GENERATION_KEY) == generation


# --- A payment after the order expired or was cancelled ------------------------------------------


def expire(order: Order) -> Order:
    Order.objects.filter(pk=order.pk).update(deadline=timezone.now() - timedelta(seconds=1))
    services.order_expire(order_id=order.pk)
    order.refresh_from_db()
    return order


def test_a_late_payment_with_stock_left_is_held_for_staff_not_resurrected(client, variant):
    order = expire(order_of(checkout(client, (variant.pk, 3))))
    assert stock(variant) == (10, 0)

    order = pay(order)

    assert order.status == "expired"  # not silently paid
    assert order.needs_attention and "Paid after it expired" in order.attention_note
    assert order.stock_state == "reserved" and stock(variant) == (10, 3)
    assert not Refund.objects.exists()

    services.order_accept_late_payment(order_id=order.pk, actor="staff 1")

    order.refresh_from_db()
    assert (order.status, order.stock_state, order.needs_attention) == ("paid", "sold", False)
    assert stock(variant) == (7, 0)
    assert order_events(order) == ["order.created", "order.expired", "order.paid"]


def test_staff_may_refund_a_late_payment_instead(client, variant):
    order = pay(expire(order_of(checkout(client, (variant.pk, 3)))))

    services.order_refund_late_payment(order_id=order.pk, actor="staff 1")

    assert stock(variant) == (10, 0)
    refund_row = Refund.objects.get()
    assert refund_row.payment_id == order.payment_id and refund_row.amount == order.total
    assert Order.objects.get(pk=order.pk).status == "expired"


def test_a_late_payment_whose_stock_is_gone_is_refunded_and_flagged(client, variant):
    order = expire(order_of(checkout(client, (variant.pk, 3))))
    checkout(client_for(UserFactory()), (variant.pk, 9))  # only 1 left now

    order = pay(order)

    assert order.status == "expired" and order.needs_attention
    assert "stock is gone" in order.attention_note
    refund_row = Refund.objects.get()
    assert refund_row.payment_id == order.payment_id and refund_row.amount == order.total
    assert stock(variant) == (10, 9)
    with pytest.raises(BusinessRuleViolation):
        services.order_accept_late_payment(order_id=order.pk, actor="staff 1")


def test_a_payment_after_the_customer_cancelled_is_refunded(client, variant):
    order = order_of(checkout(client, (variant.pk, 1)))
    services.order_cancel(order_id=order.pk, actor="customer")

    order = pay(order)

    assert order.status == "cancelled" and order.needs_attention
    assert Refund.objects.get().payment_id == order.payment_id
    assert stock(variant) == (10, 0)
    assert "paid after it was cancelled" in Payment.objects.get(pk=order.payment_id).flagged_reason
    allocation = PaymentAllocation.objects.get(payment_id=order.payment_id)
    assert (allocation.outcome, allocation.purpose_id) == ("refused", order.number)


# --- The transition table ------------------------------------------------------------------------

ALLOWED = {
    ("pending_payment", "paid"),
    ("pending_payment", "cancelled"),
    ("pending_payment", "expired"),
    ("paid", "fulfilled"),
    ("paid", "refunded"),
    ("fulfilled", "refunded"),
    ("expired", "paid"),
    ("cancelled", "paid"),
}
STATES = ["pending_payment", "paid", "fulfilled", "cancelled", "expired", "refunded"]


@pytest.mark.parametrize("source", STATES)
@pytest.mark.parametrize("target", STATES)
def test_the_transition_table(source, target):
    if (source, target) in ALLOWED:
        ORDER.check(source, target)
    else:
        with pytest.raises(TransitionNotAllowed):
            ORDER.check(source, target)


def test_fulfilling_an_unpaid_order_is_refused_with_409(client, variant):
    order = order_of(checkout(client, (variant.pk, 1)))
    staff = client_for(UserFactory(is_staff=True))
    response = staff.post(f"/api/orders/{order.number}/fulfil")
    assert response.status_code == 409
    assert client.post(f"/api/orders/{order.number}/fulfil").status_code == 403


def test_the_audit_trail_is_readable_by_its_customer(client, variant):
    order = pay(order_of(checkout(client, (variant.pk, 1))))
    trail = client.get(f"/api/orders/{order.number}/audit").json()
    assert [(row["from_status"], row["to_status"]) for row in trail] == [
        ("", "pending_payment"),
        ("pending_payment", "paid"),
    ]
    assert Variant.objects.get(pk=variant.pk).stock_on_hand == 9


# --- Payments that must not pay the order ---------------------------------------------------------


def foreign_payment(order: Order, *, customer_id: int | None = None, amount=None) -> Payment:
    """A payment pointing at the order that does not match it (as if written before payments
    priced items themselves, or by hand): payments' own create, below its policy."""
    item = Payable(
        item_id=order.number,
        customer_id=customer_id or order.customer_id,
        amount=Decimal(amount or order.total),
        currency=order.currency,
    )
    payment = payments.payment_create(
        customer_id=item.customer_id, purpose="order", items=[item], gateway="sandbox"
    )
    payment = payments.payment_start_checkout(
        payment_id=payment.pk, return_url="", description="", customer_email="c@example.com"
    )
    return gateway_reports(payment, Status.SUCCEEDED)


@pytest.mark.parametrize("who", ["cheap", "stranger"])
def test_a_payment_of_the_wrong_amount_or_customer_does_not_pay_the_order(client, variant, who):
    order = order_of(checkout(client, (variant.pk, 2)))
    wrong = (
        foreign_payment(order, amount="0.01")
        if who == "cheap"
        else foreign_payment(order, customer_id=UserFactory().pk)
    )

    deliver("payment.completed", payment_id=wrong.public_id)

    order.refresh_from_db()
    assert order.status == "pending_payment" and order.payment.status == "pending"
    assert order.needs_attention and "refunded" in order.attention_note
    assert Refund.objects.get().payment_id == wrong.pk
    assert stock(variant) == (10, 2)
    assert pay(order).status == "paid"  # its own payment still pays it


def test_a_payment_refunded_before_its_success_was_applied_does_not_pay_the_order(client, variant):
    order = order_of(checkout(client, (variant.pk, 1)))
    gateway_reports(order.payment, Status.SUCCEEDED)
    refund(order)  # staff refunded while payment.completed waited (dead-lettered, say)

    deliver("payment.completed", payment_id=order.payment.public_id)

    order.refresh_from_db()
    assert order.status == "pending_payment" and order.needs_attention
    assert "refunded by now" in order.attention_note
    assert stock(variant) == (10, 1)
    assert Refund.objects.count() == 1


def test_a_second_late_payment_is_refunded_and_does_not_hold_stock_twice(client, variant):
    order = order_of(checkout(client, (variant.pk, 3)))
    first = order.payment
    gateway_reports(first, Status.FAILED, error="declined")
    client.post(f"/api/orders/{order.number}/pay", {}, HTTP_IDEMPOTENCY_KEY="again-4")
    order = expire(order)
    second = order.payment
    assert second.pk != first.pk

    pay(order)  # the second attempt succeeds late: stock held again, flagged
    gateway_reports(first, Status.SUCCEEDED)  # and so, later still, does the first
    deliver("payment.completed", payment_id=first.public_id)

    order.refresh_from_db()
    assert order.payment_id == second.pk and order.stock_state == "reserved"
    assert stock(variant) == (10, 3)
    assert list(Refund.objects.values_list("payment_id", flat=True)) == [first.pk]


def test_beat_leaves_an_order_whose_payment_succeeded_for_its_event(client, variant):
    order = order_of(checkout(client, (variant.pk, 2)))
    gateway_reports(order.payment, Status.SUCCEEDED)  # payment.completed not delivered yet
    Order.objects.filter(pk=order.pk).update(deadline=timezone.now() - timedelta(seconds=1))

    assert services.order_expire_overdue() == 0

    deliver("payment.completed", payment_id=order.payment.public_id)
    order.refresh_from_db()
    assert order.status == "paid" and not order.needs_attention
    assert stock(variant) == (8, 0)


def test_an_order_whose_payment_succeeded_cannot_be_cancelled(client, variant):
    order = order_of(checkout(client, (variant.pk, 1)))
    gateway_reports(order.payment, Status.SUCCEEDED)

    response = client.post(f"/api/orders/{order.number}/cancel")

    assert response.status_code == 422 and response.json()["code"] == "payment_received"
    assert stock(variant) == (10, 1)
