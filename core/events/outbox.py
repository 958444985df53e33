"""publish(): write an event into the outbox, inside the caller's transaction."""

import json
import uuid
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from django.utils import timezone
from pydantic import ValidationError

from core.events.tasks import relay_kick
from core.events.types import EVENT_TYPES
from core.logging import request_id_var
from core.models import OutboxEvent


class EventError(Exception):
    """An event that cannot be published: unknown type, bad data, or no transaction."""


class EventDataError(EventError):
    """Data that does not match its type's schema; `errors` lists each field's problem."""

    def __init__(self, event_type: str, version: int, errors: list[str]) -> None:
        self.event_type, self.version, self.errors = event_type, version, errors
        super().__init__(
            f"the data of {event_type} does not match its schema (v{version}): {'; '.join(errors)}"
        )


def _field_errors(exc: ValidationError) -> list[str]:
    """'allocations.0.amount: String should match pattern ...', one per problem."""
    return [f"{'.'.join(map(str, e['loc'])) or '(data)'}: {e['msg']}" for e in exc.errors()]


def publish(event_type: str, data: dict[str, Any], *, aggregate_id: str | None = None) -> OutboxEvent:
    """Record `event_type` with `data` in the outbox, in the caller's open transaction.

    The event exists if and only if the transaction commits; after the commit the relay
    delivers it, in the order of the outbox rows (numbered when inserted). `aggregate_id`
    defaults to data["<domain>_id"] (payment_id for payment.*). Events of one aggregate keep
    their order as long as their transactions are serialised, as services do by locking the
    aggregate's row (select_for_update) before changing it and publishing.
    The data is checked, as it travels (after the JSON round trip), against the type's schema
    in strict mode (docs/contract.md); the envelope's `version` is that schema's version.
    Raises EventError (and so rolls the caller back) for an unknown type, data that does not
    serialize to JSON, or a call outside transaction.atomic(); EventDataError (an EventError)
    for data that does not match the schema: a missing or unknown key, a wrong type.
    """
    spec = EVENT_TYPES.get(event_type)
    if spec is None:
        raise EventError(f"unknown event type {event_type!r}; register it with register_event_type()")
    if not transaction.get_connection().in_atomic_block:
        raise EventError(f"publish({event_type!r}) must be called inside transaction.atomic()")
    if not isinstance(data, dict):
        raise EventError(f"the data of {event_type} must be a dict, not {type(data).__name__}")
    try:
        # Decimal, UUID and datetime become strings; anything else that is not JSON is refused.
        text = json.dumps(data, cls=DjangoJSONEncoder, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise EventError(f"the data of {event_type} does not serialize to JSON: {exc}") from exc
    try:
        spec.schema.model_validate_json(text, strict=True)
    except ValidationError as exc:
        raise EventDataError(event_type, spec.version, _field_errors(exc)) from exc
    payload = json.loads(text)
    if aggregate_id is None:
        aggregate_id = str(payload.get(f"{event_type.split('.')[0]}_id", ""))
    event = OutboxEvent.objects.create(
        event_id=uuid.uuid4(),
        type=event_type,
        version=spec.version,
        source=spec.source,
        aggregate_id=aggregate_id[:100],
        occurred_at=timezone.now(),
        data=payload,
        request_id=request_id_var.get() or "",
    )
    db = transaction.get_connection()
    if not any(func is relay_kick for _, func, _ in db.run_on_commit):
        transaction.on_commit(relay_kick, robust=True)  # one kick per transaction
    return event
