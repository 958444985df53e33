"""The Telegram bot's webhook: Telegram posts each update here with the secret set by
`manage.py telegram_webhook set`, and sends the update again until it gets a 2xx.

The answer may carry one Bot API call (the reply to a "/start"), which Telegram makes itself.
"""

import hmac
import json

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from drf_spectacular.utils import OpenApiResponse, extend_schema

from core.api import MachineWebhookView, error_response
from notifications.telegram import telegram_update_handle

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"  # noqa: S105 - a header name, not a secret


class TelegramWebhookView(MachineWebhookView):
    """POST /api/notifications/webhooks/telegram: the bot's updates, with the secret header."""

    @extend_schema(
        request=None,  # the provider's own body, read as it came (see the docstring)
        responses={
            200: OpenApiResponse(
                description="handled; the body may be a Bot API call Telegram makes (a reply)"
            ),
            400: OpenApiResponse(description="bad_request: the body is not a JSON object"),
            403: OpenApiResponse(
                description="permission_denied: wrong or missing secret token; nothing changed"
            ),
        },
    )
    def post(self, request: HttpRequest) -> HttpResponse:
        secret = settings.TELEGRAM_WEBHOOK_SECRET
        given = request.headers.get(SECRET_HEADER, "")
        if not secret or not hmac.compare_digest(given.encode(), secret.encode()):
            return error_response(403, "permission_denied", "Wrong or missing Telegram secret token.")
        try:
            update = json.loads(request.body)
        except ValueError:  # UnicodeDecodeError included
            update = None
        if not isinstance(update, dict):
            return error_response(400, "bad_request", "An update must be a JSON object.")
        reply = telegram_update_handle(update)
        return JsonResponse(reply) if reply else HttpResponse(status=200)
