from django.conf import settings
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from core.money import CURRENCY_EXPONENTS, quantize
from payments.models import Payment, Refund
from payments.registry import GATEWAY_CLASSES


class PaymentCreateSerializer(serializers.Serializer):
    amount = serializers.DecimalField(max_digits=14, decimal_places=3, coerce_to_string=True)
    currency = serializers.ChoiceField(choices=sorted(CURRENCY_EXPONENTS))
    purpose = serializers.ChoiceField(choices=Payment.Purpose.choices)
    purpose_id = serializers.CharField(max_length=100)
    kind = serializers.ChoiceField(choices=Payment.Kind.choices, default=Payment.Kind.FULL)
    gateway = serializers.ChoiceField(choices=sorted(GATEWAY_CLASSES), required=False)
    return_url = serializers.URLField(required=False, allow_blank=True, default="")
    description = serializers.CharField(max_length=255, required=False, allow_blank=True, default="")

    def validate_gateway(self, value: str) -> str:
        if settings.PAYMENT_ENV == "mock" and value != "sandbox":
            raise serializers.ValidationError("With PAYMENT_ENV=mock every payment goes through the sandbox.")
        if settings.PAYMENT_ENV == "production" and value == "sandbox":
            raise serializers.ValidationError("The sandbox takes no real money: it is off in production.")
        return value


@extend_schema_field(OpenApiTypes.STR)
class MoneyField(serializers.Field):
    """An amount as a string with exactly its currency's decimals ("75.00", "1500" for JPY)."""

    def __init__(self, **kwargs):
        kwargs["read_only"] = True
        super().__init__(**kwargs)

    def get_attribute(self, instance):
        return (getattr(instance, self.source), instance.currency)

    def to_representation(self, value) -> str:
        amount, currency = value
        return str(quantize(amount, currency))


class BatchPaymentCreateSerializer(serializers.Serializer):
    """One payment for several subscriptions (their boxes of this period), paid at once."""

    subscription_ids = serializers.ListField(
        child=serializers.CharField(max_length=100), min_length=1, max_length=50, allow_empty=False
    )
    amount = serializers.DecimalField(max_digits=14, decimal_places=3, coerce_to_string=True)
    currency = serializers.ChoiceField(choices=sorted(CURRENCY_EXPONENTS))
    gateway = serializers.ChoiceField(choices=sorted(GATEWAY_CLASSES), required=False)
    return_url = serializers.URLField(required=False, allow_blank=True, default="")
    description = serializers.CharField(max_length=255, required=False, allow_blank=True, default="")

    validate_gateway = PaymentCreateSerializer.validate_gateway

    def validate_subscription_ids(self, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise serializers.ValidationError("A subscription may appear only once.")
        return value


class RefundSerializer(serializers.ModelSerializer):
    id = serializers.CharField(source="public_id")
    amount = MoneyField()

    class Meta:
        model = Refund
        fields = ["id", "amount", "currency", "full", "reason", "status", "error", "created_at"]


class PaymentSerializer(serializers.ModelSerializer):
    id = serializers.CharField(source="public_id")
    customer_id = serializers.IntegerField()
    amount = MoneyField()
    refunded_amount = MoneyField()
    refunds = RefundSerializer(many=True, read_only=True)

    class Meta:
        model = Payment
        fields = [
            "id",
            "customer_id",
            "amount",
            "currency",
            "status",
            "purpose",
            "purpose_ids",
            "kind",
            "gateway",
            "checkout_url",
            "deadline",
            "refunded_amount",
            "last_error",
            "refunds",
            "created_at",
            "updated_at",
        ]


class RefundCreateSerializer(serializers.Serializer):
    amount = serializers.DecimalField(
        max_digits=14, decimal_places=3, required=False, allow_null=True, help_text="Omit for everything left"
    )
    reason = serializers.CharField(max_length=255)
