"""Request and response examples of the bookings API, shown in /api/docs/ and /api/redoc/.

core's schema tests check every example against the schema of what it illustrates.
"""

from drf_spectacular.utils import OpenApiExample

_CHECKOUT_URL = "https://shop.example.com/pay/sandbox/sbx_Lm3Qv8Tn2Wk5"

BOOKING = {
    "id": "bkg_Hn4pQw8Zr2Lm6Tx",
    "resource_id": 3,
    "resource_name": "Studio A",
    "timezone": "Europe/Berlin",
    "service_id": None,
    "customer_id": 42,
    "start": "2026-12-05T10:00:00+01:00",
    "end": "2026-12-05T12:00:00+01:00",
    "status": "pending_payment",
    "payment_status": "unpaid",
    "payment_kind": "deposit",
    "amount_total": "80.00",
    "amount_due": "24.00",
    "currency": "EUR",
    "payment": {
        "id": "pay_Rk7wQ2mXv9Lp4Tns",
        "status": "pending",
        "amount": "24.00",
        "currency": "EUR",
        "kind": "deposit",
        "gateway": "sandbox",
        "checkout_url": _CHECKOUT_URL,
        "deadline": "2026-12-01T10:15:00Z",
    },
    "payment_error": "",
    "hold_expires_at": "2026-12-01T10:15:00Z",
    "notes": "family shoot",
    "created_at": "2026-12-01T10:00:00Z",
    "updated_at": "2026-12-01T10:00:00Z",
}

BOOKING_CREATE = [
    OpenApiExample(
        "Hold two hours of a hall, paying the deposit",
        value={
            "hall_id": 3,
            "start": "2026-12-05T10:00",
            "end": "2026-12-05T12:00",
            "payment_kind": "deposit",
            "return_url": "https://shop.example.com/bookings/thanks",
            "notes": "family shoot",
        },
        request_only=True,
    ),
    OpenApiExample(
        "Book a service (its duration sets the end)",
        value={"resource_id": 7, "service_id": 2, "start": "2026-12-05T15:30+01:00", "payment_kind": "full"},
        request_only=True,
    ),
    OpenApiExample(
        "Held until hold_expires_at; the customer pays at payment.checkout_url",
        value=BOOKING,
        response_only=True,
        status_codes=["201"],
    ),
    OpenApiExample(
        "Someone else holds that time",
        value={
            "code": "slot_taken",
            "message": "This time is already booked.",
            "extra": {"start": "2026-12-05T09:00:00Z", "end": "2026-12-05T11:00:00Z"},
        },
        response_only=True,
        status_codes=["409"],
    ),
]
