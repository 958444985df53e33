"""A fake Tinkoff (T-Bank) acquiring API v2 under /v2: Init, GetState and Cancel, and the
autopayment calls CheckOrder, Charge, GetCardList and RemoveCard.

It checks what Tinkoff checks: the TerminalKey, the request Token (computed here on its own from
the documented rule, not with the gateway's code), integer kopeck amounts, a unique OrderId per
Init (a second Init with the same OrderId is refused and creates nothing) and refunds no larger
than what is left of the payment. Like Tinkoff it answers refusals with HTTP 200 and
{"Success": false, "ErrorCode": ..., "Message": ...}. Codes from Tinkoff's published error list:
a repeated OrderId 20, no such payment 255, a wrong status 8, Charge switched off 10, a CardId
not of the customer 107, an unknown CustomerKey 503, an OperationInitiatorType that does not fit
1126; the list has none for an unknown RebillId, which gets its generic 104 ("Ошибка выполения
рекуррента", sic). The others are the fake's own.

Saved cards, as documented for Charge: an Init with Recurrent="Y" needs a CustomerKey (at most
36 characters; the customer is registered by it), and DATA.OperationInitiatorType must agree with
Recurrent and with the RebillId of a later Charge (error 1126). Once such a payment is paid
(`complete`), the customer has an active card (CardId) and the payment a RebillId, both in its
notification. Charge takes a NEW payment and a RebillId of this terminal; it takes no CustomerKey,
so it cannot tell whose card it charges, and whether Tinkoff still charges the RebillId of a
removed card is not documented: the fake charges it. GetCardList lists a customer's cards,
removed ones too (Status "D"); RemoveCard removes one card of that customer (CardId of another
customer, or one removed already: error 107). Charge can be switched off (error 10, as on a
terminal where T-Bank has not enabled it). Each Charge that reaches a payment is kept in `charges`.

    with FakeTinkoff() as fake:
        gateway = TinkoffGateway(fake.config())
        session = gateway.create_checkout(...)
        fake.complete(session.reference)
        headers, body = fake.signed_webhook(session.reference)
        fake.decline_next_charge("Недостаточно средств на карте.")
        fake.fail_next_call("Charge", "stall", handled=True)  # charged, but the answer is lost
"""

import hashlib
import itertools
import json
import time
from dataclasses import dataclass, field
from typing import Any

from tests.payments.fakes.base import FakeProvider, FakeRequest, route

BAD_TERMINAL = ("202", "Терминал не найден")
BAD_TOKEN = ("204", "Неверный токен. Проверьте пару TerminalKey/SecretKey.")
BAD_AMOUNT = ("205", "Неверная сумма")
BAD_PARAMETERS = ("3", "Неверные параметры")
DUPLICATE_ORDER = ("20", "Ошибка повторного идентификатора заказа")
ORDER_ID_SIZE = ("212", "Размер поля OrderId должен быть от 1 до 36")
CUSTOMER_KEY_SIZE = ("216", "Размер поля CustomerKey должен быть от 1 до 36")
NOT_FOUND = ("255", "Платеж не найден")
ORDER_NOT_FOUND = ("335", "OrderId {order} не найден для TerminalKey {terminal}")
WRONG_STATE = ("8", "Неверный статус транзакции")
TOO_MUCH = ("1027", "Сумма отмены больше суммы платежа")
CHARGE_OFF = ("10", "Метод Charge заблокирован для данного терминала")
REBILL_FAILED = ("104", "Ошибка выполения рекуррента")
BAD_CARD = ("107", "Неверно введен CardId. Проверьте, что такая карта была ранее привязана")
NO_CUSTOMER = ("503", "CustomerKey не найден")
INITIATOR_MISMATCH = (
    "1126",
    "Несопоставимые значения rebillId или Recurrent с переданным значением OperationInitiatorType",  # noqa: RUF001
)
REFUNDABLE = frozenset({"CONFIRMED", "PARTIAL_REFUNDED"})
CANCELLABLE = frozenset({"NEW", "FORM_SHOWED"})
# OperationInitiatorType -> (Recurrent="Y" in Init, a RebillId in Charge), from the documented table
INITIATORS = {
    "0": (False, False),
    "1": (True, False),
    "2": (False, True),
    "R": (False, True),
    "I": (False, True),
}
KEY_LIMIT = 36  # OrderId and CustomerKey are at most 36 characters


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
    recurrent: bool = False  # Init had Recurrent="Y": a parent payment, its card is kept
    customer_key: str = ""
    initiator: str = ""  # DATA.OperationInitiatorType of its Init
    card_id: str = ""  # the card it was paid with (once paid)
    rebill_id: str = ""  # a parent payment's RebillId once paid; a charged one's RebillId


@dataclass
class FakeCard:
    card_id: str
    customer_key: str
    rebill_id: str
    pan: str  # masked, as Tinkoff shows it
    exp_date: str  # MMYY
    status: str = "A"  # A active, D removed


@dataclass
class FakeCharge:
    """One Charge that reached a payment (a decline too): what a double charge would show twice."""

    payment_id: str
    order_id: str
    rebill_id: str
    amount: int
    status: str  # CONFIRMED, AUTHORIZED or REJECTED


@dataclass
class FakeTinkoff(FakeProvider):
    terminal_key: str = "TinkoffBankTest"
    password: str = "test-terminal-password"
    payments: dict[str, FakePayment] = field(default_factory=dict)
    cards: dict[str, FakeCard] = field(default_factory=dict)  # by CardId
    customers: set[str] = field(default_factory=set)  # CustomerKeys registered by Init
    charges: list[FakeCharge] = field(default_factory=list)
    charge_enabled: bool = True  # False: Charge is refused with error 10
    two_stage: bool = False  # True: Charge leaves the payment AUTHORIZED

    def __post_init__(self):
        super().__post_init__()
        self._ids = itertools.count(7_000_000_001)
        self._card_ids = itertools.count(322_264)
        self._rebill_ids = itertools.count(3_207_469_334)
        self._declines: list[tuple[str, str]] = []  # (code, reason) for the next Charges
        self._call_failures: dict[str, list[tuple[int | str, bool]]] = {}

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
            return self._refuse(BAD_PARAMETERS, "OrderId is required")
        if len(order_id) > KEY_LIMIT:
            return self._refuse(ORDER_ID_SIZE)
        recurrent, customer_key = body.get("Recurrent"), body.get("CustomerKey", "")
        if recurrent not in (None, "Y", "N"):
            return self._refuse(BAD_PARAMETERS, "Recurrent is Y or N")
        if not isinstance(customer_key, str) or len(customer_key) > KEY_LIMIT:
            return self._refuse(CUSTOMER_KEY_SIZE)
        if recurrent == "Y" and not customer_key:
            return self._refuse(BAD_PARAMETERS, "CustomerKey is required with Recurrent")
        data = body.get("DATA", {})
        if not isinstance(data, dict):
            return self._refuse(BAD_PARAMETERS, "DATA is an object")
        initiator = data.get("OperationInitiatorType", "")
        if initiator and (initiator not in INITIATORS or INITIATORS[initiator][0] != (recurrent == "Y")):
            details = f"OperationInitiatorType {initiator!r} with Recurrent {recurrent!r}"
            return self._refuse(INITIATOR_MISMATCH, details)
        with self._lock:
            if any(p.order_id == order_id for p in self.payments.values()):
                return self._refuse(DUPLICATE_ORDER, f"OrderId {order_id} was used already")
            payment = FakePayment(
                payment_id=str(next(self._ids)),
                order_id=order_id,
                amount=amount,
                recurrent=recurrent == "Y",
                customer_key=customer_key,
                initiator=initiator,
            )
            self.payments[payment.payment_id] = payment
            if customer_key:  # Init registers the customer (AddCustomer is not needed)
                self.customers.add(customer_key)
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

    @route("POST", r"^/v2/CheckOrder$")
    def check_order(self, request: FakeRequest):
        body, refusal = self._authenticate(request)
        if refusal:
            return refusal
        order_id = body.get("OrderId")
        if not isinstance(order_id, str) or not order_id:
            return self._refuse(BAD_PARAMETERS, "OrderId is required")
        payments = [p for p in self.payments.values() if p.order_id == order_id]
        if not payments:
            code, message = ORDER_NOT_FOUND
            return self._refuse((code, message.format(order=order_id, terminal=self.terminal_key)))
        return 200, {
            "Success": True,
            "ErrorCode": "0",
            "Message": "OK",
            "TerminalKey": self.terminal_key,
            "OrderId": order_id,
            "Payments": [  # as documented: Success a string, ErrorCode a number
                {
                    "PaymentId": p.payment_id,
                    "Amount": p.amount,
                    "Status": p.status,
                    "Success": "false" if p.status == "REJECTED" else "true",
                    "ErrorCode": int(p.error_code),
                    "Message": p.reason or "OK",
                }
                for p in payments
            ],
        }

    @route("POST", r"^/v2/Charge$")
    def charge(self, request: FakeRequest):
        body, refusal = self._authenticate(request)
        if refusal:
            return refusal
        if not self.charge_enabled:
            return self._refuse(CHARGE_OFF)
        payment = self.payments.get(str(body.get("PaymentId")))
        if payment is None:
            return self._refuse(NOT_FOUND)
        rebill_id = body.get("RebillId")
        if not isinstance(rebill_id, str | int) or isinstance(rebill_id, bool) or not str(rebill_id):
            return self._refuse(BAD_PARAMETERS, "RebillId is required")
        card = next((c for c in self.cards.values() if c.rebill_id == str(rebill_id)), None)
        with self._lock:
            if payment.status != "NEW":
                return self._refuse(WRONG_STATE, f"payment is {payment.status}, Charge takes a NEW one")
            if payment.initiator and not INITIATORS[payment.initiator][1]:
                details = f"Init had OperationInitiatorType {payment.initiator}"
                return self._refuse(INITIATOR_MISMATCH, details)
            if card is None:  # Tinkoff's list has no code of its own for an unknown RebillId
                return self._refuse(REBILL_FAILED, f"RebillId {rebill_id} is not known to this terminal")
            payment.rebill_id, payment.card_id = card.rebill_id, card.card_id
            if self._declines:
                payment.error_code, payment.reason = self._declines.pop(0)
                payment.status = "REJECTED"
            else:
                payment.status = "AUTHORIZED" if self.two_stage else "CONFIRMED"
            self.charges.append(
                FakeCharge(
                    payment.payment_id, payment.order_id, card.rebill_id, payment.amount, payment.status
                )
            )
        answer = self._answer(payment)
        if payment.status == "REJECTED":
            answer |= {"Success": False, "ErrorCode": payment.error_code, "Message": payment.reason}
        return 200, answer

    @route("POST", r"^/v2/GetCardList$")
    def get_card_list(self, request: FakeRequest):
        body, refusal = self._authenticate(request)
        if refusal:
            return refusal
        if body.get("CustomerKey") not in self.customers:
            return self._refuse(NO_CUSTOMER)
        return 200, [  # an array, not an object: removed cards too
            {
                "CardId": c.card_id,
                "Pan": c.pan,
                "Status": c.status,
                "RebillId": c.rebill_id,
                "CardType": 0,
                "ExpDate": c.exp_date,
            }
            for c in self.cards.values()
            if c.customer_key == body["CustomerKey"]
        ]

    @route("POST", r"^/v2/RemoveCard$")
    def remove_card(self, request: FakeRequest):
        body, refusal = self._authenticate(request)
        if refusal:
            return refusal
        customer_key = body.get("CustomerKey")
        if customer_key not in self.customers:
            return self._refuse(NO_CUSTOMER)
        card = self.cards.get(str(body.get("CardId")))
        with self._lock:
            if card is None or card.customer_key != customer_key or card.status != "A":
                return self._refuse(BAD_CARD, f"no active card {body.get('CardId')} of {customer_key}")
            card.status = "D"
        return 200, {
            "Success": True,
            "ErrorCode": "0",
            "TerminalKey": self.terminal_key,
            "Status": "D",
            "CustomerKey": customer_key,
            "CardId": card.card_id,
            "CardType": 0,
        }

    # --- helpers for tests --------------------------------------------------------------
    def complete(self, reference: str, *, pan: str = "430000******0777", exp_date: str = "1230") -> None:
        """The customer paid (one-stage payment): NEW -> CONFIRMED. A parent payment (Recurrent)
        leaves the customer an active card with a RebillId."""
        payment = self.payments[reference]
        payment.status = "CONFIRMED"
        if payment.recurrent:
            card = FakeCard(
                card_id=str(next(self._card_ids)),
                customer_key=payment.customer_key,
                rebill_id=str(next(self._rebill_ids)),
                pan=pan,
                exp_date=exp_date,
            )
            self.cards[card.card_id] = card
            payment.card_id, payment.rebill_id = card.card_id, card.rebill_id

    def decline_next_charge(self, reason: str = "Недостаточно средств на карте.", code: str = "1051") -> None:
        """The next Charge is declined by the card's bank: REJECTED with this ErrorCode and Message."""
        with self._lock:
            self._declines.append((code, reason))

    def fail_next_call(self, method: str, failure: int | str, *, handled: bool = False) -> None:
        """The next call of `method` (e.g. "Charge") gets HTTP `failure` or, with "stall", hangs past
        the client's read timeout. handled=True: the fake does the call first, and only the answer
        is lost (the charge happened); otherwise the call is never handled."""
        with self._lock:
            self._call_failures.setdefault(method, []).append((failure, handled))

    def card(self, rebill_id: str) -> FakeCard:
        return next(c for c in self.cards.values() if c.rebill_id == rebill_id)

    def decline(self, reference: str, reason: str, code: str = "1051") -> None:
        payment = self.payments[reference]
        payment.status, payment.error_code, payment.reason = "REJECTED", code, reason

    def signed_webhook(self, reference: str, **overrides: Any) -> tuple[dict[str, str], bytes]:
        """The notification Tinkoff POSTs for the payment's current state, signed with the password."""
        payment = self.payments[reference]
        card = self.cards.get(payment.card_id)
        notice: dict[str, Any] = {
            "TerminalKey": self.terminal_key,
            "OrderId": payment.order_id,
            "Success": payment.status != "REJECTED",
            "Status": payment.status,
            "PaymentId": int(payment.payment_id),
            "ErrorCode": payment.error_code,
            "Amount": payment.amount,
            "CardId": int(card.card_id) if card else 322264,  # numbers in notifications
            "Pan": card.pan if card else "430000******0777",
            "ExpDate": card.exp_date if card else "1230",
        }
        if payment.customer_key:  # named in the notification when Init had it
            notice["CustomerKey"] = payment.customer_key
        if payment.recurrent and payment.rebill_id and payment.status in ("AUTHORIZED", "CONFIRMED"):
            notice["RebillId"] = int(payment.rebill_id)
        notice |= overrides
        notice["Token"] = documented_token(notice, self.password)
        return {"Content-Type": "application/json"}, json.dumps(notice, ensure_ascii=False).encode()

    # --- internals ----------------------------------------------------------------------
    def _dispatch(self, request: FakeRequest) -> tuple[int, Any, dict[str, str]]:
        method = request.path.rsplit("/", 1)[-1]
        with self._lock:
            planned = self._call_failures.get(method)
            failure, handled = planned.pop(0) if planned else (None, False)
        if failure is None:
            return super()._dispatch(request)
        if handled:
            super()._dispatch(request)  # done at the provider; the answer never arrives
        else:
            self.requests.append(request)
        if failure == "stall":
            time.sleep(self.stall_seconds)
            return 504, {"message": "stalled"}, {}
        return int(failure), {"message": "injected failure"}, {}

    def _authenticate(self, request: FakeRequest) -> tuple[dict[str, Any], Any]:
        try:
            body = request.json
        except ValueError:
            return {}, self._refuse(BAD_PARAMETERS, "body is not JSON")
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
