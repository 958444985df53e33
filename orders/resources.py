"""The accountant's CSV export of orders (django-import-export; export only).

As the payments export: amounts are plain decimals with the currency's digits ("37.00"),
times are UTC in ISO 8601, and an order names its payment and what it sold.
"""

from import_export import fields, resources

from core.money import quantize
from orders.models import Order


def iso(moment) -> str:
    return moment.isoformat(timespec="seconds") if moment else ""


class OrderResource(resources.ModelResource):
    created_at = fields.Field(column_name="created_at")
    customer_email = fields.Field(attribute="customer__email", column_name="customer_email")
    total = fields.Field(column_name="total")
    paid_at = fields.Field(column_name="paid_at")
    fulfilled_at = fields.Field(column_name="fulfilled_at")
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

    def dehydrate_created_at(self, order: Order) -> str:
        return iso(order.created_at)

    def dehydrate_paid_at(self, order: Order) -> str:
        return iso(order.paid_at)

    def dehydrate_fulfilled_at(self, order: Order) -> str:
        return iso(order.fulfilled_at)

    def dehydrate_total(self, order: Order) -> str:
        return str(quantize(order.total, order.currency))

    def dehydrate_items(self, order: Order) -> str:
        """What it sold, as "SKU x quantity" separated by "; "."""
        return "; ".join(f"{line.sku} x {line.quantity}" for line in order.lines.all())
