"""The subscriptions API, under /api/: children, plans, subscriptions, invoices, toyboxes.

A customer sees and changes only their own (staff: everyone's); another customer's object is
a 404, never a 403, so ids cannot be probed. Creating a child or a subscription takes an
Idempotency-Key (a retried request gets the first answer); the actions on a subscription are
idempotent by themselves (cancelling twice changes nothing).
"""

import django_filters
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.generics import ListAPIView, RetrieveAPIView
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from core.drf import FilterSet
from core.idempotency import HEADER, idempotent
from subscriptions import services
from subscriptions.api.serializers import (
    ChildSerializer,
    InvoiceSerializer,
    PlanSerializer,
    SubscriptionCancelSerializer,
    SubscriptionCreateSerializer,
    SubscriptionSerializer,
    ToyboxSerializer,
)
from subscriptions.models import Child, Invoice, Subscription, Toybox
from subscriptions.selectors import (
    children_visible_to,
    invoices_visible_to,
    plans_offered,
    subscriptions_visible_to,
    toyboxes_visible_to,
)

IDEMPOTENCY = OpenApiParameter(HEADER, str, OpenApiParameter.HEADER, required=True)
NOT_FOUND = OpenApiResponse(description="not found (or not yours)")
KEY_ERRORS = {
    409: OpenApiResponse(
        description="a request with this Idempotency-Key is still running (request_in_progress)"
    ),
}
CREATE_ERRORS = {
    **KEY_ERRORS,
    422: OpenApiResponse(
        description="plan_inactive, child_too_young, child_too_old, already_subscribed, or the "
        "Idempotency-Key was used with another body (idempotency_key_reused)"
    ),
}
ACTION_ERRORS = {
    404: NOT_FOUND,
    409: OpenApiResponse(description="a transition the subscription's status does not allow"),
    422: OpenApiResponse(description="not_pausable, not_paused, not_skippable"),
}


def _fake(view) -> bool:
    return getattr(view, "swagger_fake_view", False)  # building the schema: no user


class ChildListCreateView(ListAPIView):
    """GET: your children (staff: all). POST: add a child (Idempotency-Key)."""

    serializer_class = ChildSerializer
    ordering = ["name", "pk"]

    def get_queryset(self):
        return Child.objects.none() if _fake(self) else children_visible_to(self.request.user)

    @extend_schema(
        request=ChildSerializer, parameters=[IDEMPOTENCY], responses={201: ChildSerializer, **KEY_ERRORS}
    )
    def post(self, request):
        data = ChildSerializer(data=request.data)
        data.is_valid(raise_exception=True)

        def create(record) -> None:
            record.resource_id = str(
                services.child_create(customer_id=request.user.pk, **data.validated_data).pk
            )

        def answer(record) -> Response:
            return Response(ChildSerializer(Child.objects.get(pk=record.resource_id)).data, status=201)

        return idempotent(
            request, scope="children.create", payload=request.data, prepare=create, handler=answer
        )


class ChildDetailView(APIView):
    def get_object(self) -> Child:
        return get_object_or_404(children_visible_to(self.request.user), pk=self.kwargs["child_id"])

    @extend_schema(responses={200: ChildSerializer, 404: NOT_FOUND})
    def get(self, request, child_id: int):
        return Response(ChildSerializer(self.get_object()).data)

    @extend_schema(request=ChildSerializer(partial=True), responses={200: ChildSerializer, 404: NOT_FOUND})
    def patch(self, request, child_id: int):
        child = self.get_object()
        data = ChildSerializer(child, data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        changes = {field: value for field, value in data.validated_data.items() if field in request.data}
        return Response(ChildSerializer(services.child_update(child=child, **changes)).data)

    @extend_schema(
        responses={
            204: None,
            404: NOT_FOUND,
            422: OpenApiResponse(description="child_has_subscriptions"),
        }
    )
    def delete(self, request, child_id: int):
        services.child_delete(child=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)


class PlanListView(ListAPIView):
    """GET /api/plans: the plans offered now (public)."""

    permission_classes = [AllowAny]
    serializer_class = PlanSerializer
    filterset_fields = ["period_months", "currency"]

    def get_queryset(self):
        return plans_offered()


class ByChild(FilterSet):
    """`child` by id, not by a choice among every child: another customer's child answers as
    one that does not exist (an empty list), never "Select a valid choice"."""

    child = django_filters.NumberFilter(field_name="child_id", label="One of your children (id).")


class SubscriptionFilter(ByChild):
    class Meta:
        model = Subscription
        fields = ["status", "plan", "child"]


class ToyboxFilter(ByChild):
    class Meta:
        model = Toybox
        fields = ["status", "child"]


class SubscriptionListCreateView(ListAPIView):
    """GET: your subscriptions (staff: all). POST: subscribe a child to a plan (Idempotency-Key);
    it is pending payment, its first invoice open: pay it with POST /api/payments/batch
    {"subscription_ids": [...]}."""

    serializer_class = SubscriptionSerializer
    filterset_class = SubscriptionFilter
    ordering = ["-created_at", "-pk"]

    def get_queryset(self):
        return Subscription.objects.none() if _fake(self) else subscriptions_visible_to(self.request.user)

    @extend_schema(
        request=SubscriptionCreateSerializer,
        parameters=[IDEMPOTENCY],
        responses={201: SubscriptionSerializer, 404: NOT_FOUND, **CREATE_ERRORS},
    )
    def post(self, request):
        data = SubscriptionCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)

        def create(record) -> None:
            subscription = services.subscription_create(
                customer_id=request.user.pk,
                child_id=data.validated_data["child_id"],
                plan_id=data.validated_data["plan_id"],
            )
            record.resource_id = str(subscription.pk)

        def answer(record) -> Response:
            subscription = subscriptions_visible_to(request.user).get(pk=record.resource_id)
            return Response(SubscriptionSerializer(subscription).data, status=201)

        return idempotent(
            request, scope="subscriptions.create", payload=request.data, prepare=create, handler=answer
        )


class SubscriptionLookup:
    """The subscription of the URL that the caller may see (a mixin: it answers no method)."""

    def get_object(self) -> Subscription:
        return get_object_or_404(
            subscriptions_visible_to(self.request.user), public_id=self.kwargs["subscription_id"]
        )

    def answer(self, subscription: Subscription) -> Response:
        return Response(
            SubscriptionSerializer(subscriptions_visible_to(self.request.user).get(pk=subscription.pk)).data
        )


class SubscriptionDetailView(SubscriptionLookup, APIView):
    @extend_schema(responses={200: SubscriptionSerializer, 404: NOT_FOUND})
    def get(self, request, subscription_id: str):
        return Response(SubscriptionSerializer(self.get_object()).data)


class SubscriptionCancelView(SubscriptionLookup, APIView):
    """Cancel at the end of the paid period (default), or now with {"at_period_end": false}."""

    @extend_schema(
        request=SubscriptionCancelSerializer, responses={200: SubscriptionSerializer, **ACTION_ERRORS}
    )
    def post(self, request, subscription_id: str):
        subscription = self.get_object()
        data = SubscriptionCancelSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        return self.answer(
            services.subscription_cancel(
                subscription_id=subscription.pk,
                at_period_end=data.validated_data["at_period_end"],
                reason=data.validated_data["reason"] or f"cancelled by {_actor(request)}",
            )
        )


class SubscriptionPauseView(SubscriptionLookup, APIView):
    """No renewal (no charge, no box) until resumed."""

    @extend_schema(request=None, responses={200: SubscriptionSerializer, **ACTION_ERRORS})
    def post(self, request, subscription_id: str):
        subscription = self.get_object()
        return self.answer(
            services.subscription_pause(
                subscription_id=subscription.pk, reason=f"paused by {_actor(request)}"
            )
        )


class SubscriptionResumeView(SubscriptionLookup, APIView):
    """Renew again: at the paid period's end, or now if it has ended."""

    @extend_schema(request=None, responses={200: SubscriptionSerializer, **ACTION_ERRORS})
    def post(self, request, subscription_id: str):
        return self.answer(services.subscription_resume(subscription_id=self.get_object().pk))


class SubscriptionSkipView(SubscriptionLookup, APIView):
    """Skip the next box: the next period is neither charged nor sent."""

    @extend_schema(request=None, responses={200: SubscriptionSerializer, **ACTION_ERRORS})
    def post(self, request, subscription_id: str):
        return self.answer(services.subscription_skip(subscription_id=self.get_object().pk))


def _actor(request) -> str:
    return f"staff {request.user.pk}" if request.user.is_staff else "the customer"


class InvoiceListView(ListAPIView):
    """GET /api/invoices: your invoices (staff: all), newest period first."""

    serializer_class = InvoiceSerializer
    filterset_fields = ["status"]
    ordering = ["-period_start", "-pk"]

    def get_queryset(self):
        return Invoice.objects.none() if _fake(self) else invoices_visible_to(self.request.user)


class ToyboxListView(ListAPIView):
    """GET /api/toyboxes: your children's boxes (staff: all), newest first."""

    serializer_class = ToyboxSerializer
    filterset_class = ToyboxFilter
    ordering = ["-period_start", "-pk"]

    def get_queryset(self):
        return Toybox.objects.none() if _fake(self) else toyboxes_visible_to(self.request.user)


class ToyboxDetailView(RetrieveAPIView):
    serializer_class = ToyboxSerializer
    lookup_field = "public_id"
    lookup_url_kwarg = "toybox_id"

    @extend_schema(responses={200: ToyboxSerializer, 404: NOT_FOUND})
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        return Toybox.objects.none() if _fake(self) else toyboxes_visible_to(self.request.user)
