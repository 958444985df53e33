"""The storefront: catalogue (categories, products, variants, images), carts, and orders.

Stock lives on the variant: `stock_on_hand` is what the warehouse holds, `stock_reserved` what
unpaid orders hold for their payment window; `stock_on_hand - stock_reserved` can be sold.
Both only change through orders.stock, by conditional UPDATEs that PostgreSQL re-checks under
the row lock, so concurrent checkouts can never take more than is on hand (and the check
constraints below refuse it anyway).
"""

import secrets

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import F, Q

from core.money import CURRENCY_EXPONENTS, MoneyError, quantize

CURRENCIES = [(code, code) for code in sorted(CURRENCY_EXPONENTS)]
# Crockford's base 32 without I, L, O, U: no letters mistaken for digits when read aloud.
ORDER_NUMBER_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def order_number_new() -> str:
    """A human-readable order number like "K7Q2-M9XD" (40 bits: unguessable, unique by index)."""
    raw = "".join(secrets.choice(ORDER_NUMBER_ALPHABET) for _ in range(8))
    return f"{raw[:4]}-{raw[4:]}"


class Category(models.Model):
    parent = models.ForeignKey(
        "self", null=True, blank=True, related_name="children", on_delete=models.PROTECT
    )
    name = models.CharField(max_length=120)
    slug = models.SlugField(max_length=140, unique=True)
    description = models.TextField(blank=True)
    position = models.PositiveIntegerField(default=0)
    is_active = models.BooleanField(default=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["position", "name"]
        verbose_name_plural = "categories"

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        ancestor = self.parent
        while ancestor is not None:
            if ancestor.pk == self.pk and self.pk is not None:
                raise ValidationError({"parent": "A category cannot be inside itself."})
            ancestor = ancestor.parent


class Product(models.Model):
    category = models.ForeignKey(Category, related_name="products", on_delete=models.PROTECT)
    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=220, unique=True)
    description = models.TextField(blank=True)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        indexes = [models.Index(fields=["is_active", "category"], name="product_active_category")]

    def __str__(self) -> str:
        return self.name


class ProductImage(models.Model):
    product = models.ForeignKey(Product, related_name="images", on_delete=models.CASCADE)
    url = models.URLField(max_length=500)
    alt = models.CharField(max_length=200, blank=True)
    position = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["position", "pk"]

    def __str__(self) -> str:
        return self.url


class Variant(models.Model):
    product = models.ForeignKey(Product, related_name="variants", on_delete=models.PROTECT)
    sku = models.CharField("SKU", max_length=64, unique=True)
    name = models.CharField(max_length=120, blank=True, help_text='e.g. "Size M" or "Ages 3-5"')
    price = models.DecimalField(max_digits=14, decimal_places=3)
    currency = models.CharField(max_length=3, choices=CURRENCIES, default="USD")
    attributes = models.JSONField(
        default=dict, blank=True, help_text='e.g. {"size": "M", "age_range": "3-5"}'
    )
    is_active = models.BooleanField(default=True)
    stock_on_hand = models.PositiveIntegerField(default=0)
    stock_reserved = models.PositiveIntegerField(default=0, editable=False)
    low_stock_threshold = models.PositiveIntegerField(default=5)
    # For toyboxes: the ages (in months) a toy suits, and what it is about ("stem", "puzzles"...).
    age_min_months = models.PositiveSmallIntegerField(null=True, blank=True)
    age_max_months = models.PositiveSmallIntegerField(null=True, blank=True)
    tags = models.JSONField(default=list, blank=True, help_text='e.g. ["stem", "wooden", "music"]')
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["product_id", "price", "pk"]
        constraints = [
            models.CheckConstraint(condition=Q(stock_on_hand__gte=0), name="variant_on_hand_not_negative"),
            models.CheckConstraint(condition=Q(stock_reserved__gte=0), name="variant_reserved_not_negative"),
            models.CheckConstraint(
                condition=Q(stock_reserved__lte=F("stock_on_hand")), name="variant_reserved_within_on_hand"
            ),
            models.CheckConstraint(condition=Q(price__gt=0), name="variant_price_positive"),
            models.CheckConstraint(
                condition=Q(age_min_months__isnull=True)
                | Q(age_max_months__isnull=True)
                | Q(age_min_months__lte=F("age_max_months")),
                name="variant_age_range_ordered",
            ),
        ]
        indexes = [models.Index(fields=["age_min_months", "age_max_months"], name="variant_age_range")]

    def __str__(self) -> str:
        return f"{self.sku} {self.name}".strip()

    @property
    def stock_available(self) -> int:
        return self.stock_on_hand - self.stock_reserved

    def clean(self) -> None:
        if self.price is not None and self.currency:
            try:
                self.price = quantize(self.price, self.currency)
            except MoneyError as exc:
                raise ValidationError({"price": str(exc)}) from exc
        if self.stock_on_hand is not None and self.stock_on_hand < self.stock_reserved:
            raise ValidationError(
                {"stock_on_hand": f"{self.stock_reserved} are reserved by unpaid orders: at least that many."}
            )


class Cart(models.Model):
    """One open cart per customer; checkout turns its items into an order and empties it."""

    customer = models.OneToOneField(settings.AUTH_USER_MODEL, related_name="cart", on_delete=models.CASCADE)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"cart of {self.customer_id}"


class CartItem(models.Model):
    cart = models.ForeignKey(Cart, related_name="items", on_delete=models.CASCADE)
    variant = models.ForeignKey(Variant, on_delete=models.CASCADE)
    quantity = models.PositiveIntegerField()
    added_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["added_at", "pk"]
        constraints = [
            models.UniqueConstraint(fields=["cart", "variant"], name="cart_item_once_per_variant"),
            models.CheckConstraint(condition=Q(quantity__gt=0), name="cart_item_quantity_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.quantity} x {self.variant_id}"


class Order(models.Model):
    class Status(models.TextChoices):
        PENDING_PAYMENT = "pending_payment"
        PAID = "paid"
        FULFILLED = "fulfilled"
        CANCELLED = "cancelled"
        EXPIRED = "expired"
        REFUNDED = "refunded"

    class Stock(models.TextChoices):
        RESERVED = "reserved", "reserved for the payment window"
        SOLD = "sold", "sold (taken from stock on hand)"
        RELEASED = "released", "released (reservation returned)"
        RETURNED = "returned", "returned to stock after a refund"

    number = models.CharField(max_length=9, unique=True, default=order_number_new, editable=False)
    customer = models.ForeignKey(settings.AUTH_USER_MODEL, related_name="orders", on_delete=models.PROTECT)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING_PAYMENT)
    stock_state = models.CharField(max_length=10, choices=Stock.choices, default=Stock.RESERVED)
    currency = models.CharField(max_length=3, choices=CURRENCIES)
    total = models.DecimalField(max_digits=14, decimal_places=3)
    # The payment the customer is asked to pay now (a new one after a failed attempt).
    payment = models.ForeignKey(
        "payments.Payment", null=True, blank=True, related_name="+", on_delete=models.PROTECT
    )
    payment_error = models.TextField(blank=True)
    deadline = models.DateTimeField(
        help_text="Unpaid after this, the order expires and its stock is released."
    )
    needs_attention = models.BooleanField(default=False)
    attention_note = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    paid_at = models.DateTimeField(null=True, blank=True)
    fulfilled_at = models.DateTimeField(null=True, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True, help_text="Cancelled, expired or refunded at.")

    class Meta:
        ordering = ["-created_at", "-pk"]
        indexes = [
            models.Index(
                fields=["deadline"], condition=Q(status="pending_payment"), name="order_unpaid_by_deadline"
            ),
            models.Index(fields=["customer", "-created_at"], name="order_customer_recent"),
        ]

    def __str__(self) -> str:
        return self.number


class OrderLine(models.Model):
    """What was bought, as it was at checkout (the catalogue may change later)."""

    order = models.ForeignKey(Order, related_name="lines", on_delete=models.CASCADE)
    variant = models.ForeignKey(Variant, related_name="+", on_delete=models.PROTECT)
    sku = models.CharField(max_length=64)
    name = models.CharField(max_length=330)
    unit_price = models.DecimalField(max_digits=14, decimal_places=3)
    quantity = models.PositiveIntegerField()

    class Meta:
        ordering = ["pk"]

    def __str__(self) -> str:
        return f"{self.quantity} x {self.sku}"

    @property
    def line_total(self):
        return self.unit_price * self.quantity


class OrderAudit(models.Model):
    """One row per change of an order: its status (from -> to) or a note for staff."""

    order = models.ForeignKey(Order, related_name="audit", on_delete=models.CASCADE)
    from_status = models.CharField(max_length=20, blank=True)
    to_status = models.CharField(max_length=20, blank=True)
    actor = models.CharField(max_length=100, help_text='"customer 42", "staff 7", "payment pay_...", "beat"')
    note = models.TextField(blank=True)
    at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["at", "pk"]

    def __str__(self) -> str:
        return f"{self.order_id}: {self.from_status} -> {self.to_status} {self.note}".strip()
