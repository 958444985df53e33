from rest_framework import serializers

from core.money import quantize
from core.serializers import MoneyField
from payments.models import Payment, PaymentAllocation, Refund
from payments.registry import GATEWAY_CLASSES, gateway_refusal

SERVER_PRICED = ("amount", "currency", "kind")


class _CheckoutFields(serializers.Serializer):
    gateway = serializers.ChoiceField(choices=sorted(GATEWAY_CLASSES), required=False)
    return_url = serializers.URLField(required=False, allow_blank=True, default="")
    description = serializers.CharField(max_length=255, required=False, allow_blank=True, default="")

    def validate_gateway(self, value: str) -> str:
        refusal = gateway_refusal(value)
        if refusal:
            raise serializers.ValidationError(refusal)
        return value

    def validate(self, attrs):
        given = sorted(set(SERVER_PRICED) & set(self.initial_data))
        if given:
            raise serializers.ValidationError(
                {name: ["set by the server from the item's price: omit it"] for name in given}
            )
        return attrs


class PaymentCreateSerializer(_CheckoutFields):
    """A payment for one item; the server prices it (amount, currency and kind are not sent)."""

    purpose = serializers.CharField(max_length=40, help_text='What is paid for: "order", "booking"...')
    purpose_id = serializers.CharField(
        max_length=100, help_text="The item's id: an order number, a booking id"
    )


class BatchPaymentCreateSerializer(_CheckoutFields):
    """One payment for several items of one purpose (e.g. the boxes of several subscriptions)."""

    purpose = serializers.CharField(max_length=40, help_text="The purpose every item is of")
    item_ids = serializers.ListField(
        child=serializers.CharField(max_length=100), min_length=1, max_length=50, allow_empty=False
    )


class RefundSerializer(serializers.ModelSerializer):
    id = serializers.CharField(source="public_id")
    amount = MoneyField()

    class Meta:
        model = Refund
        fields = ["id", "amount", "currency", "full", "reason", "status", "error", "created_at"]


class AllocationSerializer(serializers.ModelSerializer):
    amount = serializers.SerializerMethodField()
    refunded_amount = serializers.SerializerMethodField()

    class Meta:
        model = PaymentAllocation
        fields = ["purpose", "purpose_id", "amount", "refunded_amount", "outcome"]

    def get_amount(self, allocation) -> str:
        return str(quantize(allocation.amount, allocation.payment.currency))

    def get_refunded_amount(self, allocation) -> str:
        return str(quantize(allocation.refunded_amount, allocation.payment.currency))


class PaymentSerializer(serializers.ModelSerializer):
    id = serializers.CharField(source="public_id")
    customer_id = serializers.IntegerField()
    amount = MoneyField()
    refunded_amount = MoneyField()
    refunds = RefundSerializer(many=True, read_only=True)
    allocations = AllocationSerializer(many=True, read_only=True)

    class Meta:
        model = Payment
        fields = [
            "id",
            "customer_id",
            "amount",
            "currency",
            "status",
            "purpose",
            "allocations",
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
    item_id = serializers.CharField(
        max_length=100,
        required=False,
        help_text="Refund out of what the payment paid for this item; omit to split in proportion",
    )


class PaymentQueuedSerializer(serializers.Serializer):
    """The answer to /process: the payment's status now; the gateway's answer is applied by a task."""

    id = serializers.CharField()
    status = serializers.ChoiceField(choices=Payment.Status.choices)
