"""The accountant's CSV exports of payments and refunds (django-import-export; export only).

Amounts are plain decimals with the currency's digits ("1250.00", "37"), times are UTC in
ISO 8601 (core.resources), and a payment names what it pays (its purpose and the items' ids).
"""

from import_export import fields, resources

from core.resources import AmountField, TimeField
from payments.models import Payment, Refund


class PaymentResource(resources.ModelResource):
    payment_id = fields.Field(attribute="public_id", column_name="payment_id")
    created_at = TimeField("created_at")
    customer_email = fields.Field(attribute="customer__email", column_name="customer_email")
    amount = AmountField("amount")
    refunded_amount = AmountField("refunded_amount")
    purpose_ids = fields.Field(column_name="purpose_ids")

    class Meta:
        model = Payment
        name = "Payments"
        fields = [
            "payment_id",
            "created_at",
            "customer_email",
            "gateway",
            "gateway_reference",
            "status",
            "amount",
            "currency",
            "refunded_amount",
            "purpose",
            "purpose_ids",
        ]
        export_order = fields

    def filter_export(self, queryset, **kwargs):
        return queryset.select_related("customer").prefetch_related("allocations")

    def dehydrate_purpose_ids(self, payment: Payment) -> str:
        """The items the payment pays, space-separated (most payments pay one)."""
        return " ".join(allocation.purpose_id for allocation in payment.allocations.all())


class RefundResource(resources.ModelResource):
    refund_id = fields.Field(attribute="public_id", column_name="refund_id")
    payment_id = fields.Field(attribute="payment__public_id", column_name="payment_id")
    created_at = TimeField("created_at")
    amount = AmountField("amount")
    gateway = fields.Field(attribute="payment__gateway", column_name="gateway")

    class Meta:
        model = Refund
        name = "Refunds"
        fields = [
            "refund_id",
            "payment_id",
            "created_at",
            "amount",
            "currency",
            "reason",
            "status",
            "gateway",
            "gateway_refund_id",
        ]
        export_order = fields

    def filter_export(self, queryset, **kwargs):
        return queryset.select_related("payment")
