"""Idempotency-Key for POST endpoints: a retried request gets the first answer, once.

    return idempotent(request, scope="payments.create", payload=data, prepare=create, handler=checkout)

`prepare(record)` runs once per (caller, scope, key), in a short transaction holding the
record's lock: it creates what the request is about and sets `record.resource_id`, so that a
retry, or a concurrent duplicate, finds it instead of creating another. `handler(record)`
then runs outside any transaction (it may call a payment gateway) and returns the answer.
Answers below 500, errors included, are stored and replayed; a 5xx is not, so a retry runs
`handler` again on the same resource.
"""

import hashlib
import json
from collections.abc import Callable
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db import IntegrityError, transaction
from rest_framework.response import Response

from core.errors import ApplicationError, BusinessRuleViolation, InvalidInput
from core.models import IdempotencyRecord

HEADER = "Idempotency-Key"
MAX_KEY_LENGTH = 255


def _fingerprint(payload: Any) -> str:
    canonical = json.dumps(payload, cls=DjangoJSONEncoder, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def key_digest(request) -> str:
    """A short, fixed-length stand-in for the caller's key (for columns of limited width)."""
    return hashlib.sha256(request.headers.get(HEADER, "").strip().encode()).hexdigest()[:32]


def idempotent(
    request,
    *,
    scope: str,
    payload: Any,
    handler: Callable[[IdempotencyRecord], Response],
    prepare: Callable[[IdempotencyRecord], None] | None = None,
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
        if prepare is not None and not record.resource_id:
            prepare(record)
            record.save(update_fields=["resource_id"])
    try:
        response = handler(record)
    except ApplicationError as exc:  # a refusal is an answer too: the retry gets the same one
        response = Response(exc.body, status=exc.status_code)
    if response.status_code < 500:
        IdempotencyRecord.objects.filter(pk=record.pk, response_status__isnull=True).update(
            response_status=response.status_code, response_body=response.data
        )
    return response
