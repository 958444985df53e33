"""The webhook inbox: authenticate, store, answer. Everything else happens in tasks.

The request does the least that makes the webhook durable: the gateway's signature check
and one INSERT in autocommit (a duplicate event is dropped by the unique index). A kick,
one per second per web process at most, has a task dispatch the stored rows to
`webhook_process`, which finds the payment and verifies it with the gateway's API; beat's
sweep catches any row a lost kick left behind.
"""

import json
import logging
import time

from django.utils import timezone

from core.db import insert_unless_exists
from payments.gateways.base import GatewayError, PaymentGateway, WebhookAuthError, WebhookNotice, WebhookReply
from payments.models import WebhookEvent

logger = logging.getLogger(__name__)
KEPT_HEADERS = 40  # a webhook's headers are stored for staff, within reason
PRIVATE_HEADERS = {"authorization", "cookie"}  # never stored
REFUSED_BODY_KEPT = 16_384  # characters of a refused webhook's body
KICK_WINDOW_SECONDS = 1.0


def _headers_for_storage(headers: dict[str, str]) -> dict[str, str]:
    return {k: v[:500] for k, v in list(headers.items())[:KEPT_HEADERS] if k.lower() not in PRIVATE_HEADERS}


def _store(*, gateway: str, notice: WebhookNotice, headers: dict[str, str], body: str) -> bool:
    """Insert the signed event unless the same one is there already; True if inserted."""
    return insert_unless_exists(
        WebhookEvent,
        {
            "gateway": gateway,
            "event_id": notice.event_id[:200],
            "reference": notice.reference[:100],
            "headers": _headers_for_storage(headers),
            "body": body,
            "received_at": timezone.now(),
            "signature_valid": True,
            "error": "",
        },
        conflict="(gateway, event_id) WHERE signature_valid",
    )


_next_kick_at = 0.0  # per process: the end of the window whose kick is already sent


def webhooks_kick() -> None:
    """Have a worker dispatch what is stored, once per KICK_WINDOW_SECONDS per process. Never raises.

    The first webhook of a window sends a dispatch task delayed to the window's end, so it
    covers every webhook stored in that window; the others send nothing. No shared cache
    is touched on the hot path.
    """
    global _next_kick_at
    now = time.monotonic()
    if now < _next_kick_at:
        return
    _next_kick_at = now + KICK_WINDOW_SECONDS
    from payments.tasks import webhooks_dispatch

    try:
        webhooks_dispatch.apply_async(countdown=KICK_WINDOW_SECONDS, retry=False)
    except Exception:
        logger.warning("could not kick webhook dispatch; the sweep will", exc_info=True)


def webhook_receive(
    *, gateway: PaymentGateway, headers: dict[str, str], body: bytes
) -> tuple[int, WebhookReply]:
    """Store one webhook; (HTTP status, reply). 400 for a bad signature (stored, never applied)."""
    text = body.decode("utf-8", errors="replace")
    try:
        notice = gateway.parse_webhook(headers=headers, body=body)
    except (WebhookAuthError, GatewayError) as exc:  # unsigned, forged, or signed but unreadable
        WebhookEvent.objects.create(
            gateway=gateway.name,
            event_id="",
            headers=_headers_for_storage(headers),
            body=text[:REFUSED_BODY_KEPT],  # anyone can send these: keep enough to investigate
            signature_valid=False,
            error=str(exc)[:2000],
        )
        logger.warning("webhook refused", extra={"gateway": gateway.name, "error": str(exc)})
        body = json.dumps({"code": "bad_signature", "message": str(exc)[:200]}).encode()
        return 400, WebhookReply(status=400, body=body, content_type="application/json")
    if _store(gateway=gateway.name, notice=notice, headers=headers, body=text):
        webhooks_kick()
    else:
        logger.info("duplicate webhook ignored", extra={"gateway": gateway.name, "event_id": notice.event_id})
    return 200, gateway.webhook_reply(notice)
