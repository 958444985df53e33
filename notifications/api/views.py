"""The notifications API, under /api/notifications: the inbox and delivery log, read marks,
preferences, a staff message, and the Telegram deep link.

A customer sees only their own messages (another's is a 404); staff see everyone's, with
filters. The webhooks of Twilio and Telegram are in notifications.webhooks.
"""

import django_filters
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.generics import ListAPIView
from rest_framework.permissions import IsAdminUser
from rest_framework.response import Response
from rest_framework.views import APIView

from core.drf import BooleanFilter, FilterSet
from core.errors import Unavailable
from notifications import services
from notifications.api.serializers import (
    NotificationSerializer,
    PreferenceSerializer,
    SendSerializer,
    StaffNotificationSerializer,
    TelegramLinkSerializer,
)
from notifications.models import Notification
from notifications.selectors import notifications_visible_to
from notifications.telegram import TelegramNotConfigured, telegram_link_start

NOT_FOUND = OpenApiResponse(description="not found (or not yours)")


def _fake(view) -> bool:
    return getattr(view, "swagger_fake_view", False)  # building the schema: no user


class NotificationFilter(FilterSet):
    unread = BooleanFilter(
        field_name="read_at", lookup_expr="isnull", label="Only unread (true) or read (false)."
    )
    event_id = django_filters.UUIDFilter()
    user = django_filters.NumberFilter(field_name="user_id", label="Staff: one user's messages.")

    class Meta:
        model = Notification
        fields = ["channel", "status", "rule", "category", "event_type", "unread", "event_id", "user"]


class NotificationListView(ListAPIView):
    """GET: your messages, newest first (the in-app inbox: ?channel=inapp; ?unread=true).
    Staff: everyone's, with who, where, attempts and errors."""

    filterset_class = NotificationFilter
    ordering = ["-created_at", "-pk"]
    ordering_fields = ["created_at", "sent_at"]

    def get_serializer_class(self):
        user = self.request.user
        return (
            StaffNotificationSerializer if user.is_authenticated and user.is_staff else NotificationSerializer
        )

    def get_queryset(self):
        return Notification.objects.none() if _fake(self) else notifications_visible_to(self.request.user)


class NotificationDetailView(APIView):
    @extend_schema(responses={200: NotificationSerializer, 404: NOT_FOUND})
    def get(self, request, notification_id: str):
        notification = get_object_or_404(notifications_visible_to(request.user), public_id=notification_id)
        serializer = StaffNotificationSerializer if request.user.is_staff else NotificationSerializer
        return Response(serializer(notification).data)


class NotificationReadView(APIView):
    """Mark one of your messages read (repeating it changes nothing)."""

    @extend_schema(request=None, responses={200: NotificationSerializer, 404: NOT_FOUND})
    def post(self, request, notification_id: str):
        notification = get_object_or_404(
            Notification.objects.filter(user=request.user), public_id=notification_id
        )
        services.notifications_mark_read(user=request.user, ids=[notification.pk])
        notification.refresh_from_db()
        return Response(NotificationSerializer(notification).data)


class PreferenceView(APIView):
    """Your channels per category, quiet hours (for SMS and Telegram, in your timezone), and
    whether Telegram is linked. Critical messages (a cancelled booking, a failed renewal, a
    refund) ignore opt-outs and quiet hours."""

    @extend_schema(responses={200: PreferenceSerializer})
    def get(self, request):
        return Response(PreferenceSerializer(services.preference_of(request.user)).data)

    @extend_schema(request=PreferenceSerializer, responses={200: PreferenceSerializer})
    def patch(self, request):
        data = PreferenceSerializer(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        preference = services.preference_update(request.user, **data.validated_data)
        return Response(PreferenceSerializer(preference).data)


class SendView(APIView):
    """Staff: send a message to a customer on one channel now (e.g. to try a channel)."""

    permission_classes = [IsAdminUser]

    @extend_schema(
        request=SendSerializer,
        responses={
            201: StaffNotificationSerializer,
            422: OpenApiResponse(
                description="the channel is not configured, or the customer has no address on it"
            ),
        },
    )
    def post(self, request):
        data = SendSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        notification = services.notification_send(
            user=data.validated_data["user"],
            channel=data.validated_data["channel"],
            subject=data.validated_data["subject"],
            body=data.validated_data["body"],
            actor=request.user,
        )
        return Response(StaffNotificationSerializer(notification).data, status=201)


class TelegramLinkView(APIView):
    """A one-time deep link to the bot: opened in Telegram, it links that chat to your account."""

    @extend_schema(
        request=None,
        responses={
            201: TelegramLinkSerializer,
            503: OpenApiResponse(description="Telegram is not configured"),
        },
    )
    def post(self, request):
        try:
            url, expires_at = telegram_link_start(request.user)
        except TelegramNotConfigured as exc:
            raise Unavailable(str(exc), code="telegram_not_configured") from exc
        return Response(TelegramLinkSerializer({"url": url, "expires_at": expires_at}).data, status=201)
