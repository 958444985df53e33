"""What the message templates get for an event: its data, and the objects it names, read
from the database (an order with its lines, a booking with its resource and service...).

Event data arrives as JSON (amounts and datetimes as strings): amounts become Decimals again,
kept with their currency, and datetimes aware datetimes. What the event says wins over the
database for what may have moved on since it happened (a status, an amount); names, items and
times come from the database.
"""

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db.models import QuerySet
from django.urls import reverse
from django.utils.dateparse import parse_datetime

from bookings.models import Booking
from notifications.models import Audience, Notification
from notifications.rules import rules_for
from orders.models import Order
from payments.selectors import payment_pk
from subscriptions.models import Invoice, Subscription, Toybox

PAID_STATUSES = ("succeeded", "partially_refunded", "refunded")


@dataclass
class MessageContext:
    customer_id: int | None
    values: dict
    timezone: str


class ContextError(Exception):
    """The event names something that cannot be read (an order that no longer exists...)."""


def _decimal(value: Any) -> Decimal | None:
    if value is None or value == "":
        return None
    try:
        return Decimal(str(value))
    except InvalidOperation:
        raise ContextError(f"not an amount: {value!r}") from None


def _datetime(value: Any) -> datetime | None:
    if value is None or value == "" or isinstance(value, datetime):
        return value or None
    parsed = parse_datetime(str(value))
    if parsed is None:
        raise ContextError(f"not a date and time: {value!r}")
    return parsed


def admin_url(model: str, pk: object) -> str:
    """The admin's change page of a row, absolute: "payments_payment", 7 -> https://.../7/change/."""
    return settings.SITE_URL.rstrip("/") + reverse(f"admin:{model}_change", args=[pk])


def _missing(what: str, key: object) -> ContextError:
    return ContextError(f"{what} {key!r} named by the event does not exist")


def _named(queryset: QuerySet, what: str, **lookup: object) -> Any:
    """The one row the event names, or a ContextError saying which is missing."""
    found = queryset.filter(**lookup).first()
    if found is None:
        raise _missing(what, next(iter(lookup.values())))
    return found


# --- Per kind of event: values, and the timezone the message shows times in (None: the reader's)
Values = tuple[dict[str, Any], str | None]


def _order(data: Mapping[str, Any]) -> Values:
    number = data.get("number") or data.get("order_id")
    orders = Order.objects.select_related("payment", "customer__notification_preference")
    order = _named(orders.prefetch_related("lines"), "order", number=number)
    lines = [
        {
            "name": line.name,
            "sku": line.sku,
            "quantity": line.quantity,
            "unit_price": line.unit_price,
            "total": line.line_total,
        }
        for line in order.lines.all()
    ]
    payment_status = order.payment.status if order.payment else ""
    return {
        "order": order,
        "customer": order.customer,
        "number": order.number,
        "lines": lines,
        "total": _decimal(data.get("total")) or order.total,
        "currency": data.get("currency") or order.currency,
        "status": data.get("status") or order.status,
        "payment_status": payment_status,
        "was_paid": order.paid_at is not None or payment_status in PAID_STATUSES,
        "reason": data.get("reason", ""),
    }, None


def _booking(data: Mapping[str, Any]) -> Values:
    public_id = data.get("booking_id")
    bookings = Booking.objects.select_related("resource", "service", "customer__notification_preference")
    booking = _named(bookings, "booking", public_id=public_id)
    total = _decimal(data.get("amount_total")) or booking.amount_total
    due = _decimal(data.get("amount_due")) or booking.amount_due
    payment_status = data.get("payment_status") or booking.payment_status
    paid = {"paid": total, "deposit_paid": due}.get(payment_status, Decimal(0))
    return {
        "booking": booking,
        "customer": booking.customer,
        "resource": booking.resource.name,
        "service": booking.service.name if booking.service else "",
        "starts_at": booking.starts_at,
        "ends_at": booking.ends_at,
        "amount_total": total,
        "amount_due": due,
        "amount_paid": paid,
        "amount_remaining": total - paid,
        "currency": data.get("currency") or booking.currency,
        "status": data.get("status") or booking.status,
        "payment_status": payment_status,
        "reason": data.get("reason", ""),
        "refund": bool(data.get("refund")),
        "by": data.get("by", ""),
        "hours_before": data.get("hours_before"),
    }, data.get("timezone") or booking.resource.timezone


def _toybox(data: Mapping[str, Any]) -> Values:
    public_id = data.get("toybox_id")
    boxes = Toybox.objects.select_related("child", "invoice", "subscription__plan").prefetch_related("items")
    toybox = _named(boxes, "toybox", public_id=public_id)
    return {
        "toybox": toybox,
        "child": toybox.child.name,
        "plan": toybox.subscription.plan.name,
        "period_start": toybox.period_start,
        "period_end": toybox.invoice.period_end,
        "toys": [item.name for item in toybox.items.all()],
        "toys_wanted": toybox.toys_wanted,
        "missing": int(data.get("missing") or 0),
        "tracking_number": data.get("tracking_number") or toybox.tracking_number,
        "admin_url": admin_url("subscriptions_toybox", toybox.pk),
    }, None


def _invoice(data: Mapping[str, Any]) -> Values:
    number = data.get("invoice_id")
    invoices = Invoice.objects.select_related("subscription__plan", "subscription__child")
    invoice = _named(invoices, "invoice", number=number)
    return {
        "invoice": invoice,
        "number": invoice.number,
        "amount": _decimal(data.get("amount")) or invoice.amount,
        "currency": data.get("currency") or invoice.currency,
        "plan": invoice.subscription.plan.name,
        "child": invoice.subscription.child.name,
        "period_start": _datetime(data.get("period_start")) or invoice.period_start,
        "period_end": _datetime(data.get("period_end")) or invoice.period_end,
        "attempts": data.get("attempts", invoice.attempts),
        "next_attempt_at": _datetime(data.get("next_attempt_at")),
        "final": bool(data.get("final")),
        "payment_url": data.get("payment_url") or "",
        "error": data.get("error", ""),
    }, None


def _subscription(data: Mapping[str, Any]) -> Values:
    public_id = data.get("subscription_id")
    subscription = _named(
        Subscription.objects.select_related("plan", "child"), "subscription", public_id=public_id
    )
    reason = data.get("reason", "")
    return {
        "subscription": subscription,
        "plan": subscription.plan.name,
        "child": subscription.child.name,
        "status": data.get("status") or subscription.status,
        "reason": reason,
        "unpaid": reason.startswith("payment failed"),  # paused by dunning, not by the customer
        "paid_until": _datetime(data.get("current_period_end")) or subscription.current_period_end,
    }, None


def _payment(data: Mapping[str, Any], *, flagged: bool = False) -> Values:
    """payment.*: what the event says (amounts, what it paid for), the bookings it names, and
    for a flagged payment its admin page."""
    currency = data.get("currency", "")
    allocations = data.get("allocations") or []
    booking_ids = [a.get("purpose_id") for a in allocations if a.get("purpose") == "booking"]
    found = Booking.objects.select_related("resource").filter(public_id__in=booking_ids)
    bookings = {booking.public_id: booking for booking in found}

    def items(allocations: list[Mapping[str, Any]]) -> list[dict[str, Any]]:
        return [
            {
                "purpose": a.get("purpose", ""),
                "id": a.get("purpose_id", ""),
                "amount": _decimal(a.get("amount")),
                "refunded_amount": _decimal(a.get("refunded_amount")),
                "booking": bookings.get(a.get("purpose_id")),
            }
            for a in allocations
        ]

    amount = _decimal(data.get("amount"))
    paid_for = items(allocations)
    values = {
        "payment_id": data.get("payment_id", ""),
        "amount": amount,
        "currency": currency,
        "status": data.get("status", ""),
        "purpose": data.get("purpose", ""),
        "items": paid_for,
        "error": data.get("error", ""),
        "reason": data.get("reason", ""),
        # payment.refunded: `amount` is this refund's, `payment_amount` the payment's.
        "payment_amount": _decimal(data.get("payment_amount")) or amount,
        "refunded_total": sum((item["refunded_amount"] or Decimal(0) for item in paid_for), Decimal(0)),
        "full": bool(data.get("full")),
        "refund_items": items(data.get("refund_allocations") or []),
    }
    if flagged:
        values["admin_url"] = _payment_admin_url(data.get("payment_id"))
    timezones = {booking.resource.timezone for booking in bookings.values()}
    return values, timezones.pop() if len(timezones) == 1 else None


def _payment_admin_url(public_id: str | None) -> str:
    pk = payment_pk(public_id or "")
    if pk is None:
        raise _missing("payment", public_id)
    return admin_url("payments_payment", pk)


def _dead_letter(data: Mapping[str, Any]) -> Values:
    if data.get("dead_letter_id") is None:
        raise ContextError("dead_letter.recorded names no dead letter")
    keys = ("dead_letter_id", "event_id", "event_type", "subscriber", "error", "attempts")
    return {
        "dead_letter": {key: data.get(key) for key in keys},
        "admin_url": admin_url("core_deadletter", data["dead_letter_id"]),
    }, None


def _notification(data: Mapping[str, Any]) -> Values:
    public_id = data.get("notification_id")
    notification = _named(Notification.objects.select_related("user"), "notification", public_id=public_id)
    keys = ("notification_id", "event_id", "event_type", "rule", "channel", "audience", "error", "attempts")
    return {
        "failed": {key: data.get(key) for key in keys},
        "failed_user": notification.user,
        "admin_url": admin_url("notifications_notification", notification.pk),
    }, None


# By event type, else by its first part ("order.paid" -> "order").
BUILDERS: dict[str, Callable[[Mapping[str, Any]], Values]] = {
    "order": _order,
    "booking": _booking,
    "toybox": _toybox,
    "invoice": _invoice,
    "subscription": _subscription,
    "payment": _payment,
    "payment.flagged": lambda data: _payment(data, flagged=True),
    "dead_letter": _dead_letter,
    "notification": _notification,
}


def context_for(event_type: str, data: Mapping[str, Any]) -> MessageContext:
    """The templates' context for an event: what it names, the customer, the site, and the
    timezone to show times in (a booking's resource's, else the customer's, else the site's)."""
    staff = any(rule.audience == Audience.STAFF for rule in rules_for(event_type))
    builder = BUILDERS.get(event_type) or BUILDERS.get(event_type.split(".", 1)[0])
    values, zone = builder(data) if builder else ({}, None)
    customer_id = data.get("customer_id")
    customer = values.get("customer")  # read with the object it owns (an order, a booking)
    if customer_id is None:
        customer = None
    elif getattr(customer, "pk", None) != customer_id:
        customer = (
            get_user_model().objects.select_related("notification_preference").filter(pk=customer_id).first()
        )
    if zone is None and customer is not None and not staff:
        preference = getattr(customer, "notification_preference", None)
        zone = str(preference.timezone) if preference else None
    zone = zone or settings.TIME_ZONE
    site_url = settings.SITE_URL.rstrip("/")
    values |= {
        "event_type": event_type,
        "data": dict(data),
        "audience": Audience.STAFF if staff else Audience.CUSTOMER,
        "customer": customer,
        "site_name": settings.PROJECT_NAME,
        "site_url": site_url,
        "preferences_url": site_url + reverse("notifications:preferences"),  # what they choose to get
        "timezone": zone,
    }
    return MessageContext(customer_id=customer_id, values=values, timezone=zone)
