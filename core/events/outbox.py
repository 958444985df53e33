"""publish(): write an event into the outbox, inside the caller's transaction."""

import json
import uuid
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from django.utils import timezone

from core.events.tasks import relay_kick
from core.events.types import EVENT_TYPES
from core.logging import request_id_var
from core.models import OutboxEvent


class EventError(Exception):
    """An event that cannot be published: unknown type, bad data, or no transaction."""


def publish(event_type: str, data: dict[str, Any], *, aggregate_id: str | None = None) -> OutboxEvent:
    """Record `event_type` with `data` in the outbox, in the caller's open transaction.

    The event exists if and only if the transaction commits; after the commit the relay
    delivers it, in the order of the outbox rows (numbered when inserted). `aggregate_id`
    defaults to data["<domain>_id"] (payment_id for payment.*). Events of one aggregate keep
    their order as long as their transactions are serialised, as services do by locking the
    aggregate's row (select_for_update) before changing it and publishing.
    Raises EventError (and so rolls the caller back) for an unknown type, data that does not
    serialize to JSON, or a call outside transaction.atomic().
    """
    source = EVENT_TYPES.get(event_type)
    if source is None:
        raise EventError(f"unknown event type {event_type!r}; register it in core.events.types")
    if not transaction.get_connection().in_atomic_block:
        raise EventError(f"publish({event_type!r}) must be called inside transaction.atomic()")
    if not isinstance(data, dict):
        raise EventError(f"the data of {event_type} must be a dict, not {type(data).__name__}")
    try:
        # Decimal, UUID and datetime become strings; anything else that is not JSON is refused.
        payload = json.loads(json.dumps(data, cls=DjangoJSONEncoder, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise EventError(f"the data of {event_type} does not serialize to JSON: {exc}") from exc
    if aggregate_id is None:
        aggregate_id = str(payload.get(f"{event_type.split('.')[0]}_id", ""))
    event = OutboxEvent.objects.create(
        event_id=uuid.uuid4(),
        type=event_type,
        source=source,
        aggregate_id=aggregate_id[:100],
        occurred_at=timezone.now(),
        data=payload,
        request_id=request_id_var.get() or "",
    )
    db = transaction.get_connection()
    if not any(func is relay_kick for _, func, _ in db.run_on_commit):
        transaction.on_commit(relay_kick, robust=True)  # one kick per transaction
    return event
