"""The error codes payments answers with: compare members, never free strings."""

from enum import StrEnum

from core.errors import BusinessRuleViolation, TransientError


class PaymentErrorCode(StrEnum):
    # Refusing to open a payment (nothing is created).
    PURPOSE_NOT_REGISTERED = "purpose_not_registered"
    NO_ITEMS = "no_items"
    ITEM_REPEATED = "item_repeated"
    ITEM_NOT_FOUND = "item_not_found"
    ITEM_ALREADY_PAID = "item_already_paid"
    ITEM_NOT_PAYABLE = "item_not_payable"
    MIXED_CURRENCIES = "mixed_currencies"
    # The gateway, at checkout.
    GATEWAY_UNAVAILABLE = "gateway_unavailable"
    GATEWAY_REFUSED = "gateway_refused"
    # Webhooks.
    BAD_SIGNATURE = "bad_signature"  # unsigned, forged, or not a notification at all
    MALFORMED_WEBHOOK = "malformed_webhook"  # not text, or signed but not a notification we can read
    # Refunds.
    NOT_REFUNDABLE = "not_refundable"
    REFUND_TOO_LARGE = "refund_too_large"
    KEY_REUSED = "key_reused"
    UNKNOWN_ALLOCATION = "unknown_allocation"


class PaymentRefused(BusinessRuleViolation):
    """A payment that will not be opened, for the reason given (HTTP 422)."""

    default_code = PaymentErrorCode.ITEM_NOT_PAYABLE


class GatewayUnreachable(TransientError):
    """A gateway that could not be reached (timeout, 5xx): try again later, with the same key."""
