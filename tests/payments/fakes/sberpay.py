"""A fake Sberbank acquiring REST API: register.do, getOrderStatusExtended.do, refund.do.

It checks what Sber checks: `userName`/`password` in the form body (errorCode 5 otherwise),
one order per `orderNumber` (errorCode 1 on a replay, nothing new created), amounts as
integers in minor units, a known numeric currency, refunds only of a deposited order and
never beyond what is left of the deposited amount. Answers are HTTP 200 with `errorCode`,
as Sber's are (texts in English, as with `language=en`). `signed_webhook` builds a callback
with the documented HMAC-SHA256 checksum.
"""

import hashlib
import hmac
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from tests.payments.fakes.base import FakeProvider, FakeRequest, route

CURRENCIES = {"643", "840", "978", "826", "156", "933", "398"}


@dataclass
class Order:
    order_id: str
    order_number: str
    amount: int
    currency: str
    status: int = 0  # 0 registered, 2 deposited, 4 refunded, 6 declined
    deposited: int = 0
    refunded: int = 0
    action_code_description: str = ""


@dataclass
class FakeSberPay(FakeProvider):
    username: str = "shop-api"
    password: str = "shop-password"
    callback_token: str = "callback-secret-key"
    orders: dict[str, Order] = field(default_factory=dict)  # by orderId
    refunds: list[tuple[str, int]] = field(default_factory=list)  # (orderId, amount)

    def __post_init__(self):
        super().__post_init__()
        self._state_lock = threading.Lock()

    # --- the API ------------------------------------------------------------------------

    @route("POST", r"^/register\.do$")
    def register(self, request: FakeRequest):
        form = request.form
        if denied := self._authenticate(form):
            return denied
        for name in ("orderNumber", "amount", "returnUrl"):
            if not form.get(name):
                return _error("4", f"[{name}] is empty")
        if not form["amount"].isdigit() or int(form["amount"]) <= 0:
            return _error("4", "Invalid amount")
        currency = form.get("currency", "643")
        if currency not in CURRENCIES:
            return _error("3", "Unknown currency")
        with self._state_lock:
            if any(order.order_number == form["orderNumber"] for order in self.orders.values()):
                return _error("1", "Order with this number was already processed")
            order = Order(str(uuid.uuid4()), form["orderNumber"], int(form["amount"]), currency)
            self.orders[order.order_id] = order
        form_url = f"{self.base_url}/payment/merchants/test/payment_ru.html?mdOrder={order.order_id}"
        return 200, {"orderId": order.order_id, "formUrl": form_url}

    @route("POST", r"^/getOrderStatusExtended\.do$")
    def order_status(self, request: FakeRequest):
        form = request.form
        if denied := self._authenticate(form):
            return denied
        order = self.orders.get(form.get("orderId", ""))
        if order is None:
            return _error("6", "Order not found")
        return 200, {
            "errorCode": "0",
            "errorMessage": "Success",
            "orderNumber": order.order_number,
            "orderStatus": order.status,
            "actionCode": -2007 if order.status == 6 else 0,
            "actionCodeDescription": order.action_code_description,
            "amount": order.amount,
            "currency": order.currency,
            "attributes": [{"name": "mdOrder", "value": order.order_id}],
            "paymentAmountInfo": {
                "approvedAmount": order.amount if order.status in (2, 4) else 0,
                "depositedAmount": order.deposited,
                "refundedAmount": order.refunded,
            },
        }

    @route("POST", r"^/refund\.do$")
    def refund(self, request: FakeRequest):
        form = request.form
        if denied := self._authenticate(form):
            return denied
        if not form.get("amount", "").isdigit():
            return _error("5", "Invalid amount")
        amount = int(form["amount"])
        with self._state_lock:
            order = self.orders.get(form.get("orderId", ""))
            if order is None:
                return _error("6", "Unregistered orderId")
            if order.status not in (2, 4):
                return _error("7", "Payment must be in a correct state")
            if amount <= 0 or order.refunded + amount > order.deposited:
                return _error("7", "Refund amount exceeds the deposited amount")
            order.refunded += amount
            order.status = 4
            self.refunds.append((order.order_id, amount))
        return 200, {"errorCode": "0", "errorMessage": "Success"}

    # --- helpers for tests ----------------------------------------------------------------

    def complete(self, reference: str) -> None:
        """The customer paid: the order is deposited."""
        order = self.orders[reference]
        order.status, order.deposited = 2, order.amount

    def decline(self, reference: str, reason: str) -> None:
        order = self.orders[reference]
        order.status, order.action_code_description = 6, reason

    def signed_webhook(
        self,
        reference: str,
        operation: str = "deposited",
        status: str = "1",
        *,
        key: str | None = None,
        extra: dict[str, str] | None = None,
    ) -> tuple[dict[str, str], bytes]:
        """A POST callback as Sber sends it, with the documented checksum computed with `key`."""
        params: dict[str, Any] = {
            "mdOrder": reference,
            "orderNumber": self.orders[reference].order_number,
            "operation": operation,
            "status": status,
            **(extra or {}),
        }
        signed = "".join(f"{name};{params[name]};" for name in sorted(params))
        secret = (self.callback_token if key is None else key).encode()
        params["checksum"] = hmac.new(secret, signed.encode(), hashlib.sha256).hexdigest().upper()
        return {"Content-Type": "application/x-www-form-urlencoded"}, urlencode(params).encode()

    def _authenticate(self, form: dict[str, str]):
        if form.get("userName") != self.username or form.get("password") != self.password:
            return _error("5", "Access denied")
        return None


def _error(code: str, message: str) -> tuple[int, dict[str, str]]:
    return 200, {"errorCode": code, "errorMessage": message}
