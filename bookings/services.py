"""Writes on bookings. Each owns its transaction, locks the booking row, follows
bookings.transitions, appends to the audit trail and publishes booking.* events.

No two bookings that hold time (pending_payment, confirmed) of one resource overlap: on
PostgreSQL the exclusion constraint `booking_no_overlap` guarantees it, however many
requests race; the overlap check done here first only gives the common case a clear answer
early (and is the guarantee on SQLite, whose transactions here take the write lock at BEGIN).
"""

import logging
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Sum
from django.utils import timezone

from bookings.availability import STEP, covered, on_grid
from bookings.models import Booking, BookingAudit, Resource, Service
from bookings.selectors import holding_bookings, resource_opening_intervals
from bookings.transitions import BOOKING, PAYMENT_STATUS
from core import events
from core.errors import ApplicationError, BusinessRuleViolation, InvalidInput, NotFound
from core.money import exponent
from payments.models import Payment, Refund
from payments.services import payment_create, payment_expire, payment_gateway_choose, refund_request

logger = logging.getLogger(__name__)
OVERLAP_CONSTRAINT = "booking_no_overlap"
# The audit note of every applied payment.completed starts with this: a booking has one
# payment, so such a row means that payment's completion has been applied (see
# booking_apply_payment_completed).
PAYMENT_COMPLETED_NOTE = "payment completed"


class SlotTaken(ApplicationError):
    status_code = 409
    default_code = "slot_taken"
    default_message = "This time is already booked."


def _invalid(field: str, message: str, code: str = "invalid") -> InvalidInput:
    return InvalidInput(f"{field}: {message}", code=code, extra={"fields": {field: [message]}})


def _is_overlap_violation(exc: IntegrityError) -> bool:
    diag = getattr(exc.__cause__, "diag", None)
    return getattr(diag, "constraint_name", None) == OVERLAP_CONSTRAINT


def _money(amount: Decimal, currency: str) -> Decimal:
    return amount.quantize(Decimal(1).scaleb(-exponent(currency)), rounding=ROUND_HALF_UP)


def _event_data(booking: Booking, **extra: Any) -> dict[str, Any]:
    return {
        "booking_id": booking.public_id,
        "resource_id": booking.resource_id,
        "service_id": booking.service_id,
        "customer_id": booking.customer_id,
        "starts_at": booking.starts_at,
        "ends_at": booking.ends_at,
        "timezone": booking.resource.timezone,
        "status": booking.status,
        "payment_status": booking.payment_status,
        "payment_id": booking.payment.public_id if booking.payment_id else None,
        "amount_total": _money(booking.amount_total, booking.currency),
        "amount_due": _money(booking.amount_due, booking.currency),
        "currency": booking.currency,
        **extra,
    }


def _audit(
    booking: Booking,
    *,
    source: str,
    from_status: str = "",
    from_payment_status: str = "",
    actor_id: int | None = None,
    note: str = "",
) -> None:
    BookingAudit.objects.create(
        booking=booking,
        from_status=from_status,
        to_status=booking.status if from_status else "",
        from_payment_status=from_payment_status,
        to_payment_status=booking.payment_status if from_payment_status else "",
        source=source,
        actor_id=actor_id,
        note=note,
    )


def _lock(booking_id: int) -> Booking:
    try:
        return (
            Booking.objects.select_for_update(of=("self",))
            .select_related("resource", "payment")
            .get(pk=booking_id)
        )
    except Booking.DoesNotExist:
        raise NotFound("No such booking.") from None


def _lock_resource(resource_id: int) -> None:
    """Serialise the writes that make a booking hold time on one resource.

    The exclusion constraint alone would still refuse every overlap, but concurrent inserts
    that conflict with each other can deadlock while it checks them (PostgreSQL documents
    this for exclusion constraints); queued on the resource's row, each request sees the
    committed winner and gets a clear slot_taken. FOR NO KEY UPDATE: bookings' foreign keys
    to the resource (FOR KEY SHARE) are not blocked by it.
    """
    Resource.objects.select_for_update(no_key=True).filter(pk=resource_id).values_list("pk").first()


def _flag(booking: Booking, note: str) -> None:
    booking.needs_attention = True
    booking.attention_note = "\n".join(filter(None, [booking.attention_note, note]))


# --- Holding a slot -------------------------------------------------------------------------
def _aware(value: datetime, resource: Resource, field: str) -> datetime:
    """An aware instant; a naive time is the resource's local wall time (and must exist there)."""
    try:
        if value.tzinfo is not None:
            return value.astimezone(UTC)
        local = value.replace(tzinfo=resource.tz)
        if local.astimezone(UTC).astimezone(resource.tz).replace(tzinfo=None) != value:
            raise _invalid(
                field, f"{value:%Y-%m-%d %H:%M} does not exist in {resource.timezone} (clocks skip it)."
            )
        return local.astimezone(UTC)
    except OverflowError:  # the calendar's ends (year 1, year 9999) have no instant here
        raise _invalid(field, f"{value.isoformat()} is out of range.") from None


def booking_price(*, resource: Resource, service: Service | None, minutes: int) -> Decimal:
    """The total: the service's price, or the hourly price for the booked minutes."""
    if service is not None:
        return _money(service.price, service.currency)
    return _money(resource.price_per_hour * minutes / 60, resource.currency)


def booking_deposit(*, total: Decimal, currency: str) -> Decimal:
    return _money(total * settings.BOOKING_DEPOSIT_PERCENT / 100, currency)


def booking_check_time(
    *,
    resource: Resource,
    service: Service | None,
    starts_at: datetime,
    ends_at: datetime | None,
    now: datetime,
) -> tuple[datetime, datetime]:
    """Validate a requested time for the resource; return it as aware UTC instants.

    Malformed requests (off the grid, end not after start, wrong length) are 400s naming the
    field; requests that are well formed but not bookable (past, too far ahead, outside the
    opening hours) are 422s.
    """
    starts_at = _aware(starts_at, resource, "start")
    if not on_grid(starts_at):
        raise _invalid("start", f"must be on the {STEP.seconds // 60}-minute grid (:00, :15, :30, :45).")
    if service is not None:
        try:
            expected = starts_at + timedelta(minutes=service.duration_minutes)
        except OverflowError:
            raise _invalid("start", f"{service.name} would end after the calendar does.") from None
        if ends_at is not None and _aware(ends_at, resource, "end") != expected:
            raise _invalid("end", f"{service.name} takes {service.duration_minutes} minutes; omit end.")
        ends_at = expected
    elif ends_at is None:
        raise _invalid("end", "is required when no service is booked.")
    else:
        ends_at = _aware(ends_at, resource, "end")
    if ends_at <= starts_at:
        raise _invalid("end", "must be after start.")
    if not on_grid(ends_at):
        raise _invalid("end", f"must be on the {STEP.seconds // 60}-minute grid (:00, :15, :30, :45).")
    minutes = int((ends_at - starts_at).total_seconds() // 60)
    if service is None:
        if minutes < resource.min_booking_minutes:
            raise _invalid(
                "end", f"a booking of {resource.name} lasts at least {resource.min_booking_minutes} minutes."
            )
        if minutes > resource.max_booking_minutes:
            raise _invalid(
                "end", f"a booking of {resource.name} lasts at most {resource.max_booking_minutes} minutes."
            )
    if starts_at < now:
        raise BusinessRuleViolation("The start is in the past.", code="in_the_past")
    last_date = now.astimezone(resource.tz).date() + timedelta(days=settings.BOOKING_MAX_DAYS_AHEAD)
    if starts_at.astimezone(resource.tz).date() > last_date:
        raise BusinessRuleViolation(
            f"Bookings open {settings.BOOKING_MAX_DAYS_AHEAD} days ahead, until {last_date}.",
            code="too_far_ahead",
        )
    if not covered(
        starts_at, ends_at, resource_opening_intervals(resource=resource, start=starts_at, end=ends_at)
    ):
        raise BusinessRuleViolation(
            f"{resource.name} is not open for all of that time ({resource.timezone}).",
            code="outside_opening_hours",
        )
    return starts_at, ends_at


def booking_hold(
    *,
    customer_id: int,
    resource_id: int,
    starts_at: datetime,
    ends_at: datetime | None = None,
    service_id: int | None = None,
    payment_kind: str = Booking.PaymentKind.DEPOSIT,
    notes: str = "",
) -> Booking:
    """Hold the slot as `pending_payment` with its payment (deposit or full), in one transaction.

    The hold, and the payment's deadline, last BOOKING_HOLD_MINUTES. booking.created is
    published; the caller opens the payment's checkout after the commit.
    """
    resource = Resource.objects.filter(pk=resource_id, active=True).first()
    if resource is None:
        raise _invalid("resource_id", f"no bookable resource with id {resource_id}.", code="unknown_resource")
    service = None
    if service_id is not None:
        service = Service.objects.filter(pk=service_id, active=True, resources=resource).first()
        if service is None:
            raise _invalid("service_id", f"{resource.name} offers no service with id {service_id}.")
    elif resource.price_per_hour is None:
        raise _invalid("service_id", f"{resource.name} is booked for a service: name one.")
    if payment_kind not in Booking.PaymentKind.values:
        raise _invalid("payment_kind", f"must be one of {', '.join(Booking.PaymentKind.values)}.")
    now = timezone.now()
    try:
        starts_at, ends_at = booking_check_time(
            resource=resource, service=service, starts_at=starts_at, ends_at=ends_at, now=now
        )
    except OverflowError:  # a last guard: the API bounds the dates, _aware names the field
        raise _invalid("start", "is out of range.") from None
    minutes = int((ends_at - starts_at).total_seconds() // 60)
    total = booking_price(resource=resource, service=service, minutes=minutes)
    currency = service.currency if service else resource.currency
    due = total
    if payment_kind == Booking.PaymentKind.DEPOSIT:
        due = booking_deposit(total=total, currency=currency)
        if due <= 0 or due >= total:  # a deposit of nothing, or of everything, is a full payment
            payment_kind, due = Booking.PaymentKind.FULL, total

    with transaction.atomic():
        _lock_resource(resource.pk)
        _release_stale_holds(resource_id=resource.pk, start=starts_at, end=ends_at, now=now)
        if holding_bookings(resource_id=resource.pk, start=starts_at, end=ends_at).exists():
            raise SlotTaken(extra={"start": starts_at, "end": ends_at})
        try:
            with transaction.atomic():
                booking = Booking.objects.create(
                    resource=resource,
                    service=service,
                    customer_id=customer_id,
                    starts_at=starts_at,
                    ends_at=ends_at,
                    payment_kind=payment_kind,
                    amount_total=total,
                    amount_due=due,
                    currency=currency,
                    hold_expires_at=now + timedelta(minutes=settings.BOOKING_HOLD_MINUTES),
                    notes=notes,
                )
        except IntegrityError as exc:
            if _is_overlap_violation(exc):  # a concurrent request took it after our check
                raise SlotTaken(extra={"start": starts_at, "end": ends_at}) from exc
            raise
        payment = payment_create(
            customer_id=customer_id,
            amount=due,
            currency=currency,
            purpose=Payment.Purpose.BOOKING,
            purpose_ids=[booking.public_id],
            gateway=payment_gateway_choose(),
            kind=payment_kind,
            deadline_minutes=settings.BOOKING_HOLD_MINUTES,
        )
        booking.payment = payment
        booking.hold_expires_at = payment.deadline  # one deadline for the hold and its payment
        booking.save(update_fields=["payment", "hold_expires_at", "updated_at"])
        _audit(
            booking,
            source=BookingAudit.Source.CUSTOMER,
            from_status="new",
            actor_id=customer_id,
            note=f"held until {booking.hold_expires_at:%Y-%m-%d %H:%M} UTC; {payment_kind} {due} {currency}",
        )
        events.publish("booking.created", _event_data(booking, payment_kind=payment_kind))
    return booking


def _release_stale_holds(*, resource_id: int, start: datetime, end: datetime, now: datetime) -> None:
    """Expire holds past their deadline in [start, end) now rather than at beat's next pass.

    A hold locked by someone else (its payment being applied) is skipped: it still counts.
    """
    stale = (
        holding_bookings(resource_id=resource_id, start=start, end=end)
        .filter(status=Booking.Status.PENDING_PAYMENT, hold_expires_at__lt=now)
        .select_related("resource", "payment")
        .select_for_update(skip_locked=True, of=("self",))
        .order_by("pk")
    )
    for booking in stale:
        _expire(booking, reason="hold expired")


# --- Staff and customer actions --------------------------------------------------------------
def booking_confirm(
    *, booking_id: int, actor_id: int | None, paid_in_cash: bool = False, note: str = ""
) -> Booking:
    """Staff confirm a booking (e.g. paid at the desk: `paid_in_cash` marks it paid)."""
    with transaction.atomic():
        booking = _lock(booking_id)
        before, before_payment = booking.status, booking.payment_status
        if BOOKING.is_repeat(booking.status, Booking.Status.CONFIRMED) and not paid_in_cash:
            return booking
        if booking.status != Booking.Status.CONFIRMED:
            BOOKING.check(booking.status, Booking.Status.CONFIRMED)
        if paid_in_cash and booking.payment_status != Booking.PaymentStatus.PAID:
            PAYMENT_STATUS.check(booking.payment_status, Booking.PaymentStatus.PAID)
            booking.payment_status = Booking.PaymentStatus.PAID
        confirming = booking.status != Booking.Status.CONFIRMED
        booking.status = Booking.Status.CONFIRMED
        booking.hold_expires_at = None
        _save_holding(booking, fields=["status", "payment_status", "hold_expires_at"])
        # Paid at the desk: the online payment must not take the money a second time.
        closed = _close_open_payment(booking) if paid_in_cash else ""
        note = note or ("confirmed, paid in cash" if paid_in_cash else "confirmed by staff")
        _audit(
            booking,
            source=BookingAudit.Source.STAFF,
            from_status=before,
            from_payment_status=before_payment if booking.payment_status != before_payment else "",
            actor_id=actor_id,
            note="; ".join(filter(None, [note, closed])),
        )
        if confirming:
            events.publish("booking.confirmed", _event_data(booking, by="staff"))
    return booking


def _close_open_payment(booking: Booking) -> str:
    """Expire the booking's online payment if it can still be paid (created or pending); a note.

    Called with the booking row locked; payment_expire then locks the payment (booking first,
    payment second, as everywhere). If it succeeded meanwhile it is left alone: its
    payment.completed is on its way and booking_apply_payment_completed refunds it.
    """
    if booking.payment_id is None or booking.payment.status not in (
        Payment.Status.CREATED,
        Payment.Status.PENDING,
    ):
        return ""
    booking.payment = payment_expire(payment_id=booking.payment_id)
    if booking.payment.status == Payment.Status.EXPIRED:
        return f"online payment {booking.payment.public_id} closed"
    return ""


def _save_holding(booking: Booking, *, fields: list[str]) -> None:
    """Save a booking that (again) holds its time; the constraint may find the slot taken."""
    _lock_resource(booking.resource_id)
    if booking.status in (Booking.Status.CONFIRMED, Booking.Status.PENDING_PAYMENT):
        others = holding_bookings(
            resource_id=booking.resource_id, start=booking.starts_at, end=booking.ends_at
        ).exclude(pk=booking.pk)
        if others.exists():
            raise SlotTaken("The slot was booked by someone else meanwhile.")
    try:
        with transaction.atomic():
            booking.save(update_fields=[*fields, "updated_at"])
    except IntegrityError as exc:
        if _is_overlap_violation(exc):
            raise SlotTaken("The slot was booked by someone else meanwhile.") from exc
        raise


def booking_refund_due(*, booking: Booking, now: datetime | None = None) -> bool:
    """The policy: a full refund when cancelled BOOKING_FREE_CANCEL_HOURS or more before the start."""
    now = now or timezone.now()
    return now <= booking.starts_at - timedelta(hours=settings.BOOKING_FREE_CANCEL_HOURS)


def booking_cancel(
    *,
    booking_id: int,
    actor_id: int | None,
    by_staff: bool = False,
    refund: bool | None = None,
    reason: str = "",
) -> Booking:
    """Cancel a held or confirmed booking and free its slot.

    What was paid online is refunded in full if the policy says so (booking_refund_due);
    staff may decide otherwise with `refund`. The refund goes to the gateway after the
    commit; payment.refunded then marks the booking refunded.
    """
    if refund is not None and not by_staff:
        raise BusinessRuleViolation("Only staff choose whether a cancellation is refunded.", code="forbidden")
    with transaction.atomic():
        booking = _lock(booking_id)
        if BOOKING.is_repeat(booking.status, Booking.Status.CANCELLED):
            return booking
        BOOKING.check(booking.status, Booking.Status.CANCELLED)
        if not by_staff and timezone.now() >= booking.starts_at:
            raise BusinessRuleViolation("The booking has started; ask the staff.", code="already_started")
        policy = booking_refund_due(booking=booking)
        refund = policy if refund is None else refund
        before = booking.status
        booking.status = Booking.Status.CANCELLED
        booking.hold_expires_at = None
        booking.save(update_fields=["status", "hold_expires_at", "updated_at"])
        source = BookingAudit.Source.STAFF if by_staff else BookingAudit.Source.CUSTOMER
        closed = _close_open_payment(booking)  # nobody may pay for a cancelled booking
        requested, note = _refund_after_cancel(booking, actor_id=actor_id) if refund else (False, "no refund")
        if not refund and booking.payment_status in (
            Booking.PaymentStatus.PAID,
            Booking.PaymentStatus.DEPOSIT_PAID,
        ):
            note = f"no refund ({'staff decision' if policy else 'cancelled within the notice period'})"
        _audit(
            booking,
            source=source,
            from_status=before,
            actor_id=actor_id,
            note="; ".join(filter(None, [reason, note, closed])),
        )
        events.publish("booking.cancelled", _event_data(booking, reason=reason, refund=requested, by=source))
    return booking


def _refund_key(booking: Booking) -> str:
    """The one idempotency key of a refund of the booking's payment, whichever path asks for it.

    A cancellation and a late payment.completed may both want the money back; under one key
    the second gets the first's refund instead of a refusal (nothing left to refund).
    """
    return f"booking:{booking.public_id}:{booking.payment.public_id}:refund"


def _refund_after_cancel(booking: Booking, *, actor_id: int | None) -> tuple[bool, str]:
    """Refund all that is left of the booking's online payment; (whether one was requested, a note)."""
    payment = booking.payment
    if payment is None or payment.status not in (Payment.Status.SUCCEEDED, Payment.Status.PARTIALLY_REFUNDED):
        if booking.payment_status == Booking.PaymentStatus.PAID:
            return False, "refund due, but nothing was paid online: refund at the desk"
        return False, "nothing paid online to refund"
    refund_request(
        payment_id=payment.pk,
        amount=None,
        reason=f"booking {booking.public_id} cancelled",
        idempotency_key=_refund_key(booking),
        requested_by_id=actor_id,
    )
    return True, "full refund requested"


def _finish(*, booking_id: int, target: str, actor_id: int | None, note: str) -> Booking:
    with transaction.atomic():
        booking = _lock(booking_id)
        if BOOKING.is_repeat(booking.status, target):
            return booking
        BOOKING.check(booking.status, target)
        before = booking.status
        booking.status = target
        booking.save(update_fields=["status", "updated_at"])
        _audit(booking, source=BookingAudit.Source.STAFF, from_status=before, actor_id=actor_id, note=note)
    return booking


def booking_complete(*, booking_id: int, actor_id: int | None, note: str = "") -> Booking:
    return _finish(booking_id=booking_id, target=Booking.Status.COMPLETED, actor_id=actor_id, note=note)


def booking_no_show(*, booking_id: int, actor_id: int | None, note: str = "") -> Booking:
    return _finish(booking_id=booking_id, target=Booking.Status.NO_SHOW, actor_id=actor_id, note=note)


def booking_resolve_attention(*, booking_id: int, actor_id: int | None, note: str = "") -> Booking:
    """Staff have dealt with what the booking was flagged for."""
    with transaction.atomic():
        booking = _lock(booking_id)
        if not booking.needs_attention:
            return booking
        booking.needs_attention = False
        booking.save(update_fields=["needs_attention", "updated_at"])
        _audit(
            booking, source=BookingAudit.Source.STAFF, actor_id=actor_id, note=note or "attention resolved"
        )
    return booking


# --- Expiry and reminders (beat) ------------------------------------------------------------
def _expire(booking: Booking, *, reason: str) -> bool:
    """Expire a locked pending hold; not one whose payment already succeeded (its event is coming)."""
    if booking.status != Booking.Status.PENDING_PAYMENT:
        return False
    if booking.payment_id and booking.payment.status == Payment.Status.SUCCEEDED:
        return False
    BOOKING.check(booking.status, Booking.Status.EXPIRED)
    booking.status = Booking.Status.EXPIRED
    booking.save(update_fields=["status", "updated_at"])
    _audit(
        booking, source=BookingAudit.Source.SYSTEM, from_status=Booking.Status.PENDING_PAYMENT, note=reason
    )
    events.publish("booking.expired", _event_data(booking, reason=reason))
    return True


def booking_expire(*, booking_id: int, reason: str = "hold expired") -> Booking:
    with transaction.atomic():
        booking = _lock(booking_id)
        _expire(booking, reason=reason)
    return booking


def booking_expire_holds(*, now: datetime | None = None, limit: int = 500) -> int:
    """Expire holds past their deadline (booking.expired), freeing their slots. Idempotent."""
    now = now or timezone.now()
    due = (
        Booking.objects.filter(status=Booking.Status.PENDING_PAYMENT, hold_expires_at__lt=now)
        .order_by("hold_expires_at")
        .values_list("pk", flat=True)[:limit]
    )
    expired = 0
    for booking_id in list(due):
        try:
            with transaction.atomic():
                expired += _expire(_lock(booking_id), reason="hold expired")
        except Exception:  # one bad booking must not stop the pass for the others
            logger.exception("could not expire booking hold", extra={"booking_id": booking_id})
    return expired


def booking_send_reminders(*, now: datetime | None = None, limit: int = 500) -> int:
    """Publish booking.reminder once per confirmed booking starting within BOOKING_REMINDER_HOURS.

    reminder_sent_at is set in the transaction that publishes, under the row lock (SKIP
    LOCKED: a concurrent pass takes other rows), so a booking is reminded exactly once.
    """
    now = now or timezone.now()
    with transaction.atomic():
        due = list(
            Booking.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("resource", "payment")
            .filter(
                status=Booking.Status.CONFIRMED,
                reminder_sent_at__isnull=True,
                starts_at__gt=now,
                starts_at__lte=now + timedelta(hours=settings.BOOKING_REMINDER_HOURS),
            )
            .order_by("starts_at")[:limit]
        )
        for booking in due:
            booking.reminder_sent_at = now
            booking.save(update_fields=["reminder_sent_at", "updated_at"])
            events.publish(
                "booking.reminder", _event_data(booking, hours_before=settings.BOOKING_REMINDER_HOURS)
            )
    return len(due)


# --- What payments tell us (subscribers) ----------------------------------------------------
def _booking_of_payment(*, booking_public_id: str, payment_public_id: str) -> Booking | None:
    """The locked booking a payment event is about, or None (not ours, or another payment)."""
    booking_id = Booking.objects.filter(public_id=booking_public_id).values_list("pk", flat=True).first()
    if booking_id is None:
        logger.warning("payment event for an unknown booking", extra={"booking_id": booking_public_id})
        return None
    booking = _lock(booking_id)
    if booking.payment is None or booking.payment.public_id != payment_public_id:
        _flag(booking, f"payment {payment_public_id} reported for this booking is not its payment")
        booking.save(update_fields=["needs_attention", "attention_note", "updated_at"])
        _audit(booking, source=BookingAudit.Source.PAYMENT, note=f"unexpected payment {payment_public_id}")
        return None
    return booking


def booking_apply_payment_completed(
    *, booking_public_id: str, payment_public_id: str, kind: str, late: bool = False
) -> Booking | None:
    """The payment succeeded: mark it paid (or deposit paid) and confirm the booking.

    A hold that expired meanwhile is confirmed if its slot is still free. Money the booking
    does not want (its slot is gone, it was cancelled, or staff already took the payment at
    the desk) is refunded in full and staff are told (needs_attention).

    Applied once per payment: the event backbone de-duplicates redeliveries, and a second
    payment.completed for the same payment finds its first one in the audit trail and
    changes nothing.
    """
    with transaction.atomic():
        booking = _booking_of_payment(
            booking_public_id=booking_public_id, payment_public_id=payment_public_id
        )
        if booking is None:
            return None
        if _completion_applied(booking):
            return booking  # repeated
        paid = (
            Booking.PaymentStatus.DEPOSIT_PAID if kind == Payment.Kind.DEPOSIT else Booking.PaymentStatus.PAID
        )
        before, before_payment = booking.status, booking.payment_status
        unwanted: list[str] = []  # why the money is not wanted
        if booking.payment_status in (Booking.PaymentStatus.PAID, Booking.PaymentStatus.DEPOSIT_PAID):
            # Not this payment (its completion is not in the audit): paid by other means.
            unwanted.append(f"the booking was already {booking.payment_status} at the desk")
        elif PAYMENT_STATUS.allowed(booking.payment_status, paid):
            booking.payment_status = paid
            booking.payment_error = ""
        else:
            _flag(
                booking,
                f"online payment of {booking.amount_due} {booking.currency} arrived while "
                f"{booking.payment_status}",
            )
        note = PAYMENT_COMPLETED_NOTE + (" after its deadline" if late else "")
        confirmed = False
        if booking.status == Booking.Status.PENDING_PAYMENT:
            booking.status = Booking.Status.CONFIRMED
            confirmed = True
        elif booking.status == Booking.Status.EXPIRED and booking.starts_at <= timezone.now():
            unwanted.append("the hold had expired and its time has begun")
        elif booking.status == Booking.Status.EXPIRED:
            booking.status = Booking.Status.CONFIRMED
            try:
                _save_holding(booking, fields=["status"])
                confirmed = True
                note += "; the hold had expired but the slot was still free: confirmed"
            except SlotTaken:
                booking.status = Booking.Status.EXPIRED
                unwanted.append("the hold had expired and the slot is taken")
        elif booking.status == Booking.Status.CANCELLED:
            unwanted.append("the booking was cancelled")
        if unwanted:
            note += f"; {'; '.join(unwanted)}: " + _refund_unwanted(booking, reason="; ".join(unwanted))
        booking.hold_expires_at = None if confirmed else booking.hold_expires_at
        booking.save(
            update_fields=[
                "status",
                "payment_status",
                "payment_error",
                "hold_expires_at",
                "needs_attention",
                "attention_note",
                "updated_at",
            ]
        )
        _audit(
            booking,
            source=BookingAudit.Source.PAYMENT,
            from_status=before if booking.status != before else "",
            from_payment_status=before_payment if booking.payment_status != before_payment else "",
            note=note,
        )
        if confirmed:
            events.publish("booking.confirmed", _event_data(booking, by="payment", late=late))
    return booking


def _completion_applied(booking: Booking) -> bool:
    """Whether the booking's payment's payment.completed was applied already (its audit row)."""
    return BookingAudit.objects.filter(
        booking=booking, source=BookingAudit.Source.PAYMENT, note__startswith=PAYMENT_COMPLETED_NOTE
    ).exists()


def _refund_unwanted(booking: Booking, *, reason: str) -> str:
    """Money the booking does not want: refund all of it; what happened, for the audit.

    A refund already requested for this payment (a cancellation, under the same key), or
    refunds made elsewhere (the payments API) that already cover it, are not asked for again
    and need nobody's attention. Otherwise the booking is flagged for staff.
    """
    payment = booking.payment
    key = _refund_key(booking)
    existing = Refund.objects.filter(idempotency_key=key, payment_id=payment.pk).first()
    if existing is not None and existing.status != Refund.Status.FAILED:
        return f"a full refund was already requested ({existing.public_id})"
    if existing is not None:  # the key would only return the failed refund
        outcome = f"the refund {existing.public_id} failed: refund by hand"
        _flag(booking, f"online payment {payment.public_id} not wanted ({reason}); {outcome}")
        return outcome
    try:
        refund_request(
            payment_id=payment.pk,
            amount=None,
            reason=f"booking {booking.public_id}: {reason}",
            idempotency_key=key,
            requested_by_id=None,
        )
        outcome = "full refund requested"
    except ApplicationError as exc:
        covered = Refund.objects.filter(
            payment_id=payment.pk, status__in=(Refund.Status.PENDING, Refund.Status.SUCCEEDED)
        ).aggregate(s=Sum("amount"))["s"]
        if covered is not None and covered >= payment.amount:
            return f"already refunded in full ({covered} {payment.currency})"
        outcome = f"refund refused ({exc.message}): refund by hand"
    _flag(booking, f"online payment {payment.public_id} not wanted ({reason}); {outcome}")
    return outcome


def booking_apply_payment_failed(
    *, booking_public_id: str, payment_public_id: str, error: str
) -> Booking | None:
    """The payment failed: keep the error on the booking (the hold runs on until its deadline)."""
    with transaction.atomic():
        booking = _booking_of_payment(
            booking_public_id=booking_public_id, payment_public_id=payment_public_id
        )
        if booking is None:
            return None
        before_payment = booking.payment_status
        booking.payment_error = (error or "payment failed")[:2000]
        if PAYMENT_STATUS.allowed(booking.payment_status, Booking.PaymentStatus.FAILED):
            booking.payment_status = Booking.PaymentStatus.FAILED
        booking.save(update_fields=["payment_status", "payment_error", "updated_at"])
        _audit(
            booking,
            source=BookingAudit.Source.PAYMENT,
            from_payment_status=before_payment if booking.payment_status != before_payment else "",
            note=f"payment failed: {booking.payment_error}",
        )
    return booking


def booking_apply_payment_cancelled(
    *, booking_public_id: str, payment_public_id: str, reason: str
) -> Booking | None:
    """The payment was cancelled or expired unpaid: the hold can no longer be paid, so it ends now."""
    with transaction.atomic():
        booking = _booking_of_payment(
            booking_public_id=booking_public_id, payment_public_id=payment_public_id
        )
        if booking is None:
            return None
        _expire(booking, reason=f"payment {reason or 'cancelled'}")
    return booking


def booking_apply_payment_refunded(
    *, booking_public_id: str, payment_public_id: str, full: bool, amount: str, refund_id: str
) -> Booking | None:
    """A refund succeeded: a full one marks the booking refunded and cancels it if it held time."""
    with transaction.atomic():
        booking = _booking_of_payment(
            booking_public_id=booking_public_id, payment_public_id=payment_public_id
        )
        if booking is None:
            return None
        if not full:
            _audit(
                booking, source=BookingAudit.Source.PAYMENT, note=f"partial refund {refund_id} of {amount}"
            )
            return booking
        before, before_payment = booking.status, booking.payment_status
        if booking.payment_status == Booking.PaymentStatus.REFUNDED:
            return booking  # repeated
        if PAYMENT_STATUS.allowed(booking.payment_status, Booking.PaymentStatus.REFUNDED):
            booking.payment_status = Booking.PaymentStatus.REFUNDED
        else:  # e.g. refunded while our record still says unpaid: the gateway is right
            booking.payment_status = Booking.PaymentStatus.REFUNDED
            _flag(booking, f"refund {refund_id} arrived while the booking's payment was {before_payment}")
        cancelled = booking.status in (Booking.Status.PENDING_PAYMENT, Booking.Status.CONFIRMED)
        if cancelled:
            booking.status = Booking.Status.CANCELLED
            booking.hold_expires_at = None
        booking.save(
            update_fields=[
                "status",
                "payment_status",
                "hold_expires_at",
                "needs_attention",
                "attention_note",
                "updated_at",
            ]
        )
        _audit(
            booking,
            source=BookingAudit.Source.PAYMENT,
            from_status=before if cancelled else "",
            from_payment_status=before_payment,
            note=f"full refund {refund_id} of {amount}" + ("; booking cancelled" if cancelled else ""),
        )
        if cancelled:
            events.publish(
                "booking.cancelled",
                _event_data(booking, reason="refunded in full", refund=True, by="payment"),
            )
    return booking
