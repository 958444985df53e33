from rest_framework import serializers

from core.money import quantize
from core.serializers import MoneyField
from payments.models import Payment, PaymentAllocation, Refund, SavedPaymentMethod
from payments.purposes import batch_fields
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
    """One payment for several items of one purpose: `purpose` and `item_ids`, or a purpose's own
    field naming its items (`subscription_ids`: the open invoices of those subscriptions)."""

    purpose = serializers.CharField(max_length=40, required=False, help_text="The purpose every item is of")
    item_ids = serializers.ListField(
        child=serializers.CharField(max_length=100),
        min_length=1,
        max_length=50,
        allow_empty=False,
        required=False,
    )

    def get_fields(self):
        fields = super().get_fields()
        for name, purpose in batch_fields().items():
            fields[name] = serializers.ListField(
                child=serializers.CharField(max_length=100),
                min_length=1,
                max_length=50,
                allow_empty=False,
                required=False,
                help_text=f"Instead of purpose and item_ids: the {purpose.name} items these name",
            )
        return fields

    def validate(self, attrs):
        attrs = super().validate(attrs)
        named = [name for name in batch_fields() if name in attrs]
        ways = len(named) + ("purpose" in attrs or "item_ids" in attrs)
        if ways > 1:
            raise serializers.ValidationError(
                {name: ["name the items one way only"] for name in [*named, "item_ids"]}
            )
        if named:
            purpose = batch_fields()[named[0]]
            return attrs | {"purpose": purpose.name, "named": attrs.pop(named[0])}
        missing = [name for name in ("purpose", "item_ids") if name not in attrs]
        if missing:
            raise serializers.ValidationError({name: ["This field is required."] for name in missing})
        return attrs


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


class SavedMethodSerializer(serializers.ModelSerializer):
    id = serializers.CharField(source="public_id")

    class Meta:
        model = SavedPaymentMethod
        fields = ["id", "gateway", "label", "created_at", "last_used_at"]
