"""Subscription boxes for children: children, plans, subscriptions, their invoices, and the
toybox built for each paid period.

A subscription is invoiced once per period (`Invoice`, unique per subscription and period
start); a payment pays one or several open invoices (payments' allocations of purpose
"subscription", one per invoice number). Each paid invoice becomes exactly one `Toybox`
(one-to-one with its invoice), filled from the catalogue's stock by a task.

No side effects in save(): subscriptions.services change status along
subscriptions.transitions and publish subscription.*, invoice.* and toybox.* events in the
same transaction.
"""

import secrets
from datetime import date

from dateutil.relativedelta import relativedelta
from django.conf import settings
from django.db import models
from django.db.models import F, Q

from core.ids import public_id
from orders.models import CURRENCIES, ORDER_NUMBER_ALPHABET


def subscription_public_id() -> str:
    return public_id("sub")


def toybox_public_id() -> str:
    return public_id("box")


def invoice_number_new() -> str:
    """A readable, unguessable invoice number like "INV-K7Q2-M9XD"."""
    raw = "".join(secrets.choice(ORDER_NUMBER_ALPHABET) for _ in range(8))
    return f"INV-{raw[:4]}-{raw[4:]}"


def age_in_months(birth_date: date, on: date) -> int:
    delta = relativedelta(on, birth_date)
    return delta.years * 12 + delta.months


class Child(models.Model):
    customer = models.ForeignKey(settings.AUTH_USER_MODEL, related_name="children", on_delete=models.CASCADE)
    name = models.CharField(max_length=100)
    birth_date = models.DateField()
    interests = models.JSONField(default=list, blank=True, help_text='Tags, e.g. ["stem", "music"]')
    notes = models.TextField(blank=True, help_text="e.g. allergies to materials")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["customer_id", "name", "pk"]
        verbose_name_plural = "children"

    def __str__(self) -> str:
        return self.name

    def age_months(self, on: date) -> int:
        return age_in_months(self.birth_date, on)


class Plan(models.Model):
    class Period(models.IntegerChoices):
        MONTHLY = 1, "every month"
        QUARTERLY = 3, "every 3 months"

    name = models.CharField(max_length=120)
    slug = models.SlugField(max_length=140, unique=True)
    description = models.TextField(blank=True)
    price = models.DecimalField(max_digits=14, decimal_places=3)
    currency = models.CharField(max_length=3, choices=CURRENCIES, default="USD")
    period_months = models.PositiveSmallIntegerField(choices=Period.choices, default=Period.MONTHLY)
    toys_per_box = models.PositiveSmallIntegerField(default=3)
    age_min_months = models.PositiveSmallIntegerField(default=0)
    age_max_months = models.PositiveSmallIntegerField(default=144)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["age_min_months", "price", "pk"]
        constraints = [
            models.CheckConstraint(condition=Q(price__gt=0), name="plan_price_positive"),
            models.CheckConstraint(condition=Q(toys_per_box__gt=0), name="plan_toys_positive"),
            models.CheckConstraint(condition=Q(period_months__in=[1, 3]), name="plan_period_1_or_3"),
            models.CheckConstraint(
                condition=Q(age_min_months__lte=F("age_max_months")), name="plan_age_range_ordered"
            ),
        ]

    def __str__(self) -> str:
        return self.name


class Subscription(models.Model):
    class Status(models.TextChoices):
        PENDING_PAYMENT = "pending_payment"
        ACTIVE = "active"
        PAST_DUE = "past_due"
        PAUSED = "paused"
        CANCELLED = "cancelled"

    public_id = models.CharField(max_length=32, unique=True, default=subscription_public_id, editable=False)
    customer = models.ForeignKey(
        settings.AUTH_USER_MODEL, related_name="subscriptions", on_delete=models.PROTECT
    )
    child = models.ForeignKey(Child, related_name="subscriptions", on_delete=models.PROTECT)
    plan = models.ForeignKey(Plan, related_name="subscriptions", on_delete=models.PROTECT)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING_PAYMENT)
    current_period_start = models.DateTimeField(null=True, blank=True)
    current_period_end = models.DateTimeField(null=True, blank=True)
    # When the next period is invoiced and charged (the current period's end, while active).
    next_renewal_at = models.DateTimeField(null=True, blank=True)
    cancel_at_period_end = models.BooleanField(default=False)
    skip_next = models.BooleanField(default=False, help_text="The next period is not charged and has no box")
    paused_at = models.DateTimeField(null=True, blank=True)
    cancelled_at = models.DateTimeField(null=True, blank=True)
    status_note = models.CharField(
        max_length=255, blank=True, help_text="Why it is paused, past due or cancelled"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["child", "plan"],
                condition=~Q(status="cancelled"),
                name="subscription_one_live_per_child_plan",
            )
        ]
        indexes = [
            models.Index(
                fields=["next_renewal_at"],
                condition=Q(status__in=["active", "past_due"]),
                name="subscription_renewal_due",
            ),
            models.Index(fields=["customer", "-created_at"], name="subscription_customer_recent"),
        ]

    def __str__(self) -> str:
        return self.public_id


class Invoice(models.Model):
    class Status(models.TextChoices):
        OPEN = "open"
        PAID = "paid"
        VOID = "void"
        UNCOLLECTIBLE = "uncollectible"

    number = models.CharField(max_length=16, unique=True, default=invoice_number_new, editable=False)
    subscription = models.ForeignKey(Subscription, related_name="invoices", on_delete=models.PROTECT)
    customer = models.ForeignKey(settings.AUTH_USER_MODEL, related_name="invoices", on_delete=models.PROTECT)
    period_start = models.DateTimeField()
    period_end = models.DateTimeField()
    amount = models.DecimalField(max_digits=14, decimal_places=3)
    currency = models.CharField(max_length=3, choices=CURRENCIES)
    status = models.CharField(max_length=15, choices=Status.choices, default=Status.OPEN)
    attempts = models.PositiveSmallIntegerField(default=0, help_text="Charges of a saved method tried")
    next_attempt_at = models.DateTimeField(null=True, blank=True, help_text="When renewal charges it next")
    payment_url = models.URLField(max_length=1000, blank=True, help_text="Where the customer can pay it")
    first_failed_at = models.DateTimeField(null=True, blank=True, help_text="Dunning counts from here")
    held_at = models.DateTimeField(
        null=True, blank=True, help_text="A charge's outcome is unknown: no attempt until staff retry it"
    )
    failed_payments = models.JSONField(
        default=list, blank=True, help_text="Payments whose failure was counted"
    )
    last_error = models.TextField(blank=True)
    payment_id = models.CharField(max_length=32, blank=True, help_text="The payment that paid it")
    paid_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-period_start", "-pk"]
        constraints = [
            models.UniqueConstraint(fields=["subscription", "period_start"], name="invoice_once_per_period"),
            models.CheckConstraint(condition=Q(amount__gt=0), name="invoice_amount_positive"),
        ]
        indexes = [
            models.Index(fields=["next_attempt_at"], condition=Q(status="open"), name="invoice_attempt_due"),
            models.Index(fields=["customer", "-created_at"], name="invoice_customer_recent"),
        ]

    def __str__(self) -> str:
        return self.number


class Toybox(models.Model):
    class Status(models.TextChoices):
        BUILDING = "building"
        READY = "ready"
        SHORT = "short", "short of stock"
        SHIPPED = "shipped"
        DELIVERED = "delivered"

    public_id = models.CharField(max_length=32, unique=True, default=toybox_public_id, editable=False)
    # One box per paid period: the invoice that paid the period.
    invoice = models.OneToOneField(Invoice, related_name="toybox", on_delete=models.PROTECT)
    subscription = models.ForeignKey(Subscription, related_name="toyboxes", on_delete=models.PROTECT)
    child = models.ForeignKey(Child, related_name="toyboxes", on_delete=models.PROTECT)
    customer = models.ForeignKey(settings.AUTH_USER_MODEL, related_name="toyboxes", on_delete=models.PROTECT)
    period_start = models.DateTimeField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.BUILDING)
    toys_wanted = models.PositiveSmallIntegerField()
    payment_id = models.CharField(max_length=32, blank=True)
    tracking_number = models.CharField(max_length=100, blank=True)
    note = models.TextField(blank=True)
    built_at = models.DateTimeField(null=True, blank=True)
    shipped_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-period_start", "-pk"]
        verbose_name_plural = "toyboxes"
        indexes = [
            models.Index(fields=["updated_at"], condition=Q(status="building"), name="toybox_building"),
            models.Index(fields=["customer", "-created_at"], name="toybox_customer_recent"),
        ]

    def __str__(self) -> str:
        return self.public_id


class ToyboxItem(models.Model):
    """One toy in a box, as it was when packed; its stock is reserved until the box ships."""

    toybox = models.ForeignKey(Toybox, related_name="items", on_delete=models.CASCADE)
    variant = models.ForeignKey("orders.Variant", related_name="+", on_delete=models.PROTECT)
    product = models.ForeignKey("orders.Product", related_name="+", on_delete=models.PROTECT)
    sku = models.CharField(max_length=64)
    name = models.CharField(max_length=330)

    class Meta:
        ordering = ["pk"]
        constraints = [models.UniqueConstraint(fields=["toybox", "product"], name="toybox_toy_once")]

    def __str__(self) -> str:
        return f"{self.toybox_id} {self.sku}"
