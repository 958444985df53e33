"""A fake Tinkoff (T-Bank) acquiring API v2: Init, GetState and Cancel under /v2.

It checks what Tinkoff checks: the TerminalKey, the request Token (computed here on its own from
the documented rule, not with the gateway's code), integer kopeck amounts, a unique OrderId per
Init (a second Init with the same OrderId is refused and creates nothing) and refunds no larger
than what is left of the payment. Like Tinkoff it answers refusals with HTTP 200 and
{"Success": false, "ErrorCode": ..., "Message": ...}. The error codes are the fake's own where
Tinkoff's exact code for a case was not found in its public docs.

    with FakeTinkoff() as fake:
        gateway = TinkoffGateway(fake.config())
        session = gateway.create_checkout(...)
        fake.complete(session.reference)
        headers, body = fake.signed_webhook(session.reference)
"""

import hashlib
import itertools
import json
from dataclasses import dataclass, field
from typing import Any

from tests.payments.fakes.base import FakeProvider, FakeRequest, route

BAD_TERMINAL = ("202", "Терминал не найден")
BAD_TOKEN = ("204", "Неверный токен. Проверьте пару TerminalKey/SecretKey.")
BAD_AMOUNT = ("205", "Неверная сумма")
DUPLICATE_ORDER = ("8", "Такой OrderId уже использован")
NOT_FOUND = ("7", "Платеж не найден")
WRONG_STATE = ("9", "Неверный статус транзакции")
TOO_MUCH = ("1027", "Сумма отмены больше суммы платежа")
REFUNDABLE = frozenset({"CONFIRMED", "PARTIAL_REFUNDED"})
CANCELLABLE = frozenset({"NEW", "FORM_SHOWED"})


def documented_token(fields: dict[str, Any], password: str) -> str:
    """Root scalars (booleans as "true"/"false") + Password, sorted by key, values only, SHA-256 hex."""
    values = {k: v for k, v in fields.items() if k != "Token" and not isinstance(v, dict | list)}
    values["Password"] = password
    parts = [("true" if v else "false") if isinstance(v, bool) else str(v) for _, v in sorted(values.items())]
    return hashlib.sha256("".join(parts).encode()).hexdigest()


@dataclass
class FakePayment:
    payment_id: str
    order_id: str
    amount: int  # kopecks: what is charged now (less after refunds)
    status: str = "NEW"
    error_code: str = "0"
    reason: str = ""
    refunds: list[int] = field(default_factory=list)


@dataclass
class FakeTinkoff(FakeProvider):
    terminal_key: str = "TinkoffBankTest"
    password: str = "test-terminal-password"
    payments: dict[str, FakePayment] = field(default_factory=dict)

    def __post_init__(self):
        super().__post_init__()
        self._ids = itertools.count(7_000_000_001)

    def config(self, **extra: Any) -> dict[str, Any]:
        return {
            "terminal_key": self.terminal_key,
            "password": self.password,
            "base_url": f"{self.base_url}/v2",
            **extra,
        }

    # --- the API ----------------------------------------------------------------------
    @route("POST", r"^/v2/Init$")
    def init(self, request: FakeRequest):
        body, refusal = self._authenticate(request)
        if refusal:
            return refusal
        amount, order_id = body.get("Amount"), body.get("OrderId")
        if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
            return self._refuse(BAD_AMOUNT, "Amount must be a positive integer number of kopecks")
        if not isinstance(order_id, str) or not order_id:
            return self._refuse(("3", "Неверные параметры"), "OrderId is required")
        with self._lock:
            if any(p.order_id == order_id for p in self.payments.values()):
                return self._refuse(DUPLICATE_ORDER, f"OrderId {order_id} was used already")
            payment = FakePayment(payment_id=str(next(self._ids)), order_id=order_id, amount=amount)
            self.payments[payment.payment_id] = payment
        return 200, {
            **self._answer(payment),
            "PaymentURL": f"{self.base_url}/new/{payment.payment_id}",
        }

    @route("POST", r"^/v2/GetState$")
    def get_state(self, request: FakeRequest):
        body, refusal = self._authenticate(request)
        if refusal:
            return refusal
        payment = self.payments.get(str(body.get("PaymentId")))
        if payment is None:
            return self._refuse(NOT_FOUND)
        answer = self._answer(payment)
        if payment.status == "REJECTED":
            answer |= {"Success": False, "ErrorCode": payment.error_code, "Message": payment.reason}
        return 200, answer

    @route("POST", r"^/v2/Cancel$")
    def cancel(self, request: FakeRequest):
        body, refusal = self._authenticate(request)
        if refusal:
            return refusal
        payment = self.payments.get(str(body.get("PaymentId")))
        if payment is None:
            return self._refuse(NOT_FOUND)
        amount = body.get("Amount", payment.amount)
        if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
            return self._refuse(BAD_AMOUNT, "Amount must be a positive integer number of kopecks")
        with self._lock:
            original = payment.amount
            if payment.status in CANCELLABLE:  # Amount is ignored: the whole payment is cancelled
                payment.status, payment.amount = "CANCELED", 0
            elif payment.status not in REFUNDABLE:
                return self._refuse(WRONG_STATE, f"payment is {payment.status}")
            elif amount > payment.amount:
                return self._refuse(TOO_MUCH, f"{amount} > {payment.amount} left to refund")
            else:
                payment.amount -= amount
                payment.refunds.append(amount)
                payment.status = "REFUNDED" if payment.amount == 0 else "PARTIAL_REFUNDED"
        answer = self._answer(payment) | {"OriginalAmount": original, "NewAmount": payment.amount}
        answer.pop("Amount")
        if "ExternalRequestId" in body:
            answer["ExternalRequestId"] = body["ExternalRequestId"]
        return 200, answer

    # --- helpers for tests --------------------------------------------------------------
    def complete(self, reference: str) -> None:
        """The customer paid (one-stage payment): NEW -> CONFIRMED."""
        self.payments[reference].status = "CONFIRMED"

    def decline(self, reference: str, reason: str, code: str = "1051") -> None:
        payment = self.payments[reference]
        payment.status, payment.error_code, payment.reason = "REJECTED", code, reason

    def signed_webhook(self, reference: str, **overrides: Any) -> tuple[dict[str, str], bytes]:
        """The notification Tinkoff POSTs for the payment's current state, signed with the password."""
        payment = self.payments[reference]
        notice: dict[str, Any] = {
            "TerminalKey": self.terminal_key,
            "OrderId": payment.order_id,
            "Success": payment.status != "REJECTED",
            "Status": payment.status,
            "PaymentId": int(payment.payment_id),
            "ErrorCode": payment.error_code,
            "Amount": payment.amount,
            "CardId": 322264,
            "Pan": "430000******0777",
            "ExpDate": "1230",
            **overrides,
        }
        notice["Token"] = documented_token(notice, self.password)
        return {"Content-Type": "application/json"}, json.dumps(notice, ensure_ascii=False).encode()

    # --- internals ----------------------------------------------------------------------
    def _authenticate(self, request: FakeRequest) -> tuple[dict[str, Any], Any]:
        try:
            body = request.json
        except ValueError:
            return {}, self._refuse(("3", "Неверные параметры"), "body is not JSON")
        if not isinstance(body, dict) or body.get("TerminalKey") != self.terminal_key:
            return {}, self._refuse(BAD_TERMINAL)
        if body.get("Token") != documented_token(body, self.password):
            return body, self._refuse(BAD_TOKEN)
        return body, None

    def _answer(self, payment: FakePayment) -> dict[str, Any]:
        return {
            "Success": True,
            "ErrorCode": "0",
            "Message": "OK",
            "TerminalKey": self.terminal_key,
            "Status": payment.status,
            "PaymentId": payment.payment_id,
            "OrderId": payment.order_id,
            "Amount": payment.amount,
        }

    @staticmethod
    def _refuse(error: tuple[str, str], details: str = "") -> tuple[int, dict[str, Any]]:
        code, message = error
        return 200, {"Success": False, "ErrorCode": code, "Message": message, "Details": details}
