"""Payments, what they pay for (allocations), their append-only ledger, refunds, and the raw
webhook inbox.

Payments name no other app: an allocation says "this much of the payment is for item
`purpose_id` of purpose `purpose`", where a purpose is whatever an app registered with
payments.purposes (orders, bookings...).

No side effects in save(): payments.services changes status along payments.transitions and
publishes payment.* events in the same transaction.
"""

from django.conf import settings
from django.db import models
from django.db.models import Q

from core.ids import public_id
from core.money import quantize


def payment_public_id() -> str:
    return public_id("pay")


def refund_public_id() -> str:
    return public_id("ref")


def method_public_id() -> str:
    return public_id("spm")


class Payment(models.Model):
    class Status(models.TextChoices):
        CREATED = "created"
        PENDING = "pending"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        CANCELLED = "cancelled"
        EXPIRED = "expired"
        PARTIALLY_REFUNDED = "partially_refunded"
        REFUNDED = "refunded"

    class Kind(models.TextChoices):
        FULL = "full"
        DEPOSIT = "deposit"

    public_id = models.CharField(max_length=32, unique=True, default=payment_public_id, editable=False)
    customer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="payments")
    amount = models.DecimalField(max_digits=14, decimal_places=3)
    currency = models.CharField(max_length=3)
    gateway = models.CharField(max_length=20, db_index=True)
    gateway_reference = models.CharField(max_length=100, blank=True, db_index=True)
    checkout_url = models.URLField(max_length=1000, blank=True)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.CREATED, db_index=True)
    # The registered purpose of every allocation of the payment (a payment pays items of one kind).
    purpose = models.CharField(max_length=40, db_index=True)
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.FULL)
    deadline = models.DateTimeField(help_text="Unpaid after this, the payment expires.")
    refunded_amount = models.DecimalField(max_digits=14, decimal_places=3, default=0)
    last_error = models.TextField(blank=True)
    # Set when the gateway and we disagree (paid after expiry, amounts differ...): staff look.
    flagged_reason = models.TextField(blank=True)
    # When reconciliation last queued a re-verification: the next pass starts with the others.
    reverify_queued_at = models.DateTimeField(null=True, blank=True)
    # The saved method charged without the customer (a renewal); empty for a checkout.
    saved_method = models.ForeignKey(
        "SavedPaymentMethod", null=True, blank=True, on_delete=models.SET_NULL, related_name="payments"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="payment_amount_positive"),
            models.CheckConstraint(
                condition=Q(refunded_amount__gte=0) & Q(refunded_amount__lte=models.F("amount")),
                name="payment_refunds_within_amount",
            ),
            models.UniqueConstraint(
                fields=["gateway", "gateway_reference"],
                condition=~Q(gateway_reference=""),
                name="payment_gateway_reference_once",
            ),
        ]
        indexes = [models.Index(fields=["status", "created_at"], name="payment_status_age")]

    def __str__(self) -> str:
        return f"{self.public_id} {quantize(self.amount, self.currency)} {self.currency} {self.status}"


class PaymentAllocation(models.Model):
    """The part of a payment that pays one item; the payment's amount is the sum of its parts.

    `outcome` records, in data, what the item did with the money once the payment completed,
    so that a repeated completion is recognised and changes nothing.
    """

    class Outcome(models.TextChoices):
        OPEN = "open", "not settled yet"
        ACCEPTED = "accepted", "the item took the money"
        HELD = "held", "held for staff to accept or refund"
        REFUSED = "refused", "the item could not take it: refunded"

    payment = models.ForeignKey(Payment, on_delete=models.PROTECT, related_name="allocations")
    purpose = models.CharField(max_length=40)
    purpose_id = models.CharField(max_length=100)
    amount = models.DecimalField(max_digits=14, decimal_places=3)
    # A deposit on the item, or all of its price (Payment.Kind), as the item's purpose priced it.
    kind = models.CharField(max_length=10, choices=Payment.Kind.choices, default=Payment.Kind.FULL)
    refunded_amount = models.DecimalField(max_digits=14, decimal_places=3, default=0)
    outcome = models.CharField(max_length=10, choices=Outcome.choices, default=Outcome.OPEN)
    outcome_note = models.TextField(blank=True)
    settled_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["pk"]
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="allocation_amount_positive"),
            models.CheckConstraint(
                condition=Q(refunded_amount__gte=0) & Q(refunded_amount__lte=models.F("amount")),
                name="allocation_refunds_within_amount",
            ),
            models.UniqueConstraint(fields=["payment", "purpose", "purpose_id"], name="allocation_item_once"),
        ]
        indexes = [models.Index(fields=["purpose", "purpose_id"], name="allocation_item")]

    def __str__(self) -> str:
        return f"{self.payment_id} {self.purpose} {self.purpose_id} {self.amount}"


class PaymentLedgerEntry(models.Model):
    """What one gateway call or webhook reported about a payment. Append-only."""

    class Source(models.TextChoices):
        CHECKOUT = "checkout"
        VERIFY = "verify"
        WEBHOOK = "webhook"
        REFUND = "refund"
        STAFF = "staff"
        CHARGE = "charge", "charge of a saved method"

    payment = models.ForeignKey(Payment, on_delete=models.PROTECT, related_name="ledger")
    source = models.CharField(max_length=10, choices=Source.choices)
    reported_status = models.CharField(max_length=30, blank=True)
    amount = models.DecimalField(max_digits=14, decimal_places=3, null=True, blank=True)
    currency = models.CharField(max_length=3, blank=True)
    note = models.TextField(blank=True)
    raw = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["created_at", "pk"]
        verbose_name_plural = "payment ledger entries"

    def __str__(self) -> str:
        return f"{self.payment_id} {self.source} {self.reported_status}"


class Refund(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending"
        SUCCEEDED = "succeeded"
        FAILED = "failed"

    public_id = models.CharField(max_length=32, unique=True, default=refund_public_id, editable=False)
    payment = models.ForeignKey(Payment, on_delete=models.PROTECT, related_name="refunds")
    amount = models.DecimalField(max_digits=14, decimal_places=3)
    currency = models.CharField(max_length=3)
    full = models.BooleanField()
    reason = models.CharField(max_length=255)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    gateway_refund_id = models.CharField(max_length=100, blank=True)
    idempotency_key = models.CharField(max_length=255, unique=True)
    sent_at = models.DateTimeField(null=True, blank=True, help_text="When the gateway was first asked")
    error = models.TextField(blank=True)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [models.CheckConstraint(condition=Q(amount__gt=0), name="refund_amount_positive")]

    def __str__(self) -> str:
        return f"{self.public_id} {quantize(self.amount, self.currency)} {self.currency} {self.status}"


class RefundShare(models.Model):
    """The part of a refund that comes out of one allocation (set when the refund is reserved)."""

    refund = models.ForeignKey(Refund, on_delete=models.CASCADE, related_name="shares")
    allocation = models.ForeignKey(PaymentAllocation, on_delete=models.PROTECT, related_name="refund_shares")
    amount = models.DecimalField(max_digits=14, decimal_places=3)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="refund_share_positive"),
            models.UniqueConstraint(fields=["refund", "allocation"], name="refund_share_once"),
        ]

    def __str__(self) -> str:
        return f"{self.refund_id} {self.allocation_id} {self.amount}"


class WebhookEvent(models.Model):
    """The raw inbox: every webhook as received, stored before anything is applied.

    `body` is the text as received. A body that is not text a gateway sends (NUL bytes, not
    UTF-8) is refused and kept anyway: `body` shows it with NUL as \\x00 and every byte that is
    not UTF-8 as \\xNN (PostgreSQL text cannot hold NUL), and `raw_body` keeps the bytes.

    `proof` says why a webhook may be believed: its signature, or, at a gateway that signs
    nothing (YooKassa), the gateway's API confirming what it claims (`claimed_status`). Only a
    proven one has `signature_valid` and so holds the (gateway, event_id) de-duplication key:
    an unsigned notice waiting for its confirmation, or contradicted, never blocks the real one.
    """

    class Proof(models.TextChoices):
        NONE = "none", "refused: not authenticated or not readable"
        SIGNATURE = "signature", "signed by the gateway"
        UNCONFIRMED = "unconfirmed", "unsigned: waiting for the gateway's API to confirm it"
        CONFIRMED = "confirmed", "unsigned: the gateway's API confirmed it"
        REPEATED = "repeated", "unsigned: confirmed, but the same event was confirmed before"
        CONTRADICTED = "contradicted", "unsigned: the gateway's API did not confirm it"

    gateway = models.CharField(max_length=20)
    event_id = models.CharField(max_length=200, help_text="The gateway's id of the event (or one derived).")
    headers = models.JSONField(default=dict)
    body = models.TextField()
    raw_body = models.BinaryField(
        null=True, blank=True, help_text="The bytes as received, when `body` cannot hold them exactly"
    )
    received_at = models.DateTimeField(auto_now_add=True, db_index=True)
    signature_valid = models.BooleanField(
        help_text="Proven (signed, or confirmed by the gateway's API): it holds its event id"
    )
    proof = models.CharField(
        max_length=12, choices=Proof.choices, default=Proof.SIGNATURE, db_default=Proof.SIGNATURE
    )
    claimed_status = models.CharField(
        max_length=30,
        blank=True,
        default="",
        db_default="",
        help_text="What the webhook says happened (never applied as such)",
    )
    checks = models.PositiveSmallIntegerField(
        default=0, db_default=0, help_text="Answers of the gateway's API about it"
    )
    reference = models.CharField(max_length=100, blank=True, help_text="The payment's gateway reference")
    dispatched_at = models.DateTimeField(
        null=True, blank=True, help_text="When a task was sent to process it"
    )
    payment = models.ForeignKey(
        Payment, null=True, blank=True, on_delete=models.PROTECT, related_name="webhooks"
    )
    processed_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-received_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["gateway", "event_id"], condition=Q(signature_valid=True), name="webhook_event_once"
            )
        ]
        # The sweep's work list: accepted webhooks not processed yet (refused ones never are).
        indexes = [
            models.Index(
                fields=["received_at"],
                condition=Q(processed_at__isnull=True) & (Q(signature_valid=True) | Q(proof="unconfirmed")),
                name="webhook_unprocessed",
            )
        ]

    def __str__(self) -> str:
        return f"{self.gateway} {self.event_id}"

    @property
    def body_bytes(self) -> bytes:
        """The body as received (as much of it as was kept)."""
        return bytes(self.raw_body) if self.raw_body is not None else self.body.encode()


class SavedPaymentMethod(models.Model):
    """A payment method a gateway keeps for the customer, charged without them (renewals).

    Only the gateway's reusable token and a label the customer recognises: never card data.
    Deleting one deletes it here and asks the gateway to forget it (where it can).
    """

    public_id = models.CharField(max_length=32, unique=True, default=method_public_id, editable=False)
    customer = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="saved_payment_methods"
    )
    gateway = models.CharField(max_length=20)
    token = models.CharField(max_length=255, help_text="The gateway's reusable token (not card data)")
    customer_reference = models.CharField(
        max_length=254, blank=True, help_text="What the token belongs to at the gateway (Stripe's customer)"
    )
    label = models.CharField(max_length=120, blank=True, help_text='e.g. "visa •••• 4081, expires 12/2030"')
    details = models.JSONField(default=dict, blank=True, help_text="The gateway's description of it")
    first_payment = models.ForeignKey(
        Payment, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    # Deleted by the customer: never charged again; the row goes once the gateway forgot it.
    deleted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        constraints = [
            models.UniqueConstraint(fields=["customer", "gateway", "token"], name="saved_method_once")
        ]

    def __str__(self) -> str:
        return f"{self.gateway} {self.label or self.public_id}"


class SandboxMethod(models.Model):
    """The sandbox gateway's own record of a saved method, and how its next charges behave."""

    class Behaviour(models.TextChoices):
        APPROVE = "approve", "charges succeed"
        DECLINE = "decline", "charges are declined (insufficient funds)"
        UNAVAILABLE = "unavailable", "the sandbox answers 503 (a gateway outage)"

    token = models.CharField(max_length=40, unique=True)
    customer_key = models.CharField(max_length=100)
    label = models.CharField(max_length=120)
    behaviour = models.CharField(max_length=12, choices=Behaviour.choices, default=Behaviour.APPROVE)
    forgotten = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.token} {self.behaviour}"


class SandboxCharge(models.Model):
    """The built-in sandbox gateway's own record of a charge: what its verify() answers from."""

    class Status(models.TextChoices):
        PENDING = "pending"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        CANCELLED = "cancelled"

    reference = models.CharField(max_length=40, unique=True)
    idempotency_key = models.CharField(max_length=100, unique=True)
    payment_public_id = models.CharField(max_length=32, db_index=True)
    amount = models.DecimalField(max_digits=14, decimal_places=3)
    currency = models.CharField(max_length=3)
    description = models.CharField(max_length=255, blank=True)
    return_url = models.URLField(max_length=1000, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    decline_reason = models.CharField(max_length=255, blank=True)
    refunded_amount = models.DecimalField(max_digits=14, decimal_places=3, default=0)
    refund_keys = models.JSONField(default=list, help_text="Idempotency keys of refunds already made")
    save_method = models.BooleanField(
        default=False, help_text="Keep the card for charges without the customer"
    )
    customer_key = models.CharField(max_length=100, blank=True)
    method = models.ForeignKey(
        SandboxMethod,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="charges",
        help_text="The saved method this charge made (save_method) or used (a charge without the customer)",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.reference} {self.status}"


class FlaggedPayment(Payment):
    """The mismatch list: payments where the gateway and we disagree, for staff to resolve."""

    class Meta:
        proxy = True
        verbose_name = "flagged payment (mismatch)"
        verbose_name_plural = "flagged payments (mismatches)"
