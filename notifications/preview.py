"""A rule rendered with a real object, for the admin: staff see what a message looks like
before they change its template or its rule.

The event's data is built from the object by the publishing app's own data function (or
with the same keys where it has none) and goes through JSON as the outbox sends it, so the
templates get exactly what a real event would give them.
"""

import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db.models import Model, QuerySet

from bookings.models import Booking
from bookings.services.common import booking_event_data as booking_data
from core.models import DeadLetter
from core.money import quantize
from notifications.context import ContextError, context_for
from notifications.models import CHANNEL_NAMES, Notification, Rule
from notifications.rendering import Rendered, RenderError, render
from notifications.rules import RULES, RuleSpec
from orders.models import Order
from orders.services import order_event_data as order_data
from payments.event_data import payment_event_data as payment_data
from payments.selectors import payments_with_allocations
from subscriptions.models import Invoice, Subscription, Toybox
from subscriptions.services.common import invoice_data, subscription_data, toybox_data


class PreviewError(Exception):
    """Nothing to preview with: an unknown rule, or no such object."""


@dataclass(frozen=True)
class Source:
    """Where a rule's event finds its object, and how the event's data is built from it."""

    what: str
    queryset: Callable[[], QuerySet]
    key: str  # the field an object_id names
    data: Callable[[Any, RuleSpec], dict[str, Any]]
    prefer: dict[str, Any] = field(default_factory=dict)  # "latest" takes one of these if any
    latest: tuple[str, ...] = ("-created_at", "-pk")

    def find(self, object_id: str) -> Model:
        queryset = self.queryset()
        if object_id:
            try:
                found = queryset.filter(**{self.key: object_id}).first()
            except ValueError:  # not even an id of that kind ("abc" for a dead letter)
                found = None
            if found is None:
                raise PreviewError(f"no {self.what} {object_id!r}")
            return found
        found = queryset.filter(**self.prefer).order_by(*self.latest).first() if self.prefer else None
        found = found or queryset.order_by(*self.latest).first()
        if found is None:
            raise PreviewError(f"no {self.what} to preview with")
        return found


def _payments() -> QuerySet:
    return payments_with_allocations()


def _order(order: Order, rule: RuleSpec) -> dict[str, Any]:
    extra = {"reason": "cancelled"} if rule.event_type == "order.cancelled" else {}
    return order_data(order, **extra)


def _reminder_hours(rule: RuleSpec) -> int:
    """The reminder the rule takes: 24 or 2 hours before."""
    return next((hours for hours in (24, 2) if rule.applies({"hours_before": hours})), 24)


def _booking(booking: Booking, rule: RuleSpec) -> dict[str, Any]:
    extra: dict[str, Any] = {
        "booking.confirmed": {"by": "payment", "late": False},
        "booking.cancelled": {
            "reason": "cancelled by staff",
            "refund": booking.payment_status in ("paid", "deposit_paid"),
            "by": "staff",
        },
        "booking.expired": {"reason": "hold expired"},
        "booking.reminder": {"hours_before": _reminder_hours(rule)},
    }[rule.event_type]
    return booking_data(booking, **extra)


def _toybox(toybox: Toybox, rule: RuleSpec) -> dict[str, Any]:
    if rule.event_type == "toybox.shipped":
        return toybox_data(toybox, tracking_number=toybox.tracking_number)
    if rule.event_type == "toybox.short":
        return toybox_data(toybox, missing=max(toybox.toys_wanted - len(toybox.items.all()), 0))
    return toybox_data(toybox)


def _invoice(invoice: Invoice, rule: RuleSpec) -> dict[str, Any]:
    return invoice_data(
        invoice,
        payment_id=(invoice.failed_payments or [None])[-1],
        error=invoice.last_error,
        final=invoice.status == Invoice.Status.UNCOLLECTIBLE,
    )


def _payment(payment: Any, rule: RuleSpec) -> dict[str, Any]:
    if rule.event_type == "payment.flagged":
        return payment_data(payment, reason=payment.flagged_reason or "(not flagged)")
    if rule.event_type == "payment.failed":
        return payment_data(payment, error=payment.last_error)
    return _refund(payment)


def _refund(payment: Any) -> dict[str, Any]:
    """payment.refunded as payments.services.refund_apply_result publishes it, for the
    payment's latest refund that succeeded (none: all that was refunded, or the whole payment)."""
    data = payment_data(payment, payment_amount=quantize(payment.amount, payment.currency))
    refund = (
        payment.refunds.filter(status="succeeded")
        .prefetch_related("shares__allocation")
        .order_by("-created_at")
        .first()
    )
    if refund is None:
        amount = payment.refunded_amount or payment.amount
        return data | {
            "refund_id": "",
            "amount": quantize(amount, payment.currency),
            "reason": "",
            "full": amount == payment.amount,
            "refund_allocations": [],
        }
    return data | {
        "refund_id": refund.public_id,
        "amount": quantize(refund.amount, refund.currency),
        "reason": refund.reason,
        "full": refund.full,
        "refund_allocations": [
            {
                "purpose": share.allocation.purpose,
                "purpose_id": share.allocation.purpose_id,
                "amount": quantize(share.amount, refund.currency),
            }
            for share in refund.shares.all()
        ],
    }


def _dead_letter(dead_letter: DeadLetter, rule: RuleSpec) -> dict[str, Any]:
    return {
        "dead_letter_id": dead_letter.pk,
        "event_id": str(dead_letter.event_id),
        "event_type": dead_letter.event_type,
        "subscriber": dead_letter.subscriber,
        "error": dead_letter.error,
        "attempts": dead_letter.attempts,
    }


def _notification(notification: Notification, rule: RuleSpec) -> dict[str, Any]:
    return {
        "notification_id": notification.public_id,
        "event_id": str(notification.event_id),
        "event_type": notification.event_type,
        "rule": notification.rule,
        "channel": notification.channel,
        "audience": "staff" if notification.recipient == "staff-chat" else "customer",
        "user_id": notification.user_id,
        "error": notification.last_error,
        "attempts": notification.attempts,
    }


def _orders() -> QuerySet:
    return Order.objects.select_related("payment")


def _bookings() -> QuerySet:
    return Booking.objects.select_related("resource", "payment")


def _toyboxes() -> QuerySet:
    return Toybox.objects.select_related("subscription", "invoice").prefetch_related("items")


ORDER = Source("order", _orders, "number", _order)
BOOKING = Source("booking", _bookings, "public_id", _booking)
INVOICE = Source("invoice", lambda: Invoice.objects.select_related("subscription"), "number", _invoice)
PAYMENT = Source("payment", _payments, "public_id", _payment)
TOYBOX = Source("toybox", _toyboxes, "public_id", _toybox)
SOURCES: dict[str, Source] = {
    "order.paid": replace(ORDER, prefer={"status__in": ["paid", "fulfilled"]}),
    "order.cancelled": replace(ORDER, prefer={"status": "cancelled"}),
    "order.fulfilled": replace(ORDER, prefer={"status": "fulfilled"}),
    "booking.confirmed": replace(BOOKING, prefer={"status": "confirmed"}),
    "booking.cancelled": replace(BOOKING, prefer={"status": "cancelled"}),
    "booking.expired": replace(BOOKING, prefer={"status": "expired"}),
    "booking.reminder": replace(BOOKING, prefer={"status": "confirmed"}),
    "toybox.created": TOYBOX,
    "toybox.shipped": replace(TOYBOX, prefer={"status__in": ["shipped", "delivered"]}),
    "toybox.short": replace(TOYBOX, prefer={"status": "short"}),
    "invoice.payment_failed": replace(INVOICE, prefer={"attempts__gt": 0}),
    "subscription.paused": Source(
        "subscription",
        lambda: Subscription.objects.all(),
        "public_id",
        lambda subscription, rule: subscription_data(
            subscription, reason=subscription.status_note or "paused by the customer"
        ),
        {"status": "paused"},
    ),
    "payment.failed": replace(PAYMENT, prefer={"status": "failed"}),
    "payment.refunded": replace(PAYMENT, prefer={"refunded_amount__gt": 0}),
    "payment.flagged": replace(PAYMENT, prefer={"flagged_reason__gt": ""}),
    "dead_letter.recorded": Source(
        "dead letter", lambda: DeadLetter.objects.all(), "pk", _dead_letter, latest=("-last_failed_at", "-pk")
    ),
    "notification.failed": Source(
        "notification", lambda: Notification.objects.all(), "public_id", _notification, {"status": "failed"}
    ),
}


def preview(rule_key: str, language: str, object_id: str = "") -> dict[str, Rendered | str]:
    """The rule's message on every channel, in `language`, about the object named by
    `object_id` (its number, public id or pk) or the latest one; a channel that cannot be
    rendered maps to why."""
    rule = RULES.get(rule_key)
    if rule is None:
        raise PreviewError(f"no rule {rule_key!r}")
    source = SOURCES.get(rule.event_type)
    if source is None:
        raise PreviewError(f"no preview for {rule.event_type} events")
    found = source.find(object_id.strip())
    data = json.loads(json.dumps(source.data(found, rule), cls=DjangoJSONEncoder))
    try:
        context = context_for(rule.event_type, data)
    except ContextError as exc:
        raise PreviewError(str(exc)) from exc
    template = Rule.objects.filter(key=rule_key).values_list("template", flat=True).first() or rule.template
    rendered: dict[str, Rendered | str] = {}
    for channel in CHANNEL_NAMES:
        try:
            rendered[channel] = render(template, language, channel, context.values)
        except RenderError as exc:
            rendered[channel] = str(exc)
    return rendered
