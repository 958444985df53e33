"""A fake YooKassa API v3: payments, refunds and (unsigned) notifications, as the real one checks them.

It checks HTTP Basic auth (shop id : secret key), requires an Idempotence-Key on every POST
(a repeat with the same key and body gets the first answer and creates nothing; the same key
with another body is refused), takes amounts only as YooKassa does ({"value": "75.00",
"currency": "RUB"}: a string with two decimals, never a number or minor units), and refuses a
refund beyond what is left of a succeeded payment.

    with FakeYooKassa() as fake:
        gateway = YooKassaGateway({"shop_id": fake.shop_id, "secret_key": fake.secret_key,
                                   "base_url": fake.base_url})
        fake.complete(reference)               # the customer paid
        headers, body = fake.notification(reference)
"""

import base64
import hmac
import json
import re
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from tests.payments.fakes.base import FakeProvider, FakeRequest, route

CURRENCIES = frozenset({"RUB", "USD", "EUR"})
AMOUNT_VALUE = re.compile(r"\d+\.\d{2}")  # YooKassa: always a fraction, "." separator, the currency's digits
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
    state_lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def base_url(self) -> str:
        return f"{super().base_url}/v3"  # like https://api.yookassa.ru/v3

    # --- the API ------------------------------------------------------------------------

    @route("POST", r"^/v3/payments$")
    def create_payment(self, request: FakeRequest) -> Answer:
        return self._once(request, self._new_payment)

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

    def complete(self, reference: str) -> None:
        """The customer paid: succeeded, or waiting_for_capture for a payment sent without capture: true."""
        with self.state_lock:
            payment = self.payments[reference]
            assert payment["status"] == "pending", f"cannot complete a {payment['status']} payment"
            payment["paid"] = True
            if reference in self.two_stage:
                payment["status"] = "waiting_for_capture"
            else:
                payment.update(status="succeeded", captured_at=_now(), refundable=True)

    def decline(
        self, reference: str, reason: str = "insufficient_funds", party: str = "payment_network"
    ) -> None:
        """The payment is canceled: declined (the default) or e.g. expired_on_confirmation by yoo_money."""
        with self.state_lock:
            payment = self.payments[reference]
            assert payment["status"] == "pending", f"cannot decline a {payment['status']} payment"
            payment.update(status="canceled", cancellation_details={"party": party, "reason": reason})

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

    def _new_payment(self, data: dict[str, Any]) -> Answer:
        if refusal := _bad_amount(data.get("amount")):
            return refusal
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
