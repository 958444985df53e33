from django.http import HttpResponse
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.permissions import AllowAny
from rest_framework.views import APIView

from core.errors import NotFound, Unavailable
from payments.registry import GATEWAY_CLASSES, gateway_for
from payments.webhooks import webhook_receive


class WebhookView(APIView):
    """POST /api/payments/webhook/<gateway>: the provider's notification, raw.

    Authenticated by the gateway's own scheme (signature, token or checksum), stored, and
    answered 2xx once stored; a task then verifies it with the gateway's API. A bad signature
    gets 400 and is kept for staff, with nothing applied.
    """

    permission_classes = [AllowAny]
    authentication_classes: list = []
    throttle_classes: list = []

    @extend_schema(request=None, responses={200: OpenApiResponse(description="stored"), 400: None})
    def post(self, request, gateway: str):
        if gateway not in GATEWAY_CLASSES:
            raise NotFound(f"No gateway named {gateway}.")
        try:
            client = gateway_for(gateway)
        except ValueError as exc:  # e.g. no secret configured: nothing could be authenticated
            raise Unavailable(
                f"The {gateway} gateway is not configured: {exc}", code="gateway_not_configured"
            ) from exc
        headers = dict(request.headers.items())
        status, reply = webhook_receive(gateway=client, headers=headers, body=request.body)
        return HttpResponse(reply.body, status=status, content_type=reply.content_type)
