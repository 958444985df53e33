"""Request and response examples of the storefront API, shown in /api/docs/ and /api/redoc/.

core's schema tests check every example against the schema of what it illustrates.
"""

from drf_spectacular.utils import OpenApiExample

_CHECKOUT_URL = "https://shop.example.com/pay/sandbox/sbx_Q2xk7pWm4RtN"

CHECKOUT_RESULT = {
    "number": "K7Q2-M9XD",
    "customer_id": 42,
    "status": "pending_payment",
    "total": "50.00",
    "currency": "USD",
    "lines": [{"sku": "TRAIN-35", "name": "Wooden train Ages 3-5", "unit_price": "25.00", "quantity": 2}],
    "payment": {
        "id": "pay_Xk2pQ9mWv4Lr7tNe",
        "status": "pending",
        "gateway": "sandbox",
        "checkout_url": _CHECKOUT_URL,
        "last_error": "",
    },
    "payment_error": "",
    "deadline": "2026-12-01T10:30:00Z",
    "created_at": "2026-12-01T10:00:00Z",
    "paid_at": None,
    "fulfilled_at": None,
    "closed_at": None,
    "checkout_url": _CHECKOUT_URL,
}

CHECKOUT = [
    OpenApiExample(
        "Check out at the default gateway",
        value={"return_url": "https://shop.example.com/orders/thanks"},
        request_only=True,
    ),
    OpenApiExample(
        "The order, its stock held, and where to pay",
        value=CHECKOUT_RESULT,
        response_only=True,
        status_codes=["201"],
    ),
    OpenApiExample(
        "Nothing in the cart",
        value={"code": "cart_empty", "message": "The cart is empty.", "extra": {}},
        response_only=True,
        status_codes=["422"],
    ),
]
