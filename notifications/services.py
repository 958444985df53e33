"""What notifications do: turn an event into messages, and the staff's and customers' actions.

`notifications_for_event` runs in the subscriber's transaction (with its processed-event
row): for each enabled rule of the event it finds the recipients, checks their preferences
and addresses, renders each message and writes it to the delivery log, unique per (event,
rule, channel, recipient). The sends are dispatched after the commit
(notifications.delivery); nothing here talks to a provider.
"""

import logging
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, time, timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.utils import timezone

from core import events
from core.errors import BusinessRuleViolation, InvalidInput
from notifications import cache, delivery
from notifications.channels import CHANNELS
from notifications.context import ContextError, MessageContext, context_for
from notifications.models import CHANNEL_NAMES, Audience, Category, Notification, Preference
from notifications.rendering import Rendered, RenderError, StaffTemplates, language_for, render
from notifications.rules import RuleSpec, rules_for

logger = logging.getLogger(__name__)
User = get_user_model()
Status = Notification.Status
QUIET_CHANNELS = ("sms", "telegram")  # quiet hours hold these; e-mail and in-app wait in an inbox anyway
STAFF_CHAT = "staff-chat"
GROUP_NAMESPACE = uuid.UUID("5b0f6a52-9a55-4c64-8a0e-2f1f3c6a1d10")


# --- Preferences ------------------------------------------------------------------------


def _default_quiet_hours() -> tuple[time | None, time | None]:
    value = settings.NOTIFICATIONS_QUIET_HOURS.strip()
    if not value:
        return None, None
    start, _, end = value.partition("-")
    return time.fromisoformat(start.strip()), time.fromisoformat(end.strip())


def preference_default(user) -> Preference:
    start, end = _default_quiet_hours()
    return Preference(user=user, quiet_hours_start=start, quiet_hours_end=end)


def preference_of(user) -> Preference:
    """The user's preferences, the defaults (unsaved) if they never changed any."""
    try:
        return user.notification_preference
    except Preference.DoesNotExist:
        return preference_default(user)


def preference_update(user, **changes) -> Preference:
    """Change some of: channels ({category: [channel, ...]}), quiet_hours_start/end, timezone."""
    with transaction.atomic():
        preference = Preference.objects.select_for_update().filter(user=user).first() or preference_default(
            user
        )
        channels = changes.pop("channels", None)
        if channels is not None:
            merged = dict(preference.channels)
            for category, names in channels.items():
                if category not in Category.values:
                    raise InvalidInput(f"unknown category {category!r}; one of {', '.join(Category.values)}")
                unknown = set(names) - set(CHANNEL_NAMES)
                if unknown:
                    raise InvalidInput(f"unknown channel(s) {', '.join(sorted(unknown))}")
                merged[category] = [name for name in CHANNEL_NAMES if name in names]
            preference.channels = merged
        for field, value in changes.items():
            setattr(preference, field, value)
        if (preference.quiet_hours_start is None) != (preference.quiet_hours_end is None):
            raise InvalidInput("quiet hours need both a start and an end (or neither)")
        preference.save()
    return preference


def quiet_until(preference: Preference, now: datetime) -> datetime | None:
    """The end of the quiet hours `now` falls in (in the user's timezone), or None."""
    start, end = preference.quiet_hours_start, preference.quiet_hours_end
    if start is None or end is None or start == end:
        return None
    local = now.astimezone(preference.timezone)
    t = local.time()
    quiet = start <= t < end if start < end else (t >= start or t < end)
    if not quiet:
        return None
    day = local.date() if t < end else local.date() + timedelta(days=1)
    return datetime.combine(day, end, tzinfo=preference.timezone)


def _wants(user, preference: Preference, category: str, channel: str) -> bool:
    if channel == "email" and user.email_opt_out:
        return False
    if channel == "sms" and user.sms_opt_out:
        return False
    return channel in preference.channels.get(category, [])


# --- From an event to messages ------------------------------------------------------------


@dataclass
class _Recipient:
    key: str
    user: object | None  # None: the staff chat
    preference: Preference | None


def _recipients(spec: RuleSpec, context: MessageContext) -> list[_Recipient]:
    if spec.audience == Audience.STAFF:
        staff = User.objects.filter(is_staff=True, is_active=True).select_related("notification_preference")
        people = [_Recipient(f"user:{u.pk}", u, preference_of(u)) for u in staff.order_by("pk")]
        return [*people, _Recipient(STAFF_CHAT, None, None)]
    if context.customer_id is None:
        return []
    user = context.values.get("customer")  # read by the context with its preference
    if getattr(user, "pk", None) != context.customer_id:
        user = User.objects.select_related("notification_preference").filter(pk=context.customer_id).first()
    if user is None or not user.is_active:
        return []
    return [_Recipient(f"user:{user.pk}", user, preference_of(user))]


def _address(channel_name: str, recipient: _Recipient) -> str:
    channel = CHANNELS[channel_name]
    if recipient.user is None:
        return channel.staff_address()
    return channel.address(recipient.user, recipient.preference)


@dataclass
class _EventMessages:
    """What every message of one event shares."""

    event: events.Event
    context: MessageContext
    context_error: str  # the context could not be read: every message fails with this
    templates: StaffTemplates
    now: datetime


def notifications_for_event(event: events.Event, *, now: datetime | None = None) -> list[int]:
    """Write the event's messages to the delivery log and dispatch them after the commit."""
    now = now or timezone.now()
    specs = [spec for spec in rules_for(event.type) if spec.applies(event.data)]
    if not specs:
        return []
    staff_settings = cache.current()  # rules and templates, read at most every few seconds
    active = [(spec, staff_settings.rules.get(spec.key)) for spec in specs]
    active = [(spec, row) for spec, row in active if row is None or row.enabled]
    if not active:
        return []
    context, context_error = _context(event)
    shared = _EventMessages(event, context, context_error, staff_settings.templates, now)
    rows: list[Notification] = []
    for spec, row in active:
        channels = [c for c in (row.channels if row else spec.channels) if c in CHANNELS]
        template = row.template if row else spec.template
        event_id = event.id
        if spec.group is not None:  # staff hear about one kind of failure once an hour
            event_id = uuid.uuid5(GROUP_NAMESPACE, f"{spec.key}:{spec.group(event.data)}:{now:%Y%m%d%H}")
        for recipient in _recipients(spec, context):
            for channel_name in channels:
                rows.extend(_message(shared, spec, event_id, template, recipient, channel_name))
    return _store(rows)


def _context(event: events.Event) -> tuple[MessageContext, str]:
    """The templates' context (once per event, whatever its rules), and the error if there is
    none (e.g. the object is gone: each message then fails with that reason)."""
    try:
        return context_for(event.type, event.data), ""
    except ContextError as exc:
        logger.error("notification context failed", extra={"event_id": str(event.id), "error": str(exc)})
        customer_id = event.data.get("customer_id")
        customer_id = customer_id if isinstance(customer_id, int) else None
        return MessageContext(
            customer_id=customer_id, values={}, timezone=settings.TIME_ZONE
        ), f"context: {exc}"


def _message(
    shared: _EventMessages, spec: RuleSpec, event_id, template: str, recipient: _Recipient, channel_name: str
) -> list[Notification]:
    """The message (unsaved) of one recipient on one channel, or none."""
    event, context, now = shared.event, shared.context, shared.now
    channel = CHANNELS[channel_name]
    if not channel.configured():
        return []
    address = _address(channel_name, recipient)
    if not address:
        return []  # no phone, no linked chat: that channel is skipped, not an error
    user, preference = recipient.user, recipient.preference
    if spec.audience == Audience.STAFF and user is not None and channel_name == "telegram":
        return []  # staff hear on Telegram in the staff chat, not each in their own
    if user is not None and not spec.critical and not _wants(user, preference, spec.category, channel_name):
        return []
    language = language_for(user)
    message = Notification(
        event_id=event_id,
        event_type=event.type,
        rule=spec.key,
        channel=channel_name,
        category=spec.category,
        critical=spec.critical,
        user=user,
        recipient=recipient.key,
        address=address,
        language=language,
    )
    try:
        if shared.context_error:
            raise RenderError(shared.context_error)
        values = {**context.values, "recipient": user}
        rendered: Rendered = render(template, language, channel_name, values, staff=shared.templates)
    except RenderError as exc:
        error = shared.context_error or f"template: {exc}"
        message.status, message.last_error, message.failed_at = Status.FAILED, error[:4000], now
        return [message]
    message.subject, message.body, message.html = rendered.subject[:255], rendered.body, rendered.html
    message.language = rendered.language or language
    if not channel.external:
        message.status, message.sent_at, message.delivered_at = Status.DELIVERED, now, now
    elif channel_name in QUIET_CHANNELS and preference is not None and not spec.critical:
        message.not_before = _held_until(preference, now, context.values.get("starts_at"))
    return [message]


def _held_until(preference: Preference, now: datetime, starts_at: datetime | None) -> datetime | None:
    """The end of the quiet hours, unless that is too late for the message: a reminder of
    something that starts before then goes now."""
    until = quiet_until(preference, now)
    if until is not None and isinstance(starts_at, datetime) and until >= starts_at:
        return None
    return until


def _store(rows: list[Notification]) -> list[int]:
    """Insert what is not there yet (the database's unique key), publish the settled ones'
    outcomes and dispatch the rest; the ids of the event's rows, new or not."""
    if not rows:
        return []
    for row in rows:
        if row.status in (Status.DELIVERED, Status.FAILED):
            row.attempts = 1  # settled as it is written: that was its one attempt
    written = _insert_new(rows)
    earlier = _already_there(rows, written) if len(written) < len(rows) else []
    for row in written:
        if row.status in (Status.DELIVERED, Status.FAILED):
            delivery.publish_outcome(row)
    stored = written + earlier
    delivery.dispatch([row.pk for row in stored if row.status == Status.QUEUED and row.not_before is None])
    return [row.pk for row in stored]


# The unique key notification_once_per_event, as an ON CONFLICT target (its index is partial).
ONCE_PER_EVENT = "(event_id, rule, channel, recipient) WHERE resend_of_id IS NULL"


def _insert_new(rows: list[Notification]) -> list[Notification]:
    """INSERT the rows in one statement, skipping those whose (event, rule, channel,
    recipient) is there already; the rows written, with their ids.

    bulk_create(ignore_conflicts=True) sets no ids, and reading the rows back cost a query per
    event; RETURNING names the rows written by their public id, made here before the insert.
    """
    meta = Notification._meta
    fields = [f for f in meta.concrete_fields if not f.primary_key]
    quote = connection.ops.quote_name
    placeholders = f"({', '.join(['%s'] * len(fields))})"
    sql = (
        f"INSERT INTO {quote(meta.db_table)} ({', '.join(quote(f.column) for f in fields)}) "  # noqa: S608 - names from the model
        f"VALUES {', '.join([placeholders] * len(rows))} ON CONFLICT {ONCE_PER_EVENT} DO NOTHING "
        f"RETURNING {quote(meta.pk.column)}, {quote(meta.get_field('public_id').column)}"
    )
    params = [f.get_db_prep_save(f.pre_save(row, add=True), connection) for row in rows for f in fields]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        ids = {public_id: pk for pk, public_id in cursor.fetchall()}
    written = [row for row in rows if row.public_id in ids]
    for row in written:
        row.pk = ids[row.public_id]
        row._state.adding, row._state.db = False, connection.alias
    return written


def _already_there(rows: list[Notification], written: list[Notification]) -> list[Notification]:
    """The rows of the same keys that were there before (a redelivered event, a staff alert
    of a group already told this hour)."""
    new = {row.public_id for row in written}
    keys = {(row.event_id, row.rule, row.channel, row.recipient) for row in rows if row.public_id not in new}
    found = Notification.objects.filter(
        event_id__in={key[0] for key in keys}, rule__in={key[1] for key in keys}, resend_of__isnull=True
    )
    return [row for row in found if (row.event_id, row.rule, row.channel, row.recipient) in keys]


# --- Staff and customers' actions ---------------------------------------------------------


def notification_send(*, user, channel: str, subject: str, body: str, actor=None) -> Notification:
    """A message from staff to one customer on one channel (e.g. to try a channel), sent now."""
    if channel not in CHANNELS:
        raise InvalidInput(f"unknown channel {channel!r}; one of {', '.join(CHANNELS)}")
    handler = CHANNELS[channel]
    if not handler.configured():
        raise BusinessRuleViolation(f"the {channel} channel is not configured on this server")
    address = _address(channel, _Recipient(f"user:{user.pk}", user, preference_of(user)))
    if not address:
        raise BusinessRuleViolation(f"{user} has no {channel} address")
    now = timezone.now()
    with transaction.atomic():
        message = Notification.objects.create(
            event_id=uuid.uuid4(),
            event_type="manual",
            rule="manual",
            channel=channel,
            critical=True,
            user=user,
            recipient=f"user:{user.pk}",
            address=address,
            language=language_for(user),
            subject=subject[:255],
            body=body,
            last_error=f"sent by {actor}" if actor else "",
        )
        _settle_or_dispatch(message, now)
    return message


def _settle_or_dispatch(message: Notification, now: datetime) -> None:
    if CHANNELS[message.channel].external:
        delivery.dispatch([message.pk])
        return
    message.status, message.sent_at, message.delivered_at, message.attempts = Status.DELIVERED, now, now, 1
    message.save(update_fields=["status", "sent_at", "delivered_at", "attempts", "updated_at"])
    delivery.publish_outcome(message)


RESEND_GUARD = timedelta(minutes=1)


def notification_resend(*, notification: Notification) -> Notification:
    """Send a message again as a new attempt of its own (resend_of names the original), to the
    address it was written for, whatever happened to the original."""
    if notification.status == Status.FAILED and notification.last_error.startswith(("template:", "context:")):
        raise BusinessRuleViolation(
            "this message was never written (its template failed); fix the template first"
        )
    with transaction.atomic():
        # A double click (or two staff at once) sends one copy: the original is locked, and a
        # copy made in the last minute refuses another.
        Notification.objects.select_for_update().filter(pk=notification.pk).first()
        recent = Notification.objects.filter(
            resend_of=notification, created_at__gte=timezone.now() - RESEND_GUARD
        ).exists()
        if recent:
            raise BusinessRuleViolation(
                "a copy of this message was sent less than a minute ago; it is not sent twice"
            )
        copy = Notification.objects.create(
            event_id=notification.event_id,
            event_type=notification.event_type,
            rule=notification.rule,
            channel=notification.channel,
            category=notification.category,
            critical=notification.critical,
            user_id=notification.user_id,
            recipient=notification.recipient,
            address=notification.address,
            language=notification.language,
            subject=notification.subject,
            body=notification.body,
            html=notification.html,
            resend_of=notification,
        )
        _settle_or_dispatch(copy, timezone.now())
    return copy


def notifications_mark_read(*, user, ids: Iterable[int] | None = None) -> int:
    """Mark the user's in-app messages read (all of them when `ids` is None); how many changed."""
    unread = Notification.objects.filter(user=user, channel="inapp", read_at__isnull=True)
    if ids is not None:
        unread = unread.filter(pk__in=list(ids))
    return unread.update(read_at=timezone.now())
