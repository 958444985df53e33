"""The webhook inbox: authenticate, store, then let a task verify with the gateway's API."""

import json
import logging

from django.db import IntegrityError, transaction

from payments.gateways.base import GatewayError, PaymentGateway, WebhookAuthError, WebhookReply
from payments.models import Payment, WebhookEvent

logger = logging.getLogger(__name__)
KEPT_HEADERS = 40  # a webhook's headers are stored for staff, within reason


def _headers_for_storage(headers: dict[str, str]) -> dict[str, str]:
    return {k: v[:500] for k, v in list(headers.items())[:KEPT_HEADERS] if k.lower() != "authorization"}


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
            body=text,
            signature_valid=False,
            error=str(exc)[:2000],
        )
        logger.warning("webhook refused", extra={"gateway": gateway.name, "error": str(exc)})
        return 400, WebhookReply(
            status=400, body=json.dumps({"code": "bad_signature"}).encode(), content_type="application/json"
        )
    payment = Payment.objects.filter(gateway=gateway.name, gateway_reference=notice.reference).first()
    try:
        with transaction.atomic():
            event = WebhookEvent.objects.create(
                gateway=gateway.name,
                event_id=notice.event_id[:200],
                headers=_headers_for_storage(headers),
                body=text,
                signature_valid=True,
                payment=payment,
                error="" if payment else f"no payment with reference {notice.reference}",
            )
            if payment:
                from payments.tasks import webhook_process

                webhook_process.delay_on_commit(event.pk)
    except IntegrityError:
        logger.info("duplicate webhook ignored", extra={"gateway": gateway.name, "event_id": notice.event_id})
    return 200, gateway.webhook_reply(notice)
