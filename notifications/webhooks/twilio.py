"""Twilio's SMS status callbacks: a message delivered, or given up on by the carrier.

Each callback is signed with our auth token over the URL Twilio was given (SITE_URL plus the
path and query, so it checks out behind proxies) and the posted fields; anything unsigned or
mis-signed is refused with 403 and changes nothing. The query's `n` is our notification's
public id (see notifications.channels.sms), so a callback finds its row even if the sid was
never recorded. Statuses on the way (queued, sending, sent, accepted...) are acknowledged and
ignored: only the outcome is recorded.
"""

import logging

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from drf_spectacular.utils import OpenApiResponse, extend_schema
from twilio.request_validator import RequestValidator

from core.api import MachineWebhookView, error_response
from notifications import delivery

logger = logging.getLogger(__name__)

OUTCOMES = {"delivered": "delivered", "undelivered": "undelivered", "failed": "undelivered"}


def signed_by_twilio(request: HttpRequest) -> bool:
    signature = request.headers.get("X-Twilio-Signature", "")
    if not (settings.TWILIO_AUTH_TOKEN and signature):
        return False
    url = settings.SITE_URL.rstrip("/") + request.get_full_path()
    return RequestValidator(settings.TWILIO_AUTH_TOKEN).validate(url, request.POST, signature)


class TwilioStatusView(MachineWebhookView):
    """POST /api/notifications/webhooks/twilio?n=<notification id>: Twilio's status callback
    (form fields MessageSid, MessageStatus, ErrorCode...), signed with X-Twilio-Signature."""

    @extend_schema(
        request=None,  # the provider's own body, read as it came (see the docstring)
        responses={
            204: OpenApiResponse(
                description="received (an outcome is recorded, a status on the way ignored)"
            ),
            403: OpenApiResponse(
                description="bad_signature: not signed by Twilio with our token; nothing changed"
            ),
        },
    )
    def post(self, request: HttpRequest) -> HttpResponse:
        if not signed_by_twilio(request):
            logger.warning("twilio status callback refused: bad signature", extra={"path": request.path})
            return error_response(403, "bad_signature", "Not signed by Twilio with this account's token.")
        sid = request.POST.get("MessageSid", "")
        status = OUTCOMES.get(request.POST.get("MessageStatus", ""))
        if sid and status:
            code = request.POST.get("ErrorCode", "")
            delivery.receipt_record(
                channel="sms",
                provider_id=sid,
                status=status,
                error=f"twilio {code}" if code else "",
                notification_id=request.GET.get("n"),
            )
        return HttpResponse(status=204)
