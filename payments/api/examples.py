"""Request and response examples of the payments API, shown in /api/docs/ and /api/redoc/.

core's schema tests check every example against the schema of what it illustrates.
"""

from drf_spectacular.utils import OpenApiExample

_CHECKOUT_URL = "https://shop.example.com/pay/sandbox/sbx_Q2xk7pWm4RtN"
_CREATED = "2026-12-01T10:00:00Z"

PAYMENT = {
    "id": "pay_Xk2pQ9mWv4Lr7tNe",
    "customer_id": 42,
    "amount": "50.00",
    "currency": "USD",
    "status": "pending",
    "purpose": "order",
    "allocations": [
        {
            "purpose": "order",
            "purpose_id": "K7Q2-M9XD",
            "amount": "50.00",
            "refunded_amount": "0.00",
            "outcome": "open",
        }
    ],
    "kind": "full",
    "gateway": "sandbox",
    "checkout_url": _CHECKOUT_URL,
    "deadline": "2026-12-01T10:30:00Z",
    "refunded_amount": "0.00",
    "last_error": "",
    "refunds": [],
    "created_at": _CREATED,
    "updated_at": _CREATED,
}
_BATCH_PAYMENT = PAYMENT | {
    "id": "pay_Bt7mWq2Lx9Kp4Rvs",
    "amount": "60.00",
    "currency": "EUR",
    "purpose": "booking",
    "kind": "deposit",
    "allocations": [
        {
            "purpose": "booking",
            "purpose_id": booking_id,
            "amount": "30.00",
            "refunded_amount": "0.00",
            "outcome": "open",
        }
        for booking_id in ("bkg_Hn4pQw8Zr2Lm6Tx", "bkg_Vc9kRt3Wn7Jq2Ps")
    ],
}
REFUND_RESPONSE = {
    "id": "ref_Mw4rT8kQz2Pn6Lxv",
    "amount": "20.00",
    "currency": "USD",
    "full": False,
    "reason": "one item arrived broken",
    "status": "pending",
    "error": "",
    "created_at": "2026-12-03T09:15:00Z",
}


def _error(code: str, message: str, **extra) -> dict:
    return {"code": code, "message": message, "extra": extra}


PAYMENT_CREATE = [
    OpenApiExample(
        "Pay for an order",
        value={
            "purpose": "order",
            "purpose_id": "K7Q2-M9XD",
            "gateway": "sandbox",
            "return_url": "https://shop.example.com/orders/K7Q2-M9XD",
            "description": "Order K7Q2-M9XD",
        },
        request_only=True,
    ),
    OpenApiExample(
        "Created; the customer pays at checkout_url",
        value=PAYMENT,
        response_only=True,
        status_codes=["201"],
    ),
    OpenApiExample(
        "The item is paid already",
        value=_error(
            "item_already_paid", "order K7Q2-M9XD is paid already.", purpose="order", item_id="K7Q2-M9XD"
        ),
        response_only=True,
        status_codes=["422"],
    ),
]

PAYMENT_BATCH = [
    OpenApiExample(
        "Pay the deposits of two bookings at once",
        value={
            "purpose": "booking",
            "item_ids": ["bkg_Hn4pQw8Zr2Lm6Tx", "bkg_Vc9kRt3Wn7Jq2Ps"],
            "return_url": "https://shop.example.com/bookings",
        },
        request_only=True,
    ),
    OpenApiExample(
        "One payment, one allocation per booking",
        value=_BATCH_PAYMENT,
        response_only=True,
        status_codes=["201"],
    ),
    OpenApiExample(
        "An item named twice",
        value=_error(
            "item_repeated",
            "booking bkg_Hn4pQw8Zr2Lm6Tx is named more than once.",
            purpose="booking",
            item_id="bkg_Hn4pQw8Zr2Lm6Tx",
        ),
        response_only=True,
        status_codes=["422"],
    ),
]

REFUND = [
    OpenApiExample(
        "Refund part of the payment",
        value={"amount": "20.00", "reason": "one item arrived broken"},
        request_only=True,
    ),
    OpenApiExample(
        "Refund everything left of one item",
        value={"reason": "cancelled by the studio", "item_id": "bkg_Hn4pQw8Zr2Lm6Tx"},
        request_only=True,
    ),
    OpenApiExample(
        "Reserved; a task asks the gateway",
        value=REFUND_RESPONSE,
        response_only=True,
        status_codes=["202"],
    ),
    OpenApiExample(
        "More than is left",
        value=_error(
            "refund_too_large", "At most 30.00 USD can be refunded.", refundable="30.00", currency="USD"
        ),
        response_only=True,
        status_codes=["422"],
    ),
]
