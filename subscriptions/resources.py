"""The accountant's CSV export of invoices (django-import-export; export only).

As the payments export: amounts are plain decimals with the currency's digits ("37.00"),
times are UTC in ISO 8601, and an invoice names the payment that paid it.
"""

from import_export import fields, resources

from core.money import quantize
from subscriptions.models import Invoice


def iso(moment) -> str:
    return moment.isoformat(timespec="seconds") if moment else ""


class InvoiceResource(resources.ModelResource):
    created_at = fields.Field(column_name="created_at")
    subscription_id = fields.Field(attribute="subscription__public_id", column_name="subscription_id")
    plan = fields.Field(attribute="subscription__plan__name", column_name="plan")
    customer_email = fields.Field(attribute="customer__email", column_name="customer_email")
    period_start = fields.Field(column_name="period_start")
    period_end = fields.Field(column_name="period_end")
    amount = fields.Field(column_name="amount")
    paid_at = fields.Field(column_name="paid_at")

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

    def dehydrate_created_at(self, invoice: Invoice) -> str:
        return iso(invoice.created_at)

    def dehydrate_period_start(self, invoice: Invoice) -> str:
        return iso(invoice.period_start)

    def dehydrate_period_end(self, invoice: Invoice) -> str:
        return iso(invoice.period_end)

    def dehydrate_paid_at(self, invoice: Invoice) -> str:
        return iso(invoice.paid_at)

    def dehydrate_amount(self, invoice: Invoice) -> str:
        return str(quantize(invoice.amount, invoice.currency))
