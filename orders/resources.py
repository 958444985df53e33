"""The accountant's CSV export of orders (django-import-export; export only).

As the payments export: amounts are plain decimals with the currency's digits ("37.00"),
times are UTC in ISO 8601 (core.resources), and an order names its payment and what it sold.
"""

from import_export import fields, resources

from core.resources import AmountField, TimeField
from orders.models import Order


class OrderResource(resources.ModelResource):
    created_at = TimeField("created_at")
    customer_email = fields.Field(attribute="customer__email", column_name="customer_email")
    total = AmountField("total")
    paid_at = TimeField("paid_at")
    fulfilled_at = TimeField("fulfilled_at")
    payment_id = fields.Field(attribute="payment__public_id", column_name="payment_id")
    items = fields.Field(column_name="items")

    class Meta:
        model = Order
        name = "Orders"
        fields = [
            "number",
            "created_at",
            "customer_email",
            "status",
            "total",
            "currency",
            "paid_at",
            "fulfilled_at",
            "payment_id",
            "items",
        ]
        export_order = fields

    def filter_export(self, queryset, **kwargs):
        return queryset.select_related("customer", "payment").prefetch_related("lines")

    def dehydrate_items(self, order: Order) -> str:
        """What it sold, as "SKU x quantity" separated by "; "."""
        return "; ".join(f"{line.sku} x {line.quantity}" for line in order.lines.all())
