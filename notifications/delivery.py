"""Sending one message: reserve, send, record. And the receipts providers send back.

1. Reserve, in one statement (its own transaction): a `queued` message that is due becomes
   `sending`, with a lease (NOTIFICATIONS_LEASE_SECONDS, longer than any channel's timeout)
   and one more attempt.
2. Send, outside any transaction: the channel talks to its provider with its own timeout.
3. Record, in another transaction, only if the reservation is still ours: `sent` with the
   provider's id (and notification.sent), `failed` (and notification.failed), or `queued`
   again with the next attempt's time (backoff with jitter).

A sender that dies between 2 and 3 leaves `sending` behind. Once its lease has run out the
sweep sends the message to `deliver` again, which first asks the channel whether the
provider has it (`confirm_sent`: Twilio can be asked) and sends again only if not. E-mail
and Telegram cannot be asked: they are sent again, e-mail with the same Message-ID, so a
message the provider had accepted is at worst delivered twice, never lost.
"""

import functools
import logging
import random
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from core import events
from notifications.channels import CHANNELS
from notifications.channels.base import OutcomeUnknown, PermanentFailure, TemporaryFailure
from notifications.models import Audience, Notification
from notifications.rules import RULES

logger = logging.getLogger(__name__)
Status = Notification.Status
# Retries dispatched at once with a countdown up to this long; later ones are left to the sweep
# (a task held unacknowledged by a worker for long would outlive RabbitMQ's consumer timeout).
COUNTDOWN_LIMIT_SECONDS = 300
BACKOFF_CAP_SECONDS = 3600


def audience_of(notification: Notification) -> str:
    rule = RULES.get(notification.rule)
    return rule.audience if rule else Audience.CUSTOMER


def event_data(notification: Notification, **extra) -> dict:
    return {
        "notification_id": notification.public_id,
        "event_id": str(notification.event_id),
        "event_type": notification.event_type,
        "rule": notification.rule,
        "channel": notification.channel,
        "audience": audience_of(notification),
        "user_id": notification.user_id,
        "attempts": notification.attempts,
        **extra,
    }


def publish_outcome(notification: Notification) -> None:
    """notification.sent or notification.failed, in the caller's transaction."""
    if notification.status == Status.FAILED:
        events.publish("notification.failed", event_data(notification, error=notification.last_error[:1000]))
    else:
        events.publish("notification.sent", event_data(notification, provider_id=notification.provider_id))


def backoff_seconds(attempt: int) -> float:
    """Before attempt `attempt + 1`: the base doubled per attempt, capped, with jitter (half to full)."""
    delay = min(BACKOFF_CAP_SECONDS, settings.NOTIFICATIONS_RETRY_BACKOFF_SECONDS * 2 ** max(0, attempt - 1))
    return random.uniform(delay / 2, delay)  # noqa: S311 - jitter, not a secret


@functools.cache
def _reserve_statement() -> tuple[str, list[str]]:
    """The reservation as one statement, and the model fields it returns (the row as reserved).

    The row is locked (SKIP LOCKED: another sender reserving it right now has it) and, if it is
    due, becomes `sending` with a lease and one more attempt; RETURNING gives the row and its
    status before (`sending` then: an earlier sender's outcome is unknown). One round trip
    instead of a transaction with a SELECT ... FOR UPDATE and an UPDATE.
    """
    meta = Notification._meta
    quote = connection.ops.quote_name
    table, pk = quote(meta.db_table), quote(meta.pk.column)
    fields = [f.attname for f in meta.concrete_fields]
    returned = ", ".join(f"n.{quote(meta.get_field(name).column)}" for name in fields)
    sql = f"""
        WITH locked AS (
            SELECT {pk}, status FROM {table} WHERE {pk} = %(id)s FOR UPDATE SKIP LOCKED
        )
        UPDATE {table} AS n
        SET status = %(sending)s, attempts = n.attempts + 1, lease_until = %(lease)s, updated_at = %(updated)s
        FROM locked
        WHERE n.{pk} = locked.{pk} AND (
            (locked.status = %(queued)s AND (n.not_before IS NULL OR n.not_before <= %(now)s))
            OR (locked.status = %(sending)s AND (n.lease_until IS NULL OR n.lease_until <= %(now)s))
        )
        RETURNING locked.status, {returned}
    """  # noqa: S608 - names from the model
    return sql, fields


def _reserve(notification_id: int, now: datetime) -> tuple[Notification | None, bool]:
    """(the message, True if an earlier sender's outcome is unknown), or (None, False): not ours
    to send (another sender has it; sent, failed or delivered; not due: quiet hours or a retry,
    which the sweep sends when due)."""
    sql, fields = _reserve_statement()
    params = {
        "id": notification_id,
        "now": now,
        "lease": now + timedelta(seconds=settings.NOTIFICATIONS_LEASE_SECONDS),
        "updated": timezone.now(),
        "queued": Status.QUEUED.value,
        "sending": Status.SENDING.value,
    }
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    if row is None:
        return None, False
    previous, values = row[0], row[1:]
    return Notification.from_db(connection.alias, fields, values), previous == Status.SENDING


def _record(notification: Notification, **changes) -> bool:
    """Apply `changes` if the reservation is still ours (nobody took it over after its lease):
    one conditional UPDATE, and the outcome's event in the same transaction."""
    changes = {"lease_until": None, **changes, "updated_at": timezone.now()}  # the lease ends unless held
    with transaction.atomic():
        mine = Notification.objects.filter(
            pk=notification.pk, status=Status.SENDING, attempts=notification.attempts
        ).update(**changes)
        if not mine:
            logger.warning(
                "notification taken over before its outcome was recorded",
                extra={"notification": notification.public_id, **{k: str(v) for k, v in changes.items()}},
            )
            return False
        for field, value in changes.items():
            setattr(notification, field, value)
        if notification.status not in (Status.QUEUED, Status.SENDING):
            publish_outcome(notification)
    return True


def deliver(notification_id: int, *, now: datetime | None = None) -> str:
    """Send one message if it is due and not taken; the outcome, for the task's result."""
    now = now or timezone.now()
    notification, unknown = _reserve(notification_id, now)
    if notification is None:
        return "not due or not ours"
    channel = CHANNELS[notification.channel]
    provider_id = None
    if unknown:
        try:
            provider_id = channel.confirm_sent(notification)
        except Exception as exc:  # noqa: BLE001 - whatever the reason, the outcome stays unknown: asked again later
            return _still_unknown(notification, f"{exc}")
    if provider_id:
        outcome = "confirmed"
    else:
        outcome = "sent"
        try:
            provider_id = channel.send(notification)
        except PermanentFailure as exc:
            _failed(notification, f"{exc}")
            return "failed"
        except OutcomeUnknown as exc:  # the provider may have it: asked before anything is sent again
            return _still_unknown(notification, f"{exc}")
        except Exception as exc:  # TemporaryFailure, or anything unforeseen: retried, then failed
            error = f"{exc}" if isinstance(exc, TemporaryFailure) else f"{type(exc).__name__}: {exc}"
            if not isinstance(exc, TemporaryFailure):
                logger.exception("notification send raised", extra={"notification": notification.public_id})
            return _retry_or_fail(notification, error, getattr(exc, "retry_after", None))
    _record(
        notification, status=Status.SENT, provider_id=provider_id[:100], sent_at=timezone.now(), last_error=""
    )
    return outcome


def _still_unknown(notification: Notification, error: str) -> str:
    """Whether a send went is not known (no answer came, or the provider could not be asked):
    the message stays `sending` (never sent again blindly) and the sweep asks the provider
    after a backoff; after the last attempt it fails for staff to check with the provider."""
    if notification.attempts >= settings.NOTIFICATIONS_MAX_ATTEMPTS:
        _failed(notification, f"outcome unknown, the provider could not be asked: {error}")
        return "failed"
    lease = timezone.now() + timedelta(seconds=backoff_seconds(notification.attempts))
    _record(
        notification, status=Status.SENDING, last_error=f"outcome unknown: {error}"[:4000], lease_until=lease
    )
    return "unknown"


def _failed(notification: Notification, error: str) -> None:
    _record(notification, status=Status.FAILED, last_error=error[:4000], failed_at=timezone.now())


def _retry_or_fail(notification: Notification, error: str, retry_after: float | None) -> str:
    if notification.attempts >= settings.NOTIFICATIONS_MAX_ATTEMPTS:
        _failed(notification, f"{error} (after {notification.attempts} attempts)")
        return "failed"
    delay = max(retry_after or 0, backoff_seconds(notification.attempts))
    due = timezone.now() + timedelta(seconds=delay)
    if _record(notification, status=Status.QUEUED, last_error=error[:4000], not_before=due) and (
        delay <= COUNTDOWN_LIMIT_SECONDS
    ):
        _send_task(notification.pk, countdown=delay)
    return "retry"


def _send_task(notification_id: int, countdown: float | None = None) -> None:
    from notifications.tasks import deliver as deliver_task  # here: tasks imports this module

    deliver_task.apply_async((notification_id,), countdown=countdown)


def dispatch(notification_ids: list[int]) -> None:
    """Send each after the current transaction commits (a lost dispatch is the sweep's)."""
    if not notification_ids:
        return

    def send() -> None:
        for pk in notification_ids:
            _send_task(pk)

    transaction.on_commit(send, robust=True)


def sweep(*, now: datetime | None = None, limit: int = 1000) -> int:
    """Dispatch again what a lost task or a dead sender left: due queued messages whose task
    should have taken them by now, and `sending` ones whose lease has run out."""
    now = now or timezone.now()
    grace = now - timedelta(seconds=settings.NOTIFICATIONS_SWEEP_GRACE_SECONDS)
    stuck = Q(status=Status.SENDING, lease_until__lt=now)
    waiting = Q(status=Status.QUEUED, updated_at__lt=grace) & (
        Q(not_before__isnull=True) | Q(not_before__lte=now)
    )
    ids = list(
        Notification.objects.filter(stuck | waiting).order_by("pk").values_list("pk", flat=True)[:limit]
    )
    for pk in ids:
        _send_task(pk)
    return len(ids)


def receipt_record(
    *, channel: str, provider_id: str, status: str, error: str = "", notification_id: str | None = None
) -> bool:
    """A provider's delivery receipt: `delivered` or `undelivered`. True if it changed the message.

    Found by our id when the provider echoes it, else by the provider's id. A receipt for a
    message still `sending` (its sender died before recording) proves it was sent: its id is
    kept. A receipt never moves a message back: `delivered` is final, and a late
    `undelivered` after `delivered` is ignored.
    """
    if status not in (Status.DELIVERED, Status.UNDELIVERED):
        raise ValueError(f"a receipt says delivered or undelivered, not {status!r}")
    lookup = Q(public_id=notification_id) if notification_id else Q(provider_id=provider_id)
    with transaction.atomic():
        notification = Notification.objects.select_for_update().filter(lookup, channel=channel).first()
        if notification is None or (notification.provider_id and notification.provider_id != provider_id):
            return False
        if notification.status not in (Status.QUEUED, Status.SENDING, Status.SENT):
            return False
        unrecorded = notification.status != Status.SENT  # its sender died before recording it
        now = timezone.now()
        notification.provider_id = provider_id[:100]
        notification.status = status
        notification.lease_until = None
        notification.sent_at = notification.sent_at or now
        fields = ["provider_id", "status", "lease_until", "sent_at", "updated_at"]
        if status == Status.DELIVERED:
            notification.delivered_at = now
            fields.append("delivered_at")
        else:
            notification.failed_at, notification.last_error = now, (error or "undelivered")[:4000]
            fields += ["failed_at", "last_error"]
        notification.save(update_fields=fields)
        if status == Status.UNDELIVERED:
            events.publish(
                "notification.failed", event_data(notification, error=notification.last_error[:1000])
            )
        elif unrecorded:
            events.publish(
                "notification.sent", event_data(notification, provider_id=notification.provider_id)
            )
    return True
