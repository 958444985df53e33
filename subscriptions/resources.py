"""The accountant's CSV export of invoices (django-import-export; export only).

As the payments export: amounts are plain decimals with the currency's digits ("37.00"),
times are UTC in ISO 8601 (core.resources), and an invoice names the payment that paid it.
"""

from import_export import fields, resources

from core.resources import AmountField, TimeField
from subscriptions.models import Invoice


class InvoiceResource(resources.ModelResource):
    created_at = TimeField("created_at")
    subscription_id = fields.Field(attribute="subscription__public_id", column_name="subscription_id")
    plan = fields.Field(attribute="subscription__plan__name", column_name="plan")
    customer_email = fields.Field(attribute="customer__email", column_name="customer_email")
    period_start = TimeField("period_start")
    period_end = TimeField("period_end")
    amount = AmountField("amount")
    paid_at = TimeField("paid_at")

    class Meta:
        model = Invoice
        name = "Invoices"
        fields = [
            "number",
            "created_at",
            "subscription_id",
            "plan",
            "customer_email",
            "period_start",
            "period_end",
            "amount",
            "currency",
            "status",
            "attempts",
            "paid_at",
            "payment_id",
        ]
        export_order = fields

    def filter_export(self, queryset, **kwargs):
        return queryset.select_related("subscription__plan", "customer")
