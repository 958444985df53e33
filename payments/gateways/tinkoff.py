"""Tinkoff (T-Bank) internet acquiring, API v2: hosted payment form, state, refunds, notifications.

Documented endpoints used (https://developer.tbank.ru/eacq/api), all JSON POSTs:
  - Init      https://securepay.tinkoff.ru/v2/Init      -> PaymentId, PaymentURL
  - GetState  https://securepay.tinkoff.ru/v2/GetState  -> Status, Amount
  - Cancel    https://securepay.tinkoff.ru/v2/Cancel    -> Status, OriginalAmount, NewAmount
The test environment is https://rest-api-test.tinkoff.ru/v2 (PAYMENT_ENV=test).

Signing (https://developer.tbank.ru/eacq/intro/developer/token): every request carries `Token`,
the SHA-256 hex of the VALUES of the root-level scalar fields plus {"Password": password},
sorted by key and concatenated; nested objects (DATA, Receipt) and Token itself take no part.
Notifications (https://developer.tbank.ru/eacq/intro/developer/notification) are signed the
same way, booleans rendered "true"/"false"; the merchant must answer the plain text "OK".

Idempotency: our payment id is the OrderId, and Tinkoff refuses a second Init with an OrderId
it already has, so a retried Init cannot create a second payment (hence retry_safe). Cancel has
no documented de-duplication: it is sent once, with our key as ExternalRequestId for the record.
Amounts are kopecks; GetState and notifications carry no currency, so only RUB is taken.
"""

import hashlib
import hmac
import json
from collections.abc import Mapping
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


class TinkoffGateway(PaymentGateway):
    name = "tinkoff"
    webhook_settings = ("terminal_key", "password")

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
        data = self._call(
            "Init",
            {
                "Amount": to_minor(request.amount, request.currency),
                "OrderId": request.payment_id,
                "Description": request.description[:DESCRIPTION_LIMIT],
                "SuccessURL": request.return_url,
                "FailURL": request.return_url,
                "DATA": {"Email": request.customer_email, **request.metadata},
            },
            retry_safe=True,
        )
        self._require_success("Init", data)
        return CheckoutSession(reference=str(data["PaymentId"]), redirect_url=data["PaymentURL"], raw=data)

    def verify(self, reference: str) -> PaymentState:
        data = self._call("GetState", {"PaymentId": reference}, retry_safe=True)
        if "Status" not in data:
            raise self._refusal("GetState", data)
        status = PAYMENT_STATUSES.get(data["Status"], Status.PENDING)
        reason = data.get("Details") or data.get("Message") or ""  # Message is "OK" when there is none
        return PaymentState(
            reference=str(data.get("PaymentId", reference)),
            status=status,
            amount=from_minor(data["Amount"], CURRENCY),
            currency=CURRENCY,
            error=reason if status is Status.FAILED and reason != "OK" else "",
            raw=data,
        )

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
        )

    def webhook_reply(self, notice: WebhookNotice) -> WebhookReply:
        return WebhookReply(status=200, body=b"OK", content_type="text/plain")

    def _call(self, method: str, fields: Mapping[str, Any], *, retry_safe: bool) -> dict[str, Any]:
        payload = {"TerminalKey": self.terminal_key, **fields}
        payload["Token"] = tinkoff_token(payload, self.password)
        response = self.http.request("POST", method, json=payload, retry_safe=retry_safe)
        data = self.http.json(response)
        if not isinstance(data, dict):
            raise GatewayError(
                f"tinkoff: {method} answered {data!r}", transient=False, status=response.status_code
            )
        if response.status_code >= 400:
            raise self._refusal(method, data, response.status_code)
        return data

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
