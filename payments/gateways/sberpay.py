"""Sberbank online acquiring (SberPay): the REST API of the payment gateway.

Documented endpoints used (https://securepayments.sberbank.ru/wiki/doku.php/integration:api:rest:start),
all form-encoded POSTs authenticated by `userName` and `password` in the body, answering JSON
with `errorCode` ("0" or absent on success) and `errorMessage`:

- `register.do`: one-stage order. `orderNumber` is our payment id, `amount` in minor units,
  `currency` the ISO 4217 numeric code, `returnUrl`; answers `orderId` and `formUrl`. Sber
  refuses a second register with the same `orderNumber` (errorCode 1): that is its idempotency,
  so the call is retried safely, but a replay cannot return the first `formUrl` again and
  surfaces as GatewayError(code="1").
- `getOrderStatusExtended.do`: `orderId` -> `orderStatus` 0 registered, 1 held, 2 deposited,
  3 reversed, 4 refunded, 5 ACS authentication, 6 declined; `amount`, `currency`,
  `actionCodeDescription`, `paymentAmountInfo.refundedAmount`.
- `refund.do`: `orderId`, `amount` in minor units. Sber takes no idempotency key for refunds
  and assigns no refund id: the call is never retried, and after a transient error the caller
  must verify() (refundedAmount) before refunding again.

Callbacks (integration:api:callback:start) come as GET or POST with `mdOrder`, `orderNumber`,
`operation`, `status` and `checksum`: HMAC-SHA256 with the symmetric key (`callback_token`)
over every parameter except `checksum` and `sign_alias`, sorted by name, as "name;value;"
concatenated, hex upper-case. For a GET callback the caller passes the raw query string
(`request.META["QUERY_STRING"].encode()`) as `body`; for a POST, the raw form body.
Sber expects a 200 answer; its callbacks carry no event id, so event_id is mdOrder:operation:status.

Base URL: config "base_url", else production only when PAYMENT_ENV is "production", else the test host.
"""

import hashlib
import hmac
from collections.abc import Mapping
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl

from django.conf import settings

from core.http import DEFAULT_TIMEOUT
from core.money import MoneyError, from_minor, to_minor
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

PRODUCTION_URL = "https://securepayments.sberbank.ru/payment/rest"
TEST_URL = "https://3dsec.sberbank.ru/payment/rest"

NUMERIC_CURRENCIES = {  # ISO 4217 numeric codes, as register.do takes them
    "RUB": "643", "USD": "840", "EUR": "978", "GBP": "826", "CNY": "156", "BYN": "933", "KZT": "398",
}  # fmt: skip
# Older Sber answers still name the rouble by its pre-1998 code, 810.
ALPHA_CURRENCIES = {"810": "RUB"} | {code: alpha for alpha, code in NUMERIC_CURRENCIES.items()}

ORDER_STATUSES = {
    0: Status.PENDING,  # registered, not paid
    1: Status.PENDING,  # pre-authorized: held, not captured
    2: Status.SUCCEEDED,  # deposited
    3: Status.CANCELLED,  # authorization reversed
    4: Status.REFUNDED,  # refunded (fully or partly: refundedAmount decides)
    5: Status.PENDING,  # 3-D Secure (ACS) authentication under way
    6: Status.FAILED,  # declined
}
CALLBACK_OPERATIONS = {
    "approved": Status.PENDING,
    "deposited": Status.SUCCEEDED,
    "reversed": Status.CANCELLED,
    "refunded": Status.REFUNDED,
    "declinedByTimeout": Status.FAILED,
}
UNSIGNED_PARAMETERS = frozenset({"checksum", "sign_alias"})


def callback_checksum(params: Mapping[str, str], key: str) -> str:
    """The documented checksum: HMAC-SHA256 over "name;value;" of the sorted parameters, hex upper-case."""
    signed = "".join(f"{name};{params[name]};" for name in sorted(params) if name not in UNSIGNED_PARAMETERS)
    return hmac.new(key.encode(), signed.encode(), hashlib.sha256).hexdigest().upper()


class SberPayGateway(PaymentGateway):
    name = "sberpay"
    webhook_settings = ("callback_token",)

    def __init__(self, config: Mapping[str, Any]):
        super().__init__(config)
        default_url = PRODUCTION_URL if settings.PAYMENT_ENV == "production" else TEST_URL
        self.http = GatewayHTTP(
            self.name,
            config.get("base_url") or default_url,
            timeout=config.get("timeout", DEFAULT_TIMEOUT),
            retries=config.get("retries", 2),
        )

    def create_checkout(self, request: CheckoutRequest) -> CheckoutSession:
        amount, currency = _minor_units(request.amount, request.currency)
        answer = self._call(
            "register.do",
            {
                "orderNumber": request.payment_id,
                "amount": amount,
                "currency": currency,
                "returnUrl": request.return_url,
                "description": request.description,
                "email": request.customer_email,
            },
            retry_safe=True,  # Sber registers one order per orderNumber
        )
        return CheckoutSession(reference=answer["orderId"], redirect_url=answer["formUrl"], raw=answer)

    def verify(self, reference: str) -> PaymentState:
        answer = self._call("getOrderStatusExtended.do", {"orderId": reference}, retry_safe=True)
        currency = ALPHA_CURRENCIES.get(str(answer.get("currency", "643")))
        if currency is None:
            raise GatewayError(f"sberpay: unknown currency code {answer.get('currency')!r}", transient=False)
        try:
            amount = int(answer["amount"])
            refunded = int((answer.get("paymentAmountInfo") or {}).get("refundedAmount", 0))
            status = ORDER_STATUSES[int(answer["orderStatus"])]
        except (KeyError, TypeError, ValueError) as exc:
            raise GatewayError(f"sberpay: unexpected order status answer: {exc!r}", transient=False) from exc
        if status in (Status.SUCCEEDED, Status.REFUNDED) and refunded:
            status = Status.REFUNDED if refunded >= amount else Status.PARTIALLY_REFUNDED
        return PaymentState(
            reference=reference,
            status=status,
            amount=from_minor(amount, currency),
            currency=currency,
            error=answer.get("actionCodeDescription", "") if status == Status.FAILED else "",
            raw=answer,
        )

    def refund(self, request: RefundRequest) -> RefundResult:
        amount, _ = _minor_units(request.amount, request.currency)
        answer = self._call(
            "refund.do",
            {"orderId": request.reference, "amount": amount},
            retry_safe=False,  # no idempotency key at Sber: a replayed refund would refund twice
        )
        return RefundResult(
            refund_reference=f"{request.reference}:{request.idempotency_key}",  # Sber assigns no refund id
            status=Status.SUCCEEDED,  # refund.do answers once the refund is done
            amount=request.amount,
            currency=request.currency,
            raw=answer,
        )

    def parse_webhook(self, *, headers: Mapping[str, str], body: bytes) -> WebhookNotice:
        key = self.config.get("callback_token") or ""
        if not key:
            raise WebhookAuthError("sberpay: no callback_token configured, callbacks cannot be checked")
        try:
            params = dict(parse_qsl(body.decode(), keep_blank_values=True, strict_parsing=True))
        except (UnicodeDecodeError, ValueError) as exc:
            raise WebhookAuthError(f"sberpay: unreadable callback: {exc}") from exc
        given = params.get("checksum", "")
        if not given or not hmac.compare_digest(
            given.upper().encode(), callback_checksum(params, key).encode()
        ):
            raise WebhookAuthError("sberpay: callback checksum missing or wrong")
        if not params.get("mdOrder") or not params.get("operation"):
            raise GatewayError("sberpay: signed callback without mdOrder or operation", transient=False)
        operation, succeeded = params["operation"], params.get("status") == "1"
        if succeeded or operation == "declinedByTimeout":
            hint = CALLBACK_OPERATIONS.get(operation)
        else:
            hint = Status.FAILED if operation in ("approved", "deposited") else None
        return WebhookNotice(
            event_id=f"{params['mdOrder']}:{operation}:{params.get('status', '')}",
            reference=params["mdOrder"],
            status_hint=hint,
            amount=None,  # callbacks carry no currency: verify() reads amount and currency
            currency=None,
            raw=params,
        )

    def webhook_reply(self, notice: WebhookNotice) -> WebhookReply:
        return WebhookReply(status=200, body=b"OK")

    def _call(self, method: str, fields: Mapping[str, Any], *, retry_safe: bool) -> dict[str, Any]:
        credentials = {
            "userName": self.config.get("username", ""),
            "password": self.config.get("password", ""),
        }
        response = self.http.request("POST", method, data={**credentials, **fields}, retry_safe=retry_safe)
        if 400 <= response.status_code < 500:
            raise GatewayError(
                f"sberpay: HTTP {response.status_code} on {method}",
                transient=False,
                status=response.status_code,
            )
        answer = self.http.json(response)
        if not isinstance(answer, dict):
            raise GatewayError(f"sberpay: unexpected answer to {method}", transient=False)
        code = str(answer.get("errorCode", "0"))
        if code != "0":
            message = answer.get("errorMessage", "")
            raise GatewayError(f"sberpay: {method} error {code}: {message}", transient=False, code=code)
        return answer


def _minor_units(amount: Decimal, currency: str) -> tuple[int, str]:
    """The amount in minor units and the currency's ISO 4217 numeric code, as Sber takes them."""
    if currency not in NUMERIC_CURRENCIES:
        raise GatewayError(f"sberpay: currency {currency} is not supported", transient=False)
    try:
        return to_minor(amount, currency), NUMERIC_CURRENCIES[currency]
    except MoneyError as exc:
        raise GatewayError(f"sberpay: {exc}", transient=False) from exc
