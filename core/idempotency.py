"""Idempotency-Key for POST endpoints: a retried request gets the first answer, once.

    def post(self, request):
        return idempotent(request, scope="payments.create", payload=data, handler=create)

`handler(record)` runs at most once per (caller, scope, key) at a time, inside a transaction
that holds the record's lock; it may set `record.resource_id` to what it created, so that a
retry after a 5xx (whose answer is not stored) picks it up again instead of creating another.
"""

import hashlib
import json
from collections.abc import Callable
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db import IntegrityError, transaction
from rest_framework.response import Response

from core.errors import BusinessRuleViolation, InvalidInput
from core.models import IdempotencyRecord

HEADER = "Idempotency-Key"
MAX_KEY_LENGTH = 255


def _fingerprint(payload: Any) -> str:
    canonical = json.dumps(payload, cls=DjangoJSONEncoder, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def idempotent(
    request, *, scope: str, payload: Any, handler: Callable[[IdempotencyRecord], Response]
) -> Response:
    key = request.headers.get(HEADER, "").strip()
    if not key:
        raise InvalidInput(f"The {HEADER} header is required.", code="idempotency_key_missing")
    if len(key) > MAX_KEY_LENGTH:
        raise InvalidInput(f"The {HEADER} header is longer than {MAX_KEY_LENGTH} characters.")
    fingerprint = _fingerprint(payload)
    try:
        with transaction.atomic():
            record = IdempotencyRecord.objects.create(
                key=key, scope=scope, user=request.user, fingerprint=fingerprint
            )
    except IntegrityError:
        record = IdempotencyRecord.objects.get(key=key, scope=scope, user=request.user)
    # The record stays locked while the handler runs: a concurrent retry with the same key
    # waits, then gets the stored answer. Answers of 5xx are not stored, so a later retry
    # runs the handler again, which picks up record.resource_id where the first try stopped.
    with transaction.atomic():
        record = IdempotencyRecord.objects.select_for_update().get(pk=record.pk)
        if record.fingerprint != fingerprint:
            raise BusinessRuleViolation(
                f"This {HEADER} was used with other parameters.", code="idempotency_key_reused"
            )
        if record.response_status is not None:
            return Response(
                record.response_body, status=record.response_status, headers={"Idempotent-Replay": "true"}
            )
        response = handler(record)
        record.response_status = response.status_code if response.status_code < 500 else None
        record.response_body = response.data if response.status_code < 500 else None
        record.save(update_fields=["resource_id", "response_status", "response_body"])
    return response
