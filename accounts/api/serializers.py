from django.conf import settings
from rest_framework import serializers

from accounts.models import User


class UserSerializer(serializers.ModelSerializer):
    class Meta:
        model = User
        fields = ["id", "email", "phone", "preferred_language", "email_opt_out", "sms_opt_out", "is_staff"]
        read_only_fields = ["id", "email", "is_staff"]


class RegisterSerializer(serializers.Serializer):
    email = serializers.EmailField()
    password = serializers.CharField(write_only=True, style={"input_type": "password"})
    phone = serializers.RegexField(r"^\+[1-9]\d{6,14}$", required=False, allow_blank=True, default="")
    preferred_language = serializers.ChoiceField(
        choices=settings.LANGUAGES, required=False, default=settings.LANGUAGE_CODE
    )


class TokenRequestSerializer(serializers.Serializer):
    email = serializers.EmailField()
    password = serializers.CharField(write_only=True, style={"input_type": "password"})


class TokenSerializer(serializers.Serializer):
    token = serializers.CharField()


class RegisteredSerializer(UserSerializer):
    token = serializers.CharField()

    class Meta(UserSerializer.Meta):
        fields = [*UserSerializer.Meta.fields, "token"]
