"""How a subscriber runs inside a worker: once per event, retried, then dead-lettered."""

import logging
import traceback as tb
import uuid
from typing import TYPE_CHECKING, Any

from celery import Task, current_app
from django.db import close_old_connections, transaction
from django.utils import timezone

from core.db import insert_many_unless_exist, insert_unless_exists
from core.events.event import Event
from core.logging import request_id_var
from core.models import DeadLetter, ProcessedEvent

if TYPE_CHECKING:
    from core.events.registry import Subscriber

logger = logging.getLogger(__name__)


def claim_processing_many(*, event_ids: list[str], subscriber: str) -> set[uuid.UUID]:
    """claim_processing for several events in one statement: the ids claimed now (the others
    were processed already, or are being processed by a transaction this one waited for)."""
    now = timezone.now()
    return insert_many_unless_exist(
        ProcessedEvent,
        [{"event_id": uuid.UUID(e), "subscriber": subscriber, "processed_at": now} for e in event_ids],
        conflict="(event_id, subscriber)",
        returning="event_id",
    )


def claim_processing(*, event_id: str, subscriber: str) -> bool:
    """Insert (event, subscriber) into ProcessedEvent in the open transaction; False if already there.

    A concurrent delivery of the same event waits on the unique index until this transaction
    ends: if it commits, the other finds the row; if it rolls back, the other goes ahead.
    """
    return insert_unless_exists(
        ProcessedEvent,
        {"event_id": uuid.UUID(event_id), "subscriber": subscriber, "processed_at": timezone.now()},
        conflict="(event_id, subscriber)",
    )


def dead_letter_record(
    *, subscriber: str, envelope: dict[str, Any], exc: BaseException, attempts: int, trace: str
):
    now = timezone.now()
    with transaction.atomic():
        letter, created = DeadLetter.objects.select_for_update().get_or_create(
            event_id=envelope["id"],
            subscriber=subscriber,
            defaults={
                "event_type": envelope["type"],
                "envelope": envelope,
                "error": f"{type(exc).__name__}: {exc}",
                "traceback": trace,
                "attempts": attempts,
                "first_failed_at": now,
                "last_failed_at": now,
            },
        )
        reopened = not created and letter.resolved_at is not None
        if not created:
            letter.error = f"{type(exc).__name__}: {exc}"
            letter.traceback = trace
            letter.attempts += attempts
            letter.last_failed_at = now
            letter.resolved_at = None
            letter.save(update_fields=["error", "traceback", "attempts", "last_failed_at", "resolved_at"])
        if created or reopened:  # staff hear about a new failure, not about each retry of a known one
            from core.events.outbox import publish  # outbox -> tasks -> registry -> runner

            publish(
                "dead_letter.recorded",
                {
                    "dead_letter_id": letter.pk,
                    "event_id": str(letter.event_id),
                    "event_type": letter.event_type,
                    "subscriber": subscriber,
                    "error": letter.error[:1000],
                    "attempts": letter.attempts,
                },
            )
    return letter


class SubscriberTask(Task):
    """Base for subscriber tasks: records a dead letter when the last attempt fails."""

    subscriber: "Subscriber"

    def on_failure(self, exc, task_id, args, kwargs, einfo):
        envelope = args[0] if args else kwargs["envelope"]
        context = {"subscriber": self.subscriber.name, "event_id": envelope["id"], "error": str(exc)}
        logger.error("subscriber dead-lettered", extra=context)
        close_old_connections()  # the failure may have been a database that went away
        try:
            dead_letter_record(
                subscriber=self.subscriber.name,
                envelope=envelope,
                exc=exc,
                attempts=self.request.retries + 1,
                trace="".join(tb.format_exception(exc))[-20000:],
            )
        except Exception:
            logger.critical(
                "dead letter not recorded in the database; the message is on the dead-letter queue",
                extra={**context, "envelope": envelope},
                exc_info=True,
            )


def subscriber_run(sub: "Subscriber", envelope: dict[str, Any], *, replay: bool = False) -> str:
    """One delivery of an event to a subscriber: its effect and its processed-event row in one
    transaction (nothing twice), a replay resolving the dead letter; what happened."""
    event = Event.from_envelope(envelope)
    if not replay and not sub.accepts(event.data):
        # Published before the subscriber had its `when` (a deploy in between): not for it.
        return "not for this subscriber"
    with transaction.atomic():
        outcome = "processed"
        if claim_processing(event_id=envelope["id"], subscriber=sub.name):
            sub.func(event)
        else:
            outcome = "already processed"  # e.g. a duplicate copy succeeded after all
        if replay:
            DeadLetter.objects.filter(
                event_id=event.id, subscriber=sub.name, resolved_at__isnull=True
            ).update(resolved_at=timezone.now())
    return outcome


def subscriber_run_batch(sub: "Subscriber", deliveries: list[tuple[dict[str, Any], str | None]]) -> None:
    """Several first deliveries (envelope, request id) to a subscriber that declared `batch`:
    every effect and its processed-event row in one transaction, in the events' order. Raises
    whatever one of them raised, having rolled them all back (the caller runs them one by one)."""
    deliveries = [(e, r) for e, r in deliveries if sub.accepts(e.get("data") or {})]
    with transaction.atomic():
        claimed = claim_processing_many(event_ids=[e["id"] for e, _ in deliveries], subscriber=sub.name)
        for envelope, request_id in deliveries:
            if uuid.UUID(envelope["id"]) in claimed:
                token = request_id_var.set(request_id)
                try:
                    sub.func(Event.from_envelope(envelope))
                finally:
                    request_id_var.reset(token)


def make_subscriber_task(sub: "Subscriber") -> Task:
    def run(self, envelope: dict[str, Any], replay: bool = False) -> str:
        return subscriber_run(sub, envelope, replay=replay)

    return current_app.task(
        run,
        name=f"events.{sub.name}",
        base=SubscriberTask,
        bind=True,
        subscriber=sub,
        acks_late=True,
        autoretry_for=sub.retry_for,
        max_retries=sub.max_retries,
        retry_backoff=sub.retry_backoff,
        retry_backoff_max=600,
        retry_jitter=sub.retry_jitter,
    )
