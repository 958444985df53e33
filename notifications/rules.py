"""The rules from events to messages, with their defaults.

A rule names the event type it listens to (and, optionally, a condition on the event's
data), who hears about it (the customer the event is about, or staff), its category
(which of the customer's preferences apply), the channels and the template by default, and
whether it is critical: a critical message ignores the customer's opt-outs and quiet hours
(never a missing address). Staff change a rule's channels, template and whether it is
enabled in the admin (notifications.models.Rule, one row per rule, created after `migrate`).

Staff alerts can be grouped: `group(data)` names what one alert is about, and one alert is
sent per group and hour (a broken template fails every message of its rule; staff hear
about it once).
"""

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from notifications.models import Audience, Category

ALL = ("email", "sms", "telegram", "inapp")
NO_SMS = ("email", "telegram", "inapp")
STAFF = ("email", "telegram")


@dataclass(frozen=True)
class RuleSpec:
    key: str
    event_type: str
    description: str
    audience: Audience = Audience.CUSTOMER
    category: Category = Category.TRANSACTIONAL
    channels: tuple[str, ...] = NO_SMS
    critical: bool = False
    applies: Callable[[Mapping[str, Any]], bool] = field(default=lambda data: True)
    group: Callable[[Mapping[str, Any]], str] | None = None

    @property
    def template(self) -> str:
        return self.key.replace(".", "_")


def _failure_group(data: Mapping[str, Any]) -> str:
    """What one alert about failed messages is about: a rule whose template (or object) failed
    fails on every channel and language at once, so that is one alert; a channel's own
    failure is one per channel and error."""
    error = str(data.get("error", ""))
    if error.startswith(("template:", "context:")):
        return f"{data.get('rule')}:not written"
    return f"{data.get('rule')}:{data.get('channel')}:{error[:200]}"


def _when(**expected: object) -> Callable[[Mapping[str, Any]], bool]:
    return lambda data: all(data.get(key) == value for key, value in expected.items())


RULES: dict[str, RuleSpec] = {
    rule.key: rule
    for rule in [
        RuleSpec("order.paid", "order.paid", "An order is paid: the receipt.", channels=ALL),
        RuleSpec(
            "order.cancelled", "order.cancelled", "An order is cancelled (and refunded, if it was paid)."
        ),
        RuleSpec("order.fulfilled", "order.fulfilled", "An order is on its way."),
        RuleSpec("booking.confirmed", "booking.confirmed", "A booking is confirmed.", channels=ALL),
        RuleSpec(
            "booking.cancelled", "booking.cancelled", "A booking is cancelled.", channels=ALL, critical=True
        ),
        RuleSpec("booking.expired", "booking.expired", "A booking's hold ran out before it was paid."),
        RuleSpec(
            "booking.reminder.24h",
            "booking.reminder",
            "A booking starts within a day.",
            category=Category.REMINDERS,
            channels=ALL,
            applies=_when(hours_before=24),
        ),
        RuleSpec(
            "booking.reminder.2h",
            "booking.reminder",
            "A booking starts within two hours.",
            category=Category.REMINDERS,
            channels=("sms", "telegram", "inapp"),
            applies=_when(hours_before=2),
        ),
        RuleSpec("toybox.created", "toybox.created", "A toybox is packed for the period."),
        RuleSpec("toybox.shipped", "toybox.shipped", "A toybox is shipped, with its tracking number."),
        RuleSpec(
            "invoice.payment_failed",
            "invoice.payment_failed",
            "A renewal could not be charged: the link to pay it.",
            channels=ALL,
            critical=True,
        ),
        RuleSpec("subscription.paused", "subscription.paused", "A subscription is paused.", critical=True),
        RuleSpec(
            "payment.failed",
            "payment.failed",
            "A payment the customer made failed (renewal charges are told by invoice.payment_failed).",
            applies=lambda data: not data.get("off_session"),
        ),
        RuleSpec("payment.refunded", "payment.refunded", "Money is refunded.", critical=True),
        # Staff alerts: to every active staff member's e-mail, and to the staff's Telegram chat.
        RuleSpec(
            "staff.payment_flagged",
            "payment.flagged",
            "A payment needs a person (a mismatch, an outcome unknown, a refund refused).",
            audience=Audience.STAFF,
            channels=STAFF,
            critical=True,
        ),
        RuleSpec(
            "staff.dead_letter",
            "dead_letter.recorded",
            "A subscriber failed for good on an event (a new dead letter).",
            audience=Audience.STAFF,
            channels=STAFF,
            critical=True,
            group=lambda data: f"{data.get('subscriber')}:{data.get('error', '')[:200]}",
        ),
        RuleSpec(
            "staff.toybox_short",
            "toybox.short",
            "A toybox could not be filled from stock.",
            audience=Audience.STAFF,
            channels=STAFF,
            critical=True,
        ),
        RuleSpec(
            "staff.notification_failed",
            "notification.failed",
            "A message to a customer failed for good.",
            audience=Audience.STAFF,
            channels=STAFF,
            critical=True,
            applies=_when(audience=Audience.CUSTOMER),  # a failed staff alert alerts nobody: no loop
            group=lambda data: _failure_group(data),
        ),
    ]
}


def rules_for(event_type: str) -> list[RuleSpec]:
    return [rule for rule in RULES.values() if rule.event_type == event_type]


def event_types() -> list[str]:
    return sorted({rule.event_type for rule in RULES.values()})
