"""After the hold: payments' reports, staff actions, the cancellation policy, and beat's passes."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.test import override_settings
from django.utils import timezone

from bookings import services
from bookings.models import Booking, BookingAudit
from bookings.transitions import BOOKING, PAYMENT_STATUS
from core.errors import BusinessRuleViolation, TransitionNotAllowed
from core.models import OutboxEvent
from payments.gateways.base import PaymentState, Status
from payments.models import Payment, PaymentAllocation, PaymentLedgerEntry, Refund
from payments.services import payment_apply_state, payment_checkout_started, refund_request
from tests.bookings.conftest import local

pytestmark = pytest.mark.django_db


@pytest.fixture
def booking(hall, customer):
    return services.booking_hold(
        customer_id=customer.pk, resource_id=hall.pk, starts_at=local(3, 10), ends_at=local(3, 12)
    )


def succeed(booking: Booking) -> None:
    """What payments does when the gateway confirms: the payment becomes succeeded."""
    Payment.objects.filter(pk=booking.payment_id).update(status="succeeded")


def completed(booking: Booking, late: bool = False) -> Booking:
    succeed(booking)
    return services.booking_apply_payment_completed(
        booking_public_id=booking.public_id,
        payment_public_id=booking.payment.public_id,
        late=late,
    )


def events_of(booking: Booking) -> list[str]:
    return list(
        OutboxEvent.objects.filter(aggregate_id=booking.public_id)
        .order_by("seq")
        .values_list("type", flat=True)
    )


# --- transition tables -----------------------------------------------------------------------
BOOKING_ALLOWED = {
    ("pending_payment", "confirmed"), ("pending_payment", "expired"), ("pending_payment", "cancelled"),
    ("confirmed", "completed"), ("confirmed", "no_show"), ("confirmed", "cancelled"),
    ("expired", "confirmed"),
}  # fmt: skip
STATUSES = [s.value for s in Booking.Status]
PAYMENT_ALLOWED = {
    ("unpaid", "deposit_paid"), ("unpaid", "paid"), ("unpaid", "failed"), ("failed", "deposit_paid"),
    ("failed", "paid"), ("deposit_paid", "paid"), ("deposit_paid", "refunded"), ("paid", "refunded"),
}  # fmt: skip
PAYMENT_STATUSES = [s.value for s in Booking.PaymentStatus]


@pytest.mark.parametrize("source", STATUSES)
@pytest.mark.parametrize("target", STATUSES)
def test_booking_transition_table(source, target):
    assert BOOKING.allowed(source, target) == ((source, target) in BOOKING_ALLOWED)
    if (source, target) not in BOOKING_ALLOWED and source != target:
        with pytest.raises(TransitionNotAllowed):
            BOOKING.check(source, target)


@pytest.mark.parametrize("source", PAYMENT_STATUSES)
@pytest.mark.parametrize("target", PAYMENT_STATUSES)
def test_payment_status_transition_table(source, target):
    assert PAYMENT_STATUS.allowed(source, target) == ((source, target) in PAYMENT_ALLOWED)


# --- payment reports ------------------------------------------------------------------------
def test_payment_completed_confirms_with_deposit_paid_and_publishes_confirmed(booking):
    booking = completed(booking)

    assert (booking.status, booking.payment_status, booking.hold_expires_at) == (
        "confirmed",
        "deposit_paid",
        None,
    )
    assert events_of(booking) == ["booking.created", "booking.confirmed"]
    audit = BookingAudit.objects.filter(booking=booking).last()
    assert (audit.from_status, audit.to_status, audit.to_payment_status, audit.source) == (
        "pending_payment", "confirmed", "deposit_paid", "payment",
    )  # fmt: skip


def test_a_repeated_payment_completed_changes_nothing(booking):
    completed(booking)
    again = completed(Booking.objects.get(pk=booking.pk))
    assert again.status == "confirmed"
    assert events_of(booking).count("booking.confirmed") == 1


def test_a_full_payment_marks_paid(hall, customer):
    booking = services.booking_hold(
        customer_id=customer.pk,
        resource_id=hall.pk,
        starts_at=local(3, 10),
        ends_at=local(3, 11),
        payment_kind="full",
    )
    assert completed(booking).payment_status == "paid"


def test_payment_failed_keeps_the_error_and_the_hold(booking):
    result = services.booking_apply_payment_failed(
        booking_public_id=booking.public_id,
        payment_public_id=booking.payment.public_id,
        error="card declined",
    )
    assert (result.status, result.payment_status, result.payment_error) == (
        "pending_payment",
        "failed",
        "card declined",
    )
    # The customer pays after all (the gateway reports a late success): confirmed.
    assert completed(result).status == "confirmed"


def test_a_report_naming_a_booking_the_payment_does_not_pay_changes_nothing(booking, hall, customer):
    other = services.booking_hold(
        customer_id=customer.pk, resource_id=hall.pk, starts_at=local(4, 10), ends_at=local(4, 11)
    )
    succeed(other)
    result = services.booking_apply_payment_completed(
        booking_public_id=booking.public_id, payment_public_id=other.payment.public_id
    )
    assert result == booking
    booking.refresh_from_db()
    assert (booking.status, booking.payment_status, booking.needs_attention) == (
        "pending_payment",
        "unpaid",
        False,
    )
    assert PaymentAllocation.objects.get(payment=other.payment).outcome == "open"  # still other's to take


def test_late_payment_after_expiry_confirms_when_the_slot_is_still_free(booking):
    services.booking_expire(booking_id=booking.pk)
    booking = completed(Booking.objects.get(pk=booking.pk), late=True)

    assert (booking.status, booking.payment_status, booking.needs_attention) == (
        "confirmed",
        "deposit_paid",
        False,
    )
    assert events_of(booking) == ["booking.created", "booking.expired", "booking.confirmed"]
    assert "still free" in BookingAudit.objects.filter(booking=booking).last().note


def test_late_payment_after_the_slot_was_taken_is_refunded_and_flagged(
    booking, hall, customer, celery_app_without_worker
):
    services.booking_expire(booking_id=booking.pk)
    services.booking_hold(
        customer_id=customer.pk, resource_id=hall.pk, starts_at=local(3, 11), ends_at=local(3, 12)
    )

    late = completed(Booking.objects.get(pk=booking.pk), late=True)

    # The booking took none of the money (payment_status tracks what it kept): all is refunded.
    assert (late.status, late.payment_status, late.needs_attention) == ("expired", "unpaid", True)
    assert "full refund requested" in late.attention_note
    refund = Refund.objects.get(payment=late.payment)
    assert (refund.amount, refund.status, refund.full) == (Decimal("24.000"), "pending", True)
    assert "booking.confirmed" not in events_of(late)
    assert "the slot is taken" in Payment.objects.get(pk=late.payment_id).flagged_reason


def test_payment_for_a_cancelled_booking_is_refunded_and_flagged(
    booking, customer, celery_app_without_worker
):
    services.booking_cancel(booking_id=booking.pk, actor_id=customer.pk)
    late = completed(Booking.objects.get(pk=booking.pk))
    assert (late.status, late.needs_attention) == ("cancelled", True)
    assert Refund.objects.filter(payment=late.payment).exists()


def test_full_refund_cancels_and_publishes_cancelled(booking):
    booking = completed(booking)
    result = services.booking_apply_payment_refunded(
        booking_public_id=booking.public_id, payment_public_id=booking.payment.public_id,
        full=True, amount="24.00", refund_id="ref_1",
    )  # fmt: skip
    assert (result.status, result.payment_status) == ("cancelled", "refunded")
    assert events_of(booking)[-1] == "booking.cancelled"
    cancelled = OutboxEvent.objects.filter(type="booking.cancelled").get()
    assert cancelled.data["refund"] is True and cancelled.data["by"] == "payment"


def test_partial_refund_keeps_the_booking(booking):
    booking = completed(booking)
    result = services.booking_apply_payment_refunded(
        booking_public_id=booking.public_id, payment_public_id=booking.payment.public_id,
        full=False, amount="10.00", refund_id="ref_1",
    )  # fmt: skip
    assert (result.status, result.payment_status) == ("confirmed", "deposit_paid")


def test_payment_cancelled_releases_the_hold(booking):
    result = services.booking_apply_payment_cancelled(
        booking_public_id=booking.public_id, payment_public_id=booking.payment.public_id, reason="expired"
    )
    assert result.status == "expired"
    assert events_of(booking)[-1] == "booking.expired"


# --- staff ----------------------------------------------------------------------------------
def test_staff_confirm_paid_in_cash(booking, staff):
    result = services.booking_confirm(booking_id=booking.pk, actor_id=staff.pk, paid_in_cash=True)
    assert (result.status, result.payment_status) == ("confirmed", "paid")
    assert BookingAudit.objects.filter(booking=booking, actor=staff, to_status="confirmed").exists()
    assert OutboxEvent.objects.get(type="booking.confirmed").data["by"] == "staff"


def test_staff_confirm_of_an_expired_booking_whose_slot_is_taken_is_slot_taken(
    booking, hall, customer, staff
):
    services.booking_expire(booking_id=booking.pk)
    services.booking_hold(
        customer_id=customer.pk, resource_id=hall.pk, starts_at=local(3, 10), ends_at=local(3, 11)
    )
    with pytest.raises(services.SlotTaken):
        services.booking_confirm(booking_id=booking.pk, actor_id=staff.pk)
    booking.refresh_from_db()
    assert booking.status == "expired"


def test_complete_and_no_show_only_from_confirmed(booking, staff):
    with pytest.raises(TransitionNotAllowed):
        services.booking_complete(booking_id=booking.pk, actor_id=staff.pk)
    completed(booking)
    assert services.booking_no_show(booking_id=booking.pk, actor_id=staff.pk).status == "no_show"
    assert services.booking_no_show(booking_id=booking.pk, actor_id=staff.pk).status == "no_show"  # repeat
    with pytest.raises(TransitionNotAllowed):
        services.booking_complete(booking_id=booking.pk, actor_id=staff.pk)


# --- cancellation policy -----------------------------------------------------------------------
def test_customer_cancel_well_before_start_refunds_in_full(booking, customer, celery_app_without_worker):
    completed(booking)
    result = services.booking_cancel(booking_id=booking.pk, actor_id=customer.pk, reason="plans changed")

    assert result.status == "cancelled"
    refund = Refund.objects.get(payment=result.payment)
    assert (refund.amount, refund.idempotency_key) == (
        Decimal("24.000"),
        f"booking:{booking.public_id}:{booking.payment.public_id}:cancelled",  # one key per cause
    )
    assert OutboxEvent.objects.get(type="booking.cancelled").data["refund"] is True
    # The slot is free again.
    services.booking_hold(
        customer_id=customer.pk, resource_id=booking.resource_id, starts_at=local(3, 10), ends_at=local(3, 12)
    )


@override_settings(BOOKING_FREE_CANCEL_HOURS=24 * 7)
def test_customer_cancel_within_the_notice_gets_no_refund(booking, customer):
    completed(booking)
    result = services.booking_cancel(booking_id=booking.pk, actor_id=customer.pk)
    assert result.status == "cancelled" and not Refund.objects.exists()
    assert "within the notice period" in BookingAudit.objects.filter(booking=booking).last().note


@override_settings(BOOKING_FREE_CANCEL_HOURS=24 * 7)
def test_staff_may_refund_against_the_policy_and_withhold_within_it(
    booking, staff, hall, customer, celery_app_without_worker
):
    completed(booking)
    services.booking_cancel(booking_id=booking.pk, actor_id=staff.pk, by_staff=True, refund=True)
    assert Refund.objects.filter(payment=booking.payment).exists()

    other = services.booking_hold(
        customer_id=customer.pk, resource_id=hall.pk, starts_at=local(10, 10), ends_at=local(10, 11)
    )
    completed(other)
    with override_settings(BOOKING_FREE_CANCEL_HOURS=1):
        services.booking_cancel(booking_id=other.pk, actor_id=staff.pk, by_staff=True, refund=False)
    assert not Refund.objects.filter(payment=other.payment).exists()


def test_only_staff_choose_the_refund(booking, customer):
    with pytest.raises(BusinessRuleViolation):
        services.booking_cancel(booking_id=booking.pk, actor_id=customer.pk, refund=True)


def test_cancelling_an_unpaid_hold_refunds_nothing_and_a_second_cancel_is_a_no_op(booking, customer):
    services.booking_cancel(booking_id=booking.pk, actor_id=customer.pk)
    services.booking_cancel(booking_id=booking.pk, actor_id=customer.pk)
    assert not Refund.objects.exists()
    assert events_of(booking).count("booking.cancelled") == 1


def test_a_completed_booking_cannot_be_cancelled(booking, staff):
    completed(booking)
    services.booking_complete(booking_id=booking.pk, actor_id=staff.pk)
    with pytest.raises(TransitionNotAllowed):
        services.booking_cancel(booking_id=booking.pk, actor_id=staff.pk, by_staff=True)


# --- beat -----------------------------------------------------------------------------------
def test_expire_holds_expires_only_overdue_unpaid_holds_and_frees_the_slot(booking, hall, customer):
    paid = services.booking_hold(
        customer_id=customer.pk, resource_id=hall.pk, starts_at=local(4, 10), ends_at=local(4, 11)
    )
    fresh = services.booking_hold(
        customer_id=customer.pk, resource_id=hall.pk, starts_at=local(5, 10), ends_at=local(5, 11)
    )
    Booking.objects.filter(pk__in=[booking.pk, paid.pk]).update(
        hold_expires_at=timezone.now() - timedelta(minutes=1)
    )
    succeed(paid)  # its payment.completed is on its way: not expired

    assert services.booking_expire_holds() == 1
    assert services.booking_expire_holds() == 0  # idempotent

    statuses = dict(Booking.objects.values_list("pk", "status"))
    assert statuses == {booking.pk: "expired", paid.pk: "pending_payment", fresh.pk: "pending_payment"}
    assert OutboxEvent.objects.get(type="booking.expired").data["booking_id"] == booking.public_id
    services.booking_hold(
        customer_id=customer.pk, resource_id=hall.pk, starts_at=local(3, 10), ends_at=local(3, 12)
    )


def test_reminders_are_published_once_per_window_for_confirmed_bookings_about_to_start(hall, customer):
    soon = services.booking_hold(
        customer_id=customer.pk, resource_id=hall.pk, starts_at=local(1, 10), ends_at=local(1, 11)
    )
    later = services.booking_hold(
        customer_id=customer.pk, resource_id=hall.pk, starts_at=local(5, 10), ends_at=local(5, 11)
    )
    unpaid = services.booking_hold(
        customer_id=customer.pk, resource_id=hall.pk, starts_at=local(1, 12), ends_at=local(1, 13)
    )
    last_minute = services.booking_hold(
        customer_id=customer.pk, resource_id=hall.pk, starts_at=local(1, 14), ends_at=local(1, 15)
    )
    completed(soon)
    completed(later)
    now = soon.starts_at - timedelta(hours=23)

    assert services.booking_send_reminders(now=now) == 1  # the day-before one
    assert services.booking_send_reminders(now=now) == 0
    assert services.booking_send_reminders(now=now + timedelta(hours=1)) == 0
    completed(last_minute)
    # soon's two-hour reminder, and last_minute's day-before one (it starts in 5 h 30 min).
    assert services.booking_send_reminders(now=soon.starts_at - timedelta(hours=1, minutes=30)) == 2
    assert services.booking_send_reminders(now=last_minute.starts_at - timedelta(hours=1)) == 1
    assert services.booking_send_reminders(now=last_minute.starts_at - timedelta(minutes=30)) == 0

    reminders = [
        (e.data["booking_id"], e.data["hours_before"])
        for e in OutboxEvent.objects.filter(type="booking.reminder").order_by("seq")
    ]
    assert reminders == [
        (soon.public_id, 24),
        (soon.public_id, 2),
        (last_minute.public_id, 24),
        (last_minute.public_id, 2),
    ]
    assert Booking.objects.get(pk=soon.pk).reminder_hours == 2
    assert Booking.objects.get(pk=later.pk).reminder_sent_at is None
    assert Booking.objects.get(pk=unpaid.pk).reminder_sent_at is None


def test_beat_tasks_call_the_services(booking):
    from bookings.tasks import expire_holds, send_reminders

    Booking.objects.filter(pk=booking.pk).update(hold_expires_at=timezone.now() - timedelta(minutes=1))
    assert expire_holds.run() == 1
    assert send_reminders.run() == 0


def test_a_customer_cannot_cancel_once_the_booking_has_started_but_staff_can(booking, customer, staff):
    completed(booking)
    Booking.objects.filter(pk=booking.pk).update(
        starts_at=timezone.now() - timedelta(minutes=30), ends_at=timezone.now() + timedelta(minutes=30)
    )
    with pytest.raises(BusinessRuleViolation) as caught:
        services.booking_cancel(booking_id=booking.pk, actor_id=customer.pk)
    assert caught.value.code == "already_started"
    assert (
        services.booking_cancel(booking_id=booking.pk, actor_id=staff.pk, by_staff=True).status == "cancelled"
    )
    assert not Refund.objects.exists()  # within the notice: no refund unless staff say so


def test_late_payment_for_a_time_that_has_begun_is_refunded(booking, celery_app_without_worker):
    services.booking_expire(booking_id=booking.pk)
    Booking.objects.filter(pk=booking.pk).update(starts_at=timezone.now() - timedelta(minutes=5))
    late = completed(Booking.objects.get(pk=booking.pk), late=True)
    assert (late.status, late.needs_attention) == ("expired", True)
    assert Refund.objects.filter(payment=late.payment).exists()


# --- one payment, one charge ------------------------------------------------------------------
def checkout_opened(booking: Booking) -> Booking:
    """What the API does right after the hold: the gateway's checkout is open (payment pending)."""
    payment_checkout_started(
        payment_id=booking.payment_id,
        reference=f"ref-{booking.pk}",
        checkout_url="https://pay.example/x",
        raw={},
    )
    return Booking.objects.select_related("payment").get(pk=booking.pk)


def customer_pays_online(booking: Booking) -> Booking | None:
    """The customer pays at the gateway: payments applies it, then bookings applies its event."""
    payment = Payment.objects.get(pk=booking.payment_id)
    payment = payment_apply_state(
        payment_id=payment.pk,
        state=PaymentState(
            reference=payment.gateway_reference,
            status=Status.SUCCEEDED,
            amount=payment.amount,
            currency=payment.currency,
        ),
        source=PaymentLedgerEntry.Source.VERIFY,
    )
    event = OutboxEvent.objects.filter(type="payment.completed", aggregate_id=payment.public_id).last()
    assert event is not None, "payments published no payment.completed"
    return services.booking_apply_payment_completed(
        booking_public_id=booking.public_id,
        payment_public_id=payment.public_id,
        late=bool(event.data.get("late")),
    )


@pytest.fixture
def full_hold(hall, customer):
    booking = services.booking_hold(
        customer_id=customer.pk,
        resource_id=hall.pk,
        starts_at=local(3, 10),
        ends_at=local(3, 11),
        payment_kind="full",
    )
    return checkout_opened(booking)


@pytest.mark.parametrize("kind", ["full", "deposit"])
def test_a_cash_confirm_closes_the_open_online_payment(hall, customer, staff, kind):
    booking = services.booking_hold(
        customer_id=customer.pk,
        resource_id=hall.pk,
        starts_at=local(3, 10),
        ends_at=local(3, 11),
        payment_kind=kind,
    )
    booking = checkout_opened(booking)
    services.booking_confirm(booking_id=booking.pk, actor_id=staff.pk, paid_in_cash=True)

    assert Payment.objects.get(pk=booking.payment_id).status == "expired"
    # payments' payment.cancelled (reason expired) leaves the confirmed booking alone.
    after = services.booking_apply_payment_cancelled(
        booking_public_id=booking.public_id, payment_public_id=booking.payment.public_id, reason="expired"
    )
    assert (after.status, after.payment_status) == ("confirmed", "paid")


def test_a_staff_confirm_without_cash_leaves_the_payment_open(booking, staff):
    booking = checkout_opened(booking)
    services.booking_confirm(booking_id=booking.pk, actor_id=staff.pk)
    assert Payment.objects.get(pk=booking.payment_id).status == "pending"


def test_an_online_payment_after_a_cash_confirm_is_refunded_and_flagged(
    full_hold, staff, celery_app_without_worker
):
    services.booking_confirm(booking_id=full_hold.pk, actor_id=staff.pk, paid_in_cash=True)

    result = customer_pays_online(full_hold)  # the gateway took it anyway (a late success)

    assert (result.status, result.payment_status, result.needs_attention) == ("confirmed", "paid", True)
    assert "already paid" in result.attention_note and "full refund requested" in result.attention_note
    refund = Refund.objects.get(payment_id=full_hold.payment_id)
    assert (refund.amount, refund.full, refund.status) == (Decimal("40.000"), True, "pending")
    audit = BookingAudit.objects.filter(booking=full_hold).last()
    assert audit.source == "payment" and "full refund requested" in audit.note


def test_an_online_payment_racing_a_cash_confirm_is_refunded_and_flagged(
    full_hold, staff, celery_app_without_worker
):
    succeed(full_hold)  # paid online, payment.completed not applied yet
    services.booking_confirm(booking_id=full_hold.pk, actor_id=staff.pk, paid_in_cash=True)
    assert Payment.objects.get(pk=full_hold.payment_id).status == "succeeded"  # nothing to close

    result = completed(Booking.objects.get(pk=full_hold.pk))

    assert (result.status, result.payment_status, result.needs_attention) == ("confirmed", "paid", True)
    assert Refund.objects.get(payment_id=full_hold.payment_id).full


def test_a_repeated_completion_after_an_unwanted_payment_changes_nothing(
    full_hold, staff, celery_app_without_worker
):
    services.booking_confirm(booking_id=full_hold.pk, actor_id=staff.pk, paid_in_cash=True)
    first = customer_pays_online(full_hold)
    audits = BookingAudit.objects.filter(booking=full_hold).count()

    again = completed(Booking.objects.get(pk=full_hold.pk), late=True)

    assert again.attention_note == first.attention_note
    assert BookingAudit.objects.filter(booking=full_hold).count() == audits
    assert Refund.objects.filter(payment_id=full_hold.payment_id).count() == 1


def test_a_repeated_deposit_completion_after_the_rest_was_paid_in_cash_is_not_refunded(booking, staff):
    completed(booking)
    services.booking_confirm(booking_id=booking.pk, actor_id=staff.pk, paid_in_cash=True)

    again = completed(Booking.objects.get(pk=booking.pk))

    assert (again.status, again.payment_status, again.needs_attention) == ("confirmed", "paid", False)
    assert not Refund.objects.exists()


def test_cancelling_a_hold_closes_its_open_payment(booking, customer):
    booking = checkout_opened(booking)
    services.booking_cancel(booking_id=booking.pk, actor_id=customer.pk)

    assert Payment.objects.get(pk=booking.payment_id).status == "expired"
    after = services.booking_apply_payment_cancelled(
        booking_public_id=booking.public_id, payment_public_id=booking.payment.public_id, reason="expired"
    )
    assert after.status == "cancelled"
    assert events_of(booking) == ["booking.created", "booking.cancelled"]


def test_a_payment_made_after_cancelling_anyway_is_refunded(booking, customer, celery_app_without_worker):
    booking = checkout_opened(booking)
    services.booking_cancel(booking_id=booking.pk, actor_id=customer.pk)

    result = customer_pays_online(booking)  # the gateway's page was still open

    assert (result.status, result.needs_attention) == ("cancelled", True)
    assert Refund.objects.get(payment_id=booking.payment_id).full


# --- one refund per booking payment -----------------------------------------------------------
def test_a_cancel_before_the_completion_is_applied_refunds_once_and_flags_nothing(
    booking, customer, celery_app_without_worker
):
    succeed(booking)  # paid at the gateway; payment.completed still on its way
    services.booking_cancel(booking_id=booking.pk, actor_id=customer.pk)
    refund = Refund.objects.get(payment_id=booking.payment_id)

    result = completed(Booking.objects.get(pk=booking.pk))

    assert "refund refused" not in result.attention_note
    assert Refund.objects.filter(payment_id=booking.payment_id).count() == 1
    assert refund.idempotency_key == f"booking:{booking.public_id}:{booking.payment.public_id}:cancelled"
    assert not result.needs_attention  # the money is already going back: nothing for staff to do
    assert "already requested" in BookingAudit.objects.filter(booking=booking).last().note


def test_an_unwanted_payment_already_refunded_elsewhere_is_not_flagged_for_a_refund_by_hand(
    booking, customer, staff, celery_app_without_worker
):
    services.booking_cancel(booking_id=booking.pk, actor_id=customer.pk)
    succeed(booking)
    refund_request(
        payment_id=booking.payment_id, amount=None, reason="by staff at the payments API",
        idempotency_key="staff-1", requested_by_id=staff.pk,
    )  # fmt: skip

    result = completed(Booking.objects.get(pk=booking.pk), late=True)

    assert "refund by hand" not in result.attention_note
    assert Refund.objects.filter(payment_id=booking.payment_id).count() == 1


def test_a_booking_confirmed_within_the_last_window_gets_only_that_reminder(hall, customer):
    booking = services.booking_hold(
        customer_id=customer.pk, resource_id=hall.pk, starts_at=local(1, 10), ends_at=local(1, 11)
    )
    completed(booking)
    assert services.booking_send_reminders(now=booking.starts_at - timedelta(minutes=90)) == 1
    assert services.booking_send_reminders(now=booking.starts_at - timedelta(minutes=10)) == 0
    assert [e.data["hours_before"] for e in OutboxEvent.objects.filter(type="booking.reminder")] == [2]
