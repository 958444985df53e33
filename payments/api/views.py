import logging

import django_filters
from django.http import HttpResponse
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.generics import ListAPIView
from rest_framework.permissions import IsAdminUser
from rest_framework.response import Response
from rest_framework.views import APIView

from core.api import MachineWebhookView
from core.drf import CurrencyFilter, FilterSet
from core.errors import NotFound, Unavailable
from core.idempotency import HEADER, idempotent, key_digest
from payments import methods, policy, services, tasks
from payments.api import examples
from payments.api.serializers import (
    BatchPaymentCreateSerializer,
    PaymentCreateSerializer,
    PaymentQueuedSerializer,
    PaymentSerializer,
    RefundCreateSerializer,
    RefundSerializer,
    SavedMethodSerializer,
)
from payments.models import Payment, Refund, SavedPaymentMethod
from payments.purposes import purpose_get
from payments.registry import GATEWAY_CLASSES, gateway_for
from payments.selectors import allocation_of, payments_visible_to
from payments.webhooks import webhook_receive

logger = logging.getLogger(__name__)
IDEMPOTENCY = OpenApiParameter(HEADER, str, OpenApiParameter.HEADER, required=True)
# The 409s, 422s and 503s of the services behind each view (core.openapi adds the rest).
KEY_BUSY = OpenApiResponse(
    description="a request with this Idempotency-Key is still running (request_in_progress)"
)
OPEN_ERRORS = {
    409: KEY_BUSY,
    422: OpenApiResponse(
        description="purpose_not_registered, item_not_found (or not yours), item_already_paid, "
        "item_not_payable, item_repeated, no_items, mixed_currencies, gateway_refused, or the "
        "Idempotency-Key was used with another body (idempotency_key_reused)"
    ),
    503: OpenApiResponse(description="gateway_unavailable: retry with the same key"),
}
REFUND_ERRORS = {
    409: KEY_BUSY,
    422: OpenApiResponse(
        description="not_refundable (not paid), refund_too_large, key_reused, or the "
        "Idempotency-Key was used with another body (idempotency_key_reused)"
    ),
}


class PaymentFilter(FilterSet):
    gateway = django_filters.ChoiceFilter(choices=[(name, name) for name in sorted(GATEWAY_CLASSES)])
    currency = CurrencyFilter()

    class Meta:
        model = Payment
        fields = ["status", "purpose", "gateway", "currency"]


class PaymentListCreateView(ListAPIView):
    """GET: your payments (staff: all). POST: create a payment and open its checkout."""

    serializer_class = PaymentSerializer
    filterset_class = PaymentFilter
    ordering_fields = ["created_at", "amount"]
    ordering = ["-created_at", "-pk"]

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # building the schema: no user
            return Payment.objects.none()
        return payments_visible_to(self.request.user).prefetch_related("refunds")

    @extend_schema(
        request=PaymentCreateSerializer,
        parameters=[IDEMPOTENCY],
        responses={201: PaymentSerializer, **OPEN_ERRORS},
        examples=examples.PAYMENT_CREATE,
    )
    def post(self, request):
        data = PaymentCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        fields = data.validated_data | {"item_ids": [data.validated_data["purpose_id"]]}
        return idempotent(
            request, scope="payments.create", payload=request.data, **checkout_steps(request, fields)
        )


class BatchPaymentView(APIView):
    """POST /api/payments/batch: one payment for several items of one purpose, each priced by
    the server; refused whole if any item is unknown, not yours, paid, not payable or repeated."""

    @extend_schema(
        request=BatchPaymentCreateSerializer,
        parameters=[IDEMPOTENCY],
        responses={201: PaymentSerializer, **OPEN_ERRORS},
        examples=examples.PAYMENT_BATCH,
    )
    def post(self, request):
        data = BatchPaymentCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        return idempotent(
            request,
            scope="payments.batch",
            payload=request.data,
            **checkout_steps(request, data.validated_data),
        )


def checkout_steps(request, fields: dict) -> dict:
    """The two steps of an idempotent checkout: open the payment once, then open its checkout."""

    def open_payment(record) -> None:
        item_ids = fields.get("item_ids")
        if item_ids is None:  # named by the purpose's own batch field
            item_ids = purpose_get(fields["purpose"]).items_named(fields["named"], request.user.pk)
        payment = policy.payment_open(
            customer_id=request.user.pk,
            purpose=fields["purpose"],
            item_ids=item_ids,
            gateway=fields.get("gateway"),
        )
        record.resource_id = str(payment.pk)

    def open_checkout(record) -> Response:
        payment = services.payment_checkout_open(
            payment_id=int(record.resource_id),
            return_url=fields["return_url"],
            description=fields["description"],
            customer_email=request.user.email,
        )
        return Response(PaymentSerializer(payment).data, status=status.HTTP_201_CREATED)

    return {"prepare": open_payment, "handler": open_checkout}


class PaymentLookup:
    """The payment of the URL's `payment_id` that the caller may see (a mixin: it answers no method).

    Each view says which method it answers, so an action answers only its own (others: 405).
    """

    def get_object(self) -> Payment:
        return get_object_or_404(payments_visible_to(self.request.user), public_id=self.kwargs["payment_id"])


class PaymentDetailView(PaymentLookup, APIView):
    @extend_schema(responses={200: PaymentSerializer})
    def get(self, request, payment_id: str):
        return Response(PaymentSerializer(self.get_object()).data)


class PaymentProcessView(PaymentLookup, APIView):
    """Ask the gateway for the payment's state now (the answer is applied by a task)."""

    @extend_schema(
        request=None,
        responses={202: OpenApiResponse(PaymentQueuedSerializer, description="verification queued")},
    )
    def post(self, request, payment_id: str):
        payment = self.get_object()
        tasks.payment_verify.delay(payment.pk)
        return Response({"id": payment.public_id, "status": payment.status}, status=status.HTTP_202_ACCEPTED)


class PaymentRefundView(PaymentLookup, APIView):
    """Staff: refund all that is left (no amount) or part of it; the gateway is asked by a task."""

    permission_classes = [IsAdminUser]

    @extend_schema(
        request=RefundCreateSerializer,
        parameters=[IDEMPOTENCY],
        responses={202: RefundSerializer, **REFUND_ERRORS},
        examples=examples.REFUND,
    )
    def post(self, request, payment_id: str):
        payment = self.get_object()
        data = RefundCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        allocation_id = None
        if "item_id" in data.validated_data:
            allocation_id = allocation_of(payment, data.validated_data["item_id"])

        def reserve(record) -> None:
            reserved = services.refund_request(
                payment_id=payment.pk,
                allocation_id=allocation_id,
                amount=data.validated_data.get("amount"),
                reason=data.validated_data["reason"],
                idempotency_key=f"{payment.public_id}:{key_digest(request)}",
                requested_by_id=request.user.pk,
            )
            record.resource_id = str(reserved.pk)

        def answer(record) -> Response:
            refund = Refund.objects.get(pk=record.resource_id)
            return Response(RefundSerializer(refund).data, status=status.HTTP_202_ACCEPTED)

        return idempotent(
            request,
            scope=f"payments.refund.{payment.pk}",
            payload=request.data,
            prepare=reserve,
            handler=answer,
        )


_warned_unconfigured: set[str] = set()


def _warn_unconfigured_once(gateway: str, missing: list[str]) -> None:
    """One WARNING per unconfigured gateway per process, not one per webhook it is sent."""
    if gateway not in _warned_unconfigured:
        _warned_unconfigured.add(gateway)
        logger.warning(
            "webhooks for an unconfigured gateway are refused", extra={"gateway": gateway, "missing": missing}
        )


class WebhookView(MachineWebhookView):
    """POST /api/payments/webhook/<gateway>: the provider's notification, raw.

    Authenticated by the gateway's own scheme (signature, token or checksum), stored, and
    answered 2xx once stored; a task then verifies it with the gateway's API. A bad signature
    gets 400 and is kept for staff, with nothing applied. Django's request, not DRF's
    (MachineWebhookView): about a fifth of the CPU of the busiest endpoint (docs/benchmarks.md,
    "Webhook ingestion").
    """

    @extend_schema(
        request=None,
        responses={
            200: OpenApiResponse(description="stored (the body is the gateway's own reply)"),
            400: OpenApiResponse(description="bad_signature: stored for staff, nothing applied"),
            404: OpenApiResponse(description="no gateway of that name"),
            413: None,
            503: OpenApiResponse(description="gateway_not_configured"),
        },
    )
    def post(self, request, gateway: str):
        if gateway not in GATEWAY_CLASSES:
            raise NotFound(f"No gateway named {gateway}.")
        try:
            client = gateway_for(gateway)
            missing = client.missing_webhook_settings()
        except ValueError as exc:  # e.g. no secret configured: nothing could be authenticated
            missing = [str(exc)]
        if missing:
            _warn_unconfigured_once(gateway, missing)
            raise Unavailable(
                f"The {gateway} gateway is not configured ({', '.join(missing)} missing); "
                "its webhooks cannot be authenticated.",
                code="gateway_not_configured",
            )
        headers = dict(request.headers.items())
        status_code, reply = webhook_receive(gateway=client, headers=headers, body=request.body)
        return HttpResponse(reply.body, status=status_code, content_type=reply.content_type)


class SavedMethodListView(ListAPIView):
    """GET /api/payment-methods: your saved payment methods (kept after a first subscription payment)."""

    serializer_class = SavedMethodSerializer
    ordering_fields = ["created_at"]
    ordering = ["-created_at", "-pk"]

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return SavedPaymentMethod.objects.none()
        return methods.methods_of(self.request.user.pk)


class SavedMethodDetailView(APIView):
    """DELETE /api/payment-methods/<id>: delete one of yours; renewals then send a payment link."""

    @extend_schema(request=None, responses={204: None})
    def delete(self, request, method_id: str):
        methods.method_delete(customer_id=request.user.pk, method_id=method_id)
        return Response(status=status.HTTP_204_NO_CONTENT)
