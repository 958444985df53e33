"""Tinkoff (T-Bank) internet acquiring, API v2: hosted payment form, state, refunds, notifications,
and renewals charged to a saved card (autopayments, "рекуррентные платежи").

Documented endpoints used (https://developer.tbank.ru/eacq/api), all JSON POSTs:
  - Init        https://securepay.tinkoff.ru/v2/Init        -> PaymentId, PaymentURL
  - GetState    https://securepay.tinkoff.ru/v2/GetState    -> Status, Amount
  - Cancel      https://securepay.tinkoff.ru/v2/Cancel      -> Status, OriginalAmount, NewAmount
  - CheckOrder  https://securepay.tinkoff.ru/v2/CheckOrder  -> Payments [{PaymentId, Amount, Status}]
  - Charge      https://securepay.tinkoff.ru/v2/Charge      -> Status CONFIRMED / AUTHORIZED / REJECTED
  - GetCardList https://securepay.tinkoff.ru/v2/GetCardList -> [{CardId, Status A/D, RebillId, ...}]
  - RemoveCard  https://securepay.tinkoff.ru/v2/RemoveCard  -> Status D
The test environment is https://rest-api-test.tinkoff.ru/v2 (PAYMENT_ENV=test).

Signing (https://developer.tbank.ru/eacq/intro/developer/token): every request carries `Token`,
the SHA-256 hex of the VALUES of the root-level scalar fields plus {"Password": password},
sorted by key and concatenated; nested objects (DATA, Receipt) and Token itself take no part.
Notifications (https://developer.tbank.ru/eacq/intro/developer/notification) are signed the
same way, booleans rendered "true"/"false"; the merchant must answer the plain text "OK".
Only root scalars are signed, so nothing is read from a notification's nested objects.

Idempotency: a checkout's OrderId is our payment id, and Tinkoff refuses a second Init with an
OrderId it already has (error 20), so a retried Init cannot create a second payment (hence
retry_safe). Cancel has no documented de-duplication: it is sent once, with our key as
ExternalRequestId for the record.
Amounts are kopecks; GetState and notifications carry no currency, so only RUB is taken.

Saved cards (https://developer.tbank.ru/eacq/api/charge). A checkout with save_method is a
"parent" payment: Init with Recurrent="Y", CustomerKey and DATA.OperationInitiatorType="1"
(customer-initiated, card kept). Once it is paid, the notification on AUTHORIZED or CONFIRMED
carries RebillId, CardId, the masked Pan and ExpDate. GetState reports none of them, and
GetCardList needs the CustomerKey, which verify() is not given, so parse_webhook fills
WebhookNotice.saved_method (token = RebillId; CardId kept in raw for RemoveCard) and verify()
leaves PaymentState.saved_method empty. A renewal is Init without Recurrent, with
DATA.OperationInitiatorType="R" (merchant-initiated, recurring), then Charge {PaymentId,
RebillId} without sending the customer to PaymentURL. Charge is off on a terminal until T-Bank
turns it on; on a two-stage terminal it leaves the payment AUTHORIZED (PENDING here), and
nothing here sends Confirm. Charge takes no CustomerKey: before charging, GetCardList checks
that the card is an active ("A") card of the method's CustomerKey (where the method names one),
so a token of another customer, or a card the customer removed, is refused without a charge.
Forgetting a card is RemoveCard {CustomerKey, CardId}.

A renewal charges once however often it is retried. Its OrderId is the idempotency key (a
digest of it where the key is longer than OrderId's 36 characters), and every try first asks
CheckOrder for the order's payments (CheckOrder's own docs call OrderId "not a unique
identifier" and list several payments per order, so this does not count on error 20). A payment
of the order that has left NEW (charged, declined, expired) is answered from GetState and never
charged again; one still NEW (Init done, Charge never arrived) is charged; with none, Init.
Charge is sent once per try (not retry_safe): a timeout or 5xx raises a transient error, and
the caller's retry with the same key finds that charge through CheckOrder. A Charge refused
because its payment has left NEW (an earlier try landed meanwhile) is answered from GetState.
"""

import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from core.http import DEFAULT_TIMEOUT
from core.money import from_minor, to_minor
from payments.gateways.base import (
    CheckoutRequest,
    CheckoutSession,
    GatewayError,
    PaymentGateway,
    PaymentState,
    RefundRequest,
    RefundResult,
    SavedChargeRequest,
    SavedMethod,
    Status,
    WebhookAuthError,
    WebhookNotice,
    WebhookReply,
)
from payments.gateways.http import GatewayHTTP

PRODUCTION_URL = "https://securepay.tinkoff.ru/v2"
TEST_URL = "https://rest-api-test.tinkoff.ru/v2"
CURRENCY = "RUB"
DESCRIPTION_LIMIT = 140  # Init.Description is at most 140 characters
ORDER_ID_LIMIT = 36  # Init.OrderId is at most 36 characters

PAYMENT_STATUSES: dict[str, Status] = {
    "CONFIRMED": Status.SUCCEEDED,
    "REFUNDING": Status.SUCCEEDED,  # captured; the refund is still under way
    "ASYNC_REFUNDING": Status.SUCCEEDED,
    "PARTIAL_REFUNDED": Status.PARTIALLY_REFUNDED,
    "REFUNDED": Status.REFUNDED,
    "REJECTED": Status.FAILED,
    "AUTH_FAIL": Status.FAILED,
    "CANCELED": Status.CANCELLED,
    "DEADLINE_EXPIRED": Status.CANCELLED,
    "REVERSED": Status.CANCELLED,
}  # anything else (NEW, FORM_SHOWED, 3DS_CHECKING, AUTHORIZED, CONFIRMING, ...) is PENDING
REFUND_DONE = frozenset({"REFUNDED", "PARTIAL_REFUNDED", "REVERSED", "PARTIAL_REVERSED", "CANCELED"})
PARTIAL = frozenset({"PARTIAL_REFUNDED", "PARTIAL_REVERSED"})
SAVED_ON = frozenset({"AUTHORIZED", "CONFIRMED"})  # the notifications that carry RebillId
NEVER_CHARGED = frozenset({"CANCELED", "DEADLINE_EXPIRED"})  # left NEW without a Charge
ORDER_NOT_FOUND = "335"  # CheckOrder: "OrderId {value} не найден для TerminalKey {value}"
REPEATED_ORDER = "20"  # Init: "Ошибка повторного идентификатора заказа"
CARD_ACTIVE, CARD_REMOVED = "A", "D"  # GetCardList / RemoveCard card Status


def _render(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def tinkoff_token(fields: Mapping[str, Any], password: str) -> str:
    """Token of a request or notification: root scalars + Password, sorted by key, values joined."""
    scalars = {k: v for k, v in fields.items() if k != "Token" and not isinstance(v, dict | list)}
    scalars["Password"] = password
    joined = "".join(_render(scalars[key]) for key in sorted(scalars))
    return hashlib.sha256(joined.encode()).hexdigest()


def renewal_order_id(idempotency_key: str) -> str:
    """A renewal's OrderId: the idempotency key, or (too long for OrderId) a digest of it, so
    every retry of the same charge names the same order."""
    if len(idempotency_key) <= ORDER_ID_LIMIT:
        return idempotency_key
    return "k-" + hashlib.sha256(idempotency_key.encode()).hexdigest()[: ORDER_ID_LIMIT - 2]


def card_label(pan: str, exp_date: str) -> str:
    """'430000******0777', '1230' -> 'visa •••• 0777, expires 12/2030'; '' without a card's last 4.

    Pan is masked by Tinkoff (first 6, last 4) and can be a phone number for SBP payments.
    """
    last4 = re.search(r"(\d{4})$", pan)
    if last4 is None:
        return ""
    bin6 = re.match(r"\d{6}", pan)
    brand = "card"
    if bin6 is not None:
        first4 = int(bin6.group()[:4])
        if bin6.group().startswith("4"):
            brand = "visa"
        elif 5100 <= first4 <= 5599 or 2221 <= first4 <= 2720:
            brand = "mastercard"
        elif 2200 <= first4 <= 2204:
            brand = "mir"
    label = f"{brand} •••• {last4.group(1)}"
    if re.fullmatch(r"(0[1-9]|1[0-2])\d\d", exp_date):  # MMYY
        label += f", expires {exp_date[:2]}/20{exp_date[2:]}"
    return label


class TinkoffGateway(PaymentGateway):
    name = "tinkoff"
    webhook_settings = ("terminal_key", "password")
    saves_methods = True

    def __init__(self, config: Mapping[str, Any]):
        super().__init__(config)
        self.terminal_key: str = config["terminal_key"]
        self.password: str = config["password"]
        default_url = TEST_URL if config.get("env") == "test" else PRODUCTION_URL
        self.http = GatewayHTTP(
            self.name,
            config.get("base_url") or default_url,
            timeout=tuple(config.get("timeout", DEFAULT_TIMEOUT)),
            retries=config.get("retries", 2),
        )

    def create_checkout(self, request: CheckoutRequest) -> CheckoutSession:
        if request.currency != CURRENCY:
            raise GatewayError(f"tinkoff: only {CURRENCY} is taken", transient=False, code="currency")
        fields: dict[str, Any] = {
            "Amount": to_minor(request.amount, request.currency),
            "OrderId": request.payment_id,
            "Description": request.description[:DESCRIPTION_LIMIT],
            "SuccessURL": request.return_url,
            "FailURL": request.return_url,
            "DATA": {"Email": request.customer_email, **request.metadata},
        }
        if request.save_method:
            if not request.customer_key:  # Init requires CustomerKey with Recurrent
                raise GatewayError(
                    "tinkoff: saving the card needs a customer_key", transient=False, code="customer"
                )
            # The parent payment of later Charges; its notification brings the RebillId
            fields |= {"Recurrent": "Y", "CustomerKey": request.customer_key}
            fields["DATA"]["OperationInitiatorType"] = "1"  # customer-initiated, card kept
        data = self._call("Init", fields, retry_safe=True)
        self._require_success("Init", data)
        return CheckoutSession(reference=str(data["PaymentId"]), redirect_url=data["PaymentURL"], raw=data)

    def verify(self, reference: str) -> PaymentState:
        # GetState reports no RebillId: a saved card comes with the notification (parse_webhook)
        data = self._call("GetState", {"PaymentId": reference}, retry_safe=True)
        return self._state("GetState", data, reference)

    def refund(self, request: RefundRequest) -> RefundResult:
        data = self._call(
            "Cancel",
            {
                "PaymentId": request.reference,
                "Amount": to_minor(request.amount, request.currency),
                "ExternalRequestId": request.idempotency_key,
            },
            retry_safe=False,
        )
        self._require_success("Cancel", data)
        original, remaining = data.get("OriginalAmount"), data.get("NewAmount")
        refunded = (
            original - remaining
            if isinstance(original, int) and isinstance(remaining, int)
            else to_minor(request.amount, request.currency)
        )
        return RefundResult(
            # Tinkoff gives a refund no id of its own: the payment plus our ExternalRequestId name it
            refund_reference=f"{request.reference}:{request.idempotency_key}",
            status=Status.SUCCEEDED if data.get("Status") in REFUND_DONE else Status.PENDING,
            amount=from_minor(refunded, CURRENCY),
            currency=CURRENCY,
            raw=data,
        )

    def parse_webhook(self, *, headers: Mapping[str, str], body: bytes) -> WebhookNotice:
        try:
            data = json.loads(body)
        except ValueError as exc:
            raise WebhookAuthError("tinkoff: notification is not JSON") from exc
        token = data.get("Token") if isinstance(data, dict) else None
        if not isinstance(token, str) or not token:
            raise WebhookAuthError("tinkoff: notification has no Token")
        try:
            expected = tinkoff_token(data, self.password).encode()
        except UnicodeEncodeError as exc:  # a lone surrogate ("\\udc00") cannot have been signed
            raise WebhookAuthError("tinkoff: notification is not text that can be signed") from exc
        if not hmac.compare_digest(expected, token.lower().encode("utf-8", "replace")):
            raise WebhookAuthError("tinkoff: notification Token does not match")
        if "PaymentId" not in data:  # e.g. a card-binding notification: nothing to apply to a payment
            raise GatewayError("tinkoff: notification names no PaymentId", transient=False)
        status, amount = data.get("Status", ""), data.get("Amount")
        if not isinstance(status, str):
            raise GatewayError(f"tinkoff: notification Status {status!r:.50} is no text", transient=False)
        event_id = f"{data['PaymentId']}:{status}" + (f":{amount}" if status in PARTIAL else "")
        try:
            amount = from_minor(amount, CURRENCY)
        except (ValueError, ArithmeticError):  # none, or not minor units: verify() reads the amount
            amount = None
        return WebhookNotice(
            event_id=event_id,
            reference=str(data["PaymentId"]),
            status_hint=PAYMENT_STATUSES.get(status, Status.PENDING) if status else None,
            amount=amount,
            currency=CURRENCY,
            raw=data,
            saved_method=self._saved_method(data) if status in SAVED_ON else None,
        )

    def webhook_reply(self, notice: WebhookNotice) -> WebhookReply:
        return WebhookReply(status=200, body=b"OK", content_type="text/plain")

    def charge_saved(self, request: SavedChargeRequest) -> PaymentState:
        if request.currency != CURRENCY:
            raise GatewayError(f"tinkoff: only {CURRENCY} is taken", transient=False, code="currency")
        if not request.method.token:
            raise GatewayError("tinkoff: the saved method has no RebillId", transient=False, code="method")
        if not request.idempotency_key:
            raise GatewayError("tinkoff: a renewal needs an idempotency key", transient=False, code="key")
        amount = to_minor(request.amount, request.currency)
        order_id = renewal_order_id(request.idempotency_key)
        payment = self._order_payment(order_id)  # a retry finds what an earlier try did
        if payment is not None and payment["Status"] != "NEW":
            return self.verify(payment["PaymentId"])  # charged, declined or expired: never again
        if payment is not None and payment.get("Amount") not in (None, amount):
            raise GatewayError(
                f"tinkoff: order {order_id} is for {payment['Amount']} kopecks, not {amount}: "
                "the idempotency key was used for another charge",
                transient=False,
                code="idempotency_key_reused",
            )
        self._check_card(request.method)
        if payment is None:
            payment = self._init_renewal(request, order_id, amount)
            if payment["Status"] != "NEW":  # another try's Init and Charge got there first
                return self.verify(payment["PaymentId"])
        return self._charge(payment["PaymentId"], request.method)

    def method_forget(self, method: SavedMethod) -> None:
        if not method.customer_reference:
            raise GatewayError(
                "tinkoff: RemoveCard needs the card's CustomerKey", transient=False, code="customer"
            )
        card_id = method.raw.get("CardId")
        if card_id in (None, ""):  # a method kept without its CardId: the customer's card list has it
            card = self._customer_card(method)
            if card is None:
                raise GatewayError(
                    f"tinkoff: customer {method.customer_reference} has no card with this RebillId",
                    transient=False,
                    code="method_not_found",
                )
            card_id = card.get("CardId")
            method = replace(method, raw={**method.raw, "CardId": card_id})
        # Removing twice removes once, so RemoveCard may be retried; a retry whose first try
        # landed is refused, and the card list then shows the card removed.
        data = self._call(
            "RemoveCard",
            {"CustomerKey": method.customer_reference, "CardId": str(card_id)},
            retry_safe=True,
        )
        if data.get("Success") is True and str(data.get("ErrorCode", "0")) == "0":
            return
        try:
            card = self._customer_card(method)
        except GatewayError as exc:
            if exc.transient:
                raise
            card = None
        if card is None or card.get("Status") != CARD_REMOVED:
            raise self._refusal("RemoveCard", data)

    def _init_renewal(self, request: SavedChargeRequest, order_id: str, amount: int) -> dict[str, Any]:
        """A NEW payment for the renewal's order (or the one a concurrent try made), never a second one."""
        data = self._call(
            "Init",
            {
                "Amount": amount,
                "OrderId": order_id,
                "Description": request.description[:DESCRIPTION_LIMIT],
                # merchant-initiated, on a stored card; Recurrent and CustomerKey are for the parent only
                "DATA": {"Email": request.customer_email, **request.metadata, "OperationInitiatorType": "R"},
            },
            retry_safe=True,
        )
        if str(data.get("ErrorCode", "0")) == REPEATED_ORDER:  # a retried Init whose first try landed
            payment = self._order_payment(order_id)
            if payment is None:
                raise GatewayError(
                    f"tinkoff: Init calls order {order_id} repeated, but CheckOrder lists no payment of it",
                    transient=True,
                    code=REPEATED_ORDER,
                )
            return payment
        self._require_success("Init", data)
        return {"PaymentId": str(data["PaymentId"]), "Status": data.get("Status", "NEW"), "Amount": amount}

    def _order_payment(self, order_id: str) -> dict[str, Any] | None:
        """The payment of the order to go on with (CheckOrder), or None when the order has none.

        Charged, declined or in progress comes first (never charge beside it), then NEW, then
        expired; the lowest PaymentId among equals, so every try picks the same one.
        """
        data = self._call("CheckOrder", {"OrderId": order_id}, retry_safe=True)
        if str(data.get("ErrorCode", "0")) == ORDER_NOT_FOUND:
            return None
        self._require_success("CheckOrder", data)
        payments = [
            {**p, "PaymentId": str(p["PaymentId"])}
            for p in data.get("Payments") or []
            if isinstance(p, dict)
            and p.get("PaymentId") not in (None, "")
            and isinstance(p.get("Status"), str)
        ]
        if not payments:
            return None

        def rank(payment: dict[str, Any]) -> tuple[int, int, str]:
            status = payment["Status"]
            order = 2 if status in NEVER_CHARGED else 1 if status == "NEW" else 0
            return order, len(payment["PaymentId"]), payment["PaymentId"]

        return min(payments, key=rank)

    def _charge(self, payment_id: str, method: SavedMethod) -> PaymentState:
        data = self._call("Charge", {"PaymentId": payment_id, "RebillId": method.token}, retry_safe=False)
        accepted = data.get("Success") is True and str(data.get("ErrorCode", "0")) == "0"
        if accepted or data.get("Status") == "REJECTED":
            return self._state("Charge", data, payment_id)  # a decline is REJECTED, with the reason
        # Refused without a decline: the payment may have left NEW through a try that landed
        # meanwhile (then its state is the answer), or the request itself was refused.
        state = self.verify(payment_id)
        if state.raw.get("Status") != "NEW":
            return state
        raise self._refusal("Charge", data)

    def _check_card(self, method: SavedMethod) -> None:
        """Refuse a card that is not an active card of the method's customer (Charge cannot tell)."""
        if not method.customer_reference:
            return  # nothing to check it against: Charge decides on the RebillId alone
        card = self._customer_card(method)
        if card is None:
            raise GatewayError(
                f"tinkoff: the saved card is not a card of customer {method.customer_reference}",
                transient=False,
                code="method_not_found",
            )
        if card.get("Status") != CARD_ACTIVE:
            raise GatewayError(
                f"tinkoff: the saved card of customer {method.customer_reference} was removed",
                transient=False,
                code="method_removed",
            )

    def _customer_card(self, method: SavedMethod) -> dict[str, Any] | None:
        """The method's card in GetCardList (removed cards included), by CardId or else by RebillId."""
        data, http_status = self._request(
            "GetCardList", {"CustomerKey": method.customer_reference}, retry_safe=True
        )
        if isinstance(data, dict):  # a refusal, e.g. an unknown CustomerKey; the list is an array
            raise self._refusal("GetCardList", data, http_status if http_status >= 400 else None)
        if not isinstance(data, list):
            raise GatewayError(f"tinkoff: GetCardList answered {data!r:.100}", transient=False)
        card_id = method.raw.get("CardId")
        for card in data:
            if not isinstance(card, dict):
                continue
            if card_id not in (None, "") and str(card.get("CardId")) == str(card_id):
                return card
            if card_id in (None, "") and str(card.get("RebillId")) == method.token:
                return card
        return None

    def _saved_method(self, data: Mapping[str, Any]) -> SavedMethod | None:
        """The card a parent payment saved, from its (signed) notification; None without a RebillId."""

        def scalar(name: str) -> str:  # only root scalars are signed; anything else is ignored
            value = data.get(name)
            return str(value) if isinstance(value, str | int) and not isinstance(value, bool) else ""

        rebill_id = scalar("RebillId")
        if not rebill_id:
            return None
        described = {
            "RebillId": rebill_id,
            "CardId": scalar("CardId"),
            "CustomerKey": scalar("CustomerKey"),
            "ExpDate": scalar("ExpDate"),
            "PaymentId": scalar("PaymentId"),
        }
        return SavedMethod(
            token=rebill_id,
            customer_reference=described["CustomerKey"],  # the notification names it when Init had it
            label=card_label(scalar("Pan"), described["ExpDate"]),
            raw={k: v for k, v in described.items() if v},  # no Pan, not even masked
        )

    def _state(self, method: str, data: dict[str, Any], reference: str) -> PaymentState:
        if not isinstance(data.get("Status"), str):
            raise self._refusal(method, data)
        status = PAYMENT_STATUSES.get(data["Status"], Status.PENDING)
        reason = data.get("Details") or data.get("Message") or ""  # Message is "OK" when there is none
        try:
            amount = from_minor(data.get("Amount"), CURRENCY)
        except (ValueError, ArithmeticError) as exc:
            raise GatewayError(f"tinkoff: {method} answered no Amount in kopecks", transient=False) from exc
        return PaymentState(
            reference=str(data.get("PaymentId", reference)),
            status=status,
            amount=amount,
            currency=CURRENCY,
            error=str(reason) if status is Status.FAILED and reason != "OK" else "",
            raw=data,
        )

    def _call(self, method: str, fields: Mapping[str, Any], *, retry_safe: bool) -> dict[str, Any]:
        data, http_status = self._request(method, fields, retry_safe=retry_safe)
        if not isinstance(data, dict):
            raise GatewayError(f"tinkoff: {method} answered {data!r}", transient=False, status=http_status)
        if http_status >= 400:
            raise self._refusal(method, data, http_status)
        return data

    def _request(self, method: str, fields: Mapping[str, Any], *, retry_safe: bool) -> tuple[Any, int]:
        """The JSON answer (an object, or GetCardList's array) and its HTTP status."""
        payload = {"TerminalKey": self.terminal_key, **fields}
        payload["Token"] = tinkoff_token(payload, self.password)
        response = self.http.request("POST", method, json=payload, retry_safe=retry_safe)
        return self.http.json(response), response.status_code

    def _require_success(self, method: str, data: dict[str, Any]) -> None:
        if data.get("Success") is not True or str(data.get("ErrorCode", "0")) != "0":
            raise self._refusal(method, data)

    @staticmethod
    def _refusal(method: str, data: Mapping[str, Any], http_status: int | None = None) -> GatewayError:
        text = " ".join(str(data[k]) for k in ("Message", "Details") if data.get(k))
        return GatewayError(
            f"tinkoff: {method} refused: {text or 'no reason given'}",
            transient=False,
            code=str(data.get("ErrorCode", "")),
            status=http_status,
        )
