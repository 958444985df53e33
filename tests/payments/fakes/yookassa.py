"""A fake YooKassa API v3: payments, refunds, saved payment methods, autopayments and
(unsigned) notifications, as the real one checks them.

It checks HTTP Basic auth (shop id : secret key), requires an Idempotence-Key on every POST
(a repeat with the same key and body gets the first answer and creates nothing; the same key
with another body is refused), takes amounts only as YooKassa does ({"value": "75.00",
"currency": "RUB"}: a string with two decimals, never a number or minor units), and refuses a
refund beyond what is left of a succeeded payment.

Saved methods: a payment created with `save_payment_method: true` leaves, once the customer
has paid, a `payment_method` with `saved: true` whose id (the payment's own id) can be charged
again with `payment_method_id`; any other payment's method has `saved: false`. An autopayment
with an unknown or unsaved `payment_method_id` is refused (400) and creates nothing; one with a
card past its expiry is canceled with card_expired, as the issuer would. Methods belong to the
shop: like YooKassa, the fake knows no customers and cannot be asked to forget a method.

    with FakeYooKassa() as fake:
        gateway = YooKassaGateway({"shop_id": fake.shop_id, "secret_key": fake.secret_key,
                                   "base_url": fake.base_url})
        fake.complete(reference)               # the customer paid (with DEFAULT_CARD)
        headers, body = fake.notification(reference)
        fake.decline_next_charge("insufficient_funds")  # the next autopayment is declined
        fake.hold_next_charge()                # ... stays pending, for complete() or decline()
        fake.lose_next_answer(500)             # the next POST /payments is made, answered 500
        fake.lose_next_answer()                # ... made, answered after stall_seconds
        fake.charges                           # ids of the autopayments made, in order
"""

import base64
import hmac
import json
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from tests.payments.fakes.base import FakeProvider, FakeRequest, route

CURRENCIES = frozenset({"RUB", "USD", "EUR"})
AMOUNT_VALUE = re.compile(r"\d+\.\d{2}")  # YooKassa: always a fraction, "." separator, the currency's digits
# A test card as YooKassa describes one in payment_method.card (first6 and last4, never the number).
DEFAULT_CARD = {
    "first6": "555555",
    "last4": "4444",
    "expiry_year": "2030",
    "expiry_month": "12",
    "card_type": "MasterCard",
    "issuer_country": "RU",
}
Answer = tuple[int, dict[str, Any]]


def _error(status: int, code: str, description: str, parameter: str = "") -> Answer:
    body = {"type": "error", "id": str(uuid.uuid4()), "code": code, "description": description}
    return status, body | ({"parameter": parameter} if parameter else {})


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _bad_amount(amount: Any) -> Answer | None:
    if not isinstance(amount, dict) or amount.get("currency") not in CURRENCIES:
        return _error(
            400, "invalid_request", "amount.currency is missing or not supported", "amount.currency"
        )
    value = amount.get("value")
    if not isinstance(value, str) or not AMOUNT_VALUE.fullmatch(value) or Decimal(value) <= 0:
        return _error(
            400,
            "invalid_request",
            f"amount.value must be a decimal string like 75.00, not {value!r}",
            "amount.value",
        )
    return None


@dataclass
class FakeYooKassa(FakeProvider):
    shop_id: str = "506751"
    secret_key: str = "test_Fh8hUAVVBGUGbjmlzba6TB0iyUbos_lueTHE-axOwM0"
    payments: dict[str, dict[str, Any]] = field(default_factory=dict)
    refunds: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Idempotence-Key -> ((path, body) of the first request, its answer)
    replies: dict[str, tuple[tuple[str, bytes], Answer]] = field(default_factory=dict)
    two_stage: set[str] = field(default_factory=set)  # payments created without capture: true
    save_requested: set[str] = field(default_factory=set)  # payments created with save_payment_method
    # payment_method.id -> the method as payments report it ({type, id, saved, title, card})
    methods: dict[str, dict[str, Any]] = field(default_factory=dict)
    charges: list[str] = field(default_factory=list)  # autopayments (with payment_method_id) made
    # what the next autopayments end as: ("succeeded",), ("pending",) or ("canceled", party, reason)
    next_charges: list[tuple[str, ...]] = field(default_factory=list)
    # the next POSTs to /payments are made, but their answer is lost: a status, or "stall"
    lost_answers: list[int | str] = field(default_factory=list)
    state_lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def base_url(self) -> str:
        return f"{super().base_url}/v3"  # like https://api.yookassa.ru/v3

    # --- the API ------------------------------------------------------------------------

    @route("POST", r"^/v3/payments$")
    def create_payment(self, request: FakeRequest) -> Answer:
        answer = self._once(request, self._new_payment)
        with self.state_lock:
            lost = self.lost_answers.pop(0) if self.lost_answers else None
        if lost == "stall":  # made, but answered after the client has given up
            time.sleep(self.stall_seconds)
        elif lost is not None:  # made, but YooKassa answers "result unknown"
            return _error(int(lost), "internal_server_error", "Internal server error")
        return answer

    @route("GET", r"^/v3/payments/(?P<payment_id>[^/]+)$")
    def get_payment(self, request: FakeRequest, payment_id: str) -> Answer:
        if refusal := self._unauthorized(request):
            return refusal
        with self.state_lock:
            payment = self.payments.get(payment_id)
            if payment is None:
                return _error(404, "not_found", "Payment doesn't exist or access denied")
            return 200, json.loads(json.dumps(payment))

    @route("POST", r"^/v3/refunds$")
    def create_refund(self, request: FakeRequest) -> Answer:
        return self._once(request, self._new_refund)

    # --- what the customer and YooKassa do, for tests -----------------------------------

    def complete(self, reference: str, card: dict[str, str] | None = None) -> None:
        """The customer paid (with `card`, DEFAULT_CARD by default): succeeded, or
        waiting_for_capture for a payment sent without capture: true. A payment created with
        save_payment_method: true now has a saved method, chargeable with payment_method_id."""
        with self.state_lock:
            payment = self.payments[reference]
            assert payment["status"] == "pending", f"cannot complete a {payment['status']} payment"
            payment["paid"] = True
            if reference in self.two_stage:
                payment["status"] = "waiting_for_capture"
            else:
                payment.update(status="succeeded", captured_at=_now(), refundable=True)
            if "payment_method" not in payment:  # an autopayment has the saved one already
                self._paid_with(payment, card or DEFAULT_CARD, saved=reference in self.save_requested)

    def decline(
        self, reference: str, reason: str = "insufficient_funds", party: str = "payment_network"
    ) -> None:
        """The payment is canceled: declined (the default) or e.g. expired_on_confirmation by yoo_money.
        Nothing is saved, save_payment_method or not."""
        with self.state_lock:
            payment = self.payments[reference]
            assert payment["status"] == "pending", f"cannot decline a {payment['status']} payment"
            payment.update(status="canceled", cancellation_details={"party": party, "reason": reason})
            if "payment_method" not in payment:
                self._paid_with(payment, DEFAULT_CARD, saved=False)

    def decline_next_charge(self, reason: str = "insufficient_funds", party: str = "payment_network") -> None:
        """The next autopayment is made and canceled: insufficient_funds, permission_revoked..."""
        with self.state_lock:
            self.next_charges.append(("canceled", party, reason))

    def hold_next_charge(self) -> None:
        """The next autopayment stays pending (e.g. the online cash register has not answered yet)."""
        with self.state_lock:
            self.next_charges.append(("pending",))

    def lose_next_answer(self, status: int | None = None) -> None:
        """The next POST /payments is made (a payment is created, a charge taken) but its answer is
        lost: `status` (a 5xx) is answered instead, or with None the answer comes after
        stall_seconds, past the client's read timeout. Unlike fail_next / stall_next, whose
        request never reaches the API, only the same Idempotence-Key keeps a retry from charging
        twice here."""
        with self.state_lock:
            self.lost_answers.append("stall" if status is None else status)

    def notification(self, object_id: str) -> tuple[dict[str, str], bytes]:
        """What YooKassa POSTs when the payment's or refund's status changes. It is not signed:
        YooKassa documents no signature, only the IP addresses it sends from."""
        with self.state_lock:
            obj = self.payments.get(object_id) or self.refunds[object_id]
            kind = "payment" if object_id in self.payments else "refund"
            body = {"type": "notification", "event": f"{kind}.{obj['status']}", "object": obj}
            return {"Content-Type": "application/json"}, json.dumps(body).encode()

    # --- checks ---------------------------------------------------------------------------

    def _unauthorized(self, request: FakeRequest) -> Answer | None:
        credentials = base64.b64encode(f"{self.shop_id}:{self.secret_key}".encode()).decode()
        given = request.headers.get("authorization", "").encode()
        if hmac.compare_digest(given, f"Basic {credentials}".encode()):
            return None
        return _error(401, "invalid_credentials", "Login and password are incorrect")

    def _once(self, request: FakeRequest, create: Callable[[dict[str, Any]], Answer]) -> Answer:
        """Auth, then the Idempotence-Key: the same key and body get the first answer, creating nothing."""
        if refusal := self._unauthorized(request):
            return refusal
        key = request.headers.get("idempotence-key", "")
        if not 0 < len(key) <= 64:
            return _error(400, "invalid_request", "Idempotence-Key is missing or too long", "Idempotence-Key")
        with self.state_lock:
            if key in self.replies:
                first, answer = self.replies[key]
                if first == (request.path, request.body):
                    return answer
                return _error(400, "invalid_request", "Idempotence key duplicated", "Idempotence-Key")
            answer = create(request.json)
            self.replies[key] = ((request.path, request.body), answer)
            return answer

    def _paid_with(self, payment: dict[str, Any], card: dict[str, str], *, saved: bool) -> None:
        """The method the customer paid with: its id is the payment's, reusable only if saved."""
        method = {
            "type": "bank_card",
            "id": payment["id"],
            "saved": saved,
            "title": f"Bank card *{card['last4']}",
            "card": dict(card),
        }
        payment["payment_method"] = method
        self.methods[payment["id"]] = json.loads(json.dumps(method))

    def _new_payment(self, data: dict[str, Any]) -> Answer:
        if refusal := _bad_amount(data.get("amount")):
            return refusal
        if "save_payment_method" in data and not isinstance(data["save_payment_method"], bool):
            return _error(
                400, "invalid_request", "save_payment_method must be a boolean", "save_payment_method"
            )
        if "payment_method_id" in data:
            return self._new_charge(data)
        confirmation = data.get("confirmation") or {}
        if confirmation.get("type") != "redirect" or not confirmation.get("return_url"):
            return _error(
                400, "invalid_request", "a redirect confirmation needs a return_url", "confirmation"
            )
        description = data.get("description", "")
        if len(description) > 128:
            return _error(400, "invalid_request", "description is longer than 128 characters", "description")
        payment_id = str(uuid.uuid4())
        if data.get("capture") is not True:  # YooKassa's default is two stages: hold, then capture
            self.two_stage.add(payment_id)
        if data.get("save_payment_method") is True:
            self.save_requested.add(payment_id)
        self.payments[payment_id] = payment = {
            "id": payment_id,
            "status": "pending",
            "paid": False,
            "amount": data["amount"],
            "confirmation": {
                "type": "redirect",
                "return_url": confirmation["return_url"],
                "confirmation_url": f"https://yoomoney.ru/checkout/payments/v2/contract?orderId={payment_id}",
            },
            "created_at": _now(),
            "description": description,
            "metadata": data.get("metadata", {}),
            "recipient": {"account_id": self.shop_id, "gateway_id": "2108234"},
            "refundable": False,
            "test": True,
        }
        return 200, json.loads(json.dumps(payment))

    def _new_charge(self, data: dict[str, Any]) -> Answer:
        """An autopayment: no confirmation, the saved method is charged at once."""
        token = data["payment_method_id"]
        method = self.methods.get(token) if isinstance(token, str) else None
        if method is None or method["saved"] is not True:
            return _error(
                400,
                "invalid_request",
                "Payment method is not saved or doesn't exist, it can't be used for payment",
                "payment_method_id",
            )
        description = data.get("description", "")
        if len(description) > 128:
            return _error(400, "invalid_request", "description is longer than 128 characters", "description")
        outcome = self.next_charges.pop(0) if self.next_charges else ("succeeded",)
        card, today = method.get("card") or {}, datetime.now(UTC)
        expires = (int(card.get("expiry_year", 9999)), int(card.get("expiry_month", 12)))
        if expires < (today.year, today.month):  # the issuer declines a card past its expiry
            outcome = ("canceled", "payment_network", "card_expired")
        payment_id = str(uuid.uuid4())
        payment = {
            "id": payment_id,
            "status": outcome[0],
            "paid": outcome[0] == "succeeded",
            "amount": data["amount"],
            "created_at": _now(),
            "description": description,
            "metadata": data.get("metadata", {}),
            "payment_method": json.loads(json.dumps(method)),
            "recipient": {"account_id": self.shop_id, "gateway_id": "2108234"},
            "refundable": outcome[0] == "succeeded",
            "test": True,
        }
        if outcome[0] == "succeeded":
            if data.get("capture") is not True:
                self.two_stage.add(payment_id)
                payment.update(status="waiting_for_capture", refundable=False)
            else:
                payment["captured_at"] = _now()
        elif outcome[0] == "canceled":
            payment["cancellation_details"] = {"party": outcome[1], "reason": outcome[2]}
        self.payments[payment_id] = payment
        self.charges.append(payment_id)
        return 200, json.loads(json.dumps(payment))

    def _new_refund(self, data: dict[str, Any]) -> Answer:
        payment = self.payments.get(data.get("payment_id", ""))
        if payment is None:
            return _error(404, "not_found", "Payment doesn't exist or access denied", "payment_id")
        if refusal := _bad_amount(data.get("amount")):
            return refusal
        amount = data["amount"]
        if payment["status"] != "succeeded" or amount["currency"] != payment["amount"]["currency"]:
            return _error(400, "invalid_request", "Payment is not refundable in this status or currency")
        refunded = Decimal(payment.get("refunded_amount", {}).get("value", "0")) + Decimal(amount["value"])
        if refunded > Decimal(payment["amount"]["value"]):
            return _error(
                400, "invalid_request", "Refund amount exceeds the amount left to refund", "amount.value"
            )
        refund_id = str(uuid.uuid4())
        self.refunds[refund_id] = refund = {
            "id": refund_id,
            "payment_id": payment["id"],
            "status": "succeeded",
            "amount": amount,
            "created_at": _now(),
            "description": data.get("description", ""),
        }
        payment["refunded_amount"] = {"value": f"{refunded:.2f}", "currency": amount["currency"]}
        payment["refundable"] = refunded < Decimal(payment["amount"]["value"])
        return 200, json.loads(json.dumps(refund))
