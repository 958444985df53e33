"""The webhook inbox: authenticate, store, answer; then, in a task, confirm with the gateway's API.

The request does the least that makes the webhook durable: the gateway's signature check
and one INSERT in autocommit (a duplicate event is dropped by the unique index). A kick,
one per second per web process at most, has a task dispatch the stored rows to
`webhook_process`, which runs `webhook_verify`: it finds the payment and applies what the
gateway's API says about it, never the webhook's claims. Beat's sweep catches any row a lost
kick left behind (payments.reconciliation).

Whatever arrives is kept, and nothing a sender puts in a request makes it fail: a body that
is not UTF-8 text, or holds NUL bytes (which no gateway sends, and PostgreSQL text cannot
hold), is refused with 400 and stored with its bytes; NUL or unencodable characters in what
a signed webhook carries (its headers, an id decoded from a JSON "\\u0000") are stored
escaped.

At a gateway that signs nothing (`signs_webhooks = False`: YooKassa), a well-formed notice
proves nothing: it is stored `unconfirmed`, without its de-duplication key, and takes the key
only once the gateway's API confirms what it claims. A forged notice sent before the real one
therefore never makes the real one a duplicate.

Tasks are sent by name: payments.tasks, the Celery adapters, import this module.
"""

import json
import logging
import time

from celery import current_app
from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from core.db import insert_unless_exists
from core.errors import InvalidInput, TransientError
from payments.errors import PaymentErrorCode
from payments.gateways.base import (
    GatewayError,
    PaymentGateway,
    Status,
    WebhookAuthError,
    WebhookNotice,
    WebhookReply,
)
from payments.methods import method_keep
from payments.models import Payment, PaymentLedgerEntry, WebhookEvent
from payments.registry import gateway_for
from payments.services import payment_apply_state

logger = logging.getLogger(__name__)
KEPT_HEADERS = 40  # a webhook's headers are stored for staff, within reason
PRIVATE_HEADERS = {"authorization", "cookie"}  # never stored
REFUSED_BODY_KEPT = 16_384  # characters (and bytes) of a refused webhook's body
KICK_WINDOW_SECONDS = 1.0
DISPATCH_TASK = "payments.webhooks_dispatch"

# The codes of a refused webhook's 400, in the API's error shape.
BAD_SIGNATURE = PaymentErrorCode.BAD_SIGNATURE
MALFORMED_WEBHOOK = PaymentErrorCode.MALFORMED_WEBHOOK


def storable(text: str) -> str:
    """`text` as PostgreSQL can store it in text or JSON: NUL as \\x00, a lone surrogate as \\udXXX."""
    if "\x00" in text:
        text = text.replace("\x00", "\\x00")
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def body_text(body: bytes) -> tuple[str, str]:
    """(the body as text, "") if it is text a gateway could send, else (a storable rendering, why not)."""
    problem = "it contains NUL bytes" if b"\x00" in body else ""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        problem = problem or f"it is not UTF-8 (byte {exc.start} is {body[exc.start]:#04x})"
        text = body.decode("utf-8", "backslashreplace")
    return (storable(text), problem) if problem else (text, "")


def _headers_for_storage(headers: dict[str, str]) -> dict[str, str]:
    return {
        storable(k): storable(v[:500])
        for k, v in list(headers.items())[:KEPT_HEADERS]
        if k.lower() not in PRIVATE_HEADERS
    }


def _store(*, gateway: str, notice: WebhookNotice, headers: dict[str, str], body: str) -> bool:
    """Insert the signed event unless the same one is there already; True if inserted."""
    return insert_unless_exists(
        WebhookEvent,
        {
            "gateway": gateway,
            "event_id": storable(notice.event_id)[:200],
            "reference": storable(notice.reference)[:100],
            "headers": _headers_for_storage(headers),
            "body": body,
            "received_at": timezone.now(),
            "signature_valid": True,
            "proof": WebhookEvent.Proof.SIGNATURE,
            "claimed_status": notice.status_hint or "",
            "error": "",
        },
        conflict="(gateway, event_id) WHERE signature_valid",
    )


def _store_unconfirmed(*, gateway: str, notice: WebhookNotice, headers: dict[str, str], body: str) -> bool:
    """Store an unsigned notice without its key, unless the same event was confirmed already.

    Each copy of a notice not yet confirmed is kept and checked on its own: one of them may
    be forged, and only the gateway's API tells which claim is true.
    """
    event_id = storable(notice.event_id)[:200]
    if WebhookEvent.objects.filter(gateway=gateway, event_id=event_id, signature_valid=True).exists():
        return False
    WebhookEvent.objects.create(
        gateway=gateway,
        event_id=event_id,
        reference=storable(notice.reference)[:100],
        headers=_headers_for_storage(headers),
        body=body,
        signature_valid=False,
        proof=WebhookEvent.Proof.UNCONFIRMED,
        claimed_status=notice.status_hint or "",
    )
    return True


def _refuse(
    *, gateway: PaymentGateway, headers: dict[str, str], body: bytes, text: str, code: str, error: str
) -> tuple[int, WebhookReply]:
    """Keep a refused webhook for staff (anyone can send these: enough to investigate) and answer 400."""
    error = storable(error)
    WebhookEvent.objects.create(
        gateway=gateway.name,
        event_id="",
        headers=_headers_for_storage(headers),
        body=text[:REFUSED_BODY_KEPT],
        raw_body=body[:REFUSED_BODY_KEPT] if text.encode() != body else None,
        signature_valid=False,
        proof=WebhookEvent.Proof.NONE,
        error=error[:2000],
    )
    logger.warning("webhook refused", extra={"gateway": gateway.name, "code": code, "error": error})
    refusal = InvalidInput(error[:200], code=code, extra={"gateway": gateway.name})
    reply = WebhookReply(status=400, body=json.dumps(refusal.body).encode(), content_type="application/json")
    return 400, reply


_next_kick_at = 0.0  # per process: the end of the window whose kick is already sent


def webhooks_kick() -> None:
    """Have a worker dispatch what is stored, once per KICK_WINDOW_SECONDS per process. Never raises.

    The first webhook of a window sends a dispatch task delayed to the window's end, so it
    covers every webhook stored in that window; the others send nothing. No shared cache
    is touched on the hot path. If the broker cannot take it, beat's sweep (every
    PAYMENT_WEBHOOK_SWEEP_SECONDS) dispatches the webhook once the broker is back.
    """
    global _next_kick_at
    now = time.monotonic()
    if now < _next_kick_at:
        return
    _next_kick_at = now + KICK_WINDOW_SECONDS
    try:
        current_app.send_task(DISPATCH_TASK, countdown=KICK_WINDOW_SECONDS, retry=False)
    except Exception:
        logger.warning("could not kick webhook dispatch; the sweep will", exc_info=True)


def webhook_receive(
    *, gateway: PaymentGateway, headers: dict[str, str], body: bytes
) -> tuple[int, WebhookReply]:
    """Store one webhook; (HTTP status, reply).

    400 in the API's error shape for a body that is not text, a bad signature or a signed
    body that is no notification: stored with the reason, never applied.
    """
    text, problem = body_text(body)
    if problem:
        return _refuse(
            gateway=gateway,
            headers=headers,
            body=body,
            text=text,
            code=MALFORMED_WEBHOOK,
            error=f"{gateway.name}: the body is not a notification: {problem}",
        )
    try:
        notice = gateway.parse_webhook(headers=headers, body=body)
    except (WebhookAuthError, GatewayError) as exc:  # unsigned, forged, or signed but unreadable
        code = BAD_SIGNATURE if isinstance(exc, WebhookAuthError) else MALFORMED_WEBHOOK
        return _refuse(gateway=gateway, headers=headers, body=body, text=text, code=code, error=str(exc))
    store = _store if gateway.signs_webhooks else _store_unconfirmed
    if store(gateway=gateway.name, notice=notice, headers=headers, body=text):
        webhooks_kick()
    else:
        logger.info("duplicate webhook ignored", extra={"gateway": gateway.name, "event_id": notice.event_id})
    return 200, gateway.webhook_reply(notice)


# --- verification (payments.webhook_process) ---------------------------------------------


class WebhookNotConfirmed(TransientError):
    """The gateway's API does not (yet) say what the webhook claims: ask again in `retry_in` seconds."""

    def __init__(self, message: str, *, retry_in: float):
        super().__init__(message)
        self.retry_in = retry_in


# What the gateway's API may answer once a claimed success or refund was true: the same, or
# what can follow it. A claimed failure or cancellation is borne out by any settled state (a
# declined attempt may be followed by a success), a claimed pending by anything.
_CONFIRMING = {
    Status.SUCCEEDED: {Status.SUCCEEDED, Status.PARTIALLY_REFUNDED, Status.REFUNDED},
    Status.PARTIALLY_REFUNDED: {Status.PARTIALLY_REFUNDED, Status.REFUNDED},
    Status.REFUNDED: {Status.REFUNDED},
}


def claim_confirmed(claimed: str, actual: Status) -> bool:
    """Whether the API's `actual` status bears out a webhook that claimed `claimed` ("": nothing)."""
    if not claimed or claimed == Status.PENDING:
        return True
    if claimed in _CONFIRMING:
        return actual in _CONFIRMING[Status(claimed)]
    return actual != Status.PENDING


def _close(event: WebhookEvent, *, error: str, confirmed: bool) -> None:
    """Mark the webhook processed. An unsigned one is confirmed (it takes its event id, unless the
    same event was confirmed before) or contradicted (the id stays free for the real notice)."""
    done = {"processed_at": timezone.now(), "error": error[:2000]}
    rows = WebhookEvent.objects.filter(pk=event.pk)
    if event.proof != WebhookEvent.Proof.UNCONFIRMED:
        rows.update(**done)
    elif not confirmed:
        rows.update(**done, proof=WebhookEvent.Proof.CONTRADICTED)
    else:
        try:
            with transaction.atomic():
                rows.update(**done, proof=WebhookEvent.Proof.CONFIRMED, signature_valid=True)
        except IntegrityError:  # the unique index: that event was confirmed already
            rows.update(**done, proof=WebhookEvent.Proof.REPEATED)


def _keep_notified_method(gateway: PaymentGateway, event: WebhookEvent, payment: Payment) -> None:
    """A gateway that names the saved method only in its signed notification (Tinkoff's
    RebillId): keep it once the API has confirmed the payment succeeded."""
    if not gateway.saves_methods or event.proof != WebhookEvent.Proof.SIGNATURE:
        return
    try:
        notice = gateway.parse_webhook(headers=event.headers, body=event.body_bytes)
    except (WebhookAuthError, GatewayError):
        return
    if notice.saved_method is not None and notice.reference == payment.gateway_reference:
        method_keep(payment=payment, saved=notice.saved_method)


def webhook_verify(*, webhook_event_id: int) -> None:
    """Confirm a stored webhook with the gateway's API and apply what the API says.

    The webhook's own claims are never applied: only verify()'s answer is. When that answer
    does not bear out what the webhook claimed (the API still says pending while the webhook
    says paid: the gateway has not caught up, or the webhook is forged), it is asked again,
    PAYMENT_WEBHOOK_CONFIRM_ATTEMPTS times in all, PAYMENT_WEBHOOK_CONFIRM_INTERVAL_SECONDS
    apart (WebhookNotConfirmed), and the webhook is then closed with the disagreement; an
    unsigned one as contradicted. Raises GatewayError(transient=True) for the caller to
    retry; a refusal is kept on the event.
    """
    event = WebhookEvent.objects.select_related("payment").get(pk=webhook_event_id)
    if event.processed_at:
        return
    payment = event.payment
    if payment is None and event.reference:
        payment = Payment.objects.filter(gateway=event.gateway, gateway_reference=event.reference).first()
    if payment is None:
        _close(event, error=f"no payment with reference {event.reference!r}", confirmed=False)
        return
    if event.payment_id is None:
        WebhookEvent.objects.filter(pk=event.pk).update(payment=payment)
    gateway = gateway_for(event.gateway)
    state = gateway.verify(payment.gateway_reference)
    checks = event.checks + 1
    with transaction.atomic():
        WebhookEvent.objects.filter(pk=event.pk).update(checks=checks)
        payment = payment_apply_state(
            payment_id=payment.pk, state=state, source=PaymentLedgerEntry.Source.VERIFY
        )
        if state.status == Status.SUCCEEDED and payment.status == Payment.Status.SUCCEEDED:
            _keep_notified_method(gateway, event, payment)
        if claim_confirmed(event.claimed_status, state.status):
            _close(event, error="", confirmed=True)
            return
        disagreement = f"the gateway says {state.status}, the webhook said {event.claimed_status}"
        if checks >= settings.PAYMENT_WEBHOOK_CONFIRM_ATTEMPTS:
            _close(event, error=f"{disagreement} (asked {checks} times)", confirmed=False)
            return
        WebhookEvent.objects.filter(pk=event.pk).update(error=f"{disagreement}; asking again")
    raise WebhookNotConfirmed(disagreement, retry_in=settings.PAYMENT_WEBHOOK_CONFIRM_INTERVAL_SECONDS)
