from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from core.money import quantize
from core.serializers import MoneyField
from orders.models import (
    Cart,
    CartItem,
    Category,
    Order,
    OrderAudit,
    OrderLine,
    Product,
    ProductImage,
    Variant,
)
from payments.registry import GATEWAY_CLASSES, gateway_refusal

# Text that may be null (an empty cart has no total), as the schema must say.
NULLABLE_TEXT = serializers.CharField(allow_null=True)


class CategorySerializer(serializers.ModelSerializer):
    parent = serializers.SlugRelatedField(
        slug_field="slug", read_only=True, allow_null=True, help_text="null for a top-level category"
    )
    product_count = serializers.IntegerField(read_only=True)

    class Meta:
        model = Category
        fields = ["id", "name", "slug", "parent", "description", "product_count"]


class ImageSerializer(serializers.ModelSerializer):
    class Meta:
        model = ProductImage
        fields = ["url", "alt"]


class VariantSerializer(serializers.ModelSerializer):
    price = MoneyField()
    available = serializers.IntegerField(source="stock_available", read_only=True)

    class Meta:
        model = Variant
        fields = ["id", "sku", "name", "price", "currency", "attributes", "available"]


class ProductSerializer(serializers.ModelSerializer):
    category = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    variants = VariantSerializer(many=True, read_only=True)
    images = ImageSerializer(many=True, read_only=True)
    min_price = serializers.SerializerMethodField()

    class Meta:
        model = Product
        fields = [
            "id",
            "name",
            "slug",
            "category",
            "description",
            "min_price",
            "variants",
            "images",
            "updated_at",
        ]

    @extend_schema_field(NULLABLE_TEXT)
    def get_min_price(self, product) -> str | None:
        variants = list(product.variants.all())
        return str(quantize(variants[0].price, variants[0].currency)) if variants else None


class CartItemSerializer(serializers.ModelSerializer):
    variant = VariantSerializer(read_only=True)
    product = serializers.CharField(source="variant.product.name", read_only=True)
    line_total = serializers.SerializerMethodField()

    class Meta:
        model = CartItem
        fields = ["id", "product", "variant", "quantity", "line_total"]

    @extend_schema_field(OpenApiTypes.STR)
    def get_line_total(self, item) -> str:
        return str(quantize(item.variant.price * item.quantity, item.variant.currency))


class CartSerializer(serializers.ModelSerializer):
    items = CartItemSerializer(many=True, read_only=True)
    total = serializers.SerializerMethodField()
    currency = serializers.SerializerMethodField()

    class Meta:
        model = Cart
        fields = ["items", "total", "currency", "updated_at"]

    @extend_schema_field(NULLABLE_TEXT)
    def get_total(self, cart) -> str | None:
        items = list(cart.items.all())
        if not items:
            return None
        return str(quantize(sum(i.variant.price * i.quantity for i in items), items[0].variant.currency))

    @extend_schema_field(NULLABLE_TEXT)
    def get_currency(self, cart) -> str | None:
        first = next(iter(cart.items.all()), None)
        return first.variant.currency if first else None


class CartItemAddSerializer(serializers.Serializer):
    variant_id = serializers.IntegerField()
    quantity = serializers.IntegerField(min_value=1, default=1)


class CartItemSetSerializer(serializers.Serializer):
    quantity = serializers.IntegerField(min_value=0, help_text="0 removes the item")


class CheckoutSerializer(serializers.Serializer):
    gateway = serializers.ChoiceField(choices=sorted(GATEWAY_CLASSES), required=False)
    return_url = serializers.URLField(required=False, allow_blank=True, default="")

    def validate_gateway(self, value: str) -> str:
        refusal = gateway_refusal(value)
        if refusal:
            raise serializers.ValidationError(refusal)
        return value


class OrderLineSerializer(serializers.ModelSerializer):
    unit_price = serializers.SerializerMethodField()

    class Meta:
        model = OrderLine
        fields = ["sku", "name", "unit_price", "quantity"]

    @extend_schema_field(OpenApiTypes.STR)
    def get_unit_price(self, line) -> str:
        return str(quantize(line.unit_price, line.order.currency))


class OrderPaymentSerializer(serializers.Serializer):
    id = serializers.CharField(source="public_id")
    status = serializers.CharField()
    gateway = serializers.CharField()
    checkout_url = serializers.CharField()
    last_error = serializers.CharField()


class OrderSerializer(serializers.ModelSerializer):
    total = MoneyField()
    lines = OrderLineSerializer(many=True, read_only=True)
    payment = OrderPaymentSerializer(read_only=True, allow_null=True)
    customer_id = serializers.IntegerField(read_only=True)

    class Meta:
        model = Order
        fields = [
            "number",
            "customer_id",
            "status",
            "total",
            "currency",
            "lines",
            "payment",
            "payment_error",
            "deadline",
            "created_at",
            "paid_at",
            "fulfilled_at",
            "closed_at",
        ]


class OrderAuditSerializer(serializers.ModelSerializer):
    class Meta:
        model = OrderAudit
        fields = ["at", "from_status", "to_status", "actor", "note"]


class OrderCancelSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=255, required=False, allow_blank=True, default="")


class CheckoutResultSerializer(OrderSerializer):
    checkout_url = serializers.CharField(source="payment.checkout_url", read_only=True)

    class Meta(OrderSerializer.Meta):
        fields = [*OrderSerializer.Meta.fields, "checkout_url"]
