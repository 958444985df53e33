"""Pruning, replay and dismissal: the housekeeping staff and beat do on the backbone."""

import logging
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from core.errors import BusinessRuleViolation
from core.events import consumer
from core.events.registry import SUBSCRIBERS
from core.models import DeadLetter, OutboxEvent, ProcessedEvent

logger = logging.getLogger(__name__)
PRUNE_CHUNK = 5000


def _delete_in_chunks(queryset) -> int:
    deleted = 0
    while True:
        pks = list(queryset.values_list("pk", flat=True)[:PRUNE_CHUNK])
        if not pks:
            return deleted
        deleted += queryset.model.objects.filter(pk__in=pks).delete()[0]


def events_prune() -> dict[str, int]:
    """Delete published events, processed markers and resolved dead letters past retention."""
    now = timezone.now()
    published_cutoff = now - timedelta(days=settings.EVENTS_RETENTION_DAYS)
    processed_cutoff = now - timedelta(days=settings.EVENTS_PROCESSED_RETENTION_DAYS)
    return {
        "events": _delete_in_chunks(
            # An event another bus has not taken yet stays, whatever its age.
            OutboxEvent.objects.filter(published_at__isnull=False, published_at__lt=published_cutoff).exclude(
                deliveries__isnull=False
            )
        ),
        "processed": _delete_in_chunks(ProcessedEvent.objects.filter(processed_at__lt=processed_cutoff)),
        "dead_letters": _delete_in_chunks(DeadLetter.objects.filter(resolved_at__lt=processed_cutoff)),
    }


class ReplayError(BusinessRuleViolation):
    """The replay cannot be sent; a refusal staff see as it is (the admin, `manage.py events`)."""


def dead_letter_replay(*, dead_letter_id: int) -> DeadLetter:
    """Send a dead letter's event to its subscriber again, through the broker.

    The subscriber runs once more with its usual retries; if it succeeds, the row is
    resolved; if it fails for good, the row gets the new error and its attempts. Raises
    ReplayError when the subscriber is gone or the broker cannot take the message.
    """
    letter = DeadLetter.objects.get(pk=dead_letter_id)
    if letter.resolved_at is not None:
        return letter
    sub = SUBSCRIBERS.get(letter.subscriber)
    if sub is None:
        raise ReplayError(f"no subscriber named {letter.subscriber} is registered any more")
    envelope = letter.envelope
    try:
        if settings.EVENTS_CONSUMER:
            consumer.replay_send(sub, envelope)
        else:
            sub.task.apply_async(
                args=[envelope], kwargs={"replay": True}, task_id=sub.task_id(envelope["id"]), queue=sub.queue
            )
    except Exception as exc:
        raise ReplayError(f"the broker did not take the replay of #{letter.pk}: {exc}") from exc
    DeadLetter.objects.filter(pk=letter.pk).update(replayed_at=timezone.now())
    letter.refresh_from_db()
    return letter


def dead_letter_dismiss(*, dead_letter_id: int, by: str, note: str) -> DeadLetter:
    """Resolve a dead letter without replaying it: staff decided its event needs no effect.

    `by` and `note` (who, and why) go to the log; the letter stays until pruned with the other
    resolved ones, and a later failure of the same event reopens it. Refused when it is
    resolved already (by a replay that succeeded meanwhile, say).
    """
    with transaction.atomic():
        letter = DeadLetter.objects.select_for_update().get(pk=dead_letter_id)
        if letter.resolved_at is not None:
            raise BusinessRuleViolation(
                f"Dead letter #{letter.pk} was resolved at {letter.resolved_at:%Y-%m-%d %H:%M:%S}: "
                "nothing to dismiss."
            )
        letter.resolved_at = timezone.now()
        letter.save(update_fields=["resolved_at"])
    logger.info(
        "dead letter dismissed",
        extra={
            "dead_letter_id": letter.pk,
            "event_id": str(letter.event_id),
            "subscriber": letter.subscriber,
            "by": by,
            "note": note,
        },
    )
    return letter
