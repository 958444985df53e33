"""Idempotency-Key for POST endpoints: a retried request gets the first answer, once.

    return idempotent(request, scope="payments.create", payload=data, prepare=create, handler=checkout)

`prepare(record)` runs once per (caller, scope, key), in a short transaction holding the
record's lock: it creates what the request is about and sets `record.resource_id`, so that a
retry, or a concurrent duplicate, finds it instead of creating another. `handler(record)`
then runs outside any transaction (it may call a payment gateway) and returns the answer.
Answers below 500, errors included, are stored and replayed (`Idempotent-Replayed: true`);
a 5xx is not, so a retry runs `handler` again on the same resource.

While `handler` runs, the record is locked for IDEMPOTENCY_LOCK_SECONDS: a second request
with the key gets 409 `request_in_progress` (with `Retry-After`) instead of running it a
second time. The lock ends when the first request answers, or fails: a handler that failed
because the database connection died releases it on a new connection. If its process died, or
the database is unreachable, it lapses.
Records are deleted IDEMPOTENCY_RETENTION_HOURS after they were created
(`idempotency_records_prune`, run hourly by beat): a key is remembered that long.
"""

import hashlib
import json
import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.utils import timezone
from rest_framework.response import Response

from core.errors import ApplicationError, BusinessRuleViolation, InvalidInput
from core.models import IdempotencyRecord

HEADER = "Idempotency-Key"
MAX_KEY_LENGTH = 255
REPLAYED_HEADER = "Idempotent-Replayed"
# The header's name until this release; still sent, with the new one, for one release.
DEPRECATED_REPLAYED_HEADER = "Idempotent-Replay"
RETRY_AFTER_SECONDS = 1
PRUNE_BATCH = 5000
logger = logging.getLogger(__name__)


class RequestInProgress(ApplicationError):
    status_code = 409
    default_code = "request_in_progress"
    default_message = (
        f"A request with this {HEADER} is still running; retry with the same key to get its answer."
    )


def _fingerprint(payload: Any) -> str:
    canonical = json.dumps(payload, cls=DjangoJSONEncoder, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def key_digest(request) -> str:
    """A short, fixed-length stand-in for the caller's key (for columns of limited width)."""
    return hashlib.sha256(request.headers.get(HEADER, "").strip().encode()).hexdigest()[:32]


def _replay(record: IdempotencyRecord) -> Response:
    return Response(
        record.response_body,
        status=record.response_status,
        headers={REPLAYED_HEADER: "true", DEPRECATED_REPLAYED_HEADER: "true"},
    )


def _in_progress() -> Response:
    refused = RequestInProgress()
    return Response(
        refused.body, status=refused.status_code, headers={"Retry-After": str(RETRY_AFTER_SECONDS)}
    )


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
            return _replay(record)
        now = timezone.now()
        if record.locked_until is not None and record.locked_until > now:
            return _in_progress()
        if prepare is not None and not record.resource_id:
            prepare(record)
        record.locked_until = now + timedelta(seconds=settings.IDEMPOTENCY_LOCK_SECONDS)
        record.save(update_fields=["resource_id", "locked_until"])
    unanswered = IdempotencyRecord.objects.filter(pk=record.pk, response_status__isnull=True)
    try:
        response = handler(record)
    except ApplicationError as exc:  # a refusal is an answer too: the retry gets the same one
        response = Response(exc.body, status=exc.status_code)
    except BaseException:
        _release(unanswered)  # a retry may run it again at once
        raise
    if response.status_code < 500:
        unanswered.update(
            response_status=response.status_code, response_body=response.data, locked_until=None
        )
    else:
        unanswered.update(locked_until=None)
    return response


def _release(unanswered) -> None:
    """Unlock a record whose handler failed. The failure may be the database connection itself
    (the server terminated it, a network cut): the release is then tried once on a new one.
    Whatever happens here, the handler's own error is what the caller sees; a release that
    still fails leaves the lock to lapse after IDEMPOTENCY_LOCK_SECONDS."""
    try:
        unanswered.update(locked_until=None)
        return
    except DatabaseError as exc:
        if connection.in_atomic_block:  # the caller's transaction: not ours to replace
            logger.warning("idempotency lock left to lapse: %s", exc)
            return
    connection.close()
    try:
        unanswered.update(locked_until=None)
    except DatabaseError as exc:
        logger.warning("idempotency lock left to lapse: %s", exc)


def idempotency_records_prune(*, now: datetime | None = None) -> int:
    """Delete records created more than IDEMPOTENCY_RETENTION_HOURS ago, in batches; idempotent.

    A record whose request is still running is kept. Answers the number deleted.
    """
    now = now or timezone.now()
    cutoff = now - timedelta(hours=settings.IDEMPOTENCY_RETENTION_HOURS)
    expired = IdempotencyRecord.objects.filter(created_at__lt=cutoff).exclude(locked_until__gt=now)
    deleted = 0
    while batch := list(expired.values_list("pk", flat=True)[:PRUNE_BATCH]):
        deleted += IdempotencyRecord.objects.filter(pk__in=batch).delete()[0]
    return deleted
