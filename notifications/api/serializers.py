from zoneinfo import ZoneInfo, available_timezones

from django.contrib.auth import get_user_model
from rest_framework import serializers

from core.serializers import WallTimeField
from notifications.models import CHANNEL_NAMES, CHANNELS, Category, Notification, Preference


class NotificationSerializer(serializers.ModelSerializer):
    id = serializers.CharField(source="public_id", read_only=True)
    read = serializers.SerializerMethodField()

    class Meta:
        model = Notification
        fields = [
            "id",
            "rule",
            "event_type",
            "channel",
            "category",
            "language",
            "subject",
            "body",
            "status",
            "read",
            "read_at",
            "created_at",
            "sent_at",
            "delivered_at",
        ]
        read_only_fields = fields

    def get_read(self, notification: Notification) -> bool:
        return notification.read_at is not None


class StaffNotificationSerializer(NotificationSerializer):
    """What staff see besides: who, where, how many attempts, what went wrong."""

    user = serializers.PrimaryKeyRelatedField(read_only=True)
    event_id = serializers.UUIDField(read_only=True)
    resend_of = serializers.SlugRelatedField(slug_field="public_id", read_only=True)

    class Meta(NotificationSerializer.Meta):
        fields = [
            *NotificationSerializer.Meta.fields,
            "event_id",
            "user",
            "recipient",
            "address",
            "critical",
            "attempts",
            "provider_id",
            "last_error",
            "not_before",
            "failed_at",
            "resend_of",
        ]
        read_only_fields = fields


class CategoryChannelsSerializer(serializers.Serializer):
    """Per category, the channels the customer wants (absent: unchanged)."""

    transactional = serializers.ListField(child=serializers.ChoiceField(CHANNELS), required=False)
    reminders = serializers.ListField(child=serializers.ChoiceField(CHANNELS), required=False)
    marketing = serializers.ListField(child=serializers.ChoiceField(CHANNELS), required=False)

    def to_internal_value(self, data):
        unknown = set(data) - set(self.fields) if isinstance(data, dict) else set()
        if unknown:
            raise serializers.ValidationError(
                f"unknown categories {sorted(unknown)}; one of {', '.join(Category.values)}"
            )
        return super().to_internal_value(data)


class PreferenceSerializer(serializers.ModelSerializer):
    channels = CategoryChannelsSerializer(required=False)
    quiet_hours_start = WallTimeField(
        required=False, allow_null=True, help_text="In your timezone, e.g. 22:00:00"
    )
    quiet_hours_end = WallTimeField(
        required=False, allow_null=True, help_text="e.g. 08:00:00 (the next morning)"
    )
    telegram_linked = serializers.SerializerMethodField()
    timezone = serializers.CharField(required=False, help_text="An IANA timezone, e.g. Europe/Moscow.")

    class Meta:
        model = Preference
        fields = ["channels", "quiet_hours_start", "quiet_hours_end", "timezone", "telegram_linked"]

    def get_telegram_linked(self, preference: Preference) -> bool:
        return bool(preference.telegram_chat_id)

    def to_representation(self, preference: Preference) -> dict:
        data = super().to_representation(preference)
        data["channels"] = {c: list(preference.channels.get(c, [])) for c in Category.values}
        data["timezone"] = str(preference.timezone)
        return data

    def validate_timezone(self, value: str) -> ZoneInfo:
        if value not in available_timezones():  # ZoneInfo() itself reads files: "Europe" is a folder
            raise serializers.ValidationError(f"{value[:64]!r} is not an IANA timezone, e.g. Europe/Moscow")
        return ZoneInfo(value)


class SendSerializer(serializers.Serializer):
    user = serializers.PrimaryKeyRelatedField(queryset=get_user_model().objects.filter(is_active=True))
    channel = serializers.ChoiceField(CHANNEL_NAMES)
    subject = serializers.CharField(max_length=255, required=False, default="")
    body = serializers.CharField(max_length=4000)


class TelegramLinkSerializer(serializers.Serializer):
    url = serializers.URLField(read_only=True, help_text="Open it in Telegram and press Start.")
    expires_at = serializers.DateTimeField(read_only=True)
