"""The one interface every payment gateway implements, and the dataclasses it speaks.

A gateway module knows its provider's HTTP API and nothing of our models: services hand
it plain values and get plain values back. Amounts are Decimal in the currency's major
unit here; each gateway converts to minor units (core.money.to_minor) at its own edge.

Errors: every call raises GatewayError on failure. `transient=True` (timeouts, connection
errors, 5xx, 429) means "may work if tried again": callers retry with backoff and leave the
payment pending. `transient=False` means the provider refused (bad credentials, invalid
request, amount too large): retrying will not help and the error is shown to staff.
"""

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from typing import Any


class GatewayError(Exception):
    def __init__(self, message: str, *, transient: bool, code: str = "", status: int | None = None):
        super().__init__(message)
        self.transient = transient
        self.code = code
        self.status = status


class WebhookAuthError(Exception):
    """A webhook whose signature, token or checksum is missing or wrong: store it, apply nothing."""


class Status(StrEnum):
    """What the gateway says about a payment, mapped onto our vocabulary."""

    PENDING = "pending"  # created or waiting for the customer / 3-D Secure / capture
    SUCCEEDED = "succeeded"  # money captured
    FAILED = "failed"  # declined or errored
    CANCELLED = "cancelled"  # abandoned, reversed or cancelled before capture
    REFUNDED = "refunded"  # fully refunded after capture
    PARTIALLY_REFUNDED = "partially_refunded"


@dataclass(frozen=True)
class CheckoutRequest:
    payment_id: str  # ours, e.g. "pay_9f3k..."; sent as the provider's order id / reference / metadata
    amount: Decimal
    currency: str
    description: str
    customer_email: str
    return_url: str  # where the provider sends the customer back
    idempotency_key: str  # the same key for a retried call: the provider creates one payment
    metadata: Mapping[str, str] = field(default_factory=dict)
    # Ask the provider to keep the payment method for charges without the customer (renewals);
    # only sent to gateways with `saves_methods`. `customer_key` is our stable id of the
    # customer at the provider (Tinkoff's CustomerKey; Stripe's customer is created for it).
    save_method: bool = False
    customer_key: str = ""


@dataclass(frozen=True)
class SavedMethod:
    """A payment method the provider keeps for charging the customer again without them.

    Only the provider's reusable token and what the customer recognises it by: never card data.
    """

    token: str  # Paystack authorization_code, Stripe pm_..., YooKassa payment_method.id, Tinkoff RebillId
    customer_reference: str = ""  # Stripe cus_..., Tinkoff CustomerKey: what the token belongs to
    label: str = ""  # e.g. "visa •••• 4081, expires 12/2030"
    raw: dict[str, Any] = field(default_factory=dict)  # the provider's description of it (no PAN)


@dataclass(frozen=True)
class SavedChargeRequest:
    """Charge a saved method now, without the customer (a renewal)."""

    payment_id: str  # ours, sent as the provider's order id / reference / metadata
    amount: Decimal
    currency: str
    description: str
    customer_email: str
    method: SavedMethod
    # One key per payment attempt: the call retried after a timeout charges once.
    idempotency_key: str
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class CheckoutSession:
    reference: str  # the provider's id of the payment, used by verify() and refund()
    redirect_url: str  # where to send the customer to pay
    raw: dict[str, Any]


@dataclass(frozen=True)
class PaymentState:
    """The provider's answer to verify(): the truth we apply, after checking amount and currency."""

    reference: str
    status: Status
    amount: Decimal  # what the provider says was (or will be) charged, major units
    currency: str
    error: str = ""  # the provider's reason for a failure, in its words
    raw: dict[str, Any] = field(default_factory=dict)
    # A succeeded payment made with save_method: the method the provider now keeps.
    saved_method: SavedMethod | None = None


@dataclass(frozen=True)
class RefundRequest:
    reference: str  # the payment's provider reference
    amount: Decimal  # major units; a partial refund is less than the captured amount
    currency: str
    reason: str
    idempotency_key: str


@dataclass(frozen=True)
class RefundResult:
    refund_reference: str
    status: Status  # SUCCEEDED, PENDING or FAILED (for the refund itself)
    amount: Decimal
    currency: str
    raw: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class WebhookNotice:
    """An authenticated webhook, parsed. Never applied as is: verify(reference) confirms it."""

    event_id: str  # unique per delivery of one provider event: duplicates are dropped on it
    reference: str  # the payment's provider reference
    status_hint: Status | None  # what the webhook claims, for the ledger
    amount: Decimal | None
    currency: str | None
    raw: dict[str, Any]
    # A provider that reports the saved method only in its (signed) notification (Tinkoff's
    # RebillId) puts it here; payments keep it once verify() confirms the payment succeeded.
    saved_method: SavedMethod | None = None


@dataclass(frozen=True)
class WebhookReply:
    """What the provider expects back once the event is stored (Tinkoff wants 'OK')."""

    status: int = 200
    body: bytes = b""
    content_type: str = "text/plain"


class PaymentGateway(ABC):
    name: str
    # True where the provider de-duplicates refunds by our idempotency key, so a refund that
    # timed out may simply be sent again; elsewhere staff must check before trying again.
    idempotent_refunds: bool = False
    # False where the provider signs nothing (YooKassa): parse_webhook cannot tell a forged
    # notice from a real one, so a notice takes its event id only once the API confirms it.
    signs_webhooks: bool = True
    # The settings without which its webhooks cannot be authenticated (or confirmed): with one
    # missing, the webhook endpoint answers 503 gateway_not_configured and stores nothing.
    webhook_settings: tuple[str, ...] = ()
    # True where the provider can keep a payment method and charge it without the customer
    # (create_checkout with save_method, charge_saved, method_forget).
    saves_methods: bool = False

    def __init__(self, config: Mapping[str, Any]):
        self.config = config

    def missing_webhook_settings(self) -> list[str]:
        return [name for name in self.webhook_settings if not self.config.get(name)]

    @abstractmethod
    def create_checkout(self, request: CheckoutRequest) -> CheckoutSession: ...

    @abstractmethod
    def verify(self, reference: str) -> PaymentState: ...

    @abstractmethod
    def refund(self, request: RefundRequest) -> RefundResult: ...

    @abstractmethod
    def parse_webhook(self, *, headers: Mapping[str, str], body: bytes) -> WebhookNotice:
        """Authenticate (raise WebhookAuthError) and parse one webhook request.

        Whatever the body and headers hold, it raises nothing but WebhookAuthError (not
        authenticated) or GatewayError (authenticated but not a notification it can read).
        """

    def webhook_reply(self, notice: WebhookNotice) -> WebhookReply:
        return WebhookReply()

    def charge_saved(self, request: SavedChargeRequest) -> PaymentState:
        """Charge a saved method without the customer.

        Returns the provider's state of the new charge (its `reference` is what verify() and
        refund() take): SUCCEEDED, FAILED with the decline in `error`, or PENDING when the
        provider decides later (verify() or its webhook tells). Raises GatewayError: transient
        ones (timeouts, 5xx) may be retried with the same idempotency key and charge once; a
        refusal (`transient=False`) is final for this attempt.
        """
        raise GatewayError(f"{self.name}: cannot charge saved methods", transient=False, code="not_supported")

    def method_forget(self, method: SavedMethod) -> None:
        """Ask the provider to forget a saved method the customer deleted (where it has a call for
        it). Raises GatewayError; the method is deleted on our side whatever the answer."""
        return None  # a provider with no such call: forgetting it is ours alone
