from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from core.serializers import MoneyField
from subscriptions.models import Child, Invoice, Plan, Subscription, Toybox, ToyboxItem


class ChildSerializer(serializers.ModelSerializer):
    interests = serializers.ListField(
        child=serializers.CharField(max_length=40), max_length=20, required=False, default=list
    )

    class Meta:
        model = Child
        fields = ["id", "name", "birth_date", "interests", "notes", "created_at"]
        read_only_fields = ["id", "created_at"]


class PlanSerializer(serializers.ModelSerializer):
    price = MoneyField()

    class Meta:
        model = Plan
        fields = [
            "id",
            "name",
            "slug",
            "description",
            "price",
            "currency",
            "period_months",
            "toys_per_box",
            "age_min_months",
            "age_max_months",
        ]


class SubscriptionCreateSerializer(serializers.Serializer):
    child_id = serializers.IntegerField(min_value=1)
    plan_id = serializers.IntegerField(min_value=1)


class SubscriptionCancelSerializer(serializers.Serializer):
    at_period_end = serializers.BooleanField(
        default=True, help_text="Keep the paid period (and its box); false cancels now"
    )
    reason = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")


class InvoiceSerializer(serializers.ModelSerializer):
    id = serializers.CharField(source="number")
    subscription_id = serializers.CharField(source="subscription.public_id")
    amount = MoneyField()

    class Meta:
        model = Invoice
        fields = [
            "id",
            "subscription_id",
            "period_start",
            "period_end",
            "amount",
            "currency",
            "status",
            "attempts",
            "next_attempt_at",
            "payment_url",
            "last_error",
            "payment_id",
            "paid_at",
            "created_at",
        ]


class SubscriptionSerializer(serializers.ModelSerializer):
    id = serializers.CharField(source="public_id")
    child = ChildSerializer(read_only=True)
    plan = PlanSerializer(read_only=True)
    open_invoice = serializers.SerializerMethodField()

    class Meta:
        model = Subscription
        fields = [
            "id",
            "child",
            "plan",
            "status",
            "status_note",
            "current_period_start",
            "current_period_end",
            "next_renewal_at",
            "cancel_at_period_end",
            "skip_next",
            "open_invoice",
            "created_at",
        ]

    @extend_schema_field(InvoiceSerializer(allow_null=True))
    def get_open_invoice(self, subscription) -> dict | None:
        invoice = subscription.invoices.filter(status=Invoice.Status.OPEN).order_by("period_start").first()
        return InvoiceSerializer(invoice).data if invoice else None


class ToyboxItemSerializer(serializers.ModelSerializer):
    class Meta:
        model = ToyboxItem
        fields = ["sku", "name"]


class ToyboxSerializer(serializers.ModelSerializer):
    id = serializers.CharField(source="public_id")
    subscription_id = serializers.CharField(source="subscription.public_id")
    invoice_id = serializers.CharField(source="invoice.number")
    toys = ToyboxItemSerializer(source="items", many=True, read_only=True)

    class Meta:
        model = Toybox
        fields = [
            "id",
            "subscription_id",
            "invoice_id",
            "child_id",
            "period_start",
            "status",
            "toys_wanted",
            "toys",
            "tracking_number",
            "note",
            "shipped_at",
            "delivered_at",
            "created_at",
        ]
